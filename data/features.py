"""Subword features of a page and its windows: the one place where training and inference meet.

A page is encoded word by word: each word's normalised form is cut into subwords (a word that
normalises to nothing gets the unknown token, so it still gets a label). The subwords of the page
form one flat sequence that is cut into overlapping windows of the encoder's length. Each word takes
its hidden state (its first subword's) from the window in which that subword has the most context
on both sides. Lines are pooled from their words, so the section head sees every line of the page
whatever the number of windows.
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from itertools import chain
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from data.labels import SECTION_TAGS, TagSet
from data.schema import Page
from data.text import WINDOW_PLANS, normalize

IGNORE = -100


@dataclass
class WindowPlan:
    """Token windows of one page: ``starts[w]:ends[w]`` of the flat subword sequence, and for each
    word the window that owns it and the position of its first subword inside that window."""

    starts: np.ndarray
    ends: np.ndarray
    word_window: np.ndarray
    word_pos: np.ndarray  # position inside the window, counting the leading [CLS]


def plan_windows(word_first: np.ndarray, n_tokens: int, body: int, stride: int, windows: str = "align",
                 word_line: np.ndarray | None = None) -> WindowPlan:
    """Windows of at most ``body`` subwords over a page's flat subword sequence.

    ``"align"``: overlapping windows advancing by ``body - stride``, the last one aligned to the end,
    so every window but a short page's only one is full (a 1,000-subword page then costs three full
    510-subword windows).
    ``"short"``: the same, but the last window keeps the regular step and is shorter, as the HF
    pipeline's ``stride`` chunks are; the encoder sees about ``body / (body - stride)`` positions per
    subword instead of up to 1.5x that.
    ``"lines"`` (needs ``word_line``): windows of whole lines, cut where a line starts, with no
    overlap: every subword is computed once and sees its whole line (paragraph) as context. Only a
    line longer than a window is cut inside, into ``stride``-overlapping windows.
    ``"line"``: one window per line (a line longer than a window cut as above): each subword sees its
    own line only, and attention costs the sum of the lines' squared lengths instead of the windows'.
    The length-sorted batches of the Tagger absorb the windows' different lengths."""
    if windows in ("lines", "line"):
        if word_line is None:
            raise ValueError(f"windows={windows!r} needs the words' line numbers")
        starts, ends = _line_windows(word_first, word_line, n_tokens, body, stride, one_line=windows == "line")
    elif windows in ("align", "short"):
        starts = _stride_starts(n_tokens, body, stride)
        if windows == "align" and n_tokens > body:
            starts = np.unique(np.minimum(starts, n_tokens - body))
        ends = np.minimum(starts + body, n_tokens)
    else:
        raise ValueError(f"windows {windows!r}: use one of {', '.join(WINDOW_PLANS)}")
    # Ownership switches from window w to w+1 in the middle of their overlap, where a token has the
    # same context on both sides in the two windows (at the cut itself when they do not overlap).
    bounds = (starts[1:] + ends[:-1]) // 2
    word_window = np.searchsorted(bounds, word_first, side="right")
    word_pos = word_first - starts[word_window] + 1
    return WindowPlan(starts, ends, word_window, word_pos)


def _stride_starts(n_tokens: int, body: int, stride: int) -> np.ndarray:
    """Starts of windows of ``body`` subwords advancing by ``body - stride``, the last one shorter."""
    if n_tokens <= body:
        return np.zeros(1, dtype=np.int64)
    step = max(1, body - stride)
    return np.arange(int(np.ceil((n_tokens - body) / step)) + 1, dtype=np.int64) * step


def _line_windows(word_first, word_line, n_tokens: int, body: int, stride: int, one_line: bool = False):
    """Greedy: each window runs to the last line start that fits; a window that would hold less
    than a quarter of ``body`` (the next line is too long) is instead a full window cut inside the
    line, and the next one starts ``stride`` subwords before its end. ``one_line``: a window per line."""
    if len(word_first):
        first = np.ones(len(word_line), dtype=bool)
        first[1:] = word_line[1:] != word_line[:-1]
        cuts = word_first[first]
    else:
        cuts = np.zeros(1, dtype=np.int64)
    starts, ends = [], []
    if one_line:  # each line cut as the "short" plan cuts a page
        bounds = np.r_[cuts[1:], n_tokens]
        line_starts = [a + _stride_starts(int(b - a), body, stride) for a, b in zip(cuts.tolist(), bounds.tolist())]
        line_ends = [np.minimum(st + body, b) for st, b in zip(line_starts, bounds.tolist())]
        return np.concatenate(line_starts).astype(np.int64), np.concatenate(line_ends).astype(np.int64)
    s = 0
    while n_tokens - s > body:
        k = int(np.searchsorted(cuts, s + body, side="right")) - 1
        cut = int(cuts[k])
        if cut - s >= body // 4:
            starts.append(s)
            ends.append(cut)
            s = cut
        else:
            starts.append(s)
            ends.append(s + body)
            s += max(1, body - stride)
    starts.append(s)
    ends.append(n_tokens)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


