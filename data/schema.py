"""Page records: typed objects, validation with errors that name the page, the field and the reason,
and a JSONL reader that never stops at a bad line."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from data.text import line_of_words, lines, words

SECTION_LABELS: tuple[str, ...] = (
    "title", "byline", "body", "source", "tags", "read_also", "related", "boilerplate",
)
DEFAULT_MAX_CHARS = 5_000_000


class PageError(ValueError):
    """A record that breaks the page contract. ``str(err)`` names the page id, the field and why."""

    def __init__(self, page_id: Any, field_name: str, reason: str):
        self.page_id, self.field, self.reason = page_id, field_name, reason
        super().__init__(f"page {page_id!r}: field {field_name!r}: {reason}")


def check_text(pid: Any, text: Any, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """A page's text as the contract takes it (a string, not blank, at most ``max_chars``), else
    :class:`PageError` naming the page and the field. Shared by the record parser and the Tagger."""
    if not isinstance(text, str):
        raise PageError(pid, "text", f"must be a string, got {type(text).__name__}")
    if not text or text.isspace():
        raise PageError(pid, "text", "empty or blank page")
    if len(text) > max_chars:
        raise PageError(pid, "text", f"{len(text)} characters, over the hard maximum {max_chars}")
    return text


@dataclass(frozen=True)
class Span:
    label: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return {"label": self.label, "start": self.start, "end": self.end}


@dataclass
class Page:
    """One page. ``sections``/``entities``/``entity_regions`` are ``None`` when not annotated."""

    id: Any
    text: str
    sections: list[Span] | None = None
    entities: list[Span] | None = None
    entity_regions: list[tuple[int, int]] | None = None
    meta: dict = field(default_factory=dict)

    # Lines and words are computed once and shared by the label codecs and the features.
    @cached_property
    def lines(self) -> np.ndarray:
        return lines(self.text)

    @cached_property
    def words(self) -> np.ndarray:
        return words(self.text)

    @cached_property
    def word_line(self) -> np.ndarray:
        return line_of_words(self.words, self.lines)

    @property
    def ner_regions(self) -> list[tuple[int, int]]:
        """Where entity annotation is complete (the design's rule for missing fields)."""
        if self.entity_regions is not None:
            return list(self.entity_regions)
        if self.entities is not None:
            return [(0, len(self.text))]
        return []

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.sections is not None:
            d["sections"] = [s.to_dict() for s in self.sections]
        if self.entities is not None:
            d["entities"] = [
                {**e.to_dict(), "text": self.text[e.start:e.end]} for e in self.entities
            ]
        if self.entity_regions is not None:
            d["entity_regions"] = [list(r) for r in self.entity_regions]
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: Any, *, max_chars: int = DEFAULT_MAX_CHARS, validate_labels: bool = True,
                  entity_labels: Iterable[str] | None = None) -> "Page":
        """Parse and validate one record. Raises :class:`PageError` naming the field."""
        if not isinstance(d, dict):
            raise PageError(None, "<record>", f"expected a JSON object, got {type(d).__name__}")
        pid = d.get("id")
        if pid is not None and (not isinstance(pid, (str, int)) or isinstance(pid, bool)):
            raise PageError(pid, "id", f"must be a string or integer, got {type(pid).__name__}")
        if "text" not in d:
            raise PageError(pid, "text", "missing")
        text = check_text(pid, d["text"], max_chars)
        meta = d.get("meta", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise PageError(pid, "meta", f"must be an object, got {type(meta).__name__}")
        page = cls(id=pid, text=text, meta=meta)
        page.sections = _spans(pid, d, "sections", len(text))
        page.entities = _spans(pid, d, "entities", len(text), text=text)
        if d.get("entity_regions") is not None:
            page.entity_regions = _regions(pid, d["entity_regions"], len(text))
        if validate_labels:
            validate(page, entity_labels=entity_labels)
        return page


def _spans(pid, d: dict, name: str, n: int, text: str | None = None) -> list[Span] | None:
    raw = d.get(name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise PageError(pid, name, f"must be a list, got {type(raw).__name__}")
    out = []
    for i, s in enumerate(raw):
        where = f"{name}[{i}]"
        if not isinstance(s, dict):
            raise PageError(pid, where, "must be an object with label, start, end")
        for key in ("label", "start", "end"):
            if key not in s:
                raise PageError(pid, f"{where}.{key}", "missing")
        if not isinstance(s["label"], str):
            raise PageError(pid, f"{where}.label", "must be a string")
        for key in ("start", "end"):
            if not isinstance(s[key], int) or isinstance(s[key], bool):
                raise PageError(pid, f"{where}.{key}", f"must be an integer, got {s[key]!r}")
        start, end = s["start"], s["end"]
        if not (0 <= start <= n and 0 <= end <= n):
            raise PageError(pid, where, f"offset out of range [{start}, {end}) for text of length {n}")
        if end <= start:
            raise PageError(pid, where, f"end {end} <= start {start}")
        if text is not None and "text" in s and s["text"] != text[start:end]:
            raise PageError(pid, f"{where}.text", f"{s['text']!r} != text[{start}:{end}] {text[start:end]!r}")
        out.append(Span(s["label"], start, end))
    return out


def _regions(pid, raw: Any, n: int) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise PageError(pid, "entity_regions", "must be a list of [start, end] pairs")
    out = []
    for i, r in enumerate(raw):
        if (not isinstance(r, (list, tuple)) or len(r) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in r)):
            raise PageError(pid, f"entity_regions[{i}]", f"must be a [start, end] pair of integers, got {r!r}")
        if not (0 <= r[0] < r[1] <= n):
            raise PageError(pid, f"entity_regions[{i}]", f"bad range {list(r)} for text of length {n}")
        out.append((r[0], r[1]))
    return out


def validate(page: Page, entity_labels: Iterable[str] | None = None) -> None:
    """Check the label rules of the contract; raise :class:`PageError` on the first violation."""
    pid = page.id
    if page.sections is not None:
        line_starts = set(page.lines[:, 0].tolist())
        line_ends = set(page.lines[:, 1].tolist())
        prev_end = -1
        for i, s in enumerate(page.sections):
            where = f"sections[{i}]"
            if s.label not in SECTION_LABELS:
                raise PageError(pid, f"{where}.label", f"unknown section label {s.label!r}; expected one of {SECTION_LABELS}")
            if s.start < prev_end:
                raise PageError(pid, where, "overlaps the previous section or is out of text order")
            if s.start not in line_starts or s.end not in line_ends:
                raise PageError(pid, where, f"[{s.start}, {s.end}) does not cover whole non-blank lines")
            prev_end = s.end
        covered = _covered_lines(page.lines, page.sections)
        if not covered.all():
            k = int(np.flatnonzero(~covered)[0])
            raise PageError(pid, "sections", f"non-blank line {k + 1} (offset {int(page.lines[k, 0])}) is in no section")
    if page.entities is not None:
        labels = set(entity_labels) if entity_labels is not None else None
        wstarts = set(page.words[:, 0].tolist())
        wends = set(page.words[:, 1].tolist())
        regions = page.ner_regions
        for i, e in enumerate(page.entities):
            where = f"entities[{i}]"
            if labels is not None and e.label not in labels:
                raise PageError(pid, f"{where}.label", f"unknown entity label {e.label!r}")
            if e.start not in wstarts or e.end not in wends:
                raise PageError(pid, where, f"[{e.start}, {e.end}) {page.text[e.start:e.end]!r} does not cover whole words")
            if "\n" in page.text[e.start:e.end]:
                raise PageError(pid, where, "crosses a line end")
            if not any(a <= e.start and e.end <= b for a, b in regions):
                raise PageError(pid, where, "lies outside every entity_regions range")
            if page.sections is not None and not any(s.start <= e.start and e.end <= s.end for s in page.sections):
                raise PageError(pid, where, "does not lie inside one section")
        ents = sorted(page.entities, key=lambda x: (x.start, x.end))
        for a, b in zip(ents, ents[1:]):
            if b.start < a.end:
                raise PageError(pid, "entities", f"entities [{a.start}, {a.end}) and [{b.start}, {b.end}) overlap")


def _covered_lines(line_spans: np.ndarray, sections: list[Span]) -> np.ndarray:
    covered = np.zeros(len(line_spans), dtype=bool)
    for s in sections:
        covered |= (line_spans[:, 0] >= s.start) & (line_spans[:, 1] <= s.end)
    return covered


@dataclass
class ErrorRecord:
    """A line that could not be read as a page (the output record of the contract)."""

    line: int
    error: str
    id: Any = None

    def to_dict(self) -> dict:
        return {"id": self.id, "line": self.line, "error": self.error}


def parse_line(raw: str | bytes, lineno: int, seen_ids: set | None = None, **kw) -> Page | ErrorRecord:
    """One JSONL line to a page or an error record (``lineno`` is 1-based)."""
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return ErrorRecord(lineno, f"line {lineno}: invalid JSON: {err}")
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack
        return ErrorRecord(lineno, f"line {lineno}: invalid JSON: nested too deeply")
    pid = d.get("id") if isinstance(d, dict) else None
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        pid_out = None
    else:
        pid_out = pid
    try:
        page = Page.from_dict(d, **kw)
    except PageError as err:
        return ErrorRecord(lineno, f"line {lineno}: {err}", id=pid_out)
    if seen_ids is not None and page.id is not None:
        if page.id in seen_ids:
            return ErrorRecord(lineno, f"line {lineno}: page {page.id!r}: field 'id': duplicate id", id=page.id)
        seen_ids.add(page.id)
    return page


def read_jsonl(path: str | Path, **kw) -> Iterator[Page | ErrorRecord]:
    """Pages of a JSONL file, in order; a bad line becomes an :class:`ErrorRecord` and reading goes on.
    Empty lines are skipped (they are not records)."""
    seen: set = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            yield parse_line(raw, lineno, seen, **kw)


def load_pages(path: str | Path, **kw) -> list[Page]:
    """All pages of a JSONL file; raise ``ValueError`` naming the first bad line (for training data)."""
    pages = []
    for rec in read_jsonl(path, **kw):
        if isinstance(rec, ErrorRecord):
            raise ValueError(f"{path}: {rec.error}")
        pages.append(rec)
    return pages


def write_jsonl(path: str | Path, records: Iterable[dict | Page]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            d = r.to_dict() if isinstance(r, Page) else r
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    return n
