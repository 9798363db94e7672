"""Inference benchmark: our Tagger against the HF token-classification pipeline, side by side.

One process, the same pages, the same encoder and NER head (exported as a standard
``BertForTokenClassification``), timed passes interleaved (A B B A ...) so that a shared machine's
noise falls on both. Prints tokens/s, pages/s, their ratio, the roofline share against a matmul probe,
the padding waste, the entity agreement between the two runs and the peak RSS.

Tokens are the pages' unique subword tokens (``PageEncoder.encode``: each token counted once, no
padding, no window overlap, no [CLS]/[SEP]); both methods are divided by the same count.

The pipeline gets each page as its model-view words (``is_split_into_words``: our pre-tokenizer and
normalisation, done before the clock starts, which only helps it), ``aggregation_strategy="first"``,
``stride`` = the model's stride, and the best ``batch_size`` of a short interleaved search.
Its entities are split at line ends before comparison (the design keeps an entity on one line).

    python -m infer.bench --size tiny --n-pages 40 --json bench.json
    python -m infer.bench --model runs/quickstart --pages pages.jsonl --quantize int8
    python -m infer.bench --size base --save-model runs/base-random   # then --model runs/base-random
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from data.schema import Page, load_pages
from data.text import WINDOW_PLANS, normalize
from infer.cpu import cpu_flags, malloc_pages_kept
from infer.tagger import QUANTIZE, Tagger, default_batch_tokens, resolve_device, resolve_dtype

SIZES = {  # layers, hidden, heads, FFN
    "tiny": (4, 256, 4, 1024),
    "small": (6, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}
ENTITY_TYPES = ["LOC", "MISC", "ORG", "PERS"]


# ------------------------------------------------------------------------------------------------
# Pages


def bench_pages(n: int, seed: int = 0, min_words: int = 250, max_words: int = 2500) -> list[Page]:
    """News-like pages of realistic lengths built by the page builder: bodies are paragraphs drawn
    from the project's sample pages, sized log-uniformly between ``min_words`` and ``max_words``
    words (about 1,000 subwords on average), with the builder's furniture around them. The body
    paragraphs keep the sample's entity gold (``entity_regions`` = the body), for training benches."""
    from data.pages import Article, build_pages

    from data.schema import Span

    root = Path(__file__).resolve().parent.parent / "data" / "sample"
    sample = [p for f in ("train", "dev", "test") for p in load_pages(root / f"{f}.jsonl")]
    paragraphs: dict[str, list[Span]] = {}  # body line -> its gold entities (offsets in the line)
    for p in sample:
        for s in p.sections or []:
            if s.label != "body":
                continue
            start = s.start
            for line in p.text[s.start:s.end].split("\n"):
                end = start + len(line)
                if line.strip():
                    paragraphs[line] = [Span(e.label, e.start - start, e.end - start) for e in p.entities or []
                                        if start <= e.start and e.end <= end]
                start = end + 1
    lines = sorted(paragraphs)
    titles = sorted({p.text[s.start:s.end] for p in sample for s in p.sections or [] if s.label == "title"})
    rng = random.Random(seed)
    bodies = []
    for k in range(n):
        target = math.exp(rng.uniform(math.log(min_words), math.log(max_words)))
        paras, size = [], 0
        while size < target:
            paras.append(rng.choice(lines))
            size += len(paras[-1].split())
        bodies.append(Article(id=f"bench-{k}", title=rng.choice(titles), paragraphs=paras,
                              para_entities=[paragraphs[x] for x in paras], annotate="body"))
    furniture = [Article(id=f"t{k}", title=t, paragraphs=[]) for k, t in enumerate(titles)]
    return build_pages(bodies, furniture, rng, id_prefix="bench")


# ------------------------------------------------------------------------------------------------
# Models


