"""The HTML page view: self-contained RTL pages, escaped text, sections and entities shown, safe files."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

from infer.view import main, page_filename, render_page

TEXT = ("وصل وزير الخارجية <blink>سامح شكري</blink> إلى القاهرة.\n\n"
        "المصدر: وكالة & رويترز\n"
        "إقرأ أيضاً: \"بوتين\" يزور موسكو\r\n"
        "<script>alert('x')</script>")


def _span(text: str, part: str) -> tuple[int, int]:
    i = text.index(part)
    return i, i + len(part)


def record(text: str = TEXT, **extra) -> dict:
    lines = [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    labels = ["body", "source", "read_also", "boilerplate"]
    sections = [{"label": lab, "start": a, "end": b} for lab, (a, b) in zip(labels, lines)]
    ents = []
    for label, part, sec in [("PERS", "سامح شكري", "body"), ("LOC", "القاهرة", "body"),
                             ("ORG", "رويترز", "source"), ("PERS", "بوتين", "read_also")]:
        a, b = _span(text, part)
        ents.append({"label": label, "start": a, "end": b, "text": part, "section": sec, "score": 0.8765})
    return {"id": "page/1", "meta": {"url": "https://example.com/?a=<1>"}, "text": text, "sections": sections,
            "entities": ents, "body": text[sections[0]["start"]:sections[0]["end"]], **extra}


def visible_text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_page_is_self_contained_rtl_and_escaped():
    doc = render_page(record())
    assert '<html lang="ar" dir="rtl">' in doc and '<meta charset="utf-8">' in doc
    assert "<script" not in doc.lower().replace("&lt;script", "")  # the page's own <script> is escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in doc
    assert "<blink>" not in doc and "&lt;blink&gt;" in doc
    # No external assets: nothing is fetched (the meta URL is text, escaped, inside <pre>).
    assert not re.search(r"<(link|img|iframe|script)\b|\bsrc=|@import|url\(", doc)


def test_sections_keep_their_exact_text_and_labels():
    rec = record()
    doc = render_page(rec)
    blocks = re.findall(r'<section class="sec" style="--c:[^"]+"><span class="sec-label">([^<]+)</span>'
                        r'<div class="sec-text">(.*?)</div></section>', doc, flags=re.S)
    assert [b[0] for b in blocks] == [s["label"] for s in rec["sections"]]
    for (_, inner), s in zip(blocks, rec["sections"]):
        assert visible_text(inner) == rec["text"][s["start"]:s["end"]]  # CR and quotes kept


def test_entities_highlighted_with_type_colour_score_tooltip_and_legend():
    doc = render_page(record())
    marks = re.findall(r'<mark class="ent" style="--e:(#[0-9a-f]{6})" data-l="(\w+)" title="([^"]+)">([^<]+)</mark>', doc)
    assert [(m[1], html.unescape(m[3])) for m in marks] == [
        ("PERS", "سامح شكري"), ("LOC", "القاهرة"), ("ORG", "رويترز"), ("PERS", "بوتين")]
    colours = {m[1]: m[0] for m in marks}
    assert len(set(colours.values())) == 3  # one colour per type
    assert all("0.8765" in m[2] for m in marks) and "in read_also" in marks[3][2]
    legend = re.search(r'<div class="legend">(.*?)</div>', doc, flags=re.S).group(1)
    for label in ["body", "source", "read_also", "boilerplate", "PERS", "LOC", "ORG"]:
        assert f">{label}<" in legend


def test_record_without_text_and_unknown_entity_type():
    rec = record()
    rec.pop("text")
    rec["entities"][0]["label"] = "EVENT"
    doc = render_page(rec)
    assert "--no-text" in doc and "EVENT" in doc and "سامح شكري" in doc


def test_bad_spans_do_not_break_rendering():
    rec = record()
    rec["entities"].append({"label": "LOC", "start": 2, "end": 40, "text": "?", "section": "body", "score": 0.1})
    rec["sections"].insert(1, {"label": "tags", "start": 0, "end": 3})  # overlaps: skipped
    doc = render_page(rec)
    assert doc.count('<mark class="ent"') == 4 and "</html>" in doc


def test_file_names_are_safe_and_unique():
    ids = ["../../etc/passwd", "a/b", "a_b", "خبر-عاجل", None, 42, "x" * 300, "con", ".hidden"]
    names = [page_filename(i + 1, pid) for i, pid in enumerate(ids)]
    assert len(set(names)) == len(names)
    for n in names:
        assert re.fullmatch(r"\d{6}-[A-Za-z0-9_-]*\.html", n) and len(n) < 80, n


def test_cli_writes_one_file_per_result_and_an_index(tmp_path: Path):
    out = tmp_path / "out.jsonl"
    recs = [record(), {"id": None, "line": 2, "error": "line 2: invalid JSON: <oops>"}, record(id="خبر 2")]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs) + "\n", encoding="utf-8")
    assert main([str(out), "-o", str(tmp_path / "view")]) == 0
    files = sorted(p.name for p in (tmp_path / "view").iterdir())
    assert len(files) == 3 and "index.html" in files
    index = (tmp_path / "view" / "index.html").read_text(encoding="utf-8")
    for f in files:
        if f != "index.html":
            assert f'href="{f}"' in index
    assert "invalid JSON: &lt;oops&gt;" in index and "خبر 2" in index and index.rstrip().endswith("</html>")
