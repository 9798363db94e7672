"""Furniture wordings made up on the fly, so that a model learns what a header, a bullet or a source
line looks like rather than the few dozen literal wordings of ``data.templates``.

A wording of a kind is composed from parts (a verb, an adverb, a punctuation mark, a decoration, a
bullet drawn from whole Unicode symbol blocks, a platform name, a byline's slots). Kinds: the headers,
prefixes, bullets, source, tag, ad, share, comment, copyright and navigation lines, and bylines.
Whatever is composed, no wording of the held-out half comes out, in any role: a candidate whose letters
equal a held-out wording's letters, of any kind (after folding alef forms, taa marbuta, alef maqsura,
diacritics and Latin case), that uses a content word which only held-out wordings of its kind use
(``_HELD_OUT_WORDS``: يوتيوب, قناتنا or الرابط for share lines) or which only held-out wordings use and
no train wording of any kind (تابع, يعجبك: a held-out share line's and related header's words are not
taught as read-also words), or a symbol that a held-out wording uses as its bullet or prefix, is drawn
again. So the held-out-template pages still measure generalisation.

    wording = augmented_wording("read_also_header", rng)   # e.g. "◂ لا تفوت كذلك.."
"""
from __future__ import annotations

import random
import re
import unicodedata
from functools import lru_cache

from data.templates import WORDINGS
from data.text import normalize

_FOLD = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ة": "ه", "ى": "ي"})
_SLOT = re.compile(r"\{[a-z_0-9]*\}")  # a wording's slot: {person}, {n_ar}, {year2}


def _letters(s: str) -> str:
    """The letters of a wording in the model's view (``data.text.normalize``: no diacritics or tatweel),
    alef forms, taa marbuta and alef maqsura folded, Latin lower-cased; slots like ``{n}`` left out."""
    s = normalize(_SLOT.sub("", s)).translate(_FOLD).lower()
    return "".join(ch for ch in s if ch.isalpha())


def _symbols(s: str) -> set[str]:
    """The symbol and punctuation characters of ``s`` other than the everyday ones."""
    return {ch for ch in s if unicodedata.category(ch)[0] in "SP" and ch not in "{}:.-|()[]"}


def _words(s: str) -> set[str]:
    """The words of a wording, each as ``_letters`` gives it (slots and symbols left out)."""
    return {w for w in map(_letters, _SLOT.sub(" ", s).split()) if w}


# The letters of every held-out wording, whatever its kind: a made-up wording of ANY kind never has
# them ("قد يعجبك أيضا", a held-out related header, must not come out as a read-also header either).
_ANY_HELD_OUT_LETTERS = {_letters(w) for pair in WORDINGS.values() for w in pair[1]} - {""}


# Content words (4 letters or more) that only the held-out wordings of a kind use, with or without the
# article (e.g. share: يوتيوب, قناتنا, الرابط): a made-up wording of that kind never uses them, so
# held-out lines stay new in their words, not only as a whole.
def _held_out_words(kinds) -> set[str]:
    train = set().union(set(), *(_words(w) for k in kinds for w in WORDINGS[k][0]))
    train |= {w[2:] for w in train if w.startswith("ال")} | {"ال" + w for w in train}  # with or without the article
    held = set().union(set(), *(_words(w) for k in kinds for w in WORDINGS[k][1]))
    return {w for w in held if len(w) >= 4 and w not in train}


# ... and the content words that only held-out wordings use, of any kind, and no train wording of any
# kind (تابع of the held-out share line "تابع آخر الأخبار عبر تطبيق تلغرام", يعجبك): no made-up wording
# of any kind uses them, so that a held-out line's words are never taught under another label.
_ANY_HELD_OUT_WORDS = _held_out_words(tuple(WORDINGS))
_HELD_OUT_WORDS = {kind: _held_out_words((kind,)) | _ANY_HELD_OUT_WORDS for kind in WORDINGS}
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

READ_VERBS = ("اقرأ", "إقرأ", "اقرا", "انظر", "راجع", "اطلع على", "لا تفوت", "ننصحك بقراءة", "قد يهمك",
              "ربما يهمك", "اخترنا لك", "إليك", "مواضيع قد تهمك", "ذات صلة", "اقرأ المزيد")
