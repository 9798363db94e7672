"""Evaluation metrics on gold pages and tagger output records. Pure functions, no model.

Entities are scored with seqeval (default, lenient mode, conlleval-compatible) on word-level BIO,
counting only the words inside the gold page's ``ner_regions``: a word outside every region has no
gold label, so neither a gold nor a predicted entity there may count (design.md, ``entity_regions``).
Sections are scored per non-blank line, plus exact-match spans ("segment F1").
Every function returns plain dicts of floats and ints, ready for ``json.dump``.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from data.labels import SECTION_TAGS, entity_tagset
from data.schema import SECTION_LABELS, Page, Span

NO_SECTION = "(none)"  # a line that a (malformed) prediction left out of every section


# ---------------------------------------------------------------------------------------------
# Entities


def entity_metrics(gold: Sequence[Page] | Sequence[Sequence[str]], pred: Sequence[Mapping] | Sequence[Sequence[str]],
                   tagset_types: Sequence[str] | None = None, unit: str = "word") -> dict:
    """Per-type P/R/F1/support and micro/macro averages.

    ``gold``/``pred`` are either gold :class:`Page` objects and output records (matched by
    position; an error record predicts nothing), or CoNLL-style lists of tag sequences.
    ``tagset_types`` restricts scoring to those types (others become ``O`` on both sides, as for
    AQMAR PER/LOC/ORG); ``None`` keeps every type seen. ``unit`` is ``"word"`` (the design's words) or
    ``"token"`` (whitespace-separated pieces, i.e. the original CoNLL tokens of a page built from a
    token file, which is what published ANERcorp figures count)."""
    gold, pred = list(gold), list(pred)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold items but {len(pred)} predictions")
    if gold and not isinstance(gold[0], Page):
        y_true = [list(s) for s in gold]
        y_pred = [list(s) for s in pred]
        n_pages = len(gold)
    else:
        y_true, y_pred, n_pages = page_tag_sequences(gold, pred, tagset_types, unit)
    return entity_metrics_from_tags(y_true, y_pred, tagset_types, n_pages=n_pages)


def entity_metrics_from_tags(y_true: list[list[str]], y_pred: list[list[str]],
                             tagset_types: Sequence[str] | None = None, n_pages: int | None = None) -> dict:
    """seqeval's report on tag sequences, with counts (predicted, correct) per type added."""
    y_true = [[str(t) for t in s] for s in y_true]  # seqeval needs lists of str, not numpy arrays
    y_pred = [[str(t) for t in s] for s in y_pred]
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} gold tags but {len(p)} predicted")
    if tagset_types is not None:
        keep = set(tagset_types)
        y_true = [[_keep_tag(x, keep) for x in s] for s in y_true]
        y_pred = [[_keep_tag(x, keep) for x in s] for s in y_pred]
    gold_ents = {(t, a, b) for t, a, b in get_entities(y_true)}
    pred_ents = {(t, a, b) for t, a, b in get_entities(y_pred)}
    out: dict[str, Any] = {
        "n_pages": len(y_true) if n_pages is None else n_pages,
        "n_sequences": len(y_true),
        "n_units": int(sum(len(s) for s in y_true)),
        "types": {},
    }
    names = sorted({e[0] for e in gold_ents | pred_ents})
    if not names:  # seqeval cannot report on no entities at all
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        out.update(micro=dict(zero, predicted=0, correct=0), macro=dict(zero))
        return out
    rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for name in names:
        r = rep[name]
        out["types"][name] = {
            "precision": float(r["precision"]), "recall": float(r["recall"]), "f1": float(r["f1-score"]),
            "support": int(r["support"]),
            "predicted": sum(1 for e in pred_ents if e[0] == name),
            "correct": sum(1 for e in pred_ents & gold_ents if e[0] == name),
        }
    for avg in ("micro", "macro"):
        r = rep[f"{avg} avg"]
        out[avg] = {"precision": float(r["precision"]), "recall": float(r["recall"]),
                    "f1": float(r["f1-score"]), "support": int(r["support"])}
    out["micro"].update(predicted=len(pred_ents), correct=len(pred_ents & gold_ents))
    return out


def _keep_tag(tag: str, keep: set) -> str:
    return tag if tag == "O" or tag[2:] in keep else "O"


