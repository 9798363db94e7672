"""Baselines that our model is compared with, each writing metrics.json (and report.md) into ``--out``.

    python -m train.baselines crf --train TRAIN.txt --test TEST.txt [--test ...] --dev-fraction 0.1 --out DIR
    python -m train.baselines extractors --pages FILE.jsonl [--pages ...] --out DIR
    python -m train.baselines hf-ner --train TRAIN.txt --test TEST.txt [--test ...] --out DIR [--tokenizer DIR]

``crf``: a linear-chain CRF (sklearn-crfsuite) on word-shape and affix features, the classic non-neural
ANERcorp baseline. The last ``--dev-fraction`` of the training sentences (file order) is held out as
dev, per the datasets README; nothing is tuned on the test files.

``hf-ner``: HF's standard token-classification recipe (transformers' examples/pytorch/token-classification/
run_ner.py): a ``datasets.Dataset`` of sentences, words tokenized with ``is_split_into_words=True``, the
label on each word's first subtoken (others -100), ``BertForTokenClassification`` from a fresh ``BertConfig``
(no pre-training), ``Trainer`` + ``DataCollatorForTokenClassification``, seqeval on dev after every epoch.
Scores are on the file's tokens: a word cut off by ``--max-length`` counts as predicted ``O``.

``extractors``: trafilatura and jusText, the usual main-text extractors, on each page rendered as HTML
with one ``<p>`` per line. A line counts as extracted body when its text occurs in the extractor output.

metrics.json holds ``{"systems": {system: {block: {...}}}}`` so that ``train.evaluate --baselines DIR``
can show every system side by side.
"""
from __future__ import annotations

import argparse
import html
import sys
import time
import unicodedata
from pathlib import Path
from typing import Sequence

from data.readers import TAG_MAPS, guess_format, read_conll_sentences
from data.schema import Page, load_pages
from data.text import normalize
from train.evaluate import conll_name
from train.metrics import body_line_metrics, entity_metrics_from_tags
from train.report import write_json, write_report

# ---------------------------------------------------------------------------------------------
# CRF features

CLITIC_PREFIXES = ("و", "ال", "ب", "ل", "ك", "ف")


def shape(word: str) -> str:
    """Collapsed character classes: Arabic letter ``a``, Latin ``X``/``x``, digit ``d``, other kept."""
    out = []
    for c in word:
        cat = unicodedata.category(c)
        if c.isdigit():
            k = "d"
        elif "\u0600" <= c <= "\u06ff" and cat.startswith("L"):
            k = "a"
        elif c.isalpha():
            k = "X" if c.isupper() else "x"
        else:
            k = c
        if not out or out[-1] != k:
            out.append(k)
    return "".join(out)


def _is_punct(word: str) -> bool:
    return bool(word) and all(unicodedata.category(c)[0] in "PS" for c in word)


def token_features(word: str) -> dict:
    w = normalize(word) or word
    f = {"bias": 1.0, "w": w, "shape": shape(word), "len": min(len(w), 8),
         "digit": w.isdigit(), "has_digit": any(c.isdigit() for c in w), "punct": _is_punct(w),
         "latin": any("a" <= c.lower() <= "z" for c in w)}
    for k in range(1, 5):
        if len(w) > k:
            f[f"pre{k}"] = w[:k]
            f[f"suf{k}"] = w[-k:]
    for p in CLITIC_PREFIXES:
        if w.startswith(p) and len(w) > len(p) + 1:
            f[f"clitic_{p}"] = True
    stem = w[1:] if w[:1] in ("و", "ف") and len(w) > 3 else w
    for p in ("ال", "بال", "لل", "كال", "ب", "ل", "ك"):
        if stem.startswith(p) and len(stem) > len(p) + 1:
            stem = stem[len(p):]
            break
    f["stem"] = stem
    return f


