"""Label codecs: section spans <-> line-level B-/I- tags, entity spans <-> word-level BIO tags.

Both directions work on integer tag ids and numpy arrays, so decoding has no Python loop per token.
The decoders accept any tag sequence, however malformed, and return valid spans: as in seqeval's
default (lenient) mode, an ``I-X`` that does not continue an ``X`` starts a new ``X``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data.schema import SECTION_LABELS, Span


@dataclass(frozen=True)
class TagSet:
    """BIO tags over ``types``. With ``outside=True`` tag 0 is ``O``; sections have no outside tag."""

    types: tuple[str, ...]
    outside: bool = True

    @property
    def tags(self) -> list[str]:
        out = ["O"] if self.outside else []
        for t in self.types:
            out += [f"B-{t}", f"I-{t}"]
        return out

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.tags))

    @property
    def label2id(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def type_of(self, tag_ids: np.ndarray) -> np.ndarray:
        """Type index per tag id, -1 for ``O``."""
        off = 1 if self.outside else 0
        t = (np.asarray(tag_ids, dtype=np.int64) - off) // 2
        return np.where(np.asarray(tag_ids) < off, -1, t)

    def is_begin(self, tag_ids: np.ndarray) -> np.ndarray:
        off = 1 if self.outside else 0
        ids = np.asarray(tag_ids, dtype=np.int64)
        return (ids >= off) & ((ids - off) % 2 == 0)

    def encode(self, units: np.ndarray, spans: Sequence[Span], what: str = "span") -> np.ndarray:
        """Tag ids for ``units`` (an ``(n, 2)`` array of word or line spans) from gold ``spans``.

        Every span must start at a unit start and end at a unit end; otherwise ``ValueError``."""
        n = len(units)
        ids = np.zeros(n, dtype=np.int64)
        covered = np.zeros(n, dtype=bool)
        index = {t: i for i, t in enumerate(self.types)}
        off = 1 if self.outside else 0
        starts, ends = units[:, 0], units[:, 1]
        for sp in spans:
            if sp.label not in index:
                raise ValueError(f"{what} label {sp.label!r} is not one of {self.types}")
            a = int(np.searchsorted(starts, sp.start))
            b = int(np.searchsorted(ends, sp.end))
            if a >= n or b >= n or starts[a] != sp.start or ends[b] != sp.end or b < a:
                raise ValueError(f"{what} [{sp.start}, {sp.end}) does not align with whole units")
            if covered[a:b + 1].any():
                raise ValueError(f"{what} [{sp.start}, {sp.end}) overlaps another")
            k = index[sp.label]
            ids[a] = off + 2 * k
            ids[a + 1:b + 1] = off + 2 * k + 1
            covered[a:b + 1] = True
        if not self.outside and not covered.all():
            raise ValueError(f"unit {int(np.flatnonzero(~covered)[0])} is in no {what}")
        return ids

    def decode(self, units: np.ndarray, tag_ids: np.ndarray, groups: np.ndarray | None = None) -> list[Span]:
        """Spans from any tag sequence (lenient). A span never crosses a change of ``groups``."""
        starts, ends, types = bio_runs(self.type_of(tag_ids), self.is_begin(tag_ids), groups)
        return [Span(self.types[t], int(units[s, 0]), int(units[e, 1]))
                for s, e, t in zip(starts.tolist(), ends.tolist(), types.tolist())]


def bio_runs(types: np.ndarray, begin: np.ndarray, groups: np.ndarray | None = None):
    """Vectorised lenient BIO chunking: ``(first, last, type)`` arrays of index runs.

    ``types`` is -1 outside; a unit continues the previous run when it is inside, not a ``B``, of the
    same type as its predecessor and in the same group."""
    types = np.asarray(types, dtype=np.int64)
    n = len(types)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z
    inside = types >= 0
    prev = np.concatenate([[-1], types[:-1]])
    same_group = np.ones(n, dtype=bool)
    if groups is not None:
        g = np.asarray(groups)
        same_group[1:] = g[1:] == g[:-1]
    same_group[0] = False
    cont = inside & ~np.asarray(begin, dtype=bool) & (prev == types) & same_group
    start = inside & ~cont
    first = np.flatnonzero(start)
    breaks = np.flatnonzero(~cont)  # every unit that does not continue a run
    nxt = np.searchsorted(breaks, first, side="right")
    last = np.where(nxt < len(breaks), breaks[np.minimum(nxt, len(breaks) - 1)] - 1, n - 1)
    return first, last, types[first]


SECTION_TAGS = TagSet(SECTION_LABELS, outside=False)


def entity_tagset(types: Sequence[str]) -> TagSet:
    return TagSet(tuple(types), outside=True)


def tags_from_strings(tagset: TagSet, tags: Sequence[str]) -> np.ndarray:
    """String tags (e.g. a CoNLL column) to ids; unknown tags raise ``ValueError`` naming them."""
    l2i = tagset.label2id
    try:
        return np.asarray([l2i[t] for t in tags], dtype=np.int64)
    except KeyError as err:
        raise ValueError(f"unknown tag {err.args[0]!r}; known: {tagset.tags}") from None