def page_tag_sequences(gold_pages: Sequence[Page], pred_records: Sequence[Mapping],
                       tagset_types: Sequence[str] | None = None, unit: str = "word"):
    """Word-level (or token-level) BIO sequences, one per contiguous run of annotated units.

    A region boundary splits the sequence, so an entity can never be joined across two regions.
    Pages without entity annotation contribute nothing. Returns ``(y_true, y_pred, n_pages)``."""
    y_true: list[list[str]] = []
    y_pred: list[list[str]] = []
    n_pages = 0
    for page, rec in zip(gold_pages, pred_records):
        _check_pair(page, rec)
        regions = page.ner_regions
        if not regions:
            continue
        n_pages += 1
        units = page.words if unit == "word" else _token_spans(page.text)
        gold_spans = page.entities or []
        pred_spans = [Span(e["label"], int(e["start"]), int(e["end"])) for e in rec.get("entities") or []]
        types = tuple(tagset_types) if tagset_types is not None else tuple(
            sorted({s.label for s in gold_spans} | {s.label for s in pred_spans}))
        t_tags = _tags(units, gold_spans, types)
        p_tags = _tags(units, pred_spans, types)
        inside = _inside_regions(units, regions)
        for a, b in _runs(inside):
            y_true.append(t_tags[a:b])
            y_pred.append(p_tags[a:b])
    return y_true, y_pred, n_pages


def record_token_tags(page: Page, rec: Mapping, types: Sequence[str]) -> list[list[str]]:
    """Predicted BIO tags on the whitespace-separated tokens of each ``\\n``-line of ``page.text``.

    For pages that a CoNLL reader built with one sentence per line: the result lines up with the
    file's sentences and tokens, so it can be scored against the file's own tags."""
    _check_pair(page, rec)
    units = _token_spans(page.text)
    spans = [Span(e["label"], int(e["start"]), int(e["end"])) for e in rec.get("entities") or []]
    tags = _tags(units, spans, tuple(types))
    newlines = np.asarray([i for i, c in enumerate(page.text) if c == "\n"], dtype=np.int64)
    line_of = np.searchsorted(newlines, units[:, 0]) if len(units) else np.zeros(0, dtype=np.int64)
    out: list[list[str]] = [[] for _ in range(len(newlines) + 1)]
    for k, t in zip(line_of.tolist(), tags):
        out[k].append(t)
    return out


def _check_pair(page: Page, rec: Mapping) -> None:
    if "error" not in rec and rec.get("id") != page.id:
        raise ValueError(f"prediction id {rec.get('id')!r} does not match gold page id {page.id!r} (order differs?)")


def _token_spans(text: str) -> np.ndarray:
    """Whitespace-separated pieces: the original tokens of a page joined from a CoNLL file."""
    return np.asarray([m.span() for m in re.finditer(r"\S+", text)], dtype=np.int64).reshape(-1, 2)


def _tags(units: np.ndarray, spans: Sequence[Span], types: Sequence[str]) -> list[str]:
    """BIO strings for ``units``, through the shared :class:`TagSet` codec.

    Each span is first widened to the units it touches, so a predicted span that is not word-aligned
    (or a trimmed gold span scored on whole CoNLL tokens) is still scored on the units it covers.
    Spans of types outside ``types`` and spans overlapping an earlier one are dropped."""
    tagset = entity_tagset(types)
    snapped: list[Span] = []
    taken = np.zeros(len(units), dtype=bool)
    for sp in sorted(spans, key=lambda s: (s.start, s.end)):
        if sp.label not in types or len(units) == 0:
            continue
        a = int(np.searchsorted(units[:, 1], sp.start, side="right"))  # first unit ending after start
        b = int(np.searchsorted(units[:, 0], sp.end, side="left")) - 1  # last unit starting before end
        if a > b or taken[a:b + 1].any():
            continue
        taken[a:b + 1] = True
        snapped.append(Span(sp.label, int(units[a, 0]), int(units[b, 1])))
    ids = tagset.encode(units, snapped, what="entity")
    id2label = tagset.id2label
    return [id2label[i] for i in ids.tolist()]


def _inside_regions(units: np.ndarray, regions: Iterable[tuple[int, int]]) -> np.ndarray:
    inside = np.zeros(len(units), dtype=bool)
    for a, b in regions:
        inside |= (units[:, 0] >= a) & (units[:, 1] <= b)
    return inside


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index runs where ``mask`` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


# ---------------------------------------------------------------------------------------------
# Sections


def pages_by_meta(pages: Sequence[Page], key: str) -> list[tuple[str, list[int]]]:
    """``(value, page indices)`` per value of ``page.meta[key]`` (e.g. the builder's ``template``), sorted by
    value; pages without the key go under ``(missing)``. What ``train.evaluate --group-by`` and the line CRF
    probe's ``--group-by`` score one block each."""
    groups: dict[str, list[int]] = {}
    for i, page in enumerate(pages):
        groups.setdefault(str((page.meta or {}).get(key, "(missing)")), []).append(i)
    return sorted(groups.items())


