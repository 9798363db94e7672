"""The Tagger: pages in, sections and entities (with offsets into the original text) out.

Pages are taken in fixed blocks. Inside a block, every page's windows are sorted by length and cut
into batches by a token budget, so padding stays small and memory does not grow with the input.
A page longer than the budget is simply spread over several batches: its words' NER outputs and its
lines' pooled states are accumulated per page, then the section layer runs over all its lines.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from data.features import PageEncoder
from data.labels import SECTION_TAGS, bio_runs, entity_tagset
from data.schema import DEFAULT_MAX_CHARS, Page, check_text
from infer.cpu import cpu_flags, full_range_int8, keep_malloc_pages, split_int8_available, split_int8_linears
from infer.jobs import fixed_blocks, read_ahead
from model.crf import LinearChainCRF, check_outside_bias, check_section_bias, check_section_once, check_section_required

OVERLAP_RULES = ("central", "longest")


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def default_batch_tokens(device: torch.device) -> int:
    """Subword tokens per batch when none is given: 16384 on a GPU; 4096 on a CPU, where larger batches
    gain nothing: their activations (16384 x the FFN width in float32: 64 MB and more) are mapped and
    unmapped by malloc at every batch and fault their pages in again, and a small block makes few
    batches for the two compute streams to share (the CPU-recipe model, 2 cores: 300 pages by
    ``python -m infer`` 0.96x the wall time and 0.86x the peak memory; 150 pages in one block 2.4x
    faster)."""
    return 16384 if device.type == "cuda" else 4096


QUANTIZE = ("int8", "int8x3", "bf16")


class AutocastEncoder(nn.Module):
    """The encoder run under ``torch.autocast``: its matrix products (Linear layers, attention) take
    ``dtype`` inputs and weights, while LayerNorm and the residual stream stay in float32 (autocast's
    rules), and the output is float32 for the heads. On a CPU with AVX512_BF16
    (or AMX) oneDNN's bf16 products run at 2-3x the float32 rate."""

    def __init__(self, encoder: nn.Module, device_type: str, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.inner = encoder
        self.device_type = device_type
        self.autocast_dtype = dtype
        self.config = getattr(encoder, "config", None)

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=self.autocast_dtype):
            out = self.inner(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state.float()
        return out


def quantize_encoder(model, how: str, device: torch.device):
    """``int8``: dynamic int8 quantisation of the encoder's Linear layers (CPU only). ``int8x3``: each of
    the encoder's Linear layers as three int8 products of split weights and inputs, near float32's
    precision (``infer.cpu.SplitInt8Linear``; CPU only, fast where the CPU has AMX). ``bf16``: the encoder
    under bf16 autocast (weights kept in float32, products in bf16). The heads stay in float, so NER
    probabilities and the section layer keep their precision."""
    if how not in QUANTIZE:
        raise ValueError(f"unknown quantize {how!r}; use {', '.join(QUANTIZE)}")
    flags = cpu_flags() if device.type == "cpu" else set()
    if how == "bf16":
        if flags and not flags & {"avx512_bf16", "amx_bf16"}:
            import warnings

            warnings.warn("quantize=bf16: this CPU has neither avx512_bf16 nor amx_bf16, so its bf16 products "
                          "are emulated: expect them 4-9x slower than float32's", stacklevel=3)
        model.encoder = AutocastEncoder(model.encoder, device.type, torch.bfloat16)
        return model
    if device.type != "cpu":
        raise ValueError(f"quantize={how} is int8 for CPU inference")
    float32 = next(model.encoder.parameters()).dtype == torch.float32
    if how == "int8x3":
        if not float32:
            raise ValueError("quantize=int8x3 takes a float32 model (dtype=float32): its products read and "
                             "write float32")
        if flags and "amx_int8" not in flags:
            raise ValueError("quantize=int8x3 needs a CPU with AMX (amx_int8): without it oneDNN runs these int8 "
                             "products in its reference kernel (0.1 GFLOP/s with AVX-512 VNNI alone); use "
                             "quantize='int8' or 'bf16', or float32")
        if not flags:
            import warnings

            warnings.warn("quantize=int8x3: the CPU's flags cannot be read; it is fast only on a CPU with AMX "
                          "(amx_int8)", stacklevel=3)
    if how == "int8x3" or ("amx_int8" in flags and split_int8_available() and float32):
        # oneDNN's int8 products: three per layer (int8x3), or one (int8 with AMX: per-channel weight scales,
        # one input scale per call, 1.5x the speed of torch.ao's on 24 base-size pages; without AMX they run
        # in oneDNN's reference kernel, so int8 takes fbgemm's, torch.ao, there). Their products and splits of
        # large activations reuse mapped pages instead of faulting fresh ones in at every batch: python -m
        # infer 0.95x the wall time on 24 base-size pages with int8x3 (float32: 0.99x, for 16% more peak
        # memory, so not there); process-wide, TAGGER_KEEP_MALLOC_PAGES=0: off
        keep_malloc_pages()
        split_int8_linears(model.encoder, terms=3 if how == "int8x3" else 1)
        return model
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated (torch 2.13 says so at every call)
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*deprecated")
        # per-channel weight scales (torch.ao's default is one per tensor), and where VNNI sums in 32 bits,
        # inputs on all 8 bits: 92.2% entity agreement with float32 at base size instead of 84.0%
        # (infer.cpu.full_range_int8)
        model.encoder = quantize_dynamic(model.encoder, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                         dtype=torch.qint8)
    if flags & {"avx512_vnni", "avx_vnni"}:
        full_range_int8(model.encoder)
    return model


class Tagger:
    def __init__(self, model, tokenizer, device=None, dtype=None, batch_tokens: int | None = None,
                 block_size: int = 256, max_chars: int = DEFAULT_MAX_CHARS, quantize: str | None = None,
                 compile: bool = False, windows: str | None = None, prefetch: bool | None = None,
                 backend: str = "torch", streams: int | None = None, overlap: str = "central",
                 section_once: Sequence[str] | None = None, outside_bias: float | None = None,
                 section_bias: dict[str, float] | None = None, alone: bool = False,
                 section_required: Sequence[str] | None = None):
        self.device = resolve_device(device)
        # Where windows overlap, "central": each word's tag comes from the window where it has the most
        # context; "longest": the HF pipeline's rule (entities decoded in every window, and of two that
        # overlap the longer kept, then the higher score), for the pipeline's exact output.
        if overlap not in OVERLAP_RULES:
            raise ValueError(f"overlap {overlap!r}: use one of {', '.join(OVERLAP_RULES)}")
        self.overlap = overlap
        # Compute streams (CPU): batches run side by side in this many threads; default 2 where torch
        # has 2 threads or more, 1 on a GPU (there the worker thread prefetches input instead).
        if streams is None:
            streams = 2 if self.device.type == "cpu" and torch.get_num_threads() >= 2 and not compile else 1
        if int(streams) < 1:
            raise ValueError(f"streams must be at least 1, not {streams!r}")
        if compile and int(streams) > 1:
            raise ValueError("compile=True runs one stream (a compiled module is not called from two threads)")
        self.streams = int(streams)
        self.dtype = resolve_dtype(dtype, self.device)
        if backend not in ("torch", "onnx"):
            raise ValueError(f"unknown backend {backend!r}; use torch or onnx")
        if quantize or compile or backend != "torch":
            import copy

            model = copy.deepcopy(model)  # the encoder is replaced below; the caller's model stays as it is
        self.model = model.to(self.device, self.dtype).eval()
        self.backend = backend
        if backend == "onnx":
            if self.device.type != "cpu" or self.dtype != torch.float32:
                raise ValueError("backend='onnx' runs the encoder on the CPU in float32 (int8 with quantize='int8')")
            from infer.onnx import OnnxEncoder

            per = max(1, torch.get_num_threads() // self.streams)  # concurrent runs share the session
            self.model.encoder = OnnxEncoder(self.model.encoder, quantize=quantize, threads=per)
        elif quantize:
            self.model = quantize_encoder(self.model, quantize, self.device)
        if compile:
            self.model.encoder = torch.compile(self.model.encoder, dynamic=True)
        cfg = model.config
        # windows: the window plan (data.features.plan_windows); default: the model config's.
        self.encoder = PageEncoder.for_model(tokenizer, model, **({"windows": windows} if windows else {}))
        self.ner_tags = entity_tagset(cfg.entity_types)
        self.entity_types = list(self.ner_tags.types)
        # Section labels that a page has at most one section of (one title): constrained Viterbi over
        # the lines; default: the model config's ``section_once``.
        once = getattr(cfg, "section_once", None) if section_once is None else section_once
        # Subtracted from the NER tag O's log-probability before decoding (> 0: more entities, higher
        # recall, lower precision); default: the model config's ``ner_outside_bias`` (chosen on dev).
        self.outside_bias = check_outside_bias(getattr(cfg, "ner_outside_bias", 0.0) if outside_bias is None
                                               else outside_bias)
        self._outside = self.ner_tags.tags.index("O")
        # Added to each section label's log-probabilities (its B- and I- tags) before the section decoding;
        # default: the model config's ``section_label_bias`` (chosen on dev), {} for none.
        self.section_bias = check_section_bias(getattr(cfg, "section_label_bias", None) if section_bias is None
                                               else section_bias)
        # Section labels that a page with lines has at least one section of ([body]: it has an article), kept the
        # same way; default: the model config's ``section_required``.
        self.section_required = check_section_required(getattr(cfg, "section_required", None)
                                                       if section_required is None else section_required)
        self.set_section_once(once)
        if batch_tokens is None:
            batch_tokens = default_batch_tokens(self.device)
        self.batch_tokens = max(int(batch_tokens), cfg.window_length)
        self.block_size = int(block_size)
        # A model with repeat keys (config.line_repeats) counts, for each line, the pages of its group in the
        # block that have it; ``alone``: every page as if tagged on its own (its output then depends on
        # nothing but the page).
        self.alone = bool(alone)
        self.prefetch = self.device.type == "cuda" if prefetch is None else bool(prefetch)
        self.max_chars = int(max_chars)
        self.tokens_seen = 0  # unique subword tokens tagged so far (for progress and benchmarks)
        self.decode_seconds = 0.0  # time spent in decode_block so far (benchmarks: the CPU part after the model)
        self.padded_tokens = 0  # positions fed to the encoder, padding and overlap included
        self.real_tokens = 0  # positions fed that are not padding ([CLS]/[SEP] and overlap included)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, dtype=None, **kwargs) -> "Tagger":
        """Open a saved joint model (a local folder, or a hub name where the hub is reachable)."""
        from transformers import AutoModel, AutoTokenizer

        import model as _registers_joint_model  # noqa: F401

        p = Path(path)
        if p.exists() and not p.is_dir():
            raise FileNotFoundError(f"model path {str(path)!r} is a file, not a model folder")
        if not p.exists() and (str(path).startswith((".", "/", "~")) or p.suffix or len(p.parts) > 2):
            raise FileNotFoundError(f"model folder {str(path)!r} does not exist")
        if p.is_dir() and not (p / "config.json").exists():
            raise FileNotFoundError(f"model folder {str(path)!r} has no config.json (not a saved model, or incomplete)")
        try:
            mdl = AutoModel.from_pretrained(str(path))
            tok = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"cannot load model from {str(path)!r}: {err}") from err
        if not hasattr(mdl, "section_logits"):
            raise ValueError(f"{str(path)!r} holds a {type(mdl).__name__}, not a joint section+NER model")
        return cls(mdl, tok, device=device, dtype=dtype, **kwargs)

    # -----------------------------------------------------------------------------------------
    def tag(self, pages: Iterable[Page]) -> Iterator[dict]:
        """Results in input order, tagging fixed blocks of ``block_size`` pages at a time."""
        for block, outputs in self.outputs(pages):
            yield from self.decode_block(block, outputs)

    def outputs(self, pages: Iterable[Page], alone: bool | None = None) -> Iterator[tuple[list[Page], tuple]]:
        """Each fixed block of ``block_size`` pages with its :meth:`block_outputs`, in input order: what
        :meth:`tag` decodes, and what calibration decodes with many biases. ``alone`` (default: the
        Tagger's): each page's line keys as if it were tagged on its own. With ``prefetch`` (the default
        on a GPU), a worker thread tokenises the next block while the model runs on this one (the fast
        tokenizer releases the GIL)."""
        alone = self.alone if alone is None else bool(alone)
        blocks = fixed_blocks(self._checked(pages), self.block_size)
        encode = lambda block: self.encoder.encode_block(block, alone=alone)  # noqa: E731
        if not self.prefetch:
            for block in blocks:
                yield block, self.block_outputs(block, encode(block))
            return
        # the input is read in the worker too, one block at a time, so an error in it surfaces after the
        # blocks before it are out
        for block, feats in read_ahead(blocks, encode, "tagger-prefetch"):
            yield block, self.block_outputs(block, feats)

    def _checked(self, pages: Iterable[Page]) -> Iterator[Page]:
        """The pages, each checked by ``data.schema.check_text`` as ``python -m infer`` checks its records:
        a page whose text is not a string, is blank or is over ``max_chars`` raises ``PageError`` naming
        it (once the blocks before it are out), instead of failing deep in the model."""
        for page in pages:
            check_text(getattr(page, "id", None), getattr(page, "text", None), self.max_chars)
            yield page

    def tag_block(self, pages: list[Page], feats: list[dict] | None = None) -> list[dict]:
        return self.decode_block(pages, self.block_outputs(pages, feats))

    @torch.inference_mode()
    def block_outputs(self, pages: list[Page], feats: list[dict] | None = None) -> tuple:
        """The model's part of tagging a block: its features, NER tag probabilities per word, section
        probabilities per line, and (with the ``longest`` overlap rule) each window's NER probabilities.
        :meth:`decode_block` turns them into records, as often as wanted (calibration decodes one pass
        with many biases)."""
        enc = self.encoder
        if feats is None:
            feats = enc.encode_block(pages, alone=self.alone)
        plans = [enc.plan(f) for f in feats]
        n_labels = self.model.config.num_labels
        hidden = self.model.config.encoder_config.hidden_size
        ner_probs = [np.zeros((len(f["word_first"]), n_labels), dtype=np.float32) for f in feats]
        line_sums = [torch.zeros(f["n_lines"], hidden, device=self.device, dtype=torch.float32) for f in feats]
        line_counts = [torch.zeros(f["n_lines"], device=self.device, dtype=torch.float32) for f in feats]
        line_firsts = [torch.zeros(f["n_lines"], hidden, device=self.device, dtype=torch.float32) for f in feats]
        self.tokens_seen += sum(len(f["input_ids"]) for f in feats)

        # Every window of the block, longest first (stable, so a page's windows stay together).
        items = [(i, w, int(p.ends[w] - p.starts[w])) for i, p in enumerate(plans) for w in range(len(p.starts))]
        items.sort(key=lambda t: -t[2])
        batches = list(_budget_batches(items, self.batch_tokens))
        per_window: list[dict] | None = [{} for _ in feats] if self.overlap == "longest" else None
        for out in self._computed(batches, feats, plans):  # in batch order, whatever the streams
            self._accumulate(*out, feats, ner_probs, line_sums, line_counts, line_firsts, per_window)

        sec_probs = self._sections(feats, line_sums, line_counts, line_firsts)
        return feats, ner_probs, sec_probs, per_window

    def decode_block(self, pages: list[Page], outputs: tuple, outside_bias: float | None = None,
                     section_bias: dict[str, float] | None = None, with_entities: bool = True) -> list[dict]:
        """The records of ``pages`` from their :meth:`block_outputs`, decoded with the Tagger's biases or
        with the ones given here. ``with_entities=False``: sections only (the records' ``entities`` left empty),
        for calibration that scores sections alone."""
        t0 = time.perf_counter()
        feats, ner_probs, sec_probs, per_window = outputs
        ob = self.outside_bias if outside_bias is None else check_outside_bias(outside_bias)
        sb = self._section_bias_vector(self.section_bias if section_bias is None else check_section_bias(section_bias))
        sec_ids = self._section_ids(sec_probs, sb)
        ner_ids = (self._ner_ids(ner_probs, [f["word_line"] for f in feats], ob)
                   if with_entities and per_window is None else [None] * len(pages))
        out = [self._decode(p, f, np_, si, ni, per_window[k] if per_window is not None else None, ob, with_entities)
               for k, (p, f, np_, si, ni) in enumerate(zip(pages, feats, ner_probs, sec_ids, ner_ids))]
        self.decode_seconds += time.perf_counter() - t0
        return out

    @staticmethod
    def _section_bias_vector(bias: dict[str, float]) -> np.ndarray | None:
        if not any(bias.values()):
            return None
        return np.asarray([bias.get(t[2:], 0.0) for t in SECTION_TAGS.tags], dtype=np.float64)

    def _computed(self, batches, feats, plans) -> Iterator[tuple]:
        """Each batch's encoder and NER outputs, in batch order. With ``streams`` > 1 (CPU), that many
        worker threads run batches side by side, each with its share of the torch threads: two
        one-thread streams keep two cores busier than one two-thread stream (the glue between
        matrix products runs on one core while the other stream computes). Accumulating in batch
        order keeps the results bit-identical to a single stream."""
        if self.streams <= 1 or len(batches) < 2:
            for batch in batches:
                yield self._compute(batch, feats, plans)
            return
        from model.streams import stream_pool

        def work(batch):
            with torch.inference_mode():  # thread-local: the caller's mode does not reach workers
                return self._compute(batch, feats, plans)

        with stream_pool(self.streams, "tagger-stream") as pool:
            yield from pool.map(work, batches)

    def _compute(self, batch, feats, plans) -> tuple:
        """One batch of windows through the encoder: the owned words' states and NER probabilities,
        the batch's position counts and, with ``overlap="longest"``, every window's words and their
        NER probabilities."""
        enc = self.encoder
        width = max(t[2] for t in batch) + 2
        ids = np.full((len(batch), width), enc.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        rows_of: dict[int, dict[int, int]] = {}
        for r, (i, w, n) in enumerate(batch):
            ids[r, : n + 2] = enc.window_ids(feats[i], plans[i], w)
            mask[r, : n + 2] = 1
            rows_of.setdefault(i, {})[w] = r
        index, owners, lex = [], [], []
        for i, rows in rows_of.items():
            plan = plans[i]
            ws = np.fromiter(rows.keys(), dtype=np.int64)
            rs = np.fromiter(rows.values(), dtype=np.int64)
            word_ids = np.flatnonzero(np.isin(plan.word_window, ws))
            if len(word_ids) == 0:
                continue
            order = np.argsort(ws)
            row = rs[order][np.searchsorted(ws[order], plan.word_window[word_ids])]
            index.append(row * width + plan.word_pos[word_ids])
            owners.append((i, word_ids))
            if "lex_ids" in feats[i]:
                lex.append(feats[i]["lex_ids"][word_ids])
        counts = (ids.size, sum(t[2] + 2 for t in batch))
        if not index:
            return None, None, None, counts, None
        dev = self.device
        hidden = self.model.encode_windows(_to_device(ids, dev), _to_device(mask, dev))
        flat = hidden.reshape(-1, hidden.shape[-1])
        states = flat.index_select(0, _to_device(np.concatenate(index), dev))
        lex_ids = torch.from_numpy(np.concatenate(lex)).to(dev) if lex else None
        if lex_ids is not None:
            states = self.model.add_lexical(states, lex_ids)
        probs = windows = None
        if self.overlap == "central":  # each owned word's tag
            probs = torch.softmax(self.model.ner_logits(states, lex_ids).float(), dim=-1).cpu().numpy()
        else:  # every word of every window, for the per-window decoding
            windows, cover, cover_lex = [], [], []
            for r, (i, w, _) in enumerate(batch):
                first, plan = feats[i]["word_first"], plans[i]
                start = plan.starts[w]
                lo, hi = np.searchsorted(first, [start, plan.ends[w]])
                pos = first[lo:hi] - start + 1
                if lo > 0 and (lo == len(first) or first[lo] > start):
                    # The window starts inside word lo-1: like the pipeline's chunk, it tags that word
                    # by the piece it has (at position 1).
                    lo, pos = lo - 1, np.concatenate([[1], pos])
                if hi > lo:
                    windows.append((i, w, np.arange(lo, hi)))
                    cover.append(r * width + pos)
                    if "lex_ids" in feats[i]:
                        cover_lex.append(feats[i]["lex_ids"][lo:hi])
            if windows:
                every = flat.index_select(0, _to_device(np.concatenate(cover), dev))
                every_lex = torch.from_numpy(np.concatenate(cover_lex)).to(dev) if cover_lex else None
                if every_lex is not None:
                    every = self.model.add_lexical(every, every_lex)
                every = torch.softmax(self.model.ner_logits(every, every_lex).float(), dim=-1).cpu().numpy()
                sizes = np.cumsum([0] + [len(wi) for _, _, wi in windows])
                windows = [(i, w, wi, every[a:b]) for (i, w, wi), a, b in zip(windows, sizes[:-1], sizes[1:])]
        return owners, states.float(), probs, counts, windows

    def _accumulate(self, owners, states, probs, counts, windows, feats, ner_probs, line_sums, line_counts,
                    line_firsts, per_window) -> None:
        """A computed batch into its pages' NER probabilities and pooled line states."""
        self.padded_tokens += counts[0]
        self.real_tokens += counts[1]
        if owners is None:
            return
        for i, w, word_ids, wprobs in windows or ():
            per_window[i][w] = (word_ids, wprobs)
        dev = self.device
        start = 0
        for i, word_ids in owners:
            k = len(word_ids)
            if probs is not None:
                ner_probs[i][word_ids] = probs[start:start + k]
            wl = feats[i]["word_line"]
            lines = torch.from_numpy(wl[word_ids]).to(dev)
            line_sums[i].index_add_(0, lines, states[start:start + k])
            line_counts[i].index_add_(0, lines, torch.ones(k, device=dev))
            # A line's first word is owned by exactly one window, so adding copies its state once.
            first = (word_ids == 0) | (wl[word_ids] != wl[np.maximum(word_ids - 1, 0)])
            if first.any():
                sel = torch.from_numpy(np.flatnonzero(first) + start).to(dev)
                line_firsts[i].index_add_(0, lines.index_select(0, sel - start), states.index_select(0, sel))
            start += k

    def _sections(self, feats, line_sums, line_counts, line_firsts, max_lines: int = 65536) -> list[np.ndarray]:
        """Section probabilities per page; pages with similar line counts share one GRU call."""
        out: list[np.ndarray | None] = [None] * len(feats)
        order = sorted(range(len(feats)), key=lambda i: feats[i]["n_lines"])
        group: list[int] = []

        def flush():
            if not group:
                return
            vecs = torch.cat([self.model.pool_lines(line_sums[i], line_counts[i], line_firsts[i]) for i in group])
            page = torch.cat([torch.full((feats[i]["n_lines"],), k, dtype=torch.long) for k, i in enumerate(group)])
            pos = torch.cat([torch.arange(feats[i]["n_lines"]) for i in group])
            line_ids = (torch.from_numpy(np.concatenate([feats[i]["line_ids"] for i in group])).to(self.device)
                        if "line_ids" in feats[group[0]] else None)
            logits = self.model.section_logits(vecs.to(self.dtype), page.to(self.device), pos.to(self.device),
                                               line_ids)
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            start = 0
            for i in group:
                n = feats[i]["n_lines"]
                out[i] = probs[start:start + n]
                start += n
            group.clear()

        for i in order:
            if group and feats[i]["n_lines"] * (len(group) + 1) > max_lines:
                flush()
            group.append(i)
        flush()
        return out  # type: ignore[return-value]

    def set_section_once(self, labels: Sequence[str] | None, required: Sequence[str] | None = None) -> None:
        """Decode sections with at most one section of each of ``labels`` per page from now on (``[]`` or
        None: no such rule), and with ``required``, at least one section of each of those labels on a page
        with lines (None: keep the Tagger's ``section_required``; ``[]``: no such rule). Calibration tries
        several on the same model outputs."""
        self.section_once = check_section_once(labels)
        if required is not None:
            self.section_required = check_section_required(required)
        tags = SECTION_TAGS.tags
        self._once_masks = [np.array([t == f"B-{lab}" for t in tags]) for lab in self.section_once]
        self._once_closed = [(tags.index(f"B-{lab}"), tags.index(f"I-{lab}")) for lab in self.section_once]
        # any tag of the label counts: under lenient BIO decoding an I- tag after another label starts a section
        self._required_masks = [np.array([t[2:] == lab for t in tags]) for lab in self.section_required]
        chain = getattr(self.model, "section_chain", None)
        if (self.section_once or self.section_required) and chain is None:  # the rules alone, on the probabilities
            chain = LinearChainCRF(len(SECTION_TAGS.tags))
        self._section_chain = chain

    def _section_ids(self, sec_probs: list[np.ndarray], section_bias: np.ndarray | None) -> list[np.ndarray]:
        """Each page's section tag per line: the argmax, or the section CRF's Viterbi, all pages of the
        block decoded side by side (one chain a page); with ``section_once`` or ``section_required``, page by page."""
        chain = self._section_chain
        if chain is None and section_bias is None:
            return [p.argmax(-1) for p in sec_probs]
        scores = [np.log(np.maximum(p, 1e-12)) + (section_bias if section_bias is not None else 0.0)
                  for p in sec_probs]
        if chain is None:
            return [s.argmax(-1) for s in scores]
        if self._once_masks or self._required_masks:
            return [chain.viterbi_once(s, self._once_masks, self._once_closed, self._required_masks) for s in scores]
        return _chains(chain, scores, [np.zeros(len(s), dtype=np.int64) for s in scores])

    def _tag_scores(self, probs: np.ndarray, outside_bias: float) -> np.ndarray:
        scores = np.log(np.maximum(probs, 1e-12))
        scores[:, self._outside] -= outside_bias
        return scores

    def _ner_ids(self, probs: list[np.ndarray], word_lines: list[np.ndarray], outside_bias: float) -> list[np.ndarray]:
        """NER tag ids of each word: the CRF's Viterbi (a chain a line, all lines of all the given
        pages or windows side by side), else the argmax of the (biased) probabilities."""
        crf = getattr(self.model, "crf", None)
        if crf is None and not outside_bias:
            return [p.argmax(-1) for p in probs]
        scores = [self._tag_scores(p, outside_bias) for p in probs]
        if crf is None:
            return [s.argmax(-1) for s in scores]
        return _chains(crf, scores, word_lines)

    def _runs(self, probs: np.ndarray, word_line: np.ndarray, tag_ids: np.ndarray):
        """Entity runs of consecutive words: first and last word, type and mean tag probability."""
        tag_p = probs[np.arange(len(tag_ids)), tag_ids]
        first, last, types = bio_runs(self.ner_tags.type_of(tag_ids), self.ner_tags.is_begin(tag_ids), word_line)
        csum = np.concatenate([[0.0], np.cumsum(tag_p, dtype=np.float64)])
        return first, last, types, (csum[last + 1] - csum[first]) / (last - first + 1)

    def _decode(self, page: Page, feat: dict, ner_probs: np.ndarray, sec_ids: np.ndarray, ner_ids: np.ndarray | None,
                per_window: dict | None, outside_bias: float, with_entities: bool = True) -> dict:
        text = page.text
        sections = SECTION_TAGS.decode(page.lines, sec_ids)
        spans = page.words
        if not with_entities:
            ent_starts = ent_ends = types = scores = np.zeros(0, dtype=np.int64)
        elif per_window is None:
            first, last, types, scores = self._runs(ner_probs, feat["word_line"], ner_ids)
            ent_starts, ent_ends = spans[first, 0], spans[last, 1]
        else:
            cands = []  # every window's entities, in window order
            order = sorted(per_window)
            lines = [feat["word_line"][per_window[w][0]] for w in order]
            ids = self._ner_ids([per_window[w][1] for w in order], lines, outside_bias)
            for w, wl, wids in zip(order, lines, ids):
                wi, wp = per_window[w]
                for f, la, t, sc in zip(*self._runs(wp, wl, wids)):
                    cands.append((spans[wi[f], 0], spans[wi[la], 1], t, sc))
            ent_starts, ent_ends, types, scores = _longest_of_overlaps(cands)
        sec_starts = np.asarray([s.start for s in sections], dtype=np.int64)
        sec_of = np.searchsorted(sec_starts, ent_starts, side="right") - 1
        entities = [
            {"label": self.ner_tags.types[t], "start": s, "end": e, "text": text[s:e],
             "section": sections[k].label, "score": round(float(sc), 4)}
            for t, s, e, k, sc in zip(np.asarray(types).tolist(), np.asarray(ent_starts).tolist(),
                                      np.asarray(ent_ends).tolist(), sec_of.tolist(), np.asarray(scores).tolist())
        ]
        return {
            "id": page.id,
            "meta": page.meta,
            "text": text,
            "sections": [s.to_dict() for s in sections],
            "entities": entities,
            "body": "\n\n".join(text[s.start:s.end] for s in sections if s.label == "body"),
        }


def _chains(crf, scores: list[np.ndarray], groups: list[np.ndarray]) -> list[np.ndarray]:
    """``crf``'s Viterbi over several score arrays at once: their chains (a ``groups`` value each, a
    line or a page) numbered apart and decoded side by side, the tag ids split back per array."""
    if not scores:
        return []
    offsets, base = [], 0
    for g in groups:
        offsets.append(base)
        base += int(g.max()) + 1 if len(g) else 0
    ids = crf.viterbi(np.concatenate(scores), np.concatenate([g + o for g, o in zip(groups, offsets)]))
    return np.split(ids, np.cumsum([len(s) for s in scores])[:-1])


def _longest_of_overlaps(cands: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The HF token-classification pipeline's rule for entities of overlapping chunks
    (``aggregate_overlapping_entities``): sorted by start (stably: window order among equal starts),
    and of two that overlap the longer is kept, or the later one when it is as long and scores higher.
    ``cands``: ``(start, end, type, score)`` in window order."""
    if not cands:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, np.zeros(0)
    cands = sorted(cands, key=lambda e: e[0])
    kept, prev = [], cands[0]
    for e in cands:
        if prev[0] <= e[0] < prev[1]:
            if e[1] - e[0] > prev[1] - prev[0] or (e[1] - e[0] == prev[1] - prev[0] and e[3] > prev[3]):
                prev = e
        else:
            kept.append(prev)
            prev = e
    kept.append(prev)
    starts, ends, types, scores = (np.asarray(c) for c in zip(*kept))
    return starts.astype(np.int64), ends.astype(np.int64), types.astype(np.int64), scores.astype(np.float64)


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """On a GPU, copy from pinned memory so that the copy is really asynchronous."""
    t = torch.from_numpy(a)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t


def _budget_batches(items: list[tuple[int, int, int]], budget: int,
                    max_padding: float = 0.03) -> Iterator[list[tuple[int, int, int]]]:
    """Cut length-sorted windows into batches whose padded size stays within ``budget`` tokens.
    A batch is also cut before its padding would pass ``max_padding`` of its positions: the short
    windows (one-window pages, a page's last window) then form their own, narrower batches."""
    batch: list[tuple[int, int, int]] = []
    width = real = 0
    for it in items:
        n = it[2] + 2
        w = max(width, n)
        size = w * (len(batch) + 1)
        if batch and (size > budget or size - real - n > max_padding * size):
            yield batch
            batch, w, real = [], n, 0
        batch.append(it)
        width = w
        real += n
    if batch:
        yield batch
