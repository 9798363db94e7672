"""data/sample: the project's own labelled pages are valid, varied, reproducible and not copied."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter

import pytest

from conftest import ROOT, SHARED
from data.schema import SECTION_LABELS, load_pages
from data.templates import TEMPLATES

SAMPLE = ROOT / "data" / "sample"


@pytest.fixture(scope="module")
def splits():
    return {s: load_pages(SAMPLE / f"{s}.jsonl") for s in ("train", "dev", "test")}  # validates every page


def test_sample_pages_are_valid_and_enough(splits):
    pages = [p for ps in splits.values() for p in ps]
    assert len(pages) >= 40 and len(splits["train"]) >= 40 and splits["dev"] and splits["test"]
    assert len({p.id for p in pages}) == len(pages)
    assert all(p.sections and p.entities for p in pages)
    labels = Counter(s.label for p in pages for s in p.sections)
    assert set(labels) == set(SECTION_LABELS)
    assert set(Counter(e.label for p in pages for e in p.entities)) == {"PERS", "LOC", "ORG", "MISC"}
    assert sum(f.stat().st_size for f in SAMPLE.glob("*.jsonl")) < 1_000_000


def test_sample_entities_cover_furniture_too(splits):
    """Sample pages are annotated in every section (only glued names like "المصدر:رويترز" stay outside)."""
    pages = [p for ps in splits.values() for p in ps]
    assert sum(p.entity_regions is None for p in pages) > 0.8 * len(pages)
    sec_of = lambda p, e: next(s.label for s in p.sections if s.start <= e.start < s.end)  # noqa: E731
    assert {sec_of(p, e) for p in pages for e in p.entities} >= {"body", "title", "read_also", "related", "byline"}


def test_test_split_uses_held_out_templates(splits):
    held = {t.name for t in TEMPLATES[1]}
    assert {p.meta["template"] for p in splits["test"]} <= held
    assert not {p.meta["template"] for p in splits["train"] + splits["dev"]} & held


def test_generator_reproduces_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path / "sample", tmp_path / "examples")
    for s in ("train", "dev", "test"):
        assert (tmp_path / "sample" / f"{s}.jsonl").read_bytes() == (SAMPLE / f"{s}.jsonl").read_bytes()
    for f in (ROOT / "examples").glob("news-page-*.txt"):
        assert (tmp_path / "examples" / f.name).read_bytes() == f.read_bytes()


def test_sample_copies_nothing_from_the_seed(splits):
    seed = SHARED / "data" / "seed-page.json"
    if not seed.exists():
        pytest.skip("needs ../shared/data/seed-page.json: not present")
    seed_lines = {ln.strip() for ln in json.loads(seed.read_text(encoding="utf-8"))["text"].split("\n")
                  if len(ln.strip()) > 25}
    for ps in splits.values():
        for p in ps:
            assert not seed_lines & {ln.strip() for ln in p.text.split("\n")}