READ_ADVERBS = ("", "أيضا", "أيضاً", "أيضًا", "ايضا", "كذلك", "أيضا من الأخبار", "هنا", "في هذا السياق")
RELATED_NOUNS = ("مقالات", "أخبار", "اخبار", "مواضيع", "موضوعات", "قصص", "تقارير", "عناوين", "منشورات", "روابط")
RELATED_ADJ = ("ذات صلة", "ذات صله", "مشابهة", "متعلقة", "مرتبطة", "أخرى", "قد تهمك", "ننصح بها", "من القسم",
               "في نفس السياق", "الأحدث", "الأخيرة", "مختارة")
RELATED_OTHER = ("الأكثر قراءة", "الأكثر تداولا", "الأكثر تعليقا", "الأكثر مشاركة", "الأكثر زيارة", "آخر الأخبار",
                 "أحدث الأخبار", "المزيد من {cat}", "من {cat}", "اخترنا لكم", "المزيد")
# Some entries of TAG_HEADS, SOURCE_HEADS and AD_WORDS use a held-out-only word (نقلا, الخبر, محتوى,
# Tags): ``allowed`` refuses them and the draw is repeated.
TAG_HEADS = ("كلمات دلالية", "الكلمات الدلالية", "الكلمات المفتاحية", "كلمات البحث", "الوسوم", "وسوم", "تاغات",
             "هاشتاق", "مواضيع", "الموضوعات", "Tags", "Keywords", "Topics", "تصنيفات", "التصنيف", "مفاتيح")
SOURCE_HEADS = ("المصدر", "مصدر", "المصادر", "عن", "بحسب", "وفق", "وفقا لـ", "نقلا من", "المنشور في", "Source",
                "المصدر الأصلي", "نقل عن", "الخبر من")
# Share, follow and page tools (boilerplate)
SHARE_VERBS = ("شارك", "شاركوا", "أرسل", "مشاركة", "أعد نشر", "شارك على", "انشر على", "مشاركة على")
SHARE_OBJECTS = ("", "", "هذا المقال", "المقال", "القصة", "الموضوع", "مع أصدقائك")
FOLLOW_VERBS = ("تابعونا على", "تابعنا على", "انضم إلينا على", "انضموا إلينا على", "تواصل معنا على",
                "اشترك في حسابنا على", "تابعونا في", "صفحتنا على", "حسابنا على", "كن صديقنا على")
PLATFORMS = ("فيسبوك", "فيس بوك", "تويتر", "واتساب", "واتس اب", "لينكدإن", "إنستغرام", "انستجرام", "سناب شات",
             "تيك توك", "ماسنجر", "Facebook", "Twitter", "WhatsApp", "Instagram", "X")
PAGE_TOOLS = ("طباعة", "أرسل لصديق", "إرسال بالبريد", "البريد الإلكتروني", "حفظ", "حفظ المقال",
              "حجم الخط", "تكبير الخط", "تصغير الخط", "A+ A-", "أ+ أ-", "اشترك في النشرة", "اشترك الآن",
              "حمل التطبيق", "إبلاغ عن خطأ", "أضف إلى المفضلة", "استمع إلى المقال")
# Comment blocks (boilerplate)
COMMENT_VERBS = ("أضف", "اكتب", "اترك", "إضافة", "أرسل", "سجل")
COMMENT_OBJECTS = ("تعليقك", "تعليقا", "تعليقاً", "تعليق", "ردك", "رأيك هنا", "تعليقك هنا")
COMMENT_NOUNS = ("التعليقات", "تعليقات القراء", "آراء القراء", "الردود", "تعليقات الزوار", "النقاش")
COMMENT_OTHER = ("كن أول من يعلق", "سجل الدخول للتعليق", "لا توجد تعليقات بعد", "لا تعليقات", "يرجى الالتزام بآداب الحوار",
                 "التعليقات تعبر عن رأي أصحابها")
# Copyright lines (boilerplate)
RIGHTS = ("جميع الحقوق محفوظة", "الحقوق محفوظة", "حقوق النشر محفوظة", "جميع حقوق النشر محفوظة",
          "حقوق الطبع والنشر محفوظة", "جميع الحقوق محفوظة لـ {site}", "All rights reserved")
