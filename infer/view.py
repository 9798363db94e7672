"""The page view: one self-contained right-to-left HTML file per tagged page, and an index.

Each section is a shaded block with its label; each entity is highlighted in its type's colour, with
its type and score in a tooltip. No scripts, fonts or images are loaded from anywhere: a file can be
mailed or opened offline. All page text is HTML-escaped.

    python -m infer.view OUT.jsonl -o DIR
"""
from __future__ import annotations

import argparse
import hashlib
import html
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Iterable

SECTION_COLOURS = {
    "title": "#ffe08a", "byline": "#d7c8f5", "body": "#c9efd2", "source": "#bfe3f7",
    "tags": "#f9d3b4", "read_also": "#f7c5cf", "related": "#e3d9c6", "boilerplate": "#dddddd",
}
ENTITY_COLOURS = {"PERS": "#d62f2f", "PER": "#d62f2f", "LOC": "#1f6fd1", "ORG": "#1e9a4b", "MISC": "#b35ec0"}
_SPARE = ("#e07b00", "#008b8b", "#8a6d00", "#c2185b", "#5d6d7e", "#6a4fb3")

CSS = """
body{font-family:"Noto Naskh Arabic","Noto Sans Arabic","Amiri","DejaVu Sans","Arial",sans-serif;
  margin:0;padding:1.2em 2em;background:#fafafa;color:#111;line-height:1.9;font-size:18px}
header{border-bottom:1px solid #ccc;margin-bottom:1em}
h1{font-size:1.25em;margin:.2em 0;unicode-bidi:plaintext}
.meta{color:#555;font-size:.8em;unicode-bidi:plaintext}
.legend{display:flex;flex-wrap:wrap;gap:.4em 2em;direction:ltr;justify-content:flex-end;font-size:.8em;margin:.6em 0;align-items:center}
.legend b{font-weight:600}
.sw{display:inline-block;padding:0 .5em;border-radius:3px;border:1px solid #0002}
.sec{background:var(--c);border-inline-start:6px solid #0003;border-radius:4px;margin:.5em 0;padding:.2em .8em .4em}
.sec-label{display:inline-block;font:600 11px/1.6 "DejaVu Sans Mono",monospace;direction:ltr;
  background:#0000000f;border-radius:3px;padding:0 .4em;color:#333}
.sec-text,.gap{white-space:pre-wrap;unicode-bidi:plaintext;overflow-wrap:anywhere}
.gap{color:#a00;border:1px dashed #a00}
mark.ent{background:none;color:inherit;border-bottom:3px solid var(--e);box-shadow:inset 0 -.55em 0 color-mix(in srgb,var(--e) 18%,transparent);
  padding:0 .05em;cursor:help}
mark.ent::after{content:attr(data-l);font:700 9px/1 "DejaVu Sans Mono",monospace;color:var(--e);
  vertical-align:super;margin-inline-start:.15em;direction:ltr;unicode-bidi:isolate}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:start}
details{margin:.6em 0;font-size:.9em}pre{white-space:pre-wrap;unicode-bidi:plaintext}
.err{color:#a00}
"""


def entity_colour(label: str) -> str:
    return ENTITY_COLOURS.get(label) or _SPARE[zlib.crc32(label.encode()) % len(_SPARE)]


