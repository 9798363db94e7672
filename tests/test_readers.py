"""Readers: CoNLL files keep every entity (checked against seqeval), news days, .txt and JSONL pages."""
from __future__ import annotations

import json
import re
import unicodedata
import zipfile
from collections import Counter

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from conftest import shared_path
from data.readers import (AQMAR_TAGS, RESERVED_DAYS, WOJOOD_TAGS, map_tag, read_conll_documents, read_conll_pages,
                          read_conll_sentences, read_news, read_pages, read_txt, read_txt_dir)
from data.schema import Page, write_jsonl

CONLL = """فرانكفورت B-LOC
(د O
ب O
أ) O
وصل O
الوزير O
إلى O
كابول؛ B-LOC
بدعوة O
من O
«الأمم B-ORG
المتحدة» I-ORG
. O

وقال O
أحمد B-PERS
: O
، B-MISC

زار O
إتش.إس.بي.سي I--ORG
اليوم OO
. IO
"""


def _texts(page: Page) -> list[tuple[str, str]]:
    return [(e.label, page.text[e.start:e.end]) for e in page.entities]


def test_conll_entities_on_words_with_edge_punctuation_trimmed(tmp_path):
    path = tmp_path / "mini.txt"
    path.write_text(CONLL, encoding="utf-8")
    pages = read_conll_pages(path, sentences_per_doc=2, tag_map="anercorp")
    assert [p.id for p in pages] == ["mini-0", "mini-1"]
    assert pages[0].text.split("\n")[0].startswith("فرانكفورت (د ب أ) وصل")  # one sentence per line
    assert _texts(pages[0]) == [("LOC", "فرانكفورت"), ("LOC", "كابول"), ("ORG", "الأمم المتحدة"), ("PERS", "أحمد")]
    assert _texts(pages[1]) == [("ORG", "إتش.إس.بي.سي")]  # "I--ORG" read as I-ORG; "OO"/"IO" as O
    assert all(p.sections is None and p.entity_regions is None for p in pages)
    for p in pages:
        Page.from_dict(p.to_dict())


def test_tag_maps_and_noise():
    assert map_tag("B-PER", AQMAR_TAGS) == "B-PERS"
    assert [map_tag(t, AQMAR_TAGS) for t in ("B-MIS1`", "I-MIS-2", "B-MISS1", "B-ENGLISH", "I--ORG", "OO", "IO")] \
        == ["B-MISC", "I-MISC", "B-MISC", "B-MISC", "I-ORG", "O", "O"]
    assert [map_tag(t, WOJOOD_TAGS) for t in ("B-GPE", "I-FAC", "B-OCC", "B-DATE", "I-PERS")] \
        == ["B-LOC", "I-LOC", "O", "O", "I-PERS"]


def test_wojood_first_column_and_separator(tmp_path):
    path = tmp_path / "wojood.txt"
    path.write_text("مراسلة O\nسكرتير B-OCC\nاللجنة I-OCC B-ORG\nفي I-OCC\nنابلس I-OCC B-GPE\n$#$ O\n\n"
                    "زار O\nنابلس B-GPE\nوالأسد B-PERS\n", encoding="utf-8")
    sents = read_conll_sentences(path, WOJOOD_TAGS)
    assert [t for t, _ in sents] == [["مراسلة", "سكرتير", "اللجنة", "في", "نابلس"], ["زار", "نابلس", "والأسد"]]
    assert sents[0][1] == ["O"] * 5  # the outermost (first) column is OCC, dropped
    (page,) = read_conll_pages(path, sentences_per_doc=5, tag_map="wojood")
    assert "$#$" not in page.text and _texts(page) == [("LOC", "نابلس"), ("PERS", "والأسد")]


def _file_entities(path) -> tuple[Counter, list[tuple[str, str]]]:
    """Entities of a token file read independently of the project's reader, for seqeval."""
    toks, tags = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            tok, tag = line.split(" ")
            toks.append(tok)
            tags.append(tag)
        else:
            toks.append("")
            tags.append("O")
    ents = get_entities(tags)
    texts = []
    for typ, a, b in ents:
        joined = " ".join(toks[a:b + 1])
        trimmed = joined
        while trimmed and unicodedata.category(trimmed[0])[0] in "PS":
            trimmed = trimmed[1:].lstrip()
        while trimmed and unicodedata.category(trimmed[-1])[0] in "PS":
            trimmed = trimmed[:-1].rstrip()
        texts.append((typ, trimmed))
    return Counter(t for t, _, _ in ents), texts


