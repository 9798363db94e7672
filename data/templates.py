"""The furniture of Arabic news sites: header wordings, byline and date formats, boilerplate lines,
bullets, and named site templates (layouts).

Every wording list and the template list come in two halves, ``train`` and ``held_out``. Training
pages use only the train half; test pages use only the held-out half, so the test split measures
whether the model learnt the page's structure rather than one site's words. Nothing here is copied
from a dataset: these are the generic phrases that many sites use.
"""
from __future__ import annotations

from dataclasses import dataclass

# kind -> (train wordings, held-out wordings). "{}" marks where the value goes.
WORDINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "read_also_header": (
        ("اقرأ أيضا:", "اقرأ أيضاً:", "إقرأ أيضاً:", "اقرأ ايضا", "إقرأ أيضا", "ذات صلة", "ذات صلة:",
         "اقرأ أيضًا", "قد يهمك أيضا:", "اقرأ كذلك:", "اقرأ أيضا..", "إقرأ ايضاً"),
        ("طالع أيضا:", "شاهد أيضا:", "يهمك أيضاً", "للمزيد اقرأ:", "طالع كذلك"),
    ),
    "inline_prefix": (
        ("اقرأ أيضا: ", "إقرأ أيضاً: ", "اقرأ أيضا | ", ">> ", "ذات صلة: ", "اقرأ ايضا.. ", "اقرأ كذلك: "),
        ("طالع أيضا: ", "« ", "شاهد أيضاً | ", "▶ ", "للمزيد: "),
    ),
    "related_header": (
        ("مقالات مشابهة", "أخبار ذات صلة", "اقرأ المزيد", "مواضيع ذات صلة", "أخبار متعلقة",
         "الأكثر قراءة", "المزيد من الأخبار", "أخبار ذات صلة:", "موضوعات متعلقة", "اخبار ذات صله"),
        ("مقالات ذات صلة", "قد يعجبك أيضا", "أخبار مشابهة:", "المزيد من الأخبار ذات الصلة", "الأكثر مشاهدة"),
    ),
    "source": (
        ("المصدر: {}", "المصدر : {}", "المصدر - {}", "({})", "المصدر| {}", "المصدر:{}"),
        ("مصدر الخبر: {}", "نقلاً عن: {}", "[{}]", "المرجع: {}"),
    ),
    "tags_header": (
        ("كلمات دلالية:", "الوسوم:", "وسوم:", "الكلمات المفتاحية:", "كلمات دلالية", "الوسوم"),
        ("كلمات مفتاحية:", "الكلمات الدلالية", "هاشتاغ:", "Tags:"),
    ),
    "byline": (
        ("{person}", "بقلم: {person}", "كتب: {person}", "{place}: {person}", "{place} - {agency}",
         "{date}", "{date} - {time}", "نشر في: {date}", "آخر تحديث: {date} {time}", "{place} - {date}",
         "{person} - {place}", "{place}- {agency}:", "تاريخ النشر: {date}", "{person}\n{date}",
         "{place} - {person}\n{date} {time}"),
        ("كتبت: {person}", "إعداد: {person}", "{date} | {time}", "تم النشر: {date}", "{person} ({place})",
         "مراسلنا في {place}\n{date}", "نشر بتاريخ {date}"),
    ),
    "share": (
        ("شارك هذا المقال", "شارك:", "مشاركة", "شارك على فيسبوك", "فيسبوك تويتر واتساب", "تابعونا على تويتر",
         "تابعنا على فيسبوك", "انشر على: فيسبوك | تويتر | لينكدإن", "طباعة", "طباعة | إرسال لصديق",
         "حجم الخط: + -", "أرسل إلى صديق", "اشترك في النشرة البريدية", "حمل تطبيقنا الآن"),
        ("شاركها", "انشر الخبر", "تابعوا قناتنا على يوتيوب", "تابع آخر الأخبار عبر تطبيق تلغرام", "نسخ الرابط"),
    ),
    "ad": (
        ("إعلان", "- إعلان -", "Advertisement", "مساحة إعلانية", "إعلانات"),
        ("مساحة مدفوعة", "محتوى مدفوع", "- ADVERTISEMENT -"),
    ),
    "copyright": (
        ("© {year} جميع الحقوق محفوظة", "جميع الحقوق محفوظة © {site} {year}", "حقوق النشر محفوظة لـ {site}",
         "© {site} - جميع الحقوق محفوظة"),
        ("© كل الحقوق محفوظة {year}", "جميع الحقوق محفوظة ل {site} ©", "Copyright © {year} {site}"),
    ),
    "comments": (
        ("أضف تعليقك", "التعليقات (0)", "لا توجد تعليقات", "اترك تعليقاً", "إضافة تعليق", "عدد التعليقات: {n}"),
        ("شارك برأيك", "عرض التعليقات", "التعليقات مغلقة", "{n} تعليقات"),
    ),
    "nav": (
        ("الرئيسية > {cat}", "الرئيسية / {cat} / {sub}", "أنت هنا: الرئيسية » {cat}", "الرئيسية | أخبار | {cat}",
         "الرئيسية » {cat} » {sub}"),
        ("الصفحة الرئيسية ← {cat}", "{cat} > {sub}", "الرئيسية - {cat}"),
    ),
    "bullet": (
        ("•", "-", "*", "", "{n}.", "{n}-", "●"),
        ("◀", "{n})", "■", "»"),
    ),
    "tag_separator": (("، ", " - ", " | ", "\n"), (" ", " / ")),
}

