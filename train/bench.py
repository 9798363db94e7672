"""Training benchmark: our training step against the plain HF Trainer recipe for token classification.

Both run under ``transformers.Trainer`` in one process, on the same pages, the same encoder weights
and the same number of pages per step, one epoch each, interleaved (ours, HF, HF, ours, ...):
- ours: ``JointModel`` + ``PageEncoder.collate`` + ``JointTrainer``, as ``python -m train`` runs them
  (whole pages per step, their windows without overlap, short last windows in a second encoder call,
  NER + section loss, ``group_by_length`` on page length, CPU dropout masks from numpy
  (``training.fast_dropout``; ``--no-fast-dropout`` for torch's own), each step's two halves of
  pages side by side in two threads (``training.streams``; ``--streams 1`` for one));
- HF: ``BertForTokenClassification`` + ``DataCollatorForTokenClassification`` on the pages'
  model-view words, cut into ``window_length`` chunks without overlap (``return_overflowing_tokens``,
  so no text is lost), labels on first subtokens (run_ner.py's recipe), batch = as many chunks as
  ours has windows per step on average.

Tokens are the pages' unique subword tokens, so tokens/s counts the same work for both.

    python -m train.bench --size tiny --n-pages 40
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from data.labels import entity_tagset
from infer.bench import ENTITY_TYPES, SIZES, bench_pages, cpu_name, export_token_classifier, model_words, peak_rss_mb


def hf_chunks(pages, tok, tags, window: int) -> list[dict]:
    """run_ner.py's tokenize_and_align_labels, with overflowing chunks so that long pages are kept whole."""
    from data.features import ner_labels

    rows = []
    for p in pages:
        labels = ner_labels(p, tags)
        enc = tok(model_words(p), is_split_into_words=True, truncation=True, max_length=window,
                  return_overflowing_tokens=True)
        for k in range(len(enc["input_ids"])):
            prev, lab = None, []
            for w in enc.word_ids(k):
                lab.append(-100 if w is None or w == prev else int(labels[w]))
                prev = w
            rows.append({"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k],
                         "labels": lab})
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--n-pages", type=int, default=40)
    ap.add_argument("--batch-pages", type=int, default=8, help="pages per step (the trainer's default)")
    ap.add_argument("--window", type=int, default=256, help="window length (the trainer's default)")
    ap.add_argument("--stride", type=int, default=64, help="the model's window overlap (inference)")
    ap.add_argument("--window-stride", type=int, default=0,
                    help="overlap of our training windows (training.window_stride; default 0, the trainer's)")
    ap.add_argument("--no-fast-dropout", action="store_true",
                    help="our trainer with torch's own dropout (training.fast_dropout=false)")
    ap.add_argument("--streams", type=int, default=None,
                    help="our trainer's CPU streams (training.streams; default auto: 2 with 2+ threads)")
    ap.add_argument("--rounds", type=int, default=2, help="epochs of each, interleaved")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the figures here")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from data.features import PageEncoder
    from infer.bench import random_model
    from train.data import PageDataset
    from train.trainer import JointTrainer, stream_count

    hf_logging.set_verbosity_error()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    pages = bench_pages(args.n_pages)
    tags = entity_tagset(ENTITY_TYPES)
    model, tok = random_model(args.size, pages, args.window, args.stride)
    with tempfile.TemporaryDirectory() as tmp:
        hf, hf_tok = export_token_classifier(model, tok, Path(tmp))
    if not args.no_fast_dropout:  # as train/__main__ (training.fast_dropout)
        from model import enable_fast_dropout

        enable_fast_dropout(model)
    encoder = PageEncoder.for_model(tok, model, stride=args.window_stride, windows="short")  # as train/__main__
    ours_set = PageDataset(pages, encoder, tags)
    hf_set = hf_chunks(pages, hf_tok, tags, args.window)
    n_tokens = ours_set.n_tokens
    windows = sum(len(encoder.plan(f).starts) for f in ours_set.features)
    hf_batch = max(1, round(len(hf_set) / len(pages) * args.batch_pages))

    def trainer(which: str, out: str) -> Trainer:
        common = dict(output_dir=out, num_train_epochs=1, learning_rate=5e-5, report_to="none", save_strategy="no",
                      logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, use_cpu=True, seed=0)
        if which == "ours":  # as train/__main__.py sets it up
            targs = TrainingArguments(per_device_train_batch_size=args.batch_pages, remove_unused_columns=False,
                                      train_sampling_strategy="group_by_length", **common)
            return JointTrainer(model=model, args=targs, train_dataset=ours_set, data_collator=encoder.collate,
                                streams=stream_count(args.streams, model, targs))
        targs = TrainingArguments(per_device_train_batch_size=hf_batch, **common)
        return Trainer(model=hf, args=targs, train_dataset=hf_set,
                       data_collator=DataCollatorForTokenClassification(hf_tok))

    times: dict[str, list[float]] = {"ours": [], "hf": []}
    with tempfile.TemporaryDirectory() as out:
        for which in ("ours", "hf"):  # warm-up: a few steps each, untimed
            t = trainer(which, out)
            if which == "ours":
                streams_used = t.streams
            t.args.max_steps = 1
            t.train()
        for rnd in range(args.rounds):
            for which in (("ours", "hf") if rnd % 2 == 0 else ("hf", "ours")):
                t = trainer(which, out)
                t0 = time.perf_counter()
                t.train()
                times[which].append(time.perf_counter() - t0)
            print(f"round {rnd + 1}: ours {n_tokens / times['ours'][-1]:,.0f} tokens/s, "
                  f"HF recipe {n_tokens / times['hf'][-1]:,.0f} tokens/s", file=sys.stderr)
    ours_s, hf_s = float(np.median(times["ours"])), float(np.median(times["hf"]))
    res = {
        "ours_tokens_per_s": round(n_tokens / ours_s, 1), "hf_tokens_per_s": round(n_tokens / hf_s, 1),
        "speedup": round(hf_s / ours_s, 3), "size": args.size, "pages": len(pages), "tokens": n_tokens,
        "batch_pages": args.batch_pages, "hf_batch_chunks": hf_batch, "ours_windows": windows,
        "hf_chunks": len(hf_set), "window_length": args.window, "stride": args.stride,
        "window_stride": args.window_stride, "fast_dropout": not args.no_fast_dropout, "threads": threads,
        "streams": streams_used,
        "rounds": args.rounds, "timing_spread": round(max(max(v) / min(v) for v in times.values()) - 1, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1), "cpu": cpu_name(), "torch": torch.__version__,
    }
    print(f"{len(pages)} pages, {n_tokens:,} tokens, {args.size}, {args.batch_pages} pages/step "
          f"({windows} windows of {args.window}, training overlap {args.window_stride}, {streams_used} stream(s)) vs {hf_batch} chunks/step ({len(hf_set)} chunks)\n"
          f"  ours      {res['ours_tokens_per_s']:>9,.0f} tokens/s\n"
          f"  HF recipe {res['hf_tokens_per_s']:>9,.0f} tokens/s\n"
          f"  speedup {res['speedup']:.2f}x; timing spread {res['timing_spread']:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
