"""Furniture wordings made up on the fly, so that a model learns what a header, a bullet or a source
line looks like rather than the few dozen literal wordings of ``data.templates``.

A wording of a kind is composed from parts (a verb, an adverb, a punctuation mark, a decoration, a
bullet drawn from whole Unicode symbol blocks). Whatever is composed, no wording of the held-out half
comes out: a candidate whose letters equal a held-out wording's letters (after folding alef forms,
taa marbuta, alef maqsura, diacritics and Latin case), or a symbol that a held-out wording uses as
its bullet or prefix, is drawn again. So the held-out-template pages still measure generalisation.

    wording = augmented_wording("read_also_header", rng)   # e.g. "◂ لا تفوت كذلك.."
"""
from __future__ import annotations

import random
import re
import unicodedata

from data.templates import WORDINGS
from data.text import normalize

_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ة": "ه", "ى": "ي"})


def _letters(s: str) -> str:
    """The letters of a wording in the model's view (``data.text.normalize``: no diacritics or tatweel),
    alef forms, taa marbuta and alef maqsura folded, Latin lower-cased; slots like ``{n}`` left out."""
    s = normalize(re.sub(r"\{[a-z_]*\}", "", s)).translate(_FOLD).lower()
    return "".join(ch for ch in s if ch.isalpha())


def _symbols(s: str) -> set[str]:
    """The symbol and punctuation characters of ``s`` other than the everyday ones."""
    return {ch for ch in s if unicodedata.category(ch)[0] in "SP" and ch not in "{}:.-|()[]"}


_HELD_OUT_LETTERS = {kind: {_letters(w) for w in pair[1]} - {""} for kind, pair in WORDINGS.items()}
_HELD_OUT_SYMBOLS = set().union(*(_symbols(w) for kind in ("bullet", "inline_prefix") for w in WORDINGS[kind][1]))


def _symbol_pool() -> tuple[str, ...]:
    """Bullet-like symbols: arrows, geometric shapes, dingbat arrows, general punctuation bullets."""
    ranges = [(0x2190, 0x21FF), (0x25A0, 0x25FF), (0x2794, 0x27BF), (0x2B05, 0x2B0D), (0x2B95, 0x2BA0)]
    extra = "•‣⁃⁌⁍·∙◦–—‹›«✓✔✗✘★☆♦◆◇❖➢➤"
    chars = [chr(c) for a, b in ranges for c in range(a, b + 1)] + list(extra)
    return tuple(ch for ch in dict.fromkeys(chars)
                 if unicodedata.category(ch) in ("So", "Sm", "Po", "Pd", "Pi", "Pf") and ch not in _HELD_OUT_SYMBOLS)


SYMBOLS = _symbol_pool()
_ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
NUMBERINGS = ("{n}.", "{n}-", "({n})", "[{n}]", "{n}/", "{n}:", "{n} -", "{n}.-", "-{n}-")
PUNCT = ("", ":", ":", " :", "..", "...", " -", " –", "؛", " |", ":-")
DECOR = ("", "", "", "", ">> ", ">>> ", "<< ", "// ", "** ", "| ")

READ_VERBS = ("اقرأ", "إقرأ", "اقرا", "تابع", "انظر", "راجع", "اطلع على", "لا تفوت", "ننصحك بقراءة", "قد يهمك",
              "ربما يهمك", "اخترنا لك", "إليك", "مواضيع قد تهمك", "قد يعجبك", "ذات صلة", "اقرأ المزيد", "تابع أيضا")
READ_ADVERBS = ("", "أيضا", "أيضاً", "أيضًا", "ايضا", "كذلك", "أيضا من الأخبار", "هنا", "في هذا السياق")
RELATED_NOUNS = ("مقالات", "أخبار", "اخبار", "مواضيع", "موضوعات", "قصص", "تقارير", "عناوين", "منشورات", "روابط")
RELATED_ADJ = ("ذات صلة", "ذات صله", "مشابهة", "متعلقة", "مرتبطة", "أخرى", "قد تهمك", "ننصح بها", "من القسم",
               "في نفس السياق", "الأحدث", "الأخيرة", "مختارة")