def section_colour(label: str) -> str:
    return SECTION_COLOURS.get(label, "#eeeeee")


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _document(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="ar" dir="rtl">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render_page(result: dict) -> str:
    """A self-contained RTL HTML page for one output record of ``python -m infer``."""
    sections = sorted(result.get("sections") or [], key=lambda s: (s["start"], s["end"]))
    entities = sorted(result.get("entities") or [], key=lambda e: (e["start"], e["end"]))
    text = result.get("text")
    title = f"{result.get('id')}"
    parts = [f"<header><h1>{_e(title)}</h1>",
             '<div class="meta">' + " · ".join(
                 f"<bdi>{x}</bdi>" for x in [f"{len(sections)} sections", f"{len(entities)} entities"]
                 + ([f"{len(text):,} characters"] if text is not None else [])) + "</div>",
             _legend(sections, entities), "</header>", "<main>"]
    if text is None:
        parts.append('<p class="meta">The record has no text (tagged with --no-text): sections and entities only.</p>')
        parts.append(_tables(sections, entities))
    else:
        parts.append(_body(text, sections, entities))
    parts.append("</main>")
    if result.get("meta"):
        parts.append(f"<details><summary>meta</summary><pre>{_e(json.dumps(result['meta'], ensure_ascii=False, indent=1))}</pre></details>")
    return _document(title, "\n".join(parts))


def _legend(sections: list[dict], entities: list[dict]) -> str:
    sec = list(dict.fromkeys(s["label"] for s in sections))
    ent = sorted({e["label"] for e in entities})
    secs = " ".join(f'<span class="sw" style="background:{section_colour(l)}">{_e(l)}</span>' for l in sec)
    ents = " ".join(f'<span class="sw" style="border-bottom:3px solid {entity_colour(l)};color:{entity_colour(l)}">{_e(l)}</span>'
                    for l in ent)
    return (f'<div class="legend"><bdi><b>sections:</b> {secs or "none"}</bdi>'
            f'<bdi><b>entities:</b> {ents or "none"}</bdi></div>')


def _body(text: str, sections: list[dict], entities: list[dict]) -> str:
    """Sections as shaded blocks; text between sections (normally only blank lines) is dropped when
    it is whitespace and shown framed in red otherwise, so a coverage bug is visible."""
    out, cursor, ents = [], 0, _EntityCursor(entities)
    for s in sections:
        a, b = max(s["start"], cursor), s["end"]
        if b <= a:
            continue
        if text[cursor:a].strip():
            out.append(f'<div class="gap">{ents.mark(text, cursor, a)}</div>')
        out.append(f'<section class="sec" style="--c:{section_colour(s["label"])}">'
                   f'<span class="sec-label">{_e(s["label"])}</span>'
                   f'<div class="sec-text">{ents.mark(text, a, b)}</div></section>')
        cursor = b
    if text[cursor:].strip():
        out.append(f'<div class="gap">{ents.mark(text, cursor, len(text))}</div>')
    return "\n".join(out)


class _EntityCursor:
    """Walks the sorted entities once while the text is emitted range by range."""

    def __init__(self, entities: list[dict]):
        self.ents, self.i = entities, 0

    def mark(self, text: str, a: int, b: int) -> str:
        out, pos = [], a
        while self.i < len(self.ents) and self.ents[self.i]["start"] < b:
            e = self.ents[self.i]
            self.i += 1
            if e["start"] < pos or e["end"] > b:  # overlaps another or crosses a border: not shown
                continue
            out.append(_e(text[pos:e["start"]]))
            tip = f'{e["label"]} · score {e.get("score", "?")}'
            if e.get("section"):
                tip += f' · in {e["section"]}'
            out.append(f'<mark class="ent" style="--e:{entity_colour(e["label"])}" data-l="{_e(e["label"])}" '
                       f'title="{_e(tip)}">{_e(text[e["start"]:e["end"]])}</mark>')
            pos = e["end"]
        out.append(_e(text[pos:b]))
        return "".join(out)


def _tables(sections: list[dict], entities: list[dict]) -> str:
    rows = "".join(f'<tr><td><span class="sw" style="background:{section_colour(s["label"])}">{_e(s["label"])}</span></td>'
                   f'<td>{s["start"]}</td><td>{s["end"]}</td></tr>' for s in sections)
    erows = "".join(f'<tr><td style="color:{entity_colour(e["label"])}">{_e(e["label"])}</td><td>{_e(e.get("text", ""))}</td>'
                    f'<td>{_e(e.get("section", ""))}</td><td>{_e(e.get("score", ""))}</td></tr>' for e in entities)
    return (f"<h2>sections</h2><table><tr><th>label</th><th>start</th><th>end</th></tr>{rows}</table>"
            f"<h2>entities</h2><table><tr><th>type</th><th>text</th><th>section</th><th>score</th></tr>{erows}</table>")


# ---------------------------------------------------------------------------------------------
# Files


def page_filename(number: int, page_id) -> str:
    """A safe, unique file name: the record's 1-based position, an ASCII slug of the id, and a short
    hash of the id (so that ids differing only in non-ASCII characters stay apart to the eye)."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(page_id)).strip("_-")[:40]
    digest = hashlib.sha1(repr(page_id).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{number:06d}-{slug + '-' if slug else ''}{digest}.html"


class ViewWriter:
    """Writes one page file per result record as records arrive, and streams the index rows, so that
    a view of a huge output never holds it in memory."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.index = open(self.dir / "index.html", "w", encoding="utf-8", errors="replace")
        head = _document("index", "").split("</body>")[0]
        self.index.write(head + '<h1>Tagged pages</h1>\n<table>\n<tr><th>#</th><th>id</th><th>sections</th>'
                         '<th>entities</th><th>body characters</th></tr>\n')

    def add(self, record: dict) -> None:
        self.n += 1
        if "error" in record:
            self.index.write(f'<tr><td>{self.n}</td><td>{_e(record.get("id"))}</td>'
                             f'<td class="err" colspan="3">{_e(record["error"])}</td></tr>\n')
            return
        name = page_filename(self.n, record.get("id"))
        (self.dir / name).write_text(render_page(record), encoding="utf-8", errors="replace")
        self.index.write(f'<tr><td>{self.n}</td><td><a href="{_e(name)}">{_e(record.get("id"))}</a></td>'
                         f'<td>{len(record.get("sections") or [])}</td><td>{len(record.get("entities") or [])}</td>'
                         f'<td>{len(record.get("body") or "")}</td></tr>\n')

    def close(self) -> None:
        self.index.write("</table>\n</body>\n</html>\n")
        self.index.close()

    def __enter__(self) -> "ViewWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_views(records: Iterable[dict], out_dir: str | Path) -> int:
    with ViewWriter(out_dir) as w:
        for r in records:
            w.add(r)
    return w.n


def _read(path: str) -> Iterable[dict]:
    fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    with fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infer.view", description=__doc__.split("\n\n")[0])
    ap.add_argument("output", help="a JSONL file written by python -m infer ('-' for stdin)")
    ap.add_argument("-o", "--out-dir", required=True, help="folder for the HTML files and index.html")
    args = ap.parse_args(argv)
    try:
        n = write_views(_read(args.output), args.out_dir)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {n} records to {Path(args.out_dir) / 'index.html'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
