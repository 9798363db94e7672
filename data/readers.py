"""Readers: CoNLL token files (ANERcorp, AQMAR, Wojood), SaudiNewsNet news JSON, page JSONL and .txt.

Every reader returns the project's own objects (:class:`data.schema.Page`) or plain article dicts, so
the builder, training and evaluation never see a file format.

CoNLL documents become pages with ONE SENTENCE PER LINE (sentences joined by ``"\\n"``, tokens by a
single space). Entity spans are expressed on the pre-tokenizer's words (:func:`data.text.words`):
a token such as ``"كابول؛"`` is two words, and a gold entity drops the punctuation words at its
edges, so ``"كابول؛"`` tagged LOC becomes the span ``"كابول"``.
"""
from __future__ import annotations

import fnmatch
import html
import json
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np

from data.labels import bio_runs
from data.schema import Page, Span, load_pages
from data.text import words

# ------------------------------------------------------------------------------------------------
# CoNLL

# Tag maps: source type -> project type; ``None`` drops the type to O. Keys may be fnmatch patterns.
ANERCORP_TAGS: dict[str, str | None] = {"PERS": "PERS", "LOC": "LOC", "ORG": "ORG", "MISC": "MISC"}
AQMAR_TAGS: dict[str, str | None] = {
    "PER": "PERS", "LOC": "LOC", "ORG": "ORG", "MIS*": "MISC", "ENGLISH": "MISC", "SPANISH": "MISC",
}
WOJOOD_TAGS: dict[str, str | None] = {"PERS": "PERS", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}
TAG_MAPS = {"anercorp": ANERCORP_TAGS, "aqmar": AQMAR_TAGS, "wojood": WOJOOD_TAGS}

SEPARATOR_TOKENS = frozenset({"$#$"})  # Wojood's end-of-segment marker: not a token of the text
_TAG_RE = re.compile(r"^([BI])-+(.+)$")  # "I--ORG" is a typo for "I-ORG"


def guess_format(path: str | Path) -> str:
    """``anercorp``, ``aqmar`` or ``wojood`` from the path (the folder names of ../shared/datasets)."""
    p = str(path).lower()
    if "aqmar" in p:
        return "aqmar"
    if "wojood" in p:
        return "wojood"
    return "anercorp"


def map_tag(tag: str, tag_map: Mapping[str, str | None] | None, drop_unmapped: bool = True) -> str:
    """One file tag to a clean BIO tag.

    Noise is handled leniently: ``OO`` and ``IO`` (no type) are ``O``; ``I--ORG`` is ``I-ORG``; a
    type that the map sends to ``None`` (or, with ``drop_unmapped``, that it does not name) is ``O``.
    """
    m = _TAG_RE.match(tag.strip())
    if not m:
        return "O"
    prefix, typ = m.groups()
    if tag_map is None:
        return f"{prefix}-{typ}"
    if typ in tag_map:
        target = tag_map[typ]
    else:
        target = next((v for k, v in tag_map.items() if fnmatch.fnmatchcase(typ, k)),
                      None if drop_unmapped else typ)
    return "O" if target is None else f"{prefix}-{target}"


def read_conll_sentences(path: str | Path, tag_map: Mapping[str, str | None] | None = None,
                         drop_unmapped: bool = True) -> list[tuple[list[str], list[str]]]:
    """Sentences of a "token tag [tag ...]" file as ``(tokens, tags)`` with clean BIO tags.

    Only the first tag column is used (Wojood's outermost label). ``$#$`` separator tokens are
    skipped. ``tag_map=None`` keeps the file's types as they are (after the noise fixes)."""
    sentences: list[tuple[list[str], list[str]]] = []
    toks: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                if toks:
                    sentences.append((toks, tags))
                toks, tags = [], []
                continue
            parts = line.split()
            if parts[0] in SEPARATOR_TOKENS:
                continue
            toks.append(parts[0])
            tags.append(map_tag(parts[1], tag_map, drop_unmapped) if len(parts) > 1 else "O")
    if toks:
        sentences.append((toks, tags))
    return sentences