def sentence_features(tokens: Sequence[str]) -> list[dict]:
    """Each token's own features plus its neighbours' (±2) word, stem, shape and 2-char suffix."""
    own = [token_features(t) for t in tokens]
    out = []
    for i, f in enumerate(own):
        g = dict(f)
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < len(own):
                n = own[j]
                g.update({f"{d}:w": n["w"], f"{d}:stem": n["stem"], f"{d}:shape": n["shape"],
                          f"{d}:suf2": n.get("suf2", ""), f"{d}:punct": n["punct"]})
            else:
                g[f"{d}:pad"] = True
        out.append(g)
    return out


def run_crf(args: argparse.Namespace) -> dict:
    import sklearn_crfsuite

    t0 = time.time()
    tag_map = TAG_MAPS[guess_format(args.train)]
    sents = read_conll_sentences(args.train, tag_map)
    n_dev = int(round(len(sents) * args.dev_fraction))
    train, dev = sents[:len(sents) - n_dev], sents[len(sents) - n_dev:]
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=args.c1, c2=args.c2, max_iterations=args.max_iterations,
                               all_possible_transitions=True)
    crf.fit([sentence_features(t) for t, _ in train], [g for _, g in train])
    train_s = time.time() - t0
    blocks = {}
    evals = [("dev (last {:.0%} of train)".format(args.dev_fraction), dev, args.train)] if dev else []
    evals += [(conll_name(Path(p)), read_conll_sentences(p, TAG_MAPS[guess_format(p)]), p) for p in args.test]
    for name, data, src in evals:
        pred = crf.predict([sentence_features(t) for t, _ in data])
        blocks[name] = {"source": str(src), "n_sentences": len(data), "unit": "token",
                        "entities": entity_metrics_from_tags([g for _, g in data], pred)}
    settings = {"c1": args.c1, "c2": args.c2, "max_iterations": args.max_iterations,
                "train_sentences": len(train), "dev_sentences": len(dev)}
    return {"baseline": "crf", "settings": settings, "train_s": round(train_s, 1),
            "wall_s": round(time.time() - t0, 1), "systems": {"CRF (sklearn-crfsuite)": blocks}}


# ---------------------------------------------------------------------------------------------
# Main-text extractors


def page_html(page: Page) -> str:
    """The page as an extractor sees it once it is plain text: one ``<p>`` per non-blank line."""
    paras = "\n".join(f"<p>{html.escape(page.text[a:b].strip())}</p>" for a, b in page.lines.tolist())
    return f"<!DOCTYPE html>\n<html lang=\"ar\" dir=\"rtl\"><head><meta charset=\"utf-8\"><title></title></head>" \
           f"<body><article>\n{paras}\n</article></body></html>"


def _squash(s: str) -> str:
    return " ".join(s.split())


def extracted_lines(page: Page, extracted: str) -> list[bool]:
    out = _squash(extracted)
    return [bool(_squash(page.text[a:b])) and _squash(page.text[a:b]) in out for a, b in page.lines.tolist()]


def _trafilatura(doc: str) -> str:
    import trafilatura

    return trafilatura.extract(doc, include_comments=False, include_tables=False) or ""


def _justext(doc: str) -> str:
    import justext

    paras = justext.justext(doc.encode("utf-8"), justext.get_stoplist("Arabic"), encoding="utf-8")
    return "\n".join(p.text for p in paras if not p.is_boilerplate)


EXTRACTORS = {"trafilatura": ("trafilatura", _trafilatura), "jusText": ("justext", _justext)}


def run_extractors(args: argparse.Namespace) -> dict:
    import importlib.util

    systems: dict = {}
    skipped = {}
    for name, (module, fn) in EXTRACTORS.items():
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"not installed (pip install {module}, or the project's [baselines] extra)"
            print(f"skipping {name}: {skipped[name]}", file=sys.stderr)
            continue
        blocks = {}
        for f in args.pages:
            pages = [p for p in load_pages(f) if p.sections is not None]
            t0 = time.time()
            flags = [extracted_lines(p, fn(page_html(p))) for p in pages]
            blocks[Path(f).stem] = {"source": f, "n_pages": len(pages), "body": body_line_metrics(pages, flags),
                                    "wall_s": round(time.time() - t0, 2)}
        systems[name] = blocks
    return {"baseline": "extractors", "skipped": skipped, "systems": systems}



