"""Hostile page texts (Hypothesis strategies) and the output contract checked on every tagged page.

Shared by ``tests/test_fuzz.py`` (a few hundred cases in CI) and ``scripts/stress.py`` (10,000 pages).
The checks use their own oracles for lines (``text.split("\\n")``) so that a bug in ``data.text.lines``
cannot hide itself; words come from ``data.text.words``, which the contract defines entities on and
which has its own properties in ``test_fuzz.py``.
"""
from __future__ import annotations

import bisect
import json

from hypothesis import strategies as st

from data.schema import SECTION_LABELS
from data.text import words

# ---------------------------------------------------------------------------------------------
# Alphabets

ARABIC = [chr(c) for c in range(0x0621, 0x064B)]
PERSIAN_URDU = list("پچژکگیۀەہھےٹڈڑںۓۃڤٱ")
DIACRITICS = [chr(c) for c in range(0x064B, 0x0660)] + ["\u0670", "\u06e1", "\u06ed"]
TATWEEL = ["\u0640"]
DIGITS = list("0123456789٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹")
PUNCT = list("،؛؟«»“”•%/.,:;!?-()[]\"'…—_#@*+=<>|۔٪") + ["\ufd3e", "\ufd3f"]
# Zero-width and bidi marks (Cf), the BOM, soft hyphen, word joiner.
FORMAT = ([chr(c) for c in range(0x200B, 0x2010)] + ["\u061c"] + [chr(c) for c in range(0x202A, 0x202F)]
          + [chr(c) for c in range(0x2066, 0x206A)] + ["\ufeff", "\u00ad", "\u2060"])
COMBINING = [chr(c) for c in range(0x0300, 0x0370)] + ["\u20dd", "\u0489", "\u0654", "\u0655"]
EMOJI = ["😀", "👍🏽", "🇸🇦", "👨\u200d👩\u200d👧", "❤️", "☪️", "🕌", "🔥", "\U0001f9d5\U0001f3fe"]
PRESENTATION = ["\ufefb", "\ufef5", "\ufe8d", "\ufb8e", "\ufdf2", "\ufdfa"]  # lam-alef, ka, allah...
# Whitespace that is NOT a line end per the design (only \n is); \x1c-\x1f and \x85 split in
# str.splitlines() but are just spaces here.
SPACES = [" ", "\t", "\u00a0", "\u3000", "\u2009", "\u200a", "\u202f", "\u205f", "\u1680",
          "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85"]
NOT_LINE_ENDS = ["\r", "\r\n", "\u2028", "\u2029", "\n\r", "\r\r\n"]
OTHER_WORDS = ["Reuters", "U.S.", "COVID-19", "e-mail", "naïve", "straße", "中文新闻", "日本語", "한국어",
               "हिन्दी", "समाचार", "Привет", "שלום", "ภาษาไทย", "Ελλάδα", "ქართული", "ᐃᓄᒃᑎᑐᑦ", "𝔘𝔫𝔦"]

_ARABIC_CHARS = ARABIC + PERSIAN_URDU
_IN_WORD = _ARABIC_CHARS * 4 + DIACRITICS + TATWEEL * 2 + FORMAT + COMBINING + PRESENTATION + DIGITS


def _chars(pool: list[str], min_size: int = 1, max_size: int = 12):
    return st.lists(st.sampled_from(pool), min_size=min_size, max_size=max_size).map("".join)


arabic_word = _chars(_ARABIC_CHARS, 1, 10)
messy_word = _chars(_IN_WORD, 1, 14)  # letters mixed with diacritics, tatweel, ZW/bidi marks, digits
token = st.one_of(
    arabic_word, arabic_word, messy_word,
    st.sampled_from(OTHER_WORDS), st.sampled_from(EMOJI), _chars(PUNCT, 1, 3), _chars(FORMAT, 1, 3),
    _chars(COMBINING, 1, 2), _chars(DIGITS, 1, 6),
    st.tuples(messy_word, _chars(PUNCT, 1, 1), messy_word).map("".join),  # 1.3, إتش.إس
    st.text(min_size=1, max_size=6),  # anything Hypothesis likes (no surrogates)
)
separator = st.one_of(
    st.just(" "), st.just(" "), st.just("\n"), st.just("\n\n"), _chars(SPACES, 1, 3),
    st.sampled_from(NOT_LINE_ENDS), st.sampled_from(["\u200f\n", " \n ", "\n\u200f", "\n \t \n", "\n• "]),
)