RELATED_OTHER = ("الأكثر قراءة", "الأكثر تداولا", "الأكثر تعليقا", "الأكثر مشاركة", "الأكثر زيارة", "آخر الأخبار",
                 "أحدث الأخبار", "المزيد من {cat}", "من {cat}", "اخترنا لكم", "المزيد")
TAG_HEADS = ("كلمات دلالية", "الكلمات الدلالية", "الكلمات المفتاحية", "كلمات البحث", "الوسوم", "وسوم", "تاغات",
             "هاشتاق", "مواضيع", "الموضوعات", "Tags", "Keywords", "Topics", "تصنيفات", "التصنيف", "مفاتيح")
SOURCE_HEADS = ("المصدر", "مصدر", "المصادر", "عن", "بحسب", "وفق", "وفقا لـ", "نقلا من", "المنشور في", "Source",
                "المصدر الأصلي", "نقل عن", "الخبر من")
AD_WORDS = ("إعلان", "اعلان", "إعلانات", "مساحة إعلانية", "محتوى ممول", "برعاية", "ممول", "Sponsored",
            "Advertisement", "ADS", "AD", "إعلان تجاري", "رعاية")


def _compose(kind: str, rng: random.Random) -> str:
    r = rng
    if kind == "bullet":
        if r.random() < 0.3:
            fmt = r.choice(NUMBERINGS)
            return fmt if r.random() < 0.7 else fmt.replace("{n}", "{n_ar}")
        return r.choice(SYMBOLS) * (2 if r.random() < 0.1 else 1)
    if kind == "read_also_header":
        text = f"{r.choice(READ_VERBS)} {r.choice(READ_ADVERBS)}".strip()
        return (r.choice(DECOR) + text + r.choice(PUNCT)).strip()
    if kind == "inline_prefix":
        head = f"{r.choice(READ_VERBS)} {r.choice(READ_ADVERBS)}".strip() if r.random() < 0.75 else ""
        sym = r.choice(SYMBOLS) + " " if r.random() < 0.35 else ""
        sep = r.choice((": ", " | ", " - ", ".. ", " :", " ")) if head else ""
        out = (r.choice(DECOR) if not sym else "") + sym + head + sep
        return out if out.strip() else r.choice(SYMBOLS) + " "
    if kind == "related_header":
        text = f"{r.choice(RELATED_NOUNS)} {r.choice(RELATED_ADJ)}" if r.random() < 0.65 else r.choice(RELATED_OTHER)
        return (r.choice(DECOR) + text + r.choice(PUNCT)).strip()
    if kind == "tags_header":
        return r.choice(TAG_HEADS) + r.choice(PUNCT)
    if kind == "source":
        wrap = r.choice(("{}", "{}", "{}", "«{}»", "*{}*", "- {}"))
        return f"{r.choice(SOURCE_HEADS)}{r.choice((':', ': ', ' : ', ' - ', '| ', ' '))}{wrap}".replace("  ", " ")
    if kind == "ad":
        w = r.choice(AD_WORDS)
        return r.choice(("{}", "- {} -", "-- {} --", "[{}]", "({})", "{} ", "— {} —", "▪ {}")).format(w).strip()
    raise KeyError(kind)


AUGMENTED_KINDS = ("bullet", "read_also_header", "inline_prefix", "related_header", "tags_header", "source", "ad")


def allowed(kind: str, wording: str) -> bool:
    """False when ``wording`` is a held-out wording of ``kind`` (or has its letters), or uses a
    symbol that a held-out bullet or prefix uses."""
    if wording in WORDINGS[kind][1]:
        return False
    if _symbols(wording) & _HELD_OUT_SYMBOLS:
        return False
    return _letters(wording) not in _HELD_OUT_LETTERS.get(kind, set()) or not _letters(wording)


def augmented_wording(kind: str, rng: random.Random) -> str:
    """A made-up wording of ``kind`` (one of ``AUGMENTED_KINDS``), never one of the held-out half."""
    for _ in range(50):
        w = _compose(kind, rng)
        if allowed(kind, w):
            return w
    return rng.choice(WORDINGS[kind][0])  # a train wording, if the draw keeps failing


def arabic_digits(n: int) -> str:
    return str(n).translate(_ARABIC_DIGITS)