# ---------------------------------------------------------------------------------------------
# HF token classification (run_ner.py recipe)


def run_hf_ner(args: argparse.Namespace) -> dict:
    import numpy as np
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import (AutoTokenizer, BertConfig, BertForTokenClassification,
                              DataCollatorForTokenClassification, Trainer, TrainingArguments, set_seed)

    t0 = time.time()
    set_seed(args.seed)
    sents = read_conll_sentences(args.train, TAG_MAPS[guess_format(args.train)])
    n_dev = int(round(len(sents) * args.dev_fraction))
    train, dev = sents[:len(sents) - n_dev], sents[len(sents) - n_dev:]
    label_list = sorted({t for _, tags in train for t in tags})
    label2id = {l: i for i, l in enumerate(label_list)}
    print(f"train {len(train)} sentences, dev {len(dev)}; labels {label_list}", flush=True)

    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        from model.vocab import train_wordpiece

        tokenizer = train_wordpiece((" ".join(t) for t, _ in train), vocab_size=args.vocab_size,
                                    model_max_length=args.max_length)
    print(f"tokenizer: {args.tokenizer or 'WordPiece trained on the train sentences'}, vocab {len(tokenizer)}",
          flush=True)

    def dataset(data: list) -> Dataset:
        words = [[normalize(w) or "[UNK]" for w in toks] for toks, _ in data]
        ds = Dataset.from_dict({"tokens": words, "ner_tags": [[label2id.get(t, label2id["O"]) for t in tags]
                                                              for _, tags in data]})

        def tokenize_and_align_labels(batch):
            enc = tokenizer(batch["tokens"], truncation=True, max_length=args.max_length, is_split_into_words=True)
            enc["labels"], enc["word_index"] = [], []
            for i, tags in enumerate(batch["ner_tags"]):
                labels, firsts, prev = [], [], None
                for w in enc.word_ids(batch_index=i):
                    if w is None or w == prev:
                        labels.append(-100)
                    else:
                        labels.append(tags[w])
                        firsts.append(w)
                    prev = w
                enc["labels"].append(labels)
                enc["word_index"].append(firsts)  # which word each labelled position is (dropped by Trainer)
            return enc

        return ds.map(tokenize_and_align_labels, batched=True, remove_columns=ds.column_names)

    def scores(logits: np.ndarray, labels: np.ndarray, ds: Dataset, gold: list) -> dict:
        """Entity metrics on every token of the file: first-subtoken predictions put back on their words."""
        preds = np.argmax(logits, axis=-1)
        y_pred = []
        for p, l, want, idx, (toks, _) in zip(preds, labels, ds["labels"], ds["word_index"], gold):
            if l[l != -100].tolist() != [x for x in want if x != -100]:
                raise RuntimeError("predictions are not in dataset order")
            tags = ["O"] * len(toks)
            for w, k in zip(idx, p[l != -100]):
                tags[w] = label_list[k]
            y_pred.append(tags)
        return entity_metrics_from_tags([g for _, g in gold], y_pred)

    train_ds, dev_ds = dataset(train), dataset(dev)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=args.hidden_size, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=args.intermediate,
                        max_position_embeddings=max(512, args.max_length), pad_token_id=tokenizer.pad_token_id,
                        num_labels=len(label_list), id2label=dict(enumerate(label_list)), label2id=label2id)
    model = BertForTokenClassification(config)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters", flush=True)

    def compute_metrics(p) -> dict:
        e = scores(p.predictions, p.label_ids, dev_ds, dev)
        print(f"dev micro-F1 {100 * e['micro']['f1']:.1f}  macro-F1 {100 * e['macro']['f1']:.1f}", flush=True)
        return {"micro_f1": e["micro"]["f1"], "macro_f1": e["macro"]["f1"]}

    training_args = TrainingArguments(
        output_dir=str(Path(args.out) / "trainer"), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        warmup_steps=args.warmup, seed=args.seed, eval_strategy="epoch" if dev else "no", save_strategy="no",
        logging_strategy="steps", logging_steps=args.logging_steps, report_to="none", use_cpu=True,
        disable_tqdm=True, include_num_input_tokens_seen="non_padding", train_sampling_strategy=args.sampling)
    class SequentialEvalTrainer(Trainer):
        """Trainer whose eval/predict keep dataset order: with train_sampling_strategy="group_by_length",
        transformers 5.x also length-groups (reorders) the eval batches, and predictions come back shuffled."""

        def _get_eval_sampler(self, eval_dataset):
            return SequentialSampler(eval_dataset)

    trainer = SequentialEvalTrainer(model=model, args=training_args, train_dataset=train_ds, eval_dataset=dev_ds if dev else None,
                      processing_class=tokenizer, data_collator=DataCollatorForTokenClassification(tokenizer),
                      compute_metrics=compute_metrics)
    result = trainer.train()
    history = trainer.state.log_history
    train_s = result.metrics["train_runtime"]
    eval_s = sum(h.get("eval_runtime", 0.0) for h in history)
    tokens = trainer.state.num_input_tokens_seen
    trainer.save_model(str(Path(args.out) / "model"))
    trainer.compute_metrics = None  # compute_metrics scores the dev set; below, each file is scored on its own

    blocks = {}
    evals = [("dev (last {:.0%} of train)".format(args.dev_fraction), dev, args.train)] if dev else []
    evals += [(conll_name(Path(p)), read_conll_sentences(p, TAG_MAPS[guess_format(p)]), p) for p in args.test]
    for name, data, src in evals:
        ds = dev_ds if data is dev else dataset(data)
        out = trainer.predict(ds)
        blocks[name] = {"source": str(src), "n_sentences": len(data), "unit": "token",
                        "entities": scores(out.predictions, out.label_ids, ds, data)}
    losses = [h["loss"] for h in history if "loss" in h]
    settings = {k: getattr(args, k) for k in ("tokenizer", "vocab_size", "hidden_size", "layers", "heads",
                                              "intermediate", "max_length", "epochs", "lr", "warmup",
                                              "batch_size", "seed", "sampling")}
    settings.update(vocab=len(tokenizer), labels=label_list, train_sentences=len(train), dev_sentences=len(dev),
                    parameters=sum(p.numel() for p in model.parameters()))
    return {"baseline": "hf-ner", "settings": settings,
            "train_s": round(train_s, 1), "train_eval_s": round(eval_s, 1),
            "train_tokens": int(tokens), "train_tokens_per_s": round(tokens / max(train_s - eval_s, 1e-9), 1),
            "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
            "log_history": history, "wall_s": round(time.time() - t0, 1), "systems": {"hf-ner": blocks}}

# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.baselines", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="which", required=True)
    c = sub.add_parser("crf", help="sklearn-crfsuite CRF on CoNLL files")
    c.add_argument("--train", required=True, help="CoNLL training file (ANERcorp train)")
    c.add_argument("--test", action="extend", nargs="+", default=[], help="CoNLL test file(s)")
    c.add_argument("--dev-fraction", type=float, default=0.1, help="last fraction of train sentences held out")
    c.add_argument("--c1", type=float, default=0.1, help="L1 regularisation")
    c.add_argument("--c2", type=float, default=0.1, help="L2 regularisation")
    c.add_argument("--max-iterations", type=int, default=150)
    c.add_argument("--out", required=True)
    e = sub.add_parser("extractors", help="trafilatura and jusText body-line F1 on page JSONL")
    e.add_argument("--pages", action="extend", nargs="+", required=True, help="labelled page JSONL")
    e.add_argument("--out", required=True)
    h = sub.add_parser("hf-ner", help="HF run_ner.py recipe: BertForTokenClassification from scratch + Trainer")
    h.add_argument("--train", required=True, help="CoNLL training file (ANERcorp train)")
    h.add_argument("--test", action="extend", nargs="+", default=[], help="CoNLL test file(s)")
    h.add_argument("--dev-fraction", type=float, default=0.1, help="last fraction of train sentences held out")
    h.add_argument("--tokenizer", help="saved tokenizer folder; default: train a WordPiece on the train sentences")
    h.add_argument("--vocab-size", type=int, default=8000, help="WordPiece size when training one")
    h.add_argument("--hidden-size", type=int, default=256)
    h.add_argument("--layers", type=int, default=4)
    h.add_argument("--heads", type=int, default=4)
    h.add_argument("--intermediate", type=int, default=1024)
    h.add_argument("--max-length", type=int, default=256, help="subtokens per sentence (longer ones truncated)")
    h.add_argument("--epochs", type=float, default=8)
    h.add_argument("--lr", type=float, default=1e-3)
    h.add_argument("--warmup", type=float, default=0.1, help="warmup steps, or a fraction (< 1) of all steps")
    h.add_argument("--batch-size", type=int, default=32)
    h.add_argument("--seed", type=int, default=12345)
    h.add_argument("--sampling", default="group_by_length", choices=["random", "group_by_length"],
                   help="Trainer's train_sampling_strategy (group_by_length: less padding, ~2x faster on CPU)")
    h.add_argument("--logging-steps", type=int, default=20)
    h.add_argument("--out", required=True)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files = [args.train, *args.test] if args.which in ("crf", "hf-ner") else list(args.pages)
    for f in files:
        if not Path(f).is_file():
            print(f"error: file not found: {f}", file=sys.stderr)
            return 2
    if args.which == "crf":
        import importlib.util

        if importlib.util.find_spec("sklearn_crfsuite") is None:
            print("error: sklearn-crfsuite is not installed (pip install sklearn-crfsuite)", file=sys.stderr)
            return 2
        metrics = run_crf(args)
    elif args.which == "hf-ner":
        metrics = run_hf_ner(args)
    else:
        metrics = run_extractors(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report_in = {"blocks": {f"{s}: {b}": v for s, blocks in metrics["systems"].items() for b, v in blocks.items()},
                 "baselines": {}}
    if args.which == "crf":
        write_report(out, report_in, title="Baseline: CRF (sklearn-crfsuite), word-shape and affix features")
    elif args.which == "hf-ner":
        st = metrics["settings"]
        write_report(out, report_in, log_history=metrics["log_history"],
                     title=f"Baseline: HF run_ner.py recipe, BertForTokenClassification from scratch "
                           f"({st['layers']}x{st['hidden_size']}, {st['epochs']:g} epochs, lr {st['lr']:g}; "
                           f"train {metrics['train_s']} s, {metrics['train_tokens_per_s']:.0f} tokens/s)")
    else:
        write_report(out, {"blocks": {}, "baselines": metrics["systems"]}, title="Baselines: main-text extractors")
    write_json(out / "metrics.json", metrics)
    for system, blocks in metrics["systems"].items():
        for name, b in blocks.items():
            if "entities" in b:
                e = b["entities"]
                print(f"{system:<24} {name:<28} micro-F1 {100 * e['micro']['f1']:.1f}  macro-F1 {100 * e['macro']['f1']:.1f}")
            if "body" in b:
                print(f"{system:<24} {name:<28} body-line F1 {100 * b['body']['f1']:.1f}")
    if "wall_s" in metrics:
        print(f"wall time {metrics['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