@dataclass
class ConllDocument:
    """Consecutive sentences of one file, already laid out as text with word-level entity spans."""

    id: str
    sentences: list[str]  # each sentence's text (tokens joined by one space)
    entities: list[list[Span]]  # per sentence, offsets within that sentence's text
    first_sentence: int = 0  # index of the first sentence in its file

    def material(self, block: int = 8) -> str:
        """Which stretch of its file the document comes from: the file stem and the block of ``block``
        sentences that holds its first sentence. Pages made from the same sentences (a document, one
        sentence of it, a builder body of it) share this key, whatever ``sentences_per_doc`` made them;
        ``train.lexical.page_folds`` splits the training material on it."""
        return f"{self.id.rsplit('-', 1)[0]}#{self.first_sentence // block}"

    def to_page(self, meta: dict | None = None) -> Page:
        """An NER-only page: one sentence per line, entities set, no sections."""
        text, ents, off = [], [], 0
        for s, es in zip(self.sentences, self.entities):
            text.append(s)
            ents += [Span(e.label, e.start + off, e.end + off) for e in es]
            off += len(s) + 1
        return Page(id=self.id, text="\n".join(text), entities=ents, meta=dict(meta or {}))


def _is_edge_mark(word: str) -> bool:
    """A word that is one punctuation/symbol mark (plus format characters), or format characters only."""
    core = "".join(c for c in word if unicodedata.category(c) != "Cf")
    return len(core) == 0 or (len(core) == 1 and unicodedata.category(core)[0] in "PS")


def sentence_spans(tokens: list[str], tags: list[str]) -> tuple[str, list[Span]]:
    """Sentence text and its entities on words, edge punctuation words trimmed (lenient BIO chunking)."""
    text = " ".join(tokens)
    starts = np.cumsum([0] + [len(t) + 1 for t in tokens[:-1]])
    ends = starts + np.asarray([len(t) for t in tokens])
    types_seen: list[str] = []
    type_ids, begin = [], []
    for t in tags:
        if t == "O":
            type_ids.append(-1)
            begin.append(False)
            continue
        typ = t[2:]
        if typ not in types_seen:
            types_seen.append(typ)
        type_ids.append(types_seen.index(typ))
        begin.append(t.startswith("B-"))
    first, last, typ = bio_runs(np.asarray(type_ids), np.asarray(begin))
    if len(first) == 0:
        return text, []
    w = words(text)
    out = []
    for a, b, k in zip(first.tolist(), last.tolist(), typ.tolist()):
        lo, hi = int(starts[a]), int(ends[b])
        inside = w[(w[:, 0] >= lo) & (w[:, 1] <= hi)]
        keep = [not _is_edge_mark(text[s:e]) for s, e in inside.tolist()]
        if not any(keep):
            continue  # an entity made only of punctuation: nothing to name
        i, j = keep.index(True), len(keep) - 1 - keep[::-1].index(True)
        out.append(Span(types_seen[k], int(inside[i, 0]), int(inside[j, 1])))
    return text, out


def read_conll_documents(path: str | Path, sentences_per_doc: int = 8,
                         tag_map: Mapping[str, str | None] | None | str = "auto",
                         drop_unmapped: bool = True) -> list[ConllDocument]:
    """Group every ``sentences_per_doc`` consecutive sentences into one document (ANERcorp has no
    document breaks). Document ids are ``f"{file_stem}-{doc_index}"``.

    ``tag_map="auto"`` picks the map from the path (:func:`guess_format`)."""
    if isinstance(tag_map, str):
        tag_map = TAG_MAPS[guess_format(path) if tag_map == "auto" else tag_map]
    if sentences_per_doc < 1:
        raise ValueError("sentences_per_doc must be >= 1")
    sents = [sentence_spans(t, g) for t, g in read_conll_sentences(path, tag_map, drop_unmapped)]
    stem = Path(path).stem
    docs = []
    for k, i in enumerate(range(0, len(sents), sentences_per_doc)):
        chunk = sents[i:i + sentences_per_doc]
        docs.append(ConllDocument(f"{stem}-{k}", [s for s, _ in chunk], [e for _, e in chunk], first_sentence=i))
    return docs