# Navigation trails (boilerplate)
HOMES = ("الرئيسية", "الرئيسية", "الرئيسة", "Home", "أخبار", "البداية")
TRAIL_SEPS = (" > ", " / ", " | ", " › ", " :: ", " < ", " ‹ ", " - ")
# Bylines: an author head, a date head, and the slots
AUTHOR_HEADS = ("بقلم", "كتب", "تحرير", "متابعة", "تقرير", "بواسطة", "الكاتب", "المحرر", "حوار", "ترجمة", "By")
DATE_HEADS = ("نشر في", "تاريخ النشر", "آخر تحديث", "محدث", "نشر", "التاريخ", "نشر يوم", "أضيف في", "Published",
              "Updated", "تحديث")
SEPS = (": ", " : ", " - ", " – ", "، ", " | ", " ")
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
        # the name alone in a wrap (a train template has only "({})"): line CRF probe, 600 held-out dev pages,
        # three page seeds, with the ad wraps below: section macro 91.2 / 91.6 / 90.1 -> 92.0 / 92.8 / 91.9
        if r.random() < 0.3:
            return r.choice(("{}", "*{}*", "- {} -", "-- {} --", "/{}/", "({}).", "< {} >", "| {} |"))
        wrap = r.choice(("{}", "{}", "{}", "*{}*", "- {}"))  # no «»: held-out symbols, always refused
        return f"{r.choice(SOURCE_HEADS)}{r.choice((':', ': ', ' : ', ' - ', '| ', ' '))}{wrap}".replace("  ", " ")
    if kind == "ad":
        # no "[{}]": a made-up "[إعلان]" taught that a line in square brackets is boilerplate, and the
        # held-out "[واس]" sources all read so (probe source F1 84-85 -> 92-95)
        w = r.choice(AD_WORDS)
        return r.choice(("{}", "- {} -", "-- {} --", "({})", "{} ", "— {} —", "▪ {}")).format(w).strip()
    if kind == "share":
        return _share(r)
    if kind == "comments":
        u = r.random()
        if u < 0.4:
            return f"{r.choice(COMMENT_VERBS)} {r.choice(COMMENT_OBJECTS)}" + r.choice(("", "", ":", " ..."))
        if u < 0.8:
            return r.choice(COMMENT_NOUNS) + r.choice(("", " ({n})", ": {n}", " [{n}]", " - {n}", " ({n_ar})"))
        return r.choice(COMMENT_OTHER)
    if kind == "copyright":
        parts = [r.choice(RIGHTS)]
        if r.random() < 0.7:
            parts.insert(r.randrange(2), r.choice(("©", "© {year}", "{year} ©", "(c) {year}", "© {year}-{year2}")))
        if r.random() < 0.5 and "{site}" not in parts[-1]:
            parts.insert(r.randrange(len(parts) + 1), r.choice(("{site}", "لـ {site}", "{site} {year}")))
        return r.choice((" ", " - ", " | ", "، ")).join(parts)
    if kind == "nav":
        sep = r.choice(TRAIL_SEPS)
        trail = [r.choice(HOMES)] + ["{cat}", "{sub}"][:r.choice((1, 1, 2))]
        head = r.choice(("", "", "", "أنت هنا: ", "أنت في: "))
        return head + sep.join(trail)
    if kind == "byline":
        return _byline(r)
    raise KeyError(kind)


def _share(r: random.Random) -> str:
    u = r.random()
    if u < 0.3:
        verb = r.choice(SHARE_VERBS)
        if verb.endswith("على"):
            return f"{verb} " + r.choice(("", ": ")) + r.choice((" | ", " ", " - ", "، ")).join(
                r.sample(PLATFORMS, r.randint(1, 3)))
        text = f"{verb} {r.choice(SHARE_OBJECTS)}".strip()
        if r.random() < 0.4:
            text += r.choice((": ", " ")) + r.choice((" | ", " ", " - ", "، ")).join(r.sample(PLATFORMS, r.randint(2, 4)))
        return text
    if u < 0.6:
        return f"{r.choice(FOLLOW_VERBS)} {r.choice(PLATFORMS)}"
    if u < 0.8:
        return r.choice((" | ", " ", " - ", " • ")).join(r.sample(PLATFORMS, r.randint(2, 5)))
    return r.choice((" | ", " - ", " ")).join(r.sample(PAGE_TOOLS, r.randint(1, 3)))