@st.composite
def _flowing(draw) -> str:
    parts = draw(st.lists(st.tuples(token, separator), max_size=60))
    return "".join(a + b for a, b in parts)


@st.composite
def _long_line(draw) -> str:
    """One very long line: a few words tiled up to a few thousand characters, no newline."""
    unit = draw(st.lists(token, min_size=1, max_size=4).map(" ".join))
    n = draw(st.integers(1, max(1, 4000 // max(1, len(unit) + 1))))
    return " ".join([unit] * n)


raw_text = st.one_of(
    _flowing(), _flowing(), _flowing(),
    _flowing().map(lambda t: t.replace("\n", " ")),  # no newline at all
    _flowing().map(lambda t: t.replace("\n", "\r\n")),  # Windows line ends: \r stays in the line
    _long_line(),
    st.text(max_size=200),
)
page_text = raw_text.filter(lambda t: t.strip() != "")
blank_text = _chars(SPACES + ["\n", "\r", "\r\n", "\u2028", "\u2029", "\n\n"], 1, 20).filter(
    lambda t: t.strip() == "")


def tile(fragments: list[str], size: int) -> str:
    """A page of about ``size`` characters built by repeating generated fragments with line breaks
    between them (Hypothesis draws stay small; the big page is built from them)."""
    frags = [f for f in fragments if f] or ["نص"]
    out, n, i = [], 0, 0
    while n < size:
        f = frags[i % len(frags)] + ("\n" if i % 3 else "\n\n")
        out.append(f)
        n += len(f)
        i += 1
    text = "".join(out)[:size]
    return text if text.strip() else "نص" + text[2:]


# ---------------------------------------------------------------------------------------------
# The contract on one output record


def nonblank_lines(text: str) -> list[tuple[int, int]]:
    """Oracle for non-blank lines: only ``\\n`` ends a line; blank means ``line.strip() == ""``."""
    out, pos = [], 0
    for part in text.split("\n"):
        if part.strip():
            out.append((pos, pos + len(part)))
        pos += len(part) + 1
    return out


def check_record(text: str, page_id, rec: dict, entity_types=None) -> None:
    """Assert every property of the output contract for one tagged page."""
    assert set(rec) >= {"id", "sections", "entities", "body"}, sorted(rec)
    assert "error" not in rec, rec.get("error")
    assert rec["id"] == page_id
    if "text" in rec:
        assert rec["text"] == text
    json.dumps(rec, ensure_ascii=False)  # serialisable

    lines = nonblank_lines(text)
    starts = {a for a, _ in lines}
    ends = {b for _, b in lines}
    secs = rec["sections"]
    prev_end = -1
    for s in secs:
        a, b = s["start"], s["end"]
        assert s["label"] in SECTION_LABELS, s
        assert a in starts and b in ends, f"section {s} does not cover whole non-blank lines"
        assert a < b and a >= prev_end, f"section {s} overlaps or is out of order"
        prev_end = b
    # every non-blank line in exactly one section (sections are sorted and disjoint)
    sec_starts = [s["start"] for s in secs]
    for a, b in lines:
        k = bisect.bisect_right(sec_starts, a) - 1
        assert k >= 0 and secs[k]["start"] <= a and b <= secs[k]["end"], f"line [{a}, {b}) is in no section"
    if secs:
        assert secs[0]["start"] == lines[0][0] and secs[-1]["end"] == lines[-1][1]

    wspans = words(text)
    wstarts = set(wspans[:, 0].tolist())
    wends = set(wspans[:, 1].tolist())
    prev = -1
    for e in rec["entities"]:
        a, b = e["start"], e["end"]
        assert 0 <= a < b <= len(text), e
        assert text[a:b] == e["text"], e
        assert a in wstarts and b in wends, f"entity {e} does not cover whole words"
        assert "\n" not in text[a:b], f"entity {e} crosses a line end"
        assert a >= prev, f"entity {e} overlaps the previous one or is out of order"
        prev = b
        k = bisect.bisect_right(sec_starts, a) - 1
        assert k >= 0 and secs[k]["start"] <= a and b <= secs[k]["end"], f"entity {e} is in no section"
        assert e["section"] == secs[k]["label"], (e, secs[k])
        if entity_types is not None:
            assert e["label"] in entity_types, e
        assert 0.0 <= e["score"] <= 1.0 and round(e["score"], 4) == e["score"], e
    body = "\n\n".join(text[s["start"]:s["end"]] for s in secs if s["label"] == "body")
    assert rec["body"] == body