CATEGORIES = ("أخبار", "سياسة", "اقتصاد", "رياضة", "محليات", "عربي ودولي", "ثقافة وفن", "تقنية", "صحة", "منوعات")
SITES = ("الخبر اليوم", "بوابة الأنباء", "صحيفة المساء", "الوطن الرقمية", "موقع النهار العربي", "أخبار الخليج الآن")

# Labelled fill-ins for furniture slots: (text, entity label or None). Invented names, real places.
PERSONS = tuple((f"{a} {b}", "PERS") for a, b in (
    ("أحمد", "الزهراني"), ("سارة", "العتيبي"), ("محمد", "الشمري"), ("ليلى", "حداد"), ("خالد", "المطيري"),
    ("منى", "الفارس"), ("يوسف", "النعيمي"), ("هدى", "القحطاني"), ("عمر", "الدوسري"), ("رنا", "سليمان"),
    ("فيصل", "الحربي"), ("نادية", "عبد الرحمن"), ("طارق", "السويدي"), ("دينا", "منصور"), ("سامي", "البلوشي"),
))
PLACES = tuple((p, "LOC") for p in (
    "الرياض", "جدة", "الدمام", "القاهرة", "بيروت", "عمان", "دبي", "الكويت", "تونس", "الرباط", "بغداد",
    "لندن", "باريس", "واشنطن", "أبها", "مكة المكرمة", "المدينة المنورة", "الدوحة", "مسقط", "الخرطوم",
))
AGENCIES = (("وكالات", None), ("رويترز", "ORG"), ("واس", "ORG"), ("فرانس برس", "ORG"), ("الأناضول", "ORG"),
            ("متابعات", None), ("أ ف ب", "ORG"), ("د ب أ", "ORG"), ("سكاي نيوز عربية", "ORG"), ("صحف", None),
            ("وكالة الأنباء السعودية", "ORG"), ("الجزيرة", "ORG"))

MONTHS = ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر", "ديسمبر")
LEVANT_MONTHS = ("كانون الثاني", "شباط", "آذار", "نيسان", "أيار", "حزيران", "تموز", "آب", "أيلول",
                 "تشرين الأول", "تشرين الثاني", "كانون الأول")
HIJRI_MONTHS = ("محرم", "صفر", "ربيع الأول", "ربيع الآخر", "جمادى الأولى", "جمادى الآخرة", "رجب", "شعبان",
                "رمضان", "شوال", "ذو القعدة", "ذو الحجة")