def _byline(r: random.Random) -> str:
    """A byline format with ``data.pages`` slots ({person}, {place}, {date}, {time}). No agency: an
    agency after an author head read like a source line (the line CRF probe's source F1 fell with it)."""
    who = "{person}"
    if r.random() < 0.6:
        who = r.choice(AUTHOR_HEADS) + r.choice(SEPS) + who
    if r.random() < 0.3:
        who += r.choice((" - {place}", "، {place}", " | {place}", " من {place}"))
    when = "{date}" + (r.choice((" ", " - ", " ، ", " الساعة ")) + "{time}" if r.random() < 0.4 else "")
    if r.random() < 0.6:
        when = r.choice(DATE_HEADS) + r.choice(SEPS) + when
    u = r.random()
    if u < 0.35:
        return who
    if u < 0.55:
        return when
    return who + r.choice(("\n", "\n", " - ", " | ", "، ")) + when


AUGMENTED_KINDS = ("bullet", "read_also_header", "inline_prefix", "related_header", "tags_header", "source", "ad",
                   "share", "comments", "copyright", "nav", "byline")


def allowed(kind: str, wording: str) -> bool:
    """False when ``wording`` is a held-out wording of ``kind``, has the letters of a held-out wording of
    any kind, uses a word that only held-out wordings of ``kind`` use or that only held-out wordings
    (of any kind) use, or uses a symbol that a held-out bullet or prefix uses."""
    if wording in WORDINGS[kind][1]:
        return False
    if _symbols(wording) & _HELD_OUT_SYMBOLS:
        return False
    if _words(wording) & _HELD_OUT_WORDS.get(kind, set()):
        return False
    return _letters(wording) not in _ANY_HELD_OUT_LETTERS or not _letters(wording)


def augmented_wording(kind: str, rng: random.Random) -> str:
    """A made-up wording of ``kind`` (one of ``AUGMENTED_KINDS``), never one of the held-out half."""
    for _ in range(50):
        w = _compose(kind, rng)
        if allowed(kind, w):
            return w
    return rng.choice(WORDINGS[kind][0])  # a train wording, if the draw keeps failing


_ARABIC_WORD = re.compile(r"[\u0621-\u064A]+")
# Every content word of a held-out wording, whatever its kind: never a made-up word (below).
_NONCE_BANNED = set().union(*_HELD_OUT_WORDS.values())


@lru_cache(maxsize=4)
def nonce_pool(texts: tuple[str, ...]) -> tuple[str, ...]:
    """Words for :func:`nonce_wording`: the Arabic words (3 to 9 letters) of ``texts`` (the teaser and
    related titles of the page builder), each once, in first-seen order, held-out wording words left out.
    Cached: the builder asks for the pool of the same titles once per 100 pages."""
    seen: dict[str, None] = {}
    for t in texts:
        for w in _ARABIC_WORD.findall(t):
            if 3 <= len(w) <= 9 and _letters(w) not in _NONCE_BANNED:
                seen.setdefault(w, None)
    return tuple(seen)


def nonce_wording(kind: str, wording: str, pool: tuple[str, ...], rng: random.Random, share: float = 0.6) -> str:
    """``wording`` with its Arabic words (not its slots, symbols, digits or Latin words) each replaced, with
    probability ``share`` and at least one, by a word drawn from ``pool``: furniture whose words the
    model has never seen in that role ("اقرأ أيضا:" -> "اقرأ المحافظة:"), so that it learns the line's
    place, shape and neighbours rather than its words. Never a held-out wording (``allowed``); the
    wording as it is when no Arabic word is there or no draw is allowed."""
    parts = _SLOT.split(wording)  # the text between the slots (kept as they are)
    slots = _SLOT.findall(wording)
    spots = [(i, m.span()) for i, part in enumerate(parts) for m in _ARABIC_WORD.finditer(part)]
    if not spots or not pool:
        return wording
    for _ in range(20):
        pick = [sp for sp in spots if rng.random() < share] or [rng.choice(spots)]
        out = list(parts)
        for i, (a, b) in sorted(pick, reverse=True):  # right to left, so the earlier spans stay put
            out[i] = out[i][:a] + rng.choice(pool) + out[i][b:]
        w = "".join(p + s for p, s in zip(out, slots + [""]))
        if allowed(kind, w):
            return w
    return wording


def arabic_digits(n: int) -> str:
    return str(n).translate(_ARABIC_DIGITS)