def random_model(size: str, pages: list[Page], window: int = 512, stride: int = 128,
                 entity_rate: float = 0.25, seed: int = 0, windows: str = "lines"):
    """A joint model with random weights of a standard shape and a WordPiece vocabulary trained on
    ``pages`` (no download). The NER head's ``O`` bias is set so that about ``entity_rate`` of the
    words get an entity tag, so agreement is measured over many entities."""
    from transformers import BertConfig

    from data.labels import entity_tagset
    from model import JointConfig, JointModel, train_wordpiece

    layers, hidden, heads, ffn = SIZES[size]
    torch.manual_seed(seed)
    tok = train_wordpiece([p.text for p in pages], vocab_size=8000, min_frequency=2, model_max_length=window)
    tags = entity_tagset(ENTITY_TYPES)
    enc = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=window, pad_token_id=tok.pad_token_id)
    cfg = JointConfig(encoder=enc, id2label=tags.id2label, label2id=tags.label2id, window_length=window,
                      stride=stride, windows=windows)
    model = JointModel(cfg).eval()
    # Random position embeddings would make a word's tag depend on where its window starts, which a
    # trained model's does not; without them the two runs' entities can be compared in the overlaps.
    model.encoder.embeddings.position_embeddings.weight.data.zero_()
    _bias_entities(model, tok, pages[:8], entity_rate)
    return model, tok


@torch.inference_mode()
def _bias_entities(model, tok, pages: list[Page], rate: float) -> None:
    """Raise the NER head's weights (so tags depend on the word, not on noise) and set the ``O``
    bias at the quantile that leaves ``rate`` of the words tagged as entities."""
    head = model.ner_head
    head.weight.mul_(20.0)
    head.bias.zero_()
    tagger = Tagger(model, tok, device="cpu", dtype=torch.float32)
    logits = []
    orig = model.ner_logits
    model.ner_logits = lambda *a: logits.append(orig(*a)) or orig(*a)  # type: ignore[method-assign]
    try:
        tagger.tag_block(pages)
    finally:
        del model.ner_logits
    z = torch.cat(logits)
    o = model.config.label2id["O"]
    margin = torch.cat([z[:, :o], z[:, o + 1:]], 1).max(1).values - z[:, o]
    head.bias[o] = float(torch.quantile(margin, 1.0 - rate))


def export_token_classifier(model, tok, folder: Path):
    """The joint model's encoder and NER head as a standard ``BertForTokenClassification``, saved and
    opened again through ``folder`` (as a user of the plain HF recipe would have it)."""
    from transformers import AutoModelForTokenClassification

    cfg = model.config.encoder_config
    cfg.id2label = dict(model.config.id2label)
    cfg.label2id = dict(model.config.label2id)
    cfg.architectures = ["BertForTokenClassification"]
    hf = AutoModelForTokenClassification.from_config(cfg)
    state = {f"bert.{k}": v for k, v in model.encoder.state_dict().items() if not k.startswith("pooler.")}
    state.update({"classifier.weight": model.ner_head.weight, "classifier.bias": model.ner_head.bias})
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"export: missing {missing}, unexpected {unexpected}")
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    return AutoModelForTokenClassification.from_pretrained(folder), type(tok).from_pretrained(folder)


# ------------------------------------------------------------------------------------------------
# The two runs


def model_words(page: Page) -> list[str]:
    """The page's words as the model sees them (a word that normalises to nothing is unknown)."""
    return [normalize(page.text[s:e]) or "[UNK]" for s, e in page.words.tolist()]


def pipeline_entities(page: Page, words: list[str], ents: list[dict]) -> set[tuple]:
    """Pipeline entities (offsets into ``" ".join(words)``) as original-text spans, split at line ends."""
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    out = set()
    for e in ents:
        a = int(np.searchsorted(starts, e["start"], side="right") - 1)
        b = int(np.searchsorted(starts, e["end"] - 1, side="right") - 1)
        lines = page.word_line
        k = a
        for j in range(a + 1, b + 2):
            if j == b + 1 or lines[j] != lines[k]:
                out.add((page.id, int(page.words[k, 0]), int(page.words[j - 1, 1]), e["entity_group"]))
                k = j
    return out


