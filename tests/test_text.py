"""Lines and words (the design's pre-tokenizer) on the seed page, Arabic edge cases and random strings."""
from __future__ import annotations

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_path
from data.text import lines, normalize, words


def word_list(text: str) -> list[str]:
    return [text[s:e] for s, e in words(text).tolist()]


def test_punctuation_splits_off_at_edges_only():
    assert word_list("كابول؛") == ["كابول", "؛"]
    assert word_list("«الأهرام»،") == ["«", "الأهرام", "»", "،"]
    assert word_list("نما 1.3% في إتش.إس.بي.سي و U.S.") == ["نما", "1.3", "%", "في", "إتش.إس.بي.سي", "و", "U.S", "."]
    assert word_list("وكوريا الشمالية") == ["وكوريا", "الشمالية"]  # clitics stay attached


def test_format_characters_stay_in_words():
    rlm, zwj = "\u200f", "\u200d"
    assert word_list(f"{rlm}بيروت{zwj} x") == [f"{rlm}بيروت{zwj}", "x"]
    assert word_list(f"a {rlm} b") == ["a", rlm, "b"]
    assert normalize(rlm) == ""
    assert normalize("کوریا الشمالیة") == "كوريا الشمالية"
    assert normalize("مُحَمّـــد") == "محمد"


def test_lines_only_newline_ends_a_line():
    text = "a\r\nb\u2028c\n   \n\u200f\n\nd"
    assert [text[s:e] for s, e in lines(text).tolist()] == ["a\r", "b\u2028c", "\u200f", "d"]


def test_seed_has_27_lines_at_the_right_offsets():
    seed = json.loads(shared_path("data/seed-page.json").read_text(encoding="utf-8"))
    text = seed["text"]
    expected, pos = [], 0
    for ln in text.split("\n"):
        if ln.strip():
            expected.append((pos, pos + len(ln)))
        pos += len(ln) + 1
    got = [tuple(x) for x in lines(text).tolist()]
    assert len(got) == 27
    assert got == expected


# Random strings over the characters that scraped Arabic pages are made of.
ALPHABET = (
    [chr(c) for c in range(0x0621, 0x064B)]  # letters
    + [chr(c) for c in range(0x064B, 0x0653)] + ["\u0640"]  # diacritics, tatweel
    + ["ک", "ی", "ە", "پ", "چ", "گ"]  # Persian letters
    + [chr(c) for c in range(0x200B, 0x2010)] + ["\u061c"] + [chr(c) for c in range(0x2066, 0x206A)]
    + list("0123456789٠١٢٣") + list("،؛؟«»“”•%/") + list(".,:;!?()-_\"'@#$&*+=<>[]{}|\\~^`")
    + list("abcXYZ") + [" ", " ", "\n", "\t", "\u00a0"]
)


def _is_mark(c: str) -> bool:
    return unicodedata.category(c)[0] in "PS"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=60))
def test_words_partition_the_non_space_characters(text):
    spans = words(text).tolist()
    pos = 0
    for s, e in spans:
        assert pos <= s < e
        assert all(c.isspace() for c in text[pos:s]), "a gap between words must be whitespace only"
        w = text[s:e]
        assert not any(c.isspace() for c in w)
        core = "".join(c for c in w if unicodedata.category(c) != "Cf")
        if core:
            single_mark = len(core) == 1 and _is_mark(core)
            assert single_mark or not (_is_mark(core[0]) or _is_mark(core[-1])), repr(w)
        pos = e
    assert all(c.isspace() for c in text[pos:])