@pytest.mark.parametrize("rel", [
    "datasets/ANERcorp-CamelLabSplits/ANERCorp_CamelLab_train.txt",
    "datasets/ANERcorp-CamelLabSplits/ANERCorp_CamelLab_test.txt",
    "datasets/ANERcorp-CamelLabSplits/derived/ANERCorp_CamelLab_test.first-token-restored.txt",
])
def test_anercorp_pages_keep_every_entity(rel):
    path = shared_path(rel)
    counts, texts = _file_entities(path)
    pages = read_conll_pages(path, sentences_per_doc=10)
    got = [(e.label, p.text[e.start:e.end]) for p in pages for e in p.entities]
    assert Counter(t for t, _ in got) == counts
    assert got == texts
    n_sent = sum(1 for _ in read_conll_sentences(path))
    assert len(pages) == -(-n_sent // 10)
    for p in pages[:50]:
        Page.from_dict(p.to_dict())


def test_aqmar_mapped_counts():
    path = shared_path("datasets/AQMAR/articles/Real_Madrid.txt")
    sents = read_conll_sentences(path, AQMAR_TAGS)
    want = Counter(t for _, tags in sents for t, _, _ in get_entities(tags))
    docs = read_conll_documents(path, 8, "aqmar")
    assert Counter(e.label for d in docs for es in d.entities for e in es) == want
    assert set(want) <= {"PERS", "LOC", "ORG", "MISC"}


def _article(day: str, k: int) -> dict:
    return {"source": "s", "url": f"http://x/{day}/{k}", "date_extracted": f"{day} 10:00:00", "title": f"t{k}",
            "author": "a&nbsp;b", "content": f"p1 {k}\n\n p2"}


def test_news_reserved_days(tmp_path):
    arts = [_article("2015-07-21", 0), _article("2015-08-10", 1)]
    with zipfile.ZipFile(tmp_path / "2015-07-21.zip", "w") as z:
        z.writestr("2015-07-21.json", json.dumps(arts))
    (tmp_path / "mixed.json").write_text(json.dumps([_article("2015-08-11", 2), _article("2015-08-01", 3)]),
                                         encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "2015-08-08.zip", "w") as z:
        z.writestr("2015-08-08.json", json.dumps([_article("2015-08-08", 4)]))
    default = list(read_news(tmp_path))
    assert [a["url"][-1] for a in default] == ["0", "3"]  # per-article dates checked too
    assert default[0]["author"] == "a\xa0b"
    held = list(read_news(tmp_path, exclude_days=None, only_days=RESERVED_DAYS))
    assert sorted(a["url"][-1] for a in held) == ["1", "2", "4"]


def test_real_news_reserved_file_is_skipped():
    path = shared_path("datasets/SaudiNewsNet/dataset/2015-08-10.zip")
    assert next(read_news(path), None) is None
    first = next(read_news(path, exclude_days=None, only_days=RESERVED_DAYS))
    assert first["date_extracted"].startswith("2015-08-10") and first["content"]


def test_txt_pages(tmp_path):
    (tmp_path / "b.txt").write_bytes("عنوان\r\n\nنص\n".encode("utf-8"))
    (tmp_path / "a.txt").write_bytes("\ufeffسطر".encode("utf-8"))
    (tmp_path / "skip.md").write_text("x", encoding="utf-8")
    pages = read_txt_dir(tmp_path)
    assert [p.id for p in pages] == ["a.txt", "b.txt"]
    assert pages[0].text == "سطر" and pages[1].text == "عنوان\r\n\nنص\n"  # \r kept: an ordinary character
    assert read_txt(tmp_path / "b.txt").text == pages[1].text
    assert [p.id for p in read_pages(tmp_path)] == ["a.txt", "b.txt"]
    write_jsonl(tmp_path / "p.jsonl", pages)
    assert [p.text for p in read_pages(tmp_path / "p.jsonl")] == [p.text for p in pages]


def test_example_pages_read():
    from conftest import ROOT
    pages = read_pages(ROOT / "examples")
    assert len(pages) >= 2 and all(len(p.lines) > 5 for p in pages)
    assert all(re.search("[\u0621-\u064a]", p.text) for p in pages)


def test_conll_material_is_shared_by_every_cut_of_the_same_sentences(tmp_path):
    """Out-of-fold lexical fits split the training material on ConllDocument.material: a document of 8
    sentences, each of its sentences alone and a builder body made of it carry the same key."""
    import random

    from data.build import conll_article

    path = tmp_path / "x.txt"
    path.write_text("".join(f"كلمة{i} O\nمحمد B-PERS\n\n" for i in range(20)), encoding="utf-8")
    by8, by1 = read_conll_documents(path, 8), read_conll_documents(path, 1)
    assert [d.first_sentence for d in by8] == [0, 8, 16] and len(by1) == 20
    for k, one in enumerate(by1):
        assert one.material() == by8[k // 8].material()
    assert len({d.material() for d in by8}) == 3
    assert conll_article(by8[1], random.Random(0)).meta["material"] == by8[1].material()