def pipeline_seams(pages: list[Page], encoder, body: int, stride: int) -> dict[str, list[tuple[int, int]]]:
    """Per page, the character ranges of the words that two of the pipeline's stride chunks cover."""
    from data.features import plan_windows

    out = {}
    for p in pages:
        feat = encoder.encode(p)
        plan = plan_windows(feat["word_first"], len(feat["input_ids"]), body, stride, "short")
        first = feat["word_first"]
        cover = np.zeros(len(first), dtype=np.int64)
        for a, b in zip(plan.starts, plan.ends):
            cover += (first >= a) & (first < b)
        out[p.id] = [(int(p.words[i, 0]), int(p.words[i, 1])) for i in np.flatnonzero(cover > 1)]
    return out


def tagger_pass(tagger: Tagger, pages: list[Page]) -> tuple[float, list[dict]]:
    tagger.encoder._cache.clear()  # cold subword cache: tokenisation is part of the timed work
    tagger.encoder._lex_cache.clear()
    t0 = time.perf_counter()
    out = tagger.tag_block(pages)
    return time.perf_counter() - t0, out


def pipeline_pass(pipe, inputs: list[list[str]], batch_size: int) -> tuple[float, list[list[dict]]]:
    t0 = time.perf_counter()
    out = pipe(inputs, is_split_into_words=True, batch_size=batch_size)
    return time.perf_counter() - t0, out


def f1(a: set, b: set) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 1.0


# ------------------------------------------------------------------------------------------------
# Roofline


def matmul_probe(device: torch.device, dtype: torch.dtype, m: int, k: int, n: int, seconds: float = 1.0,
                 streams: int = 1, int8_terms: int = 0) -> float:
    """Dense FLOP/s of an ``(m,k) @ (k,n)`` matmul at ``dtype``: the best of repeated timings. With
    ``streams`` > 1 (CPU) also ``streams`` matmuls side by side, one per thread, each with its share
    of torch's threads, and the better of the two ways: the machine's rate, however it is reached.
    ``int8_terms`` 3 or 1: the product as ``quantize="int8x3"`` or ``quantize="int8"`` runs it
    (``infer.cpu.SplitInt8Linear``, float32 in and out, the input's split included), in float32-equivalent
    FLOP/s."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)
    product = lambda: torch.matmul(a, b)  # noqa: E731
    if int8_terms:
        from infer.cpu import SplitInt8Linear

        lin = SplitInt8Linear(torch.nn.Linear(k, n, bias=False), terms=int8_terms)
        product = lambda: lin(a)  # noqa: E731
    best = float("inf")
    end = time.perf_counter() + seconds
    product()
    while time.perf_counter() < end or best == float("inf"):
        _sync(device)
        t0 = time.perf_counter()
        product()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    rate = 2 * m * k * n / best
    if streams < 2 or device.type != "cpu":
        return rate
    import threading

    from model.streams import stream_pool

    barrier = threading.Barrier(streams)
    n_rounds = max(3, int(seconds / (best * streams)))  # one thread's matmul takes about streams x best

    def one(_):
        product()
        times = []
        for _ in range(n_rounds):
            barrier.wait()  # the streams start each round together
            t0 = time.perf_counter()
            product()
            times.append(time.perf_counter() - t0)
        return times

    with stream_pool(streams, "probe") as pool:
        per_stream = list(pool.map(one, range(streams)))
    slowest = min(max(ts) for ts in zip(*per_stream))  # a round lasts as long as its slowest stream
    return max(rate, streams * 2 * m * k * n / slowest)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_token(enc_cfg, window: int, n_labels: int) -> float:
    """Forward FLOPs per token: 2 x the encoder's linear weights (Q, K, V, O, FFN) and the NER head,
    plus attention scores and mixing, 4 * window * hidden per layer."""
    d, f, layers = enc_cfg.hidden_size, enc_cfg.intermediate_size, enc_cfg.num_hidden_layers
    linear = layers * (4 * d * d + 2 * d * f) + d * n_labels
    return 2 * linear + layers * 4 * window * d


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def int8_flags() -> list[str]:
    """The CPU's int8 and bf16 matrix instructions (VNNI, AMX, AVX512_BF16) and vector widths."""
    return sorted(cpu_flags() & {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
                                 "amx_bf16", "avx512_bf16"})


