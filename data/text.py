"""Lines, words and Arabic normalisation, with offsets into the original text.

Everything here is shared by training and inference: a page is cut into lines and words once,
and both the labels (training) and the predictions (inference) are expressed on those units.
Offsets are Python ``str`` indices, half-open, into the untouched original text.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

import numpy as np

# ---------------------------------------------------------------------------------------------
# Character classes, built from Python's own ``unicodedata`` so that the word rules agree exactly
# with ``str.isspace`` and ``unicodedata.category`` (the contract is written in those terms).


def _ranges(pred) -> str:
    out, start, prev = [], None, None
    for cp in range(sys.maxunicode + 1):
        if pred(cp):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append((start, prev))
            start = None
    if start is not None:
        out.append((start, prev))
    esc = lambda cp: "\\U%08x" % cp  # noqa: E731
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in out)


@lru_cache(maxsize=1)
def _classes() -> tuple[str, str, str]:
    """Regex class bodies for whitespace, punctuation/symbol marks and format characters."""
    cats = [unicodedata.category(chr(cp)) for cp in range(sys.maxunicode + 1)]
    space = _ranges(lambda cp: chr(cp).isspace())
    mark = _ranges(lambda cp: cats[cp][0] in "PS")
    fmt = _ranges(lambda cp: cats[cp] == "Cf")
    return space, mark, fmt


@lru_cache(maxsize=1)
def _word_regex() -> re.Pattern:
    space, mark, fmt = _classes()
    w = f"[^{space}{mark}{fmt}]"  # a word character: anything that is not space, mark or format
    m = f"[{mark}]"
    f = f"[{fmt}]"
    end = f"(?=[{space}]|\\Z)"
    # A word: word characters, joined by format characters or by one mark between word characters.
    core = f"{w}+(?:(?:{f}+|{f}*{m}{f}*){w}+)*"
    # Format characters attach to the word they touch: leading ones to the next token, trailing
    # ones to the previous word (or to a mark when nothing else follows in the piece).
    token = f"{f}*(?:{core}{f}*|{m}(?:{f}+{end})?)|{f}+"
    return re.compile(token)


def words(text: str) -> np.ndarray:
    """Word spans of ``text`` as an ``(n, 2)`` int array, as the design's pre-tokenizer defines them."""
    spans = [m.span() for m in _word_regex().finditer(text)]
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


# The window plans of data.features.plan_windows, here so that command lines can offer them without
# importing torch.
WINDOW_PLANS = ("lines", "line", "short", "align")


_LINE_RE = re.compile(r"[^\n]+")


def lines(text: str) -> np.ndarray:
    """Non-blank lines as an ``(n, 2)`` int array of ``[start, end)`` (end before the ``\\n``).

    Only ``\\n`` ends a line; a line is blank when ``line.strip() == ""``.
    """
    spans = [m.span() for m in _LINE_RE.finditer(text) if m.group().strip()]
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def line_of_words(word_spans: np.ndarray, line_spans: np.ndarray) -> np.ndarray:
    """Index of the line that holds each word (words never cross a ``\\n``)."""
    if len(word_spans) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.searchsorted(line_spans[:, 0], word_spans[:, 0], side="right") - 1


# ---------------------------------------------------------------------------------------------
# Normalisation: the model's view of a word. The word keeps its offsets; only the string changes.

_DELETE = (
    [0x0640]  # tatweel
    + list(range(0x0610, 0x061B))  # Quranic signs
    + list(range(0x064B, 0x0660))  # harakat, shadda, sukun, madda/hamza above/below marks
    + [0x0670]  # superscript alef
    + list(range(0x06D6, 0x06DD))
    + list(range(0x06DF, 0x06E9))
    + list(range(0x06EA, 0x06EE))
)
_MAP = {
    "\u06a9": "\u0643",  # ک keheh -> ك
    "\u06aa": "\u0643",
    "\u06af": "\u0643",  # گ -> ك
    "\u06cc": "\u064a",  # ی farsi yeh -> ي
    "\u06d0": "\u064a",
    "\u06d2": "\u064a",  # ے -> ي
    "\u06cd": "\u064a",
    "\u0649\u0654": "\u0626",
    "\u06d5": "\u0647",  # ە ae -> ه
    "\u06c1": "\u0647",  # ہ -> ه
    "\u06be": "\u0647",  # ھ -> ه
    "\u06c0": "\u0629",  # ۀ -> ة
    "\u06c3": "\u0629",
    "\u0671": "\u0627",  # ٱ wasla -> ا
    "\u067e": "\u0628",  # پ -> ب
    "\u0686": "\u062c",  # چ -> ج
    "\u0698": "\u0632",  # ژ -> ز
    "\u06a4": "\u0641",  # ڤ -> ف
}
_TABLE = {cp: None for cp in _DELETE}
_TABLE.update({ord(k): v for k, v in _MAP.items() if len(k) == 1})
# Lone surrogates ("\ud800" is valid JSON) cannot reach the tokenizer: the model sees U+FFFD.
_TABLE.update({cp: "\ufffd" for cp in range(0xD800, 0xE000)})
_PRESENTATION_RE = re.compile("[\ufb50-\ufdff\ufe70-\ufeff\uff00-\uffef]")


@lru_cache(maxsize=1)
def _format_re() -> re.Pattern:
    return re.compile(f"[{_classes()[2]}]")


def normalize(word: str) -> str:
    """Map a word to the model's view: Persian/Urdu letters to Arabic, presentation forms unfolded,
    diacritics, tatweel and format characters (zero-width, RLM/LRM) removed. May return ``""``."""
    if _PRESENTATION_RE.search(word):
        word = unicodedata.normalize("NFKC", word)
    word = word.translate(_TABLE)
    return _format_re().sub("", word)


def word_strings(text: str, word_spans: np.ndarray) -> list[str]:
    return [text[s:e] for s, e in word_spans.tolist()]