def read_conll_pages(path: str | Path, sentences_per_doc: int = 8,
                     tag_map: Mapping[str, str | None] | None | str = "auto") -> list[Page]:
    """NER-only pages (entities set, possibly ``[]``; no sections) of a CoNLL file."""
    return [d.to_page({"source": Path(path).name}) for d in read_conll_documents(path, sentences_per_doc, tag_map)]


# ------------------------------------------------------------------------------------------------
# SaudiNewsNet

# Reserved for evaluation pages: never train on them (../shared/datasets/README.md).
RESERVED_DAYS: tuple[str, ...] = ("2015-08-08", "2015-08-10", "2015-08-11")
NEWS_FIELDS = ("source", "url", "date_extracted", "title", "author", "content")


def _news_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".zip", ".json"))
    return [path]


def _day_of_file(path: Path) -> str | None:
    m = re.match(r"\d{4}-\d{2}-\d{2}", path.stem)
    return m.group() if m else None


def _load_news_file(path: Path) -> list:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".json")]
            return [a for n in sorted(names) for a in json.loads(z.read(n).decode("utf-8"))]
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_news(paths: str | Path | Iterable[str | Path], exclude_days: Iterable[str] | None = RESERVED_DAYS,
              only_days: Iterable[str] | None = None) -> Iterator[dict]:
    """Articles (dicts with the SaudiNewsNet fields, strings, HTML entities unescaped) from zips,
    .json files or folders of them, in sorted file order.

    By default the reserved evaluation days are excluded; ``only_days=RESERVED_DAYS`` (and
    ``exclude_days=None``) selects them for evaluation. Each article's ``date_extracted`` decides; in
    addition, a file whose name is an excluded day is skipped unopened (conservative: nothing in it is
    used), while ``only_days`` opens every file so that no selected article is missed."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    excl = set(exclude_days or ())
    only = set(only_days) if only_days is not None else None
    for p in paths:
        for f in _news_files(Path(p)):
            day = _day_of_file(f)
            if day is not None and day in excl:
                continue
            for a in _load_news_file(f):
                if not isinstance(a, dict):
                    continue
                art = {k: html.unescape(str(a.get(k) or "")) for k in NEWS_FIELDS}
                d = art["date_extracted"][:10]
                if d in excl or (only is not None and d not in only):
                    continue
                yield art


def paragraphs(content: str) -> list[str]:
    """Non-blank paragraphs of a news body (SaudiNewsNet separates them by newlines)."""
    return [p.strip() for p in content.split("\n") if p.strip()]


# ------------------------------------------------------------------------------------------------
# Plain pages

def read_txt(path: str | Path) -> Page:
    """A .txt file as one unlabelled page, id = the file name. The text is kept byte for byte
    (``\\r`` stays an ordinary character), except a leading UTF-8 byte-order mark."""
    p = Path(path)
    return Page(id=p.name, text=p.read_bytes().decode("utf-8-sig"))


def read_txt_dir(path: str | Path) -> list[Page]:
    """Every ``*.txt`` in a folder, in sorted file-name order, one page each."""
    return [read_txt(p) for p in sorted(Path(path).glob("*.txt"))]


def read_pages(path: str | Path) -> list[Page]:
    """Pages by the input's form: a folder of .txt, one .txt, or page JSONL (raises on a bad line)."""
    p = Path(path)
    if p.is_dir():
        return read_txt_dir(p)
    if p.suffix == ".txt":
        return [read_txt(p)]
    return load_pages(p)
