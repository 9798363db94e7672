"""Metrics on hand-made pages and predictions, checked against hand-computed figures and seqeval."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score

from data.schema import Page
from train.metrics import entity_metrics, record_token_tags, section_metrics, seed_line_table

SEED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "seed-page.json"


def span(text: str, word: str, label: str, nth: int = 0) -> dict:
    start = -1
    for _ in range(nth + 1):
        start = text.index(word, start + 1)
    return {"label": label, "start": start, "end": start + len(word)}


# A two-line page; every word annotated.
TEXT = "زار محمد علي القاهرة مع وفد الأمم المتحدة.\nوقال أحمد إن بغداد ترحب."
GOLD = [span(TEXT, "محمد علي", "PERS"), span(TEXT, "القاهرة", "LOC"), span(TEXT, "الأمم المتحدة", "ORG"),
        span(TEXT, "أحمد", "PERS"), span(TEXT, "بغداد", "LOC")]


def gold_page(**kw) -> Page:
    return Page.from_dict({"id": "p1", "text": TEXT, "entities": GOLD, **kw})


def test_entity_metrics_hand_computed():
    pred = [span(TEXT, "محمد علي", "PERS"),       # correct
            span(TEXT, "القاهرة مع", "LOC"),      # wrong boundary: a false LOC, LOC القاهرة missed
            span(TEXT, "الأمم المتحدة", "ORG"),   # correct
            span(TEXT, "أحمد", "LOC"),           # wrong type: a false LOC, PERS أحمد missed
            span(TEXT, "بغداد", "LOC")]           # correct
    m = entity_metrics([gold_page()], [{"id": "p1", "entities": pred}], ["PERS", "LOC", "ORG"])
    # By hand. Gold: PERS 2, LOC 2, ORG 1. Predicted: PERS 1 (1 correct), LOC 3 (1 correct), ORG 1 (1 correct).
    # PERS: P 1/1 = 1, R 1/2 = 0.5, F1 = 2*1*0.5/1.5 = 2/3
    # LOC:  P 1/3, R 1/2, F1 = 2*(1/3)(1/2)/(5/6) = 0.4
    # ORG:  P 1, R 1, F1 1
    # micro: correct 3, predicted 5, gold 5 -> P = R = F1 = 0.6
    # macro F1 = (2/3 + 0.4 + 1) / 3 = 31/45 = 0.68888...
    t = m["types"]
    assert t["PERS"]["precision"] == pytest.approx(1.0) and t["PERS"]["recall"] == pytest.approx(0.5)
    assert t["PERS"]["f1"] == pytest.approx(2 / 3)
    assert t["LOC"]["precision"] == pytest.approx(1 / 3) and t["LOC"]["f1"] == pytest.approx(0.4)
    assert t["ORG"]["f1"] == pytest.approx(1.0)
    assert (t["PERS"]["support"], t["LOC"]["support"], t["ORG"]["support"]) == (2, 2, 1)
    assert (t["LOC"]["predicted"], t["LOC"]["correct"]) == (3, 1)
    assert m["micro"]["f1"] == pytest.approx(0.6) and m["micro"]["precision"] == pytest.approx(0.6)
    assert m["macro"]["f1"] == pytest.approx(31 / 45)
    assert m["micro"]["support"] == 5 and m["n_pages"] == 1


def test_tag_sequences_agree_with_seqeval():
    y_true = [["B-PERS", "I-PERS", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O"]]
    y_pred = [["B-PERS", "I-PERS", "O", "B-ORG"], ["O", "I-ORG", "I-ORG", "O"]]  # lenient: I-ORG starts an ORG
    m = entity_metrics(y_true, y_pred)
    # By hand: gold PERS(0-1), LOC(3), ORG(1-2); pred PERS(0-1), ORG(3), ORG(1-2) -> 2 of 3 correct both ways.
    assert m["micro"]["f1"] == pytest.approx(2 / 3)
    assert m["micro"]["f1"] == pytest.approx(f1_score(y_true, y_pred))
    assert m["micro"]["precision"] == pytest.approx(precision_score(y_true, y_pred))
    assert m["micro"]["recall"] == pytest.approx(recall_score(y_true, y_pred))
    # macro: LOC 0, ORG P 1/2 R 1 F1 2/3, PERS 1 -> (0 + 2/3 + 1)/3 = 5/9
    assert m["macro"]["f1"] == pytest.approx(5 / 9)
    assert m["macro"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))


def test_entities_outside_regions_are_not_counted():
    # Only the first line is annotated. A prediction on line 2 (outside) must count neither way,
    # even though gold has no entity there that would make it "wrong".
    line1_end = TEXT.index("\n")
    gold = Page.from_dict({"id": "p1", "text": TEXT, "entities": GOLD[:3], "entity_regions": [[0, line1_end]]})
    pred = GOLD[:3] + [span(TEXT, "بغداد", "LOC"), span(TEXT, "وقال", "ORG")]
    m = entity_metrics([gold], [{"id": "p1", "entities": pred}])
    assert m["micro"]["precision"] == pytest.approx(1.0) and m["micro"]["recall"] == pytest.approx(1.0)
    assert m["micro"]["predicted"] == 3 and m["micro"]["support"] == 3
    assert "ORG" in m["types"] and m["types"]["ORG"]["predicted"] == 1  # only الأمم المتحدة
    # The same prediction against a fully annotated page with those 3 gold entities: 2 false positives.
    full = Page.from_dict({"id": "p1", "text": TEXT, "entities": GOLD[:3]})
    m2 = entity_metrics([full], [{"id": "p1", "entities": pred}])
    assert m2["micro"]["precision"] == pytest.approx(3 / 5)


def test_unannotated_pages_contribute_nothing_and_errors_predict_nothing():
    plain = Page.from_dict({"id": "u", "text": TEXT})  # no entities, no regions: not annotated
    m = entity_metrics([plain, gold_page()], [{"id": "u", "entities": GOLD}, {"id": None, "line": 2, "error": "x"}])
    assert m["n_pages"] == 1
    assert m["micro"]["recall"] == 0.0 and m["micro"]["support"] == 5 and m["micro"]["predicted"] == 0


def test_entity_type_restriction_and_misaligned_prediction():
    # A predicted span cut inside a word is widened to the words it touches.
    s = span(TEXT, "القاهرة", "LOC")
    pred = [{"label": "LOC", "start": s["start"] + 1, "end": s["end"] - 1}, span(TEXT, "الأمم المتحدة", "ORG")]
    m = entity_metrics([gold_page()], [{"id": "p1", "entities": pred}], ["LOC"])
    assert list(m["types"]) == ["LOC"]
    # LOC only: gold 2, predicted 1 correct -> P 1, R 0.5
    assert m["micro"]["precision"] == pytest.approx(1.0) and m["micro"]["recall"] == pytest.approx(0.5)


def test_record_token_tags_on_conll_style_page():
    text = "زار كابول؛ أمس\nقال عمر"
    page = Page.from_dict({"id": "c", "text": text, "entities": [span(text, "كابول", "LOC")]})
    tags = record_token_tags(page, {"id": "c", "entities": [span(text, "كابول", "LOC"), span(text, "عمر", "PERS")]},
                             ["PERS", "LOC"])
    assert tags == [["O", "B-LOC", "O"], ["O", "B-PERS"]]  # "كابول؛" is one CoNLL token


# ---------------------------------------------------------------------------------------------
# Sections

# 5 non-blank lines: title, body, body, source, related.
STEXT = "عنوان الخبر\n\nفقرة أولى من الخبر.\nفقرة ثانية.\n\nالمصدر: وكالات\nمقالات ذات صلة"


def _line(k: int) -> tuple[int, int]:
    starts = [i for i, ln in enumerate(STEXT.split("\n")) if ln.strip()]
    offs = [sum(len(x) + 1 for x in STEXT.split("\n")[:i]) for i in starts]
    ln = STEXT.split("\n")[starts[k]]
    return offs[k], offs[k] + len(ln)


def sec(label: str, a: int, b: int) -> dict:
    return {"label": label, "start": _line(a)[0], "end": _line(b)[1]}


def test_section_metrics_hand_computed():
    gold = Page.from_dict({"id": "s", "text": STEXT, "sections": [
        sec("title", 0, 0), sec("body", 1, 2), sec("source", 3, 3), sec("related", 4, 4)]})
    # Predicted: title correct; body runs one line too far (takes the source line); related correct.
    pred = {"id": "s", "sections": [sec("title", 0, 0), sec("body", 1, 3), sec("related", 4, 4)]}
    m = section_metrics([gold], [pred])
    # Lines gold: title body body source related; pred: title body body body related.
    # accuracy 4/5 = 0.8
    # body: P 2/3, R 2/2 -> F1 = 2*(2/3)*1/(5/3) = 0.8; title 1; related 1; source P 0 R 0 F1 0
    # macro over {title, body, source, related} = (1 + 0.8 + 0 + 1) / 4 = 0.7
    # segments: gold 4, predicted 3, exact matches 2 (title, related) -> P 2/3, R 1/2, F1 = 4/7
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["labels"]["body"]["f1"] == pytest.approx(0.8)
    assert m["labels"]["source"]["f1"] == 0.0 and m["labels"]["source"]["support"] == 1
    assert m["macro_f1"] == pytest.approx(0.7)
    assert m["body_f1"] == pytest.approx(0.8)
    assert m["segment_f1"] == pytest.approx(4 / 7)
    assert m["labels_order"] == ["title", "body", "source", "related"]
    assert m["confusion"] == [[1, 0, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert m["n_lines"] == 5 and m["n_pages"] == 1


def test_section_metrics_skip_pages_without_sections():
    plain = Page.from_dict({"id": "n", "text": STEXT})
    m = section_metrics([plain], [{"id": "n", "sections": [sec("body", 0, 4)]}])
    assert m["n_pages"] == 0 and m["n_lines"] == 0


@pytest.mark.skipif(not SEED.is_file(), reason="../shared/data/seed-page.json is not present")
def test_seed_page_line_table_and_perfect_prediction():
    d = json.loads(SEED.read_text(encoding="utf-8"))
    page = Page.from_dict(d)
    perfect = {"id": d["id"], "sections": d["sections"], "entities": d["entities"]}
    m = section_metrics([page], [perfect])
    assert m["n_lines"] == 27 and m["accuracy"] == 1.0 and m["segment_f1"] == 1.0
    assert entity_metrics([page], [perfect])["micro"]["f1"] == 1.0
    # A content-extractor-like answer: everything but the related list is body.
    related = next(s for s in d["sections"] if s["label"] == "related")
    naive = {"id": d["id"], "sections": [{"label": "body", "start": 0, "end": d["sections"][3]["end"]}, related]}
    rows = seed_line_table(page, naive)
    assert len(rows) == 27 and sum(r["gold"] == "body" for r in rows) == 8
    assert [r["ok"] for r in rows].count(False) == 8  # source, tags and the 6 read_also lines
    assert section_metrics([page], [naive])["body_f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)  # P 8/16, R 1