class PageEncoder:
    """Turns pages into model features with a (fast) HF tokenizer. Shared by the trainer, the
    evaluator and the Tagger."""

    def __init__(self, tokenizer, max_length: int = 512, stride: int = 128,
                 max_subwords_per_word: int = 32, cache_size: int = 500_000, lexical_buckets: int = 0,
                 lexical_window: int = 0, windows: str = "lines", line_buckets: int = 0,
                 word_clusters: dict[str, list[int]] | None = None, line_topic: bool = False,
                 line_cluster_level: int | None = None, line_repeats: int = 0, line_bare_words: bool = False,
                 line_blocks: bool = False, word_gazetteer: dict[str, str] | None = None,
                 line_gazetteer: bool = False, line_heads: bool = False):
        self.tokenizer = tokenizer
        self.body = max_length - 2
        if self.body < 8:
            raise ValueError(f"max_length {max_length} is too small")
        self.stride = min(stride, self.body // 2)
        self.max_subwords = max_subwords_per_word
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.pad_id
        self._cache: dict[str, list[int]] = {}
        self._cache_size = cache_size
        self.lexical_buckets = lexical_buckets
        self.lexical_window = lexical_window
        self.line_buckets = line_buckets
        self.line_topic = bool(line_topic)  # + topic keys per line (line_topic_feature_keys)
        self.line_bare_words = bool(line_bare_words)  # + bare-word keys per line (line_feature_keys)
        self.line_blocks = bool(line_blocks)  # + block keys per line (line_block_keys)
        self.line_heads = bool(line_heads)  # + head keys per line (line_head_keys)
        # + repeat keys per line (line_repeat_keys) over groups of this many pages (encode_block); 0: none
        self.line_repeats = int(line_repeats or 0)
        if self.line_repeats < 0:
            raise ValueError(f"line_repeats {line_repeats!r} must be 0 or a group size")
        # word -> cluster ids (JointModel.word_clusters): one more lexical key per granularity
        self.word_clusters = word_clusters or None
        self.n_cluster_keys = len(next(iter(word_clusters.values()))) if word_clusters else 0
        # + the word clusters (at this index of the granularities) of a short line's words as line keys
        if line_cluster_level is not None and not (word_clusters and 0 <= line_cluster_level < self.n_cluster_keys):
            raise ValueError(f"line_cluster_level {line_cluster_level!r} needs word clusters with that many levels")
        self.line_cluster_level = line_cluster_level
        # word -> silver gazetteer code (JointModel.word_gazetteer, train.gazetteer): one more lexical key
        self.word_gazetteer = word_gazetteer or None
        # + what that gazetteer says of a short line's words, as line keys (line_gazetteer_keys)
        if line_gazetteer and not (self.word_gazetteer and line_buckets):
            raise ValueError("line_gazetteer needs line_buckets and a word_gazetteer")
        self.line_gazetteer = bool(line_gazetteer)
        if windows not in WINDOW_PLANS:
            raise ValueError(f"windows {windows!r}: use one of {', '.join(WINDOW_PLANS)}")
        self.windows = windows
        self._lex_cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_config(cls, tokenizer, config, **kwargs) -> "PageEncoder":
        """The encoder a joint model was trained with: same window, stride and lexical features
        (``stride``/``windows`` may be overridden: training windows need no overlap). A model with word
        clusters (``config.lexical_clusters``) needs them too: ``word_clusters=model.word_clusters``,
        or use :meth:`for_model`; so does a model with a silver gazetteer (``config.lexical_gazetteer``:
        ``word_gazetteer=model.word_gazetteer``)."""
        if getattr(config, "lexical_gazetteer", False) and not kwargs.get("word_gazetteer"):
            raise ValueError("this model's lexical features include a silver gazetteer (config.lexical_gazetteer): "
                             "use PageEncoder.for_model(tokenizer, model)")
        if kwargs.get("word_gazetteer") and not getattr(config, "lexical_gazetteer", False):
            raise ValueError("word_gazetteer given, but the config has no lexical_gazetteer")
        sizes = getattr(config, "lexical_clusters", None)
        clusters = kwargs.get("word_clusters")
        if sizes and not clusters:
            raise ValueError("this model's lexical features include word clusters (config.lexical_clusters): "
                             "use PageEncoder.for_model(tokenizer, model)")
        if clusters and len(next(iter(clusters.values()))) != len(sizes or []):
            raise ValueError(f"word_clusters: {len(next(iter(clusters.values())))} ids per word but the config "
                             f"has {len(sizes or [])} cluster sizes")
        kwargs.setdefault("line_gazetteer", getattr(config, "line_gazetteer", False))
        kwargs.setdefault("windows", getattr(config, "windows", "lines"))
        kwargs.setdefault("stride", config.stride)
        if getattr(config, "line_clusters", 0):
            if config.line_clusters not in (sizes or []):
                raise ValueError(f"config.line_clusters {config.line_clusters} is not one of config.lexical_clusters "
                                 f"({sizes})")
            kwargs.setdefault("line_cluster_level", list(sizes).index(config.line_clusters))
        return cls(tokenizer, max_length=config.window_length,
                   lexical_buckets=getattr(config, "lexical_buckets", 0),
                   lexical_window=getattr(config, "lexical_window", 0),
                   line_buckets=getattr(config, "line_buckets", 0),
                   line_topic=getattr(config, "line_topic", False),
                   line_bare_words=getattr(config, "line_bare_words", False),
                   line_blocks=getattr(config, "line_blocks", False),
                   line_heads=getattr(config, "line_heads", False),
                   line_repeats=getattr(config, "line_repeats", 0), **kwargs)

    @classmethod
    def for_model(cls, tokenizer, model, **kwargs) -> "PageEncoder":
        """:meth:`from_config` with the model's own word clusters and gazetteer, if it has them."""
        kwargs.setdefault("word_clusters", getattr(model, "word_clusters", None))
        kwargs.setdefault("word_gazetteer", getattr(model, "word_gazetteer", None))
        return cls.from_config(tokenizer, model.config, **kwargs)

    # -- subwords ---------------------------------------------------------------------------
    def subwords(self, word_strings: list[str]) -> list[list[int]]:
        """Subword ids per word (normalised first), cached: news repeats its words a lot."""
        cache = self._cache
        missing = list({w for w in word_strings if w not in cache})
        if missing:
            if len(cache) + len(missing) > self._cache_size:
                cache.clear()
            norm = [normalize(w) for w in missing]
            todo = [i for i, n in enumerate(norm) if n]
            ids = self.tokenizer([norm[i] for i in todo], add_special_tokens=False)["input_ids"] if todo else []
            for w in missing:
                cache[w] = [self.unk_id]
            for i, toks in zip(todo, ids):
                cache[missing[i]] = (toks or [self.unk_id])[: self.max_subwords]
        return [cache[w] for w in word_strings]

    def lexical_hashes(self, word_strings: list[str]) -> np.ndarray:
        """CRC32 of each word's lexical keys (and its cluster keys, and its gazetteer key), ``(n_words,
        LEXICAL_FEATURES + one per cluster granularity + one with a gazetteer)``: see :func:`lexical_keys`."""
        cache = self._lex_cache
        if len(cache) > self._cache_size:
            cache.clear()
        gazetteer = self.word_gazetteer
        out = np.empty((len(word_strings), LEXICAL_FEATURES + self.n_cluster_keys + (gazetteer is not None)),
                       dtype=np.int64)
        clusters = self.word_clusters
        for i, w in enumerate(word_strings):
            ids = cache.get(w)
            if ids is None:
                n = normalize(w)
                keys = lexical_keys(n)
                if clusters is not None:
                    c = clusters.get(n)
                    keys += tuple(f"c{j}:{c[j] if c is not None else '-'}" for j in range(self.n_cluster_keys))
                if gazetteer is not None:
                    keys += (f"g:{gazetteer.get(n, '-')}",)
                ids = cache[w] = tuple(zlib.crc32(k.encode("utf-8")) for k in keys)
            out[i] = ids
        return out

    def encode_block(self, pages: list[Page], ner_tags: TagSet | None = None, alone: bool = False) -> list[dict]:
        """:meth:`encode` of pages tagged together: with ``line_repeats``, each line's repeat keys count the
        pages of its group that have it (:func:`line_repeats`); ``alone``: each page as if on its own."""
        if not (self.line_buckets and self.line_repeats) or alone:
            return [self.encode(p, ner_tags) for p in pages]
        return [self.encode(p, ner_tags, r) for p, r in zip(pages, line_repeats(pages, self.line_repeats))]

    def encode(self, page: Page, ner_tags: TagSet | None = None, repeats: np.ndarray | None = None) -> dict:
        """Features of one page; with ``ner_tags`` also the labels (masked where not annotated).
        ``repeats``: the page's :func:`line_repeats` counts in its group (None: the page alone)."""
        text = page.text
        spans = page.words
        sub = self.subwords([text[s:e] for s, e in spans.tolist()])
        lens = np.fromiter((len(x) for x in sub), dtype=np.int64, count=len(sub))
        word_first = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, np.int64)
        flat = np.fromiter(chain.from_iterable(sub), dtype=np.int64, count=int(lens.sum()))
        feat = {
            "input_ids": flat,
            "word_first": word_first.astype(np.int64),
            "word_line": page.word_line.astype(np.int64),
            "n_lines": len(page.lines),
        }
        if self.lexical_buckets:
            hashes = self.lexical_hashes([text[s:e] for s, e in spans.tolist()])
            feat["lex_ids"] = lexical_window(hashes, page.word_line, self.lexical_buckets, self.lexical_window)
        if self.line_buckets:
            feat["line_ids"] = line_feature_ids(
                text, page.lines, self.line_buckets, self.line_topic,
                (self.word_clusters, self.line_cluster_level) if self.line_cluster_level is not None else None,
                repeats if self.line_repeats else None, repeat_width=bool(self.line_repeats),
                bare_words=self.line_bare_words, blocks=self.line_blocks,
                gazetteer=self.word_gazetteer if self.line_gazetteer else None, heads=self.line_heads)
        if ner_tags is not None:
            feat["ner_labels"] = ner_labels(page, ner_tags)
            feat["section_labels"] = section_labels(page)
        return feat

    def plan(self, feat: dict) -> WindowPlan:
        return plan_windows(feat["word_first"], len(feat["input_ids"]), self.body, self.stride, self.windows,
                            feat["word_line"])

    def window_ids(self, feat: dict, plan: WindowPlan, w: int) -> np.ndarray:
        ids = feat["input_ids"][plan.starts[w]:plan.ends[w]]
        return np.concatenate([[self.cls_id], ids, [self.sep_id]])

    # -- batches ----------------------------------------------------------------------------
    def collate(self, feats: list[dict]) -> dict[str, torch.Tensor]:
        """A training/evaluation batch of whole pages: all their windows, and the indices that map
        words to window positions and lines to pages."""
        windows, word_index, word_line, line_page, line_pos = [], [], [], [], []
        ner, sec, lex, line_ids, prior, line_prior = [], [], [], [], [], []
        line_offset = 0
        plans = [self.plan(f) for f in feats]
        width = max(int((p.ends - p.starts).max()) + 2 for p in plans)
        for i, (f, p) in enumerate(zip(feats, plans)):
            base = len(windows)
            for w in range(len(p.starts)):
                windows.append(self.window_ids(f, p, w))
            word_index.append((base + p.word_window) * width + p.word_pos)
            word_line.append(f["word_line"] + line_offset)
            line_page.append(np.full(f["n_lines"], i, dtype=np.int64))
            line_pos.append(np.arange(f["n_lines"], dtype=np.int64))
            line_offset += f["n_lines"]
            if "lex_ids" in f:
                lex.append(f["lex_ids"])
            if "line_ids" in f:
                line_ids.append(f["line_ids"])
            if "lex_prior" in f:  # training pages with out-of-fold lexical scores (train.lexical)
                prior.append(f["lex_prior"])
            if "line_prior" in f:  # ... and of the line CRF (train.lexical.fit_line_crf)
                line_prior.append(f["line_prior"])
            if "ner_labels" in f:
                ner.append(f["ner_labels"])
                sec.append(f["section_labels"])
        ids = np.full((len(windows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for r, w in enumerate(windows):
            ids[r, : len(w)] = w
            mask[r, : len(w)] = 1
        batch = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "word_index": torch.from_numpy(np.concatenate(word_index)),
            "word_line": torch.from_numpy(np.concatenate(word_line)),
            "line_page": torch.from_numpy(np.concatenate(line_page)),
            "line_pos": torch.from_numpy(np.concatenate(line_pos)),
        }
        if lex:
            batch["lex_ids"] = torch.from_numpy(np.concatenate(lex))
        if line_ids:
            batch["line_ids"] = torch.from_numpy(np.concatenate(line_ids))
        if prior:
            if len(prior) != len(feats):
                raise ValueError("lex_prior: some pages of the batch have out-of-fold scores and some do not")
            batch["lex_prior"] = torch.from_numpy(np.concatenate(prior))
        if line_prior:
            if len(line_prior) != len(feats):
                raise ValueError("line_prior: some pages of the batch have out-of-fold scores and some do not")
            batch["line_prior"] = torch.from_numpy(np.concatenate(line_prior))
        if ner:
            batch["ner_labels"] = torch.from_numpy(np.concatenate(ner))
            batch["section_labels"] = torch.from_numpy(np.concatenate(sec))
        return batch

    __call__ = collate


def _row_pages(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Each window row's page (-1 for a row that owns no word), each word's page, the page count."""
    line_page = batch["line_page"]
    n_pages = int(line_page.max()) + 1 if len(line_page) else 0
    width = batch["input_ids"].shape[1]
    word_page = line_page[batch["word_line"]]
    row_page = torch.full((batch["input_ids"].shape[0],), -1, dtype=torch.long)
    row_page[batch["word_index"] // width] = word_page
    return row_page, word_page, n_pages


def split_groups(batch: dict[str, torch.Tensor], n: int) -> list[list[int]]:
    """The batch's pages (0-based, in batch order) in ``n`` groups balanced by their windows' real
    lengths: greedy, heaviest page first, into the lightest group. Empty groups are left out."""
    row_page, _, n_pages = _row_pages(batch)
    owned = row_page >= 0
    lengths = batch["attention_mask"].sum(1)
    weight = torch.zeros(n_pages, dtype=torch.float64).index_add_(0, row_page[owned], lengths[owned].double())
    loads, groups = [0.0] * n, [[] for _ in range(n)]
    for page in sorted(range(n_pages), key=lambda i: (-float(weight[i]), i)):
        g = min(range(n), key=lambda k: (loads[k], k))
        groups[g].append(page)
        loads[g] += float(weight[page])
    return [sorted(g) for g in groups if g]


def split_batch(batch: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """A batch of :meth:`PageEncoder.collate` cut into ``n`` batches of whole pages
    (:func:`split_groups`), each as ``collate`` would have made it from those pages alone (narrower
    where its windows are). A window that owns no word is dropped: it adds nothing to any output.
    Fewer than 2 pages, or ``n`` < 2: ``[batch]``."""
    row_page, word_page, n_pages = _row_pages(batch)
    if n < 2 or n_pages < 2:
        return [batch]
    ids, mask, word_index = batch["input_ids"], batch["attention_mask"], batch["word_index"]
    width = ids.shape[1]
    word_line, line_page = batch["word_line"], batch["line_page"]
    word_row, word_pos = word_index // width, word_index % width
    lengths = mask.sum(1)
    out = []
    for pages in split_groups(batch, n):
        keep = torch.zeros(n_pages, dtype=torch.bool)
        keep[pages] = True
        new_page = torch.cumsum(keep.long(), 0) - 1
        lines = keep[line_page]
        new_line = torch.cumsum(lines.long(), 0) - 1
        words = keep[word_page]
        rows = (row_page >= 0) & keep[row_page.clamp(min=0)]
        new_row = torch.cumsum(rows.long(), 0) - 1
        w = int(lengths[rows].max())
        part = {
            "input_ids": ids[rows, :w], "attention_mask": mask[rows, :w],
            "word_index": new_row[word_row[words]] * w + word_pos[words],
            "word_line": new_line[word_line[words]],
            "line_page": new_page[line_page[lines]],
            "line_pos": batch["line_pos"][lines],
        }
        for key in ("lex_ids", "lex_prior", "ner_labels"):
            if key in batch:
                part[key] = batch[key][words]
        for key in ("section_labels", "line_ids", "line_prior"):
            if key in batch:
                part[key] = batch[key][lines]
        out.append(part)
    return out


_CLITICS = ("وبال", "وال", "بال", "فال", "كال", "لل", "ال", "و", "ف", "ب", "ل", "ك")
LEXICAL_FEATURES = 10


def _shape(word: str) -> str:
    out = []
    for ch in word:
        c = "d" if ch.isdigit() else "a" if "\u0600" <= ch <= "\u06ff" else "L" if ch.isupper() else \
            "l" if ch.isalpha() else "p"
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def _stem(n: str) -> str:
    """A normalised word without its leading clitic (the longest that leaves 2 letters or more)."""
    for c in _CLITICS:
        if n.startswith(c) and len(n) - len(c) >= 2:
            return n[len(c):]
    return n


def lexical_keys(n: str) -> tuple[str, ...]:
    """What a CRF would look at: the word, its stem without clitics, affixes and its shape.
    Hashed into buckets and embedded, they give a small encoder a lexicon it cannot learn from
    context alone in a few CPU minutes."""
    stem = _stem(n)
    return (f"w:{n}", f"s:{stem}", f"p1:{n[:1]}", f"p2:{n[:2]}", f"p3:{n[:3]}", f"x1:{n[-1:]}",
            f"x2:{n[-2:]}", f"x3:{n[-3:]}", f"h:{_shape(n)}", f"sx3:{stem[-3:]}|{stem[:2]}")


_SALT = 0x9E3779B1


def lexical_bucket(hashes: np.ndarray, offset: int, buckets: int) -> np.ndarray:
    """Bucket of a lexical key seen at ``offset`` words from the word being tagged (0 is padding)."""
    return 1 + (hashes + (offset + 64) * _SALT) % (buckets - 1)


def lexical_window(hashes: np.ndarray, word_line: np.ndarray, buckets: int, radius: int) -> np.ndarray:
    """Lexical bucket ids of each word and of its neighbours up to ``radius`` words away on the same
    line, ``(n_words, (2 * radius + 1) * LEXICAL_FEATURES)`` int32. Summed by an EmbeddingBag and
    projected, they give the NER head what a linear-chain CRF's unary features give it."""
    n, k = hashes.shape
    out = np.zeros((n, 2 * radius + 1, k), dtype=np.int32)
    for j, d in enumerate(range(-radius, radius + 1)):
        src = np.arange(n) + d
        ok = (src >= 0) & (src < n)
        ok[ok] &= word_line[src[ok]] == word_line[ok]
        out[ok, j] = lexical_bucket(hashes[src[ok]], d, buckets)
    return out.reshape(n, -1)


def ner_labels(page: Page, tags: TagSet) -> np.ndarray:
    """Word tag ids, ``IGNORE`` for words outside every entity region (never trained as ``O``)."""
    n = len(page.words)
    if page.entities is None and page.entity_regions is None:
        return np.full(n, IGNORE, dtype=np.int64)
    ents = [e for e in (page.entities or []) if e.label in tags.types]
    ids = tags.encode(page.words, ents, what=f"page {page.id!r}: entity")
    inside = np.zeros(n, dtype=bool)
    for a, b in page.ner_regions:
        inside |= (page.words[:, 0] >= a) & (page.words[:, 1] <= b)
    return np.where(inside, ids, IGNORE)


def section_labels(page: Page) -> np.ndarray:
    if page.sections is None:
        return np.full(len(page.lines), IGNORE, dtype=np.int64)
    return SECTION_TAGS.encode(page.lines, page.sections, what=f"page {page.id!r}: section")


# ------------------------------------------------------------------------------------------------
# Line features: what a page's layout says about a line, whatever its wording

_LINE_NEIGHBOUR_KEYS = ("n", "e", "c0", "d", "gb", "cl")


def _bin(x: float, edges: tuple) -> int:
    for i, e in enumerate(edges):
        if x <= e:
            return i
    return len(edges)


def _bare(word: str) -> str:
    """A normalised word's letters only (brackets, quotes, punctuation and digits off), without its
    leading clitic: ``[واس]``, ``(واس)`` and ``«واس»`` are one key, and ``شاركونا:`` is ``شاركونا``."""
    return _stem("".join(ch for ch in word if ch.isalpha()))


def _line_own_keys(text: str, spans: list, i: int, bare_words: bool = False) -> dict[str, str]:
    """The keys of line ``i`` on its own: length, punctuation, digits, Latin letters, symbols at the
    ends, indentation, blank lines around it, its place on the page, and its first and last words
    (with ``bare_words`` also the letters of its first two and last words, :func:`_bare`)."""
    s, e = spans[i]
    raw = text[s:e]
    t = raw.strip()
    ws = t.split()
    n_chars = max(1, len(t))
    chars = Counter(t).items()  # each distinct character looked at once, not each character
    first, last = t[:1], t[-1:]
    cat0 = unicodedata.category(first) if first else "-"
    keys = {
        "n": str(_bin(len(ws), (1, 2, 3, 5, 8, 12, 20, 35, 60))),
        "nc": str(_bin(len(t), (3, 10, 20, 40, 80, 160, 320))),
        "c0": cat0 if cat0[0] == "L" else cat0 + first,  # a bullet or quote mark is its own key
        "cl": unicodedata.category(last) if last else "-",
        "e": ":" if last in ":：" else "." if last in ".!?؟" else "-",
        "colon": str(":" in t),
        "d": str(_bin(sum(k for ch, k in chars if ch.isdigit()) / n_chars, (0, 0.05, 0.2, 0.5))),
        "lat": str(_bin(sum(k for ch, k in chars if "a" <= ch <= "z" or "A" <= ch <= "Z") / n_chars, (0, 0.2, 0.6))),
        "p": str(_bin(sum(k for ch, k in chars if unicodedata.category(ch)[0] in "PS") / max(1, len(ws)),
                      (0, 0.1, 0.3, 0.7, 1.5))),
        "sep": str(_bin(t.count("|") + t.count("/") + t.count("،") + t.count(" - ") + t.count(">"), (0, 1, 3))),
        "in": str(min(len(raw) - len(raw.lstrip()), 4)),
        "gb": str(i > 0 and text.count("\n", spans[i - 1][1], s) > 1),
        "ga": str(i + 1 < len(spans) and text.count("\n", e, spans[i + 1][0]) > 1),
        "pos": str(_bin(i / max(1, len(spans) - 1), (0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99))),
        "top": str(min(i, 3)),
        "end": str(min(len(spans) - 1 - i, 3)),
    }
    norm = [normalize(w) for w in ws[:3]] + [normalize(ws[-1]) if ws else ""]
    stems = [_stem(w) for w in norm]
    keys.update(w0=norm[0] if norm else "", w1=norm[1] if len(ws) > 1 else "", wl=norm[-1],
                s0=stems[0] if stems else "", s1=stems[1] if len(ws) > 1 else "", s2=stems[2] if len(ws) > 2 else "")
    if bare_words:
        keys.update(a0=_bare(norm[0]) if ws else "", a1=_bare(norm[1]) if len(ws) > 1 else "",
                    al=_bare(norm[-1]) if ws else "")
    return keys


def line_feature_keys(text: str, spans: list, bare_words: bool = False) -> list[list[str]]:
    """Hashable keys of each non-blank line: its own (:func:`_line_own_keys`) and a few layout keys
    of the two lines before and after it (a header line is short and ends with ":", a list item
    follows its header...)."""
    own = [_line_own_keys(text, spans, i, bare_words) for i in range(len(spans))]
    out = []
    for i, keys in enumerate(own):
        row = [f"{k}={v}" for k, v in keys.items()]
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < len(own):
                row += [f"{d}{k}={own[j][k]}" for k in _LINE_NEIGHBOUR_KEYS]
                if abs(d) == 1:
                    row.append(f"{d}w0={own[j]['w0']}")
            else:
                row.append(f"{d}none")
        out.append(row)
    return out


LINE_FEATURES = len(_LINE_NEIGHBOUR_KEYS) * 4 + 2 + 22  # keys per line, at most (padded with 0)
BARE_FEATURES = 3  # + the bare first, second and last words (bare_words)

# -- topic keys: does a line speak of what the rest of the page speaks of? --------------------------
# A teaser paragraph or a related item is another article: its words come back in few other lines of
# the page, and not in the body's. Whatever the wording of the furniture around it.

_STOPWORDS = frozenset(normalize(w) for w in """
في من على إلى الى عن أن ان إن أو او ثم كما لكن هذا هذه ذلك تلك التي الذي الذين التى الذى هو هي هم هن نحن
كان كانت يكون تكون كانوا قد لقد لم لن لا ما ماذا متى أين كيف بعد قبل بين حتى منذ عند عندما خلال حيث أيضا
ايضا كل بعض غير مع قال قالت وقال وقالت اليوم أكثر اكثر أقل فيها فيه منها منه عليها عليه لها له لهم به بها
هناك هنا إلا الا أنه انه أنها انها وكان وكانت وفي ومن وعلى وأن وهو وهي ولا""".split())
_TOPIC_DF_CAP = 64  # words in more lines than this link no two lines (bounds the cost of huge pages)
_TOPIC_KEYS = ("far", "rec", "score", "best", "crank", "cshare")
TOPIC_FEATURES = 3 * len(_TOPIC_KEYS)  # a line's own topic keys and those of the lines before and after it
_FRACTION_BINS = (0, .1, .2, .35, .5, .7)


def _content_words(t: str) -> set[str]:
    """Stems (clitics off) of a line's words of 3 letters or more, function words left out."""
    out = {_content_stem(w) for w in t.split()}
    out.discard("")
    return out


@lru_cache(maxsize=1 << 17)
def _content_stem(w: str) -> str:
    """A word's content stem for the topic keys, ``""`` for a function word or a short one; cached,
    since news repeats its words (the topic keys read every word of a page once more)."""
    n = normalize(w)
    if not n or n in _STOPWORDS:
        return ""
    s = _stem(n)
    return s if len(s) >= 3 and s not in _STOPWORDS and any(ch.isalpha() for ch in s) else ""


def line_topic_keys(text: str, spans: list) -> list[dict[str, str]]:
    """Topic keys of each line, from the content words that it shares with the page's other lines:
    ``far`` the share of its words found 2 lines away or more; ``rec`` the share found in 3 lines or
    more; ``score`` their mean log line count; ``best`` its best cosine with one other line; and the
    group of lines that it belongs to (lines joined when they share 2 words, or 1 if either has 3 words
    or fewer): ``crank`` that group's rank by words (0: the largest, the main article as a rule) and
    ``cshare`` its share of the page's words. A line without content words gets ``e`` keys.
    Line pairs are compared through a sparse line x word product over the words found in 2 to
    ``_TOPIC_DF_CAP`` lines, so a long page costs about its words times the cap."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    C = [_content_words(text[s:e]) for s, e in spans]
    n = len(C)
    where: dict[str, list[int]] = {}
    for i, c in enumerate(C):
        for w in c:
            where.setdefault(w, []).append(i)  # line numbers, ascending
    size = np.array([len(c) for c in C], dtype=np.float64)
    linking = [lines for lines in where.values() if 2 <= len(lines) <= _TOPIC_DF_CAP]
    rows = np.fromiter(chain.from_iterable(linking), dtype=np.int64)
    cols = np.repeat(np.arange(len(linking)), [len(x) for x in linking])
    m = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(linking)))
    shared = (m @ m.T).tocoo()  # shared linking words of every pair of lines
    off = shared.row != shared.col
    a, b, k = shared.row[off], shared.col[off], shared.data[off]  # line pairs (both ways), shared words
    best = np.zeros(n)
    if len(k):
        np.maximum.at(best, a, k / np.sqrt(size[a] * size[b]))
    link = (k >= 2) | (np.minimum(size[a], size[b]) <= 3)
    _, group = connected_components(csr_matrix((np.ones(int(link.sum())), (a[link], b[link])), shape=(n, n)),
                                    directed=False)
    mass = np.bincount(group, weights=size, minlength=int(group.max()) + 1 if n else 0)
    first = np.full(len(mass), n, dtype=np.int64)
    np.minimum.at(first, group, np.arange(n))
    rank = np.empty(len(mass), dtype=np.int64)
    rank[np.lexsort((first, -mass))] = np.arange(len(mass))  # by words, ties to the earlier group
    total = max(1.0, float(size.sum()))
    out = []
    for i, c in enumerate(C):
        if not c:
            out.append(dict.fromkeys(_TOPIC_KEYS, "e"))
            continue
        dfs = [len(where[w]) for w in c]
        far = sum(1 for w in c if where[w][0] <= i - 2 or where[w][-1] >= i + 2)
        g = group[i]
        out.append({"far": str(_bin(far / len(c), _FRACTION_BINS)),
                    "rec": str(_bin(sum(d >= 3 for d in dfs) / len(c), _FRACTION_BINS)),
                    "score": str(_bin(sum(np.log(dfs)) / len(c), (0, .2, .4, .7, 1.0, 1.5))),
                    "best": str(_bin(best[i], _FRACTION_BINS)),
                    "crank": str(min(int(rank[g]), 2)),
                    "cshare": str(_bin(mass[g] / total, (.05, .15, .3, .5, .7, .9)))})
    return out


def line_topic_feature_keys(text: str, spans: list) -> list[list[str]]:
    """:func:`line_topic_keys` of each line and of the lines just before and after it, as strings."""
    own = line_topic_keys(text, spans)
    out = []
    for i, keys in enumerate(own):
        row = [f"t{k}={v}" for k, v in keys.items()]
        for d in (-1, 1):
            j = i + d
            if 0 <= j < len(own):
                row += [f"{d}t{k}={v}" for k, v in own[j].items()]
        out.append(row)
    return out


# -- block keys: where a line sits among the page's runs of prose ---------------------------------
# An article's body is, as a rule, the page's largest run of prose lines; a teaser's paragraphs are a
# smaller run, after it, under a short header line ("إقرأ أيضاً:"), whatever the header's wording.

BLOCK_PROSE_WORDS = 8   # a line of this many words or more is prose
BLOCK_HEADER_WORDS = 4  # a line of this many words or fewer may head the lines below it
BLOCK_HEADER_REACH = 8  # ... up to this many lines below it
BLOCK_FEATURES = 7      # keys per line, at most


def line_block_keys(text: str, spans: list) -> list[list[str]]:
    """Block keys of each line. Runs of consecutive prose lines (:data:`BLOCK_PROSE_WORDS`; blank lines
    do not break a run) are ranked by words: ``brank`` the rank of the line's run (0: the largest, ties
    to the earlier; capped at 2), ``bn`` the run's length and ``bi`` the line's place in it (``brun=none``
    for a line outside every run); ``brel`` whether the line is before, within or after the largest run;
    and the nearest short line (:data:`BLOCK_HEADER_WORDS`) at most :data:`BLOCK_HEADER_REACH` lines
    above: ``hdr0`` / ``hdrl`` the bare letters (:func:`_bare`) of its first and last words and ``hdrd``
    how far up it is (``hdr=none`` if there is none)."""
    n = len(spans)
    count = [len(text[s:e].split()) for s, e in spans]
    run_of = [-1] * n
    runs: list[list[int]] = []
    for i in range(n):
        if count[i] >= BLOCK_PROSE_WORDS:
            if i and run_of[i - 1] >= 0:
                runs[-1].append(i)
            else:
                runs.append([i])
            run_of[i] = len(runs) - 1
    mass = [sum(count[j] for j in r) for r in runs]
    order = sorted(range(len(runs)), key=lambda r: (-mass[r], runs[r][0]))
    rank = {r: k for k, r in enumerate(order)}
    main = runs[order[0]] if runs else None
    out = []
    header, head_keys = -1, []  # the last short line seen, and its keys (made once, used by the lines below)
    for i in range(n):
        r = run_of[i]
        if r < 0:
            row = ["brun=none"]
        else:
            row = [f"brank={min(rank[r], 2)}", f"bn={_bin(len(runs[r]), (1, 2, 3, 5, 8))}",
                   f"bi={min(i - runs[r][0], 3)}"]
        if main is None:
            row.append("brel=none")
        else:
            row.append("brel=" + ("before" if i < main[0] else "after" if i > main[-1] else "in"))
        if header >= 0 and i - header <= BLOCK_HEADER_REACH:
            row += [*head_keys, f"hdrd={_bin(i - header, (1, 2, 4))}"]
        else:
            row.append("hdr=none")
        if 0 < count[i] <= BLOCK_HEADER_WORDS:
            hw = text[spans[i][0]:spans[i][1]].split()
            header, head_keys = i, [f"hdr0={_bare(normalize(hw[0]))}", f"hdrl={_bare(normalize(hw[-1]))}"]
        out.append(row)
    return out


# -- head keys: does a line open with a mark, or with a short head before ":" or "|"? ---------------
# An inline teaser or a tag line behind a marker or a header that the training pages never had
# ("▶ ...", "للمزيد: ...", "هاشتاغ: ..."): the mark's Unicode class and the head's shape carry over
# where the character and the words do not.

HEAD_SEPARATORS = frozenset(":|»>–-：")  # a word ending in one, or made of them, closes a line's head
HEAD_WORDS = 4  # a head is at most this many words
HEAD_FEATURES = 4  # keys per line, at most


def line_head_keys(text: str, spans: list) -> list[list[str]]:
    """Head keys of each line: ``hc`` the Unicode category of its first character (``So`` for any arrow
    or bullet, ``Pi`` for an opening quote), with ``hcn`` that category and the word count for a line
    that opens with a mark; ``hs`` where its head ends (a separator in its first :data:`HEAD_WORDS` words:
    ``هاشتاغ: اقتصاد`` -> 1, ``شاهد أيضاً | ...`` -> 2; ``-`` for none) and ``hr`` how many words follow
    it (separators left out). Chosen on the line CRF probe (three page seeds, 300 held-out-template
    dev pages): section macro-F1 93.0 / 94.6 / 93.7 vs 91.8 / 94.6 / 93.3 without."""
    out = []
    for s, e in spans:
        t = text[s:e].strip()
        ws = t.split()
        row: list[str] = []
        if ws:
            cat = unicodedata.category(t[0])
            row.append(f"hc={cat}")
            if cat[0] != "L" and len(ws) > 1:
                row.append(f"hcn={cat}:{_bin(len(ws), (2, 4, 8, 16))}")
            head = None
            for i, w in enumerate(ws[:HEAD_WORDS]):
                if len(w) > 1 and w[-1] in HEAD_SEPARATORS:
                    head = i + 1
                    break
                if all(ch in HEAD_SEPARATORS for ch in w):
                    head = i
                    break
            if head is None:
                row.append("hs=-")
            else:
                rest = sum(1 for w in ws[head:] if not all(ch in HEAD_SEPARATORS for ch in w))
                row += [f"hs={head}", f"hr={_bin(rest, (0, 1, 2, 4, 7, 12, 20))}"]
        out.append(row)
    return out


CLUSTER_LINE_WORDS = 8  # lines of this many words or fewer get their words' clusters as keys


def line_cluster_keys(text: str, spans: list, clusters: dict[str, list[int]], level: int,
                      words: list[list[str] | None] | None = None) -> list[list[str]]:
    """The word clusters (``clusters[word][level]``, k-means of the static word vectors) of the words
    of each short line (at most :data:`CLUSTER_LINE_WORDS`), each cluster once, ``-`` for an unknown
    word: furniture in words the training pages never had ("follow us on YouTube") shares clusters
    with furniture they had ("follow us on Twitter"). ``words``: :func:`short_line_words` of the lines, where
    the caller has them already."""
    out = []
    for ws in short_line_words(text, spans) if words is None else words:
        row = [f"kb={c[level] if c is not None else '-'}" for c in map(clusters.get, ws or ())]
        out.append(list(dict.fromkeys(row)))
    return out


def short_line_words(text: str, spans: list) -> list[list[str] | None]:
    """The normalised words of each line of at most :data:`CLUSTER_LINE_WORDS` words (``None`` for a longer
    line: normalised one by one, it stops at its 9th word). What the cluster and gazetteer line keys read."""
    out: list[list[str] | None] = []
    for s, e in spans:
        ws: list[str] = []
        for w in text[s:e].split():
            n = normalize(w)
            if n:
                ws.append(n)
                if len(ws) > CLUSTER_LINE_WORDS:
                    break
        out.append(ws if len(ws) <= CLUSTER_LINE_WORDS else None)
    return out


# The silver gazetteer's types as one letter each (train.gazetteer codes: ``PERS:hi``, ``LOC:mid|ORG:lo``).
_GAZETTEER_TYPE = {"PERS": "P", "LOC": "L", "ORG": "G", "MISC": "M"}
_GAZETTEER_BAND = {"hi": "", "mid": "m", "lo": "l"}
GAZETTEER_LINE_FEATURES = CLUSTER_LINE_WORDS + 1  # a short line's word classes, each once, and its name count


def gazetteer_class(code: str | None) -> str:
    """A word's silver-gazetteer code (:mod:`train.gazetteer`) as a line key's class: its strongest type
    and band (``PERS:hi`` -> ``P``, ``LOC:mid|ORG:lo`` -> ``Lm``, ``ORG:lo`` -> ``Gl``; the first type of
    a tie), ``O`` for a word the news never names, ``-`` for a word without a code."""
    if code is None:
        return "-"
    if code == "O":
        return "O"
    best = None
    for part in code.split("|"):
        kind, _, band = part.partition(":")
        rank = ("hi", "mid", "lo").index(band) if band in _GAZETTEER_BAND else 3
        if best is None or rank < best[0]:
            best = (rank, _GAZETTEER_TYPE.get(kind, "X") + _GAZETTEER_BAND.get(band, "l"))
    return best[1]


def line_gazetteer_keys(text: str, spans: list, gazetteer: dict[str, str],
                        words: list[list[str] | None] | None = None) -> list[list[str]]:
    """What the silver gazetteer (word -> code, :mod:`train.gazetteer`) says of each short line's words
    (at most :data:`CLUSTER_LINE_WORDS`): each word's :func:`gazetteer_class` once (``kg=P``; ``kg=#`` for
    a number, ``kg=p`` for punctuation), and ``kgn=names/words``, the count of its words named in the news
    with a high or middle share (at most 3) over its word count. A byline in words the training pages never
    had ("our correspondent in Beirut", "Tareq al-Suwaidi (Riyadh)") is a short line of names, as the
    bylines they had are; a title or a teaser's head seldom is. ``words``: as for :func:`line_cluster_keys`."""
    out = []
    for ws in short_line_words(text, spans) if words is None else words:
        classes = [gazetteer_class(gazetteer.get(n)) if any(ch.isalpha() for ch in n)
                   else "#" if any(ch.isdigit() for ch in n) else "p" for n in ws or ()]
        row: list[str] = []
        if classes:
            named = sum(c[0] in "PLGMX" and not c.endswith("l") for c in classes)
            row = [f"kg={c}" for c in dict.fromkeys(classes)] + [f"kgn={min(named, 3)}/{len(classes)}"]
        out.append(row)
    return out


# -- repeat keys: is a line found on the other pages of its group? --------------------------------
# Furniture repeats from page to page of a site ("copy the link", "read also:", a tag-line head, the
# same teaser in a sidebar); an article's own lines seldom do. The pages tagged together (a block of
# the Tagger, a group of consecutive training pages) are the group: the same input cut into the same
# blocks gives the same keys, so resumed and sharded runs still write the same bytes.

_DIGITS = re.compile(r"\d+")  # any script's digits
REPEAT_FEATURES = 3  # a line's own repeat key and those of the lines just before and after it
_REPEAT_BINS = (1, 2, 4, 9)  # pages of the group with the line: 1 | 2 | 3-4 | 5-9 | 10+


@lru_cache(maxsize=1 << 16)
def line_repeat_key(line: str) -> str:
    """What two lines must share to count as the same line: their normalised words, digits as 0."""
    return " ".join(n for n in (normalize(w) for w in _DIGITS.sub("0", line).split()) if n)


def repeat_groups(n_pages: int, group: int) -> list[range]:
    """``group`` consecutive pages at a time; a last group shorter than half of ``group`` joins the one
    before it."""
    cuts = list(range(0, n_pages, group)) + [n_pages]
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < group / 2:
        del cuts[-2]
    return [range(a, b) for a, b in zip(cuts, cuts[1:])]


def line_repeats(pages: list[Page], group: int) -> list[np.ndarray | None]:
    """For each page, per line, how many pages of its group have that line (:func:`line_repeat_key`;
    blank lines 0), scaled to a group of ``group`` pages; ``None`` for the pages of a group of fewer than
    ``max(2, group // 4)`` pages, which are tagged as if alone (no repeat keys)."""
    out: list[np.ndarray | None] = [None] * len(pages)
    for g in repeat_groups(len(pages), group):
        if len(g) < max(2, group // 4):
            continue
        keys = [[line_repeat_key(pages[i].text[s:e]) for s, e in pages[i].lines.tolist()] for i in g]
        count = Counter(k for row in keys for k in set(row) if k)
        scale = group / len(g)
        for i, row in zip(g, keys):
            c = np.array([count[k] if k else 0 for k in row], dtype=np.float64)
            out[i] = np.where(c > 1, np.maximum(2, np.rint(c * scale)), c).astype(np.int64)
    return out


def line_repeat_keys(repeats: np.ndarray) -> list[list[str]]:
    """Keys of :func:`line_repeats` counts: each line's bin and its neighbours' (``e``: a blank line)."""
    own = ["e" if c == 0 else str(_bin(c, _REPEAT_BINS)) for c in repeats.tolist()]
    out = []
    for i, k in enumerate(own):
        row = [f"r={k}"]
        if i > 0:
            row.append(f"-1r={own[i - 1]}")
        if i + 1 < len(own):
            row.append(f"1r={own[i + 1]}")
        out.append(row)
    return out


def line_keys(text: str, spans: list, topic: bool = False, clusters: tuple[dict[str, list[int]], int] | None = None,
              repeats: np.ndarray | None = None, bare_words: bool = False, blocks: bool = False,
              gazetteer: dict[str, str] | None = None, heads: bool = False) -> list[list[str]]:
    """Every key of each line: :func:`line_feature_keys` (``bare_words``: with the bare-word keys), with
    ``topic`` :func:`line_topic_feature_keys`, with ``blocks`` :func:`line_block_keys`, with ``heads``
    :func:`line_head_keys`, with ``clusters`` =
    (word -> cluster ids, level) :func:`line_cluster_keys`, with ``gazetteer`` (word -> code)
    :func:`line_gazetteer_keys`, with ``repeats`` :func:`line_repeat_keys`. What
    the model hashes (:func:`line_feature_ids`) and what ``scripts/line_crf_probe.py`` fits."""
    keys = line_feature_keys(text, spans, bare_words)
    if topic:
        for row, extra in zip(keys, line_topic_feature_keys(text, spans)):
            row += extra
    if blocks:
        for row, extra in zip(keys, line_block_keys(text, spans)):
            row += extra
    if heads:
        for row, extra in zip(keys, line_head_keys(text, spans)):
            row += extra
    short = short_line_words(text, spans) if clusters is not None or gazetteer is not None else None  # one pass
    if clusters is not None:
        for row, extra in zip(keys, line_cluster_keys(text, spans, *clusters, words=short)):
            row += extra
    if gazetteer is not None:
        for row, extra in zip(keys, line_gazetteer_keys(text, spans, gazetteer, words=short)):
            row += extra
    if repeats is not None:
        if len(repeats) != len(keys):
            raise ValueError(f"repeats: {len(repeats)} counts for {len(keys)} lines")
        for row, extra in zip(keys, line_repeat_keys(repeats)):
            row += extra
    return keys


def line_feature_ids(text: str, spans: np.ndarray, buckets: int, topic: bool = False,
                     clusters: tuple[dict[str, list[int]], int] | None = None,
                     repeats: np.ndarray | None = None, repeat_width: bool = False,
                     bare_words: bool = False, blocks: bool = False,
                     gazetteer: dict[str, str] | None = None, heads: bool = False) -> np.ndarray:
    """Bucket ids of :func:`line_keys`, ``(n_lines, LINE_FEATURES [+ BARE_FEATURES] [+ TOPIC_FEATURES]
    [+ BLOCK_FEATURES] [+ HEAD_FEATURES] [+ CLUSTER_LINE_WORDS] [+ GAZETTEER_LINE_FEATURES] [+ REPEAT_FEATURES])``
    int32, 0 =
    padding. ``repeat_width``: the repeat columns are there (padding when ``repeats`` is None: a page tagged
    alone)."""
    keys = line_keys(text, spans.tolist(), topic, clusters, repeats, bare_words, blocks, gazetteer, heads)
    width = (LINE_FEATURES + (BARE_FEATURES if bare_words else 0) + (TOPIC_FEATURES if topic else 0)
             + (BLOCK_FEATURES if blocks else 0) + (HEAD_FEATURES if heads else 0)
             + (CLUSTER_LINE_WORDS if clusters is not None else 0)
             + (GAZETTEER_LINE_FEATURES if gazetteer is not None else 0)
             + (REPEAT_FEATURES if repeat_width or repeats is not None else 0))
    out = np.zeros((len(keys), width), dtype=np.int32)
    for i, row in enumerate(keys):
        h = np.fromiter((zlib.crc32(k.encode("utf-8", "surrogatepass")) for k in row), dtype=np.int64, count=len(row))
        out[i, :len(row)] = 1 + h % (buckets - 1)
    return out