# ------------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m infer.bench", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--model", help="a saved joint model folder")
    src.add_argument("--size", choices=sorted(SIZES), default="tiny", help="random weights of this shape")
    ap.add_argument("--pages", help="page JSONL (default: builder pages around the sample's paragraphs)")
    ap.add_argument("--n-pages", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: fp32 on CPU, bf16 on GPU)")
    ap.add_argument("--quantize", choices=QUANTIZE, default=None,
                    help="the Tagger's encoder in dynamic int8 (CPU), as three int8 products of split weights and inputs "
                         "(int8x3, CPU with AMX) or under bf16 autocast (the pipeline stays at --dtype)")
    ap.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                    help="the Tagger's encoder in PyTorch or ONNX Runtime (CPU; pip install '.[onnx]')")
    ap.add_argument("--window", type=int, default=512, help="window length of a random-weight model")
    ap.add_argument("--stride", type=int, default=128, help="window overlap of a random-weight model")
    ap.add_argument("--windows", choices=[*WINDOW_PLANS, "model"], default="model",
                    help="window plan of the Tagger (data.features.plan_windows; model: the model config's, "
                         "which is lines for the random-weight models)")
    ap.add_argument("--rounds", type=int, default=2, help="timed passes of each method (interleaved)")
    ap.add_argument("--batch-sizes", default="1,4,8", help="pipeline batch sizes to try")
    ap.add_argument("--batch-tokens", type=int, default=None,
                    help="the Tagger's token budget per batch (default: 4096 on CPU, 16384 on GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores this process may use)")
    ap.add_argument("--overlap", choices=("central", "longest"), default="central",
                    help="the Tagger's rule where windows overlap: central (its default: each word from the window "
                         "where it has the most context) or longest (the pipeline's own rule)")
    ap.add_argument("--streams", type=int, default=None,
                    help="the Tagger's compute streams (default: 2 on a CPU with 2+ threads, 1 on a GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the Tagger's encoder (GPU)")
    ap.add_argument("--save-model", metavar="DIR",
                    help="with --size: also save the random-weight model and its vocabulary here, so that later "
                         "runs with --model DIR measure the very same model (the WordPiece trainer's tie-breaking "
                         "varies between processes, so two --size runs hold different vocabularies and weights)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.save_model and args.model:
        raise SystemExit("--save-model saves a random-weight model (--size); --model is already saved")
    if args.save_model and Path(args.save_model).exists() and not Path(args.save_model).is_dir():
        raise SystemExit(f"--save-model {args.save_model!r} is a file, not a folder")
    import os
    import warnings

    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    args.batch_tokens = args.batch_tokens or default_batch_tokens(device)

    pages = load_pages(args.pages)[: args.n_pages] if args.pages else bench_pages(args.n_pages, args.seed)
    if args.model:
        plain = Tagger.from_pretrained(args.model, device=device, dtype=dtype)
        model, tok = plain.model, plain.encoder.tokenizer
        size = getattr(model.config, "bench_size", None) or Path(args.model).name
    else:
        model, tok = random_model(args.size, pages, args.window, args.stride, seed=args.seed)
        size = args.size
        if args.save_model:
            model.config.bench_size = size  # read back by a --model run, whose "size" is then the same
            model.save_pretrained(args.save_model)
            tok.save_pretrained(args.save_model)
            print(f"saved the {size} random-weight model to {args.save_model}", file=sys.stderr)
    cfg = model.config
    if getattr(cfg, "lexical_buckets", 0):
        print("note: the model adds lexical features that a BertForTokenClassification lacks; "
              "agreement will be low", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        hf, hf_tok = export_token_classifier(model, tok, Path(tmp))
    try:
        tagger = Tagger(model, tok, device=device, dtype=dtype, batch_tokens=args.batch_tokens,
                        quantize=args.quantize, compile=args.compile, backend=args.backend, streams=args.streams,
                        overlap=args.overlap)
    except ValueError as err:  # an option this machine cannot run (int8x3 without AMX, onnx + bf16...)
        raise SystemExit(f"error: {err}") from None
    if args.windows != "model":
        tagger.encoder.windows = args.windows
    hf = hf.to(device, dtype).eval()
    hf_tok.model_max_length = cfg.window_length
    pipe = pipeline("token-classification", model=hf, tokenizer=hf_tok, device=device,
                    aggregation_strategy="first", stride=cfg.stride)

    inputs = [model_words(p) for p in pages]
    n_tokens = sum(len(tagger.encoder.encode(p)["input_ids"]) for p in pages)

    # Warm both up, then pick the pipeline's batch size on a few pages (interleaved rounds).
    tagger.tag_block(pages[:4])
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    probe_inputs = inputs[: max(4, min(len(inputs), 8))]
    trial = {b: [] for b in sizes}
    for rnd in range(2 if len(sizes) > 1 else 0):
        for b in (sizes if rnd % 2 == 0 else sizes[::-1]):
            trial[b].append(pipeline_pass(pipe, probe_inputs, b)[0])
    batch_size = min(sizes, key=lambda b: min(trial[b]) if trial[b] else 0)

    # Timed passes: A B B A ...
    t_tag, t_pipe = [], []
    tagger.tokens_seen = tagger.padded_tokens = 0
    tagger.real_tokens = 0
    tagger.decode_seconds = 0.0
    ours = theirs = None
    d, f, L = cfg.encoder_config.hidden_size, cfg.encoder_config.intermediate_size, cfg.window_length
    probe_m = 16384 if device.type == "cuda" else 4096
    probes = []
    # the roofline at the dtype of the Tagger's products (bf16 autocast: the bf16 rate; int8x3 / int8 on
    # oneDNN: its three / one int8 products with the input's split, per float32-equivalent FLOP)
    probe_dtype = torch.bfloat16 if args.quantize == "bf16" else dtype
    from infer.cpu import SplitInt8Linear

    int8_terms = next((m.terms for m in tagger.model.modules() if isinstance(m, SplitInt8Linear)), 0)
    for rnd in range(args.rounds):
        order = ("tagger", "pipeline") if rnd % 2 == 0 else ("pipeline", "tagger")
        for which in order:
            if which == "tagger":
                probes.append(matmul_probe(device, probe_dtype, probe_m, d, f, seconds=0.5, streams=tagger.streams,
                                           int8_terms=int8_terms))
                t, ours = tagger_pass(tagger, pages)
                t_tag.append(t)
            else:
                t, theirs = pipeline_pass(pipe, inputs, batch_size)
                t_pipe.append(t)
        print(f"round {rnd + 1}: tagger {n_tokens / t_tag[-1]:,.0f} tokens/s, "
              f"pipeline {n_tokens / t_pipe[-1]:,.0f} tokens/s", file=sys.stderr)

    a = {(r["id"], e["start"], e["end"], e["label"]) for r in ours for e in r["entities"]}
    b = set().union(*(pipeline_entities(p, w, e) for p, w, e in zip(pages, inputs, theirs)))
    # Diagnostic: agreement over the words that only one of the pipeline's stride chunks covers, where
    # the pipeline has no overlap to resolve (its rule there, the longest entity of any chunk, is not ours).
    seams = pipeline_seams(pages, tagger.encoder, cfg.window_length - 2, cfg.stride)
    away = lambda ents: {e for e in ents if not any(s < e[2] and e[1] < t for s, t in seams.get(e[0], ()))}  # noqa: E731
    fpt = flops_per_token(cfg.encoder_config, L, cfg.num_labels)
    n_words = sum(len(p.words) for p in pages)
    tag_s, pipe_s = float(np.median(t_tag)), float(np.median(t_pipe))
    probe = float(max(probes))  # the machine's best observed rate: a probe taken at a busy moment would flatter us
    # Ratios per round (each pair ran back to back), then the median: robust to a drifting load.
    speedup = float(np.median([p / t for p, t in zip(t_pipe, t_tag)]))
    roofline = float(np.median([n_tokens * fpt / (t * probe) for t in t_tag]))
    spread = max(max(t_tag) / min(t_tag), max(t_pipe) / min(t_pipe)) - 1
    fed = tagger.padded_tokens
    res = {
        "tagger_tokens_per_s": round(n_tokens / tag_s, 1),
        "pipeline_tokens_per_s": round(n_tokens / pipe_s, 1),
        "speedup": round(speedup, 3),
        "tagger_pages_per_s": round(len(pages) / tag_s, 3),
        "pipeline_pages_per_s": round(len(pages) / pipe_s, 3),
        "roofline_fraction": round(roofline, 3),
        "pipeline_roofline_fraction": round(roofline / speedup, 3),
        "padding_waste": round((fed - tagger.real_tokens) / fed, 4) if fed else 0.0,
        "overlap_waste": round((tagger.real_tokens - tagger.tokens_seen) / fed, 4) if fed else 0.0,
        # decoding (Viterbi, spans, records) is CPU work after the model, whatever the device: its rate caps a GPU's
        "decode_words_per_s": round(n_words * len(t_tag) / tagger.decode_seconds, 1) if tagger.decode_seconds else None,
        "decode_fraction": round(tagger.decode_seconds / sum(t_tag), 4),
        "entity_agreement": round(f1(a, b), 4),
        "entities_tagger": len(a), "entities_pipeline": len(b),
        "entity_agreement_outside_pipeline_overlaps": round(f1(away(a), away(b)), 4),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "probe_gflops": round(probe / 1e9, 1), "flops_per_token": fpt,
        "device": str(device), "dtype": str(dtype).replace("torch.", ""), "size": size,
        "quantize": args.quantize, "probe_dtype": {3: "int8x3", 1: "int8"}.get(int8_terms, str(probe_dtype).replace("torch.", "")),
        "malloc_keeps_pages": malloc_pages_kept(),  # quantize=int8x3 (and int8 with AMX) sets it for the process
        "compile": bool(args.compile), "backend": args.backend,
        "pages": len(pages), "tokens": n_tokens, "rounds": args.rounds, "timing_spread": round(spread, 3),
        "pipeline_batch_size": batch_size, "window_length": L, "stride": cfg.stride,
        "batch_tokens": args.batch_tokens, "threads": threads, "streams": tagger.streams, "windows": tagger.encoder.windows,
        "overlap": tagger.overlap,
        "cpu": cpu_name(), "int8_flags": int8_flags(), "torch": torch.__version__,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
        res["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    print(f"{len(pages)} pages, {n_tokens:,} tokens; {size} {res['dtype']}{' ' + args.quantize if args.quantize else ''}{' onnxruntime' if args.backend == 'onnx' else ''} "
          f"on {device} ({threads} threads)\n"
          f"  tagger   {res['tagger_tokens_per_s']:>10,.0f} tokens/s {res['tagger_pages_per_s']:8.2f} pages/s\n"
          f"  pipeline {res['pipeline_tokens_per_s']:>10,.0f} tokens/s {res['pipeline_pages_per_s']:8.2f} pages/s"
          f" (batch_size {batch_size})\n"
          f"  speedup {res['speedup']:.2f}x; roofline {res['roofline_fraction']:.1%} of {res['probe_gflops']} GFLOP/s "
          f"(pipeline {res['pipeline_roofline_fraction']:.1%}); padding waste {res['padding_waste']:.1%}, "
          f"overlap {res['overlap_waste']:.1%}; decoding {res['decode_fraction']:.1%} of the tagger's time "
          f"({res['decode_words_per_s'] or 0:,.0f} words/s)\n"
          f"  entity agreement F1 {res['entity_agreement']:.4f} ({len(a)} vs {len(b)} entities; "
          f"{res['entity_agreement_outside_pipeline_overlaps']:.4f} away from the pipeline's chunk overlaps); "
          f"peak RSS {res['peak_rss_mb']:.0f} MB; timing spread {spread:.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main()