def line_labels(page: Page, sections: Sequence[Span]) -> list[str]:
    """The section label of each non-blank line; :data:`NO_SECTION` where no section covers it."""
    out = [NO_SECTION] * len(page.lines)
    if len(page.lines) == 0:
        return out
    starts, ends = page.lines[:, 0], page.lines[:, 1]
    for s in sections:
        for k in np.flatnonzero((starts >= s.start) & (ends <= s.end)).tolist():
            out[k] = s.label
    return out


def _pred_sections(rec: Mapping) -> list[Span]:
    return [Span(s["label"], int(s["start"]), int(s["end"])) for s in rec.get("sections") or []]


def section_metrics(gold_pages: Sequence[Page], pred_records: Sequence[Mapping]) -> dict:
    """Line-level P/R/F1 per label, macro-F1, accuracy, body F1, segment F1 and a confusion matrix.

    Only pages with gold sections count. Gold lines are read through the shared section codec
    (:data:`SECTION_TAGS`), so a gold page that breaks the contract fails loudly here."""
    y_true: list[str] = []
    y_pred: list[str] = []
    seg = {"gold": 0, "predicted": 0, "correct": 0}
    n_pages = 0
    for page, rec in zip(gold_pages, pred_records):
        _check_pair(page, rec)
        if page.sections is None:
            continue
        n_pages += 1
        SECTION_TAGS.encode(page.lines, page.sections, what="section")  # contract check
        pred = _pred_sections(rec)
        y_true += line_labels(page, page.sections)
        y_pred += line_labels(page, pred)
        g = {(s.label, s.start, s.end) for s in page.sections}
        p = {(s.label, s.start, s.end) for s in pred}
        seg["gold"] += len(g)
        seg["predicted"] += len(p)
        seg["correct"] += len(g & p)
    present = set(y_true) | set(y_pred)
    labels = [x for x in (*SECTION_LABELS, NO_SECTION) if x in present]
    out: dict[str, Any] = {"n_pages": n_pages, "n_lines": len(y_true), "labels": {}, "labels_order": labels}
    if not y_true:
        out.update(macro_f1=0.0, accuracy=0.0, body_f1=0.0, segment=_prf(**seg), confusion=[])
        return out
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, lab in enumerate(labels):
        out["labels"][lab] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i]), "predicted": int(sum(x == lab for x in y_pred))}
    scored = [lab for lab in labels if lab != NO_SECTION]
    out["macro_f1"] = float(np.mean([out["labels"][lab]["f1"] for lab in scored])) if scored else 0.0
    out["accuracy"] = float(np.mean([a == b for a, b in zip(y_true, y_pred)]))
    tb = [x == "body" for x in y_true]
    pb = [x == "body" for x in y_pred]
    bp, br, bf, _ = precision_recall_fscore_support(tb, pb, average="binary", pos_label=True, zero_division=0)
    out["body"] = {"precision": float(bp), "recall": float(br), "f1": float(bf), "support": int(sum(tb))}
    out["body_f1"] = float(bf)
    out["segment"] = _prf(**seg)
    out["segment_f1"] = out["segment"]["f1"]
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()  # rows gold, columns pred
    return out


def _prf(gold: int, predicted: int, correct: int) -> dict:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "gold": gold, "predicted": predicted, "correct": correct}


def body_line_metrics(gold_pages: Sequence[Page], extracted_body: Sequence[Sequence[bool]]) -> dict:
    """Body-line P/R/F1 for systems that only say, per non-blank line, "body or not" (extractors)."""
    tb: list[bool] = []
    pb: list[bool] = []
    n = 0
    for page, flags in zip(gold_pages, extracted_body):
        if page.sections is None:
            continue
        n += 1
        tb += [x == "body" for x in line_labels(page, page.sections)]
        pb += list(flags)
    if len(tb) != len(pb):
        raise ValueError(f"{len(tb)} gold lines but {len(pb)} predicted flags")
    p, r, f, _ = precision_recall_fscore_support(tb, pb, average="binary", pos_label=True, zero_division=0)
    return {"n_pages": n, "n_lines": len(tb), "precision": float(p), "recall": float(r), "f1": float(f),
            "support": int(sum(tb)), "predicted": int(sum(pb))}


def seed_line_table(page: Page, pred: Mapping, width: int = 60) -> list[dict]:
    """One row per non-blank line (1-based), gold versus predicted section label, for the report."""
    gold = line_labels(page, page.sections or [])
    got = line_labels(page, _pred_sections(pred))
    rows = []
    for k, ((a, b), g, p) in enumerate(zip(page.lines.tolist(), gold, got), 1):
        rows.append({"line": k, "gold": g, "pred": p, "ok": g == p, "text": page.text[a:b].strip()[:width]})
    return rows