WEEKDAYS = ("الاثنين", "الثلاثاء", "الأربعاء", "الخميس", "الجمعة", "السبت", "الأحد")  # datetime.weekday() order
DATE_FORMATS = ("{d} {month} {y}", "{dd}/{mm}/{y}", "{y}-{mm}-{dd}", "{weekday} {d} {month} {y}",
                "{weekday}، {d} {month} {y}", "{d} {levant} {y}", "{d} {hmonth} {hy} هـ",
                "{weekday} {d} {hmonth} {hy}هـ - {d2} {month} {y}م", "{dd}.{mm}.{y}", "منذ {n} ساعات")
TIME_FORMATS = ("{h}:{mi}", "{h}:{mi} م", "{h}:{mi} ص", "الساعة {h}:{mi}", "{h}:{mi} مساءً", "{hh}:{mi} GMT")


@dataclass(frozen=True)
class Template:
    """A site style. ``order`` lists the parts top to bottom; a part is dropped with ``p_drop``
    (title and body are never dropped when in ``order``)."""

    name: str
    order: tuple[str, ...]
    blank: float = 1.0  # probability of a blank line between two lines
    p_drop: float = 0.3  # probability of leaving out each optional part
    inline: float = 0.2  # probability of inline read-also lines inside the body
    indent: str = ""  # prefix of list items (the seed page indents its bullets by two spaces)
    header: float = 0.9  # probability that read_also / related blocks have their header line
    teaser_paragraphs: tuple[int, int] = (0, 3)


FULL = ("nav", "title", "byline", "share", "body", "source", "tags", "read_also", "related", "comments", "copyright")

TEMPLATES: tuple[tuple[Template, ...], tuple[Template, ...]] = (
    (  # train
        Template("classic", FULL),
        Template("compact", FULL, blank=0.0, p_drop=0.4),
        Template("agency", ("title", "byline", "body", "source", "related", "copyright"), blank=1.0, p_drop=0.2),
        Template("portal", ("nav", "ad", "title", "share", "byline", "body", "tags", "share", "related", "ad",
                            "comments", "copyright"), blank=0.5),
        Template("blog", ("title", "byline", "body", "tags", "comments"), blank=1.0, inline=0.4),
        Template("seedlike", ("body", "source", "tags", "read_also", "related"), indent="  ", p_drop=0.2),
        Template("tabloid", ("nav", "title", "body", "read_also", "read_also", "related"), blank=0.3, inline=0.5),
        Template("wire", ("byline", "title", "body", "source"), blank=0.0, p_drop=0.2, inline=0.1),
        Template("magazine", ("title", "byline", "ad", "body", "share", "read_also", "tags", "copyright"),
                 blank=1.0, teaser_paragraphs=(1, 4)),
        Template("mobile", ("title", "byline", "body", "related", "share", "copyright"), blank=0.0, indent=" ",
                 header=0.7),
    ),
    (  # held out: orders and combinations that training never sees
        Template("heldout_tags_first", ("nav", "tags", "title", "byline", "body", "related", "copyright"), blank=1.0),
        Template("heldout_byline_last", ("title", "body", "byline", "source", "read_also", "comments"), blank=0.0,
                 inline=0.4),
        Template("heldout_related_top", ("title", "related", "byline", "body", "share", "tags"), blank=0.6,
                 indent="   "),
        Template("heldout_dense", ("ad", "title", "source", "body", "read_also", "related", "share", "ad",
                                   "copyright"), blank=0.2, header=0.6, teaser_paragraphs=(1, 2)),
    ),
)


def split_half(split: str) -> int:
    """0 (train half) or 1 (held-out half) of the wordings/templates used by a split."""
    if split not in ("train", "held_out"):
        raise ValueError(f"unknown wording set {split!r}; expected 'train' or 'held_out'")
    return 0 if split == "train" else 1


def wordings(kind: str, which: str) -> tuple[str, ...]:
    return WORDINGS[kind][split_half(which)]


def templates(which: str) -> tuple[Template, ...]:
    return TEMPLATES[split_half(which)]
