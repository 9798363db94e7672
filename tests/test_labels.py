"""Label codecs (gold spans -> tags -> spans) and page-schema errors that name the page and the field."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_path
from data.labels import SECTION_TAGS, entity_tagset
from data.schema import ErrorRecord, Page, PageError, read_jsonl


def test_seed_round_trip_through_tags():
    seed = json.loads(shared_path("data/seed-page.json").read_text(encoding="utf-8"))
    page = Page.from_dict(seed)
    assert len(page.lines) == 27
    line_tags = SECTION_TAGS.encode(page.lines, page.sections, what="section")
    assert SECTION_TAGS.decode(page.lines, line_tags) == page.sections
    assert [s.label for s in page.sections] == ["body", "source", "tags", "read_also", "related"]
    ents = entity_tagset(("PERS", "LOC", "ORG", "MISC"))
    word_tags = ents.encode(page.words, page.entities, what="entity")
    back = ents.decode(page.words, word_tags, groups=page.word_line)
    assert len(back) == 71 and back == sorted(page.entities, key=lambda e: e.start)
    assert [page.text[e.start:e.end] for e in back] == [e["text"] for e in seed["entities"]]


def _units(n: int) -> np.ndarray:
    return np.stack([np.arange(n) * 3, np.arange(n) * 3 + 2], axis=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=40), st.lists(st.integers(0, 2), max_size=40))
def test_entity_decode_gives_valid_spans(ids, groups):
    tagset = entity_tagset(("PERS", "LOC", "ORG"))
    n = len(ids)
    units, ids = _units(n), np.asarray(ids, dtype=np.int64)
    grp = np.sort(np.asarray((groups + [0] * n)[:n], dtype=np.int64))
    spans = tagset.decode(units, ids, groups=grp)
    starts = {int(s): i for i, s in enumerate(units[:, 0])}
    ends = {int(e): i for i, e in enumerate(units[:, 1])}
    prev_last = -1
    for sp in spans:
        a, b = starts[sp.start], ends[sp.end]  # on unit boundaries
        assert prev_last < a <= b  # ordered, non-overlapping
        assert grp[a] == grp[b]  # never across a group change (a line end)
        assert all(tagset.type_of(ids[a:b + 1]) == tagset.types.index(sp.label))
        prev_last = b
    begins = {starts[sp.start] for sp in spans}
    assert set(np.flatnonzero(tagset.is_begin(ids)).tolist()) <= begins  # every B starts an entity
    inside = np.zeros(n, dtype=bool)
    for sp in spans:
        inside[starts[sp.start]:ends[sp.end] + 1] = True
    assert (inside == (ids > 0)).all()  # every non-O unit is in exactly one entity


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, len(SECTION_TAGS.tags) - 1), min_size=1, max_size=40))
def test_section_decode_covers_every_line(ids):
    units, ids = _units(len(ids)), np.asarray(ids)
    spans = SECTION_TAGS.decode(units, ids)
    begin, typ = SECTION_TAGS.is_begin(ids), SECTION_TAGS.type_of(ids)
    firsts = [0] + [i for i in range(1, len(ids)) if begin[i] or typ[i] != typ[i - 1]]
    assert [s.start for s in spans] == units[firsts, 0].tolist()  # every B (and every type change) starts one
    lasts = [f - 1 for f in firsts[1:]] + [len(ids) - 1]
    assert [s.end for s in spans] == units[lasts, 1].tolist()  # contiguous: every line in exactly one section
    assert [s.label for s in spans] == [SECTION_TAGS.types[typ[f]] for f in firsts]


# ------------------------------------------------------------------------------------------------
TEXT = "وصل وزير الخارجية إلى القاهرة.\n\nالمصدر: وكالات"
GOOD = {"id": "p7", "text": TEXT,
        "sections": [{"label": "body", "start": 0, "end": 30}, {"label": "source", "start": 32, "end": 46}],
        "entities": [{"label": "LOC", "start": 22, "end": 29}]}


def _with(**kw) -> dict:
    return {**json.loads(json.dumps(GOOD)), **kw}


@pytest.mark.parametrize("record, field, reason", [
    (_with(entities=[{"label": "LOC", "start": 22, "end": 99}]), "entities[0]", "out of range"),
    (_with(entities=[{"label": "LOC", "start": 29, "end": 22}]), "entities[0]", "<= start"),
    (_with(sections=[{"label": "article", "start": 0, "end": 30}, GOOD["sections"][1]]), "sections[0].label",
     "unknown section label"),
    (_with(sections=[{"label": "body", "start": 0, "end": 46}, {"label": "source", "start": 32, "end": 46}]),
     "sections[1]", "overlaps"),
    (_with(sections=[{"label": "body", "start": 0, "end": 20}, GOOD["sections"][1]]), "sections[0]",
     "whole non-blank lines"),
    (_with(sections=[GOOD["sections"][0]]), "sections", "in no section"),
    (_with(entities=[{"label": "LOC", "start": 22, "end": 27}]), "entities[0]", "whole words"),
    (_with(entities=[{"label": "LOC", "start": 22, "end": 29, "text": "بغداد"}]), "entities[0].text", "!="),
    (_with(entity_regions=[[0, 10]]), "entities[0]", "outside every entity_regions"),
])
def test_schema_errors_name_page_and_field(record, field, reason):
    with pytest.raises(PageError) as err:
        Page.from_dict(record)
    assert err.value.page_id == "p7" and err.value.field == field
    assert "p7" in str(err.value) and field in str(err.value) and reason in str(err.value)


def test_read_jsonl_goes_on_after_a_bad_line(tmp_path):
    path = tmp_path / "pages.jsonl"
    bad_entity = _with(id="p8", entities=[{"label": "LOC", "start": 22, "end": 27}])
    lines = [json.dumps(GOOD, ensure_ascii=False), '{"id": "x", "text": ', "",
             json.dumps(bad_entity, ensure_ascii=False), json.dumps(_with(id="p9"), ensure_ascii=False),
             json.dumps(_with(id="p9"), ensure_ascii=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    recs = list(read_jsonl(path))
    assert [type(r).__name__ for r in recs] == ["Page", "ErrorRecord", "ErrorRecord", "Page", "ErrorRecord"]
    assert recs[1].line == 2 and "invalid JSON" in recs[1].error
    assert recs[2].id == "p8" and recs[2].line == 4 and "entities[0]" in recs[2].error
    assert isinstance(recs[4], ErrorRecord) and "duplicate id" in recs[4].error and recs[4].id == "p9"
