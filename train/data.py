"""Training data: sources of pages, their mix, and the encoded dataset the Trainer iterates.

A source is page JSONL, CoNLL documents read as NER-only pages, or pages that the page builder makes
on the fly around CoNLL documents and news articles (``data.build``: same split rules as the
``python -m data.build`` command, reserved news days never read). Each source's pages are repeated
``weight`` times per epoch (a fractional part draws a random subset once per run), which is how
a small labelled set is up-weighted against a large one.
"""
from __future__ import annotations

import argparse
import random
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from data.build import load_sources, make_split
from data.features import PageEncoder, line_repeats
from data.labels import TagSet
from data.readers import read_news, read_pages, read_txt
from data.schema import Page, load_pages
from train.config import DataConfig, SourceConfig


class DataError(ValueError):
    """Training data that cannot be read (a bad page, an empty source); the message names it."""


# ------------------------------------------------------------------------------------------------
# Sources


@lru_cache(maxsize=4)
def _split_material(conll: tuple[str, ...], news: tuple[str, ...], sentences_per_doc: int, dev_fraction: float):
    """CoNLL documents and news articles per split (train/dev), by the builder's own rules."""
    args = argparse.Namespace(conll=list(conll), test_conll=None, news=list(news) or None, conll_format="auto",
                              sentences_per_doc=sentences_per_doc, dev_fraction=dev_fraction,
                              no_reserved_test=True)
    return load_sources(args)


def _material(src: SourceConfig):
    conll = tuple(p for p in src.paths) if src.kind != "pages" else ()
    docs, news = _split_material(conll, tuple(src.news), src.sentences_per_doc, src.dev_fraction)
    parts = ("train", "dev") if src.part == "all" else (src.part,)
    return [d for s in parts for d in docs[s]], [a for s in parts for a in news[s]]


def source_pages(src: SourceConfig, name: str) -> list[Page]:
    """The pages of one source (``name`` is its config key, for messages)."""
    if src.kind == "pages":
        pages = []
        for p in src.paths:
            try:
                pages += read_pages(p)
            except (ValueError, OSError) as err:
                raise DataError(f"{name}: {err}") from None
    elif src.kind == "conll":
        docs, _ = _material(src)
        pages = [d.to_page({"source": "conll", "material": d.material()}) for d in docs]
    else:
        docs, news = _material(src)
        if src.max_news is not None:
            news = news[:src.max_news]
        if not docs and not news:
            raise DataError(f"{name}: no bodies for the builder (part {src.part!r})")
        opts = argparse.Namespace(conll_fraction=src.conll_fraction, quiet=True, augment=src.augment, layouts=src.layouts,
                                  nonce=src.nonce)
        split = "dev" if src.part == "dev" else "train"
        pages = make_split(split, src.count or 1000, docs, news, opts, random.Random(src.seed), src.templates)
    if src.count is not None:
        pages = pages[:src.count]
    if not pages:
        raise DataError(f"{name}: no pages")
    return pages


def mix(sources: list[tuple[list[Page], float]], rng: random.Random) -> list[Page]:
    """One list of pages: each source ``floor(weight)`` times plus a random ``frac(weight)`` share."""
    out: list[Page] = []
    for pages, weight in sources:
        whole = int(weight)
        out += pages * whole
        out += rng.sample(pages, round((weight - whole) * len(pages)))
    rng.shuffle(out)
    return out


def training_sources(cfg: DataConfig) -> list[tuple[list[Page], float]]:
    """Each training source's pages, in its own order, with its weight in the mix."""
    return [(source_pages(s, f"data.train[{i}]"), s.weight) for i, s in enumerate(cfg.train)]


def source_repeats(sources: list[list[Page]], group: int, dropout: float, seed: int) -> dict[int, np.ndarray]:
    """``id(page) -> data.features.line_repeats`` counts of each source's pages, grouped in the source's
    own order (as a Tagger block groups its input), for ``model.line_repeats``. A ``dropout`` share of the
    pages, drawn with ``seed``, is left out: encoded without repeat keys, as a page tagged alone is."""
    rng = random.Random(seed)
    out: dict[int, np.ndarray] = {}
    for pages in sources:
        for p, r in zip(pages, line_repeats(pages, group)):
            if r is not None and rng.random() >= dropout:
                out[id(p)] = r
    return out


def dev_pages(cfg: DataConfig, seed: int) -> list[Page]:
    pages = [p for i, s in enumerate(cfg.dev) for p in source_pages(s, f"data.dev[{i}]")]
    if cfg.max_dev_pages is not None and len(pages) > cfg.max_dev_pages:
        pages = random.Random(seed).sample(pages, cfg.max_dev_pages)
    return pages


def entity_types(pages: list[Page]) -> list[str]:
    """The NER types of the training data (design: the label set comes from the data), sorted."""
    return sorted({e.label for p in pages for e in (p.entities or [])})


# ------------------------------------------------------------------------------------------------
# Text for a new vocabulary


def vocabulary_texts(pages: list[Page], extra: list[str], limit: int) -> Iterator[str]:
    """Training page texts (each once), then the extra text files, up to ``limit`` texts."""
    n = 0
    seen: set[int] = set()
    for p in pages:
        if id(p) in seen:
            continue
        seen.add(id(p))
        yield p.text
        n += 1
        if n >= limit:
            return
    for path in extra:
        for text in texts_of(Path(path)):
            yield text
            n += 1
            if n >= limit:
                return


def texts_of(path: Path) -> Iterator[str]:
    """Raw text of news (zip/JSON/folder), .txt files or page JSONL. Reserved news days are excluded."""
    if path.suffix == ".txt":
        yield read_txt(path).text
    elif path.suffix == ".jsonl":
        yield from (p.text for p in load_pages(path))
    elif path.is_dir() and any(path.glob("*.txt")) and not any(path.glob("*.zip")):
        yield from (p.text for p in read_pages(path))
    else:
        for a in read_news(path):
            yield f"{a['title']}\n{a['content']}"


# ------------------------------------------------------------------------------------------------
# The dataset


class PageDataset(torch.utils.data.Dataset):
    """Encoded pages (``PageEncoder.encode`` features). A page repeated by the mix is encoded once.
    ``len(item["input_ids"])`` is the page's subword count, which ``group_by_length`` batches on."""

    def __init__(self, pages: list[Page], encoder: PageEncoder, tags: TagSet,
                 repeats: dict[int, np.ndarray] | None = None):
        cache: dict[int, dict] = {}
        repeats = repeats or {}
        self.features = []
        for p in pages:
            f = cache.get(id(p))
            if f is None:
                try:
                    f = cache[id(p)] = encoder.encode(p, tags, repeats.get(id(p)))
                except ValueError as err:
                    raise DataError(f"page {p.id!r}: {err}") from None
            self.features.append(f)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]

    @property
    def n_tokens(self) -> int:
        return sum(len(f["input_ids"]) for f in self.features)
