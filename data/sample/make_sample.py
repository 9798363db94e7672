"""Write data/sample/{train,dev,test}.jsonl and examples/*.txt: small labelled pages that the project
wrote itself, so that the quickstart and the tests run without ../shared.

The Arabic sentences below are invented news-style MSA. Names of people, companies and events are
made up; places are real cities and countries. Slots mark entities: {P} person, {L} place,
{O} organisation, {M} other (MISC); a prefix letter attaches a clitic that stays inside the entity,
as in ANERcorp: {wL} = "و" + place, {bL} = "ب" + place. Every page is built by the same builder as
the real pages (data.pages), with every section annotated (no entity_regions).

    python data/sample/make_sample.py        # deterministic: same files for the same code
"""
from __future__ import annotations

import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from data.pages import Article, build_page, build_pages  # noqa: E402
from data.schema import Span, write_jsonl  # noqa: E402
from data.templates import templates  # noqa: E402

PEOPLE = ["سامر العبدلي", "نورة الخالدي", "عادل بن حمدان", "ريم الأنصاري", "ماجد الشهري", "هشام القرشي",
          "لمى العوضي", "بدر الرشيدي", "جمال الدين نصار", "وفاء الحسيني", "كريم المصري", "ياسر الغامدي",
          "إيمان الفاسي", "زياد الكبيسي", "أمل بوعزة", "صالح المهيري", "رامي جابر", "سلمى الطحان",
          "فهد العنقري", "مروان الحلبي"]
PLACES = ["الرياض", "جدة", "القاهرة", "عمان", "بيروت", "دبي", "الكويت", "تونس", "الرباط", "مسقط", "الدوحة",
          "بغداد", "الخرطوم", "نواكشوط", "المنامة", "الإسكندرية", "السعودية", "مصر", "الأردن", "المغرب",
          "الجزائر", "العراق", "لبنان", "فرنسا", "ألمانيا", "اليابان", "البرازيل", "كندا"]
ORGS = ["مجموعة الرواد القابضة", "بنك الاتحاد الوطني", "نادي الصقور الرياضي", "شركة النخيل للاتصالات",
        "الهيئة العامة للطيران المدني", "جامعة الساحل", "منظمة الصحة العالمية", "وزارة الصحة",
        "مجلس الشورى", "شركة الأفق للطاقة", "الاتحاد العربي لكرة السلة", "مؤسسة البيان الخيرية",
        "هيئة السوق المالية", "مستشفى الشفاء التخصصي", "مركز الدراسات الاستراتيجية"]
EVENTS = ["كأس الخليج", "معرض الكتاب الدولي", "مهرجان الربيع الثقافي", "منتدى الاستثمار العربي",
          "بطولة آسيا للشباب", "مؤتمر المناخ الإقليمي", "جائزة الإبداع الإعلامي", "أسبوع التقنية العربي"]

TITLES = {
    "politics": ["{P} يبحث مع نظيره في {L} تعزيز التعاون الثنائي", "{O} يقر خطة جديدة لدعم الشباب في {L}",
                 "وزير خارجية {L} يصل إلى {L2} في زيارة رسمية"],
    "economy": ["{O} يعلن أرباحا قياسية في الربع الثالث", "ارتفاع صادرات {L} غير النفطية بنسبة 12%",
                "{O} توقع اتفاقية شراكة مع مستثمرين من {L}"],
    "sports": ["{O} يتأهل إلى نهائي {M}", "المدرب {P}: نسعى للفوز بلقب {M}", "منتخب {L} يستعد لمواجهة {L2} وديا"],
    "health": ["{O} تطلق حملة وطنية للتطعيم في {L}", "دراسة جديدة من {O} تحذر من قلة النوم",
               "افتتاح مركز طبي متخصص في {L}"],
    "culture": ["انطلاق {M} في {L} بمشاركة واسعة", "{P} يتوج في {M} عن روايته الأولى",
                "{L} تستضيف {M} الشهر المقبل"],
}

SENTENCES = {
    "politics": [
        "استقبل {P} في {L} اليوم الأحد وفدا رفيع المستوى برئاسة {P2}، وجرى خلال اللقاء بحث العلاقات الثنائية.",
        "وأكد {P} أن بلاده حريصة على توسيع التعاون مع {L2} في مجالات الأمن والتجارة والتعليم.",
        "وقال {P2} في مؤتمر صحفي عقده بعد الاجتماع إن المحادثات كانت بناءة وصريحة.",
        "وصادق {O} على مشروع القانون بعد نقاش استمر ثلاث جلسات متتالية.",
        "ويأتي هذا التحرك في وقت تشهد فيه المنطقة تطورات متسارعة على أكثر من صعيد.",
        "وأشار البيان الختامي إلى ضرورة متابعة تنفيذ الاتفاقيات الموقعة بين {L} {wL2}.",
        "من جهته، دعا {P2} إلى عقد اجتماع دوري للجنة المشتركة مرة كل ستة أشهر.",
        "وكان {P} قد أجرى اتصالا هاتفيا مع نظيره الأسبوع الماضي تناول فيه القضايا الإقليمية.",
    ],
    "economy": [
        "أعلن {O} عن تحقيق صافي أرباح بلغ 450 مليون ريال خلال الأشهر التسعة الأولى من العام.",
        "وأوضح الرئيس التنفيذي {P} أن النتائج تعكس نجاح خطة التوسع التي بدأت قبل عامين.",
        "وتوقع محللون في {O2} أن يستمر النمو خلال العام المقبل مع تحسن الطلب المحلي.",
        "وارتفعت صادرات {L} إلى {L2} بنسبة 8 في المئة مقارنة بالفترة نفسها من العام الماضي.",
        "وتشمل الاتفاقية إنشاء مصنع جديد {bL} بطاقة إنتاجية تصل إلى مئة ألف طن سنويا.",
        "وقال {P2}، المستشار الاقتصادي، إن قطاع الخدمات بات المحرك الأبرز للاقتصاد.",
        "وأغلق المؤشر العام للسوق مرتفعا بمقدار 35 نقطة وسط تداولات نشطة.",
        "ويسعى {O} إلى رفع حصته السوقية عبر إطلاق منتجات رقمية جديدة للأفراد والشركات.",
    ],
    "sports": [
        "تأهل {O} إلى المباراة النهائية من {M} بعد فوزه على منافسه بهدفين مقابل هدف.",
        "وسجل المهاجم {P2} هدف الفوز في الدقيقة الثمانين بتسديدة قوية من خارج منطقة الجزاء.",
        "وقال المدرب {P} إن فريقه قدم مباراة كبيرة رغم الغيابات المؤثرة في خط الوسط.",
        "ويلتقي الفريق في النهائي مع منتخب {L2} الذي تغلب على منافسه بركلات الترجيح.",
        "وتقام المباراة النهائية على ملعب المدينة الرياضية {bL} مساء الجمعة المقبل.",
        "وأعلن {O2} عن طرح تذاكر المباراة إلكترونيا ابتداء من صباح الغد.",
        "ويخوض المنتخب معسكرا تدريبيا في {L} يستمر عشرة أيام استعدادا للاستحقاقات المقبلة.",
        "وأكد {P2} جاهزيته الكاملة للمشاركة بعد تعافيه من الإصابة التي أبعدته شهرا.",
    ],
    "health": [
        "أطلقت {O} حملة وطنية للتطعيم تستهدف أكثر من مليوني طفل في مختلف مناطق {L}.",
        "وقال الدكتور {P}، مدير الحملة، إن فرقا ميدانية ستزور المدارس والمراكز الصحية.",
        "وحذرت دراسة أجراها باحثون في {O2} من أن قلة النوم ترفع خطر الإصابة بأمراض القلب.",
        "وشملت الدراسة ثلاثة آلاف مشارك من {L} {wL2} على مدى خمس سنوات.",
        "ودعت الدكتورة {P2} إلى الحد من استخدام الهواتف الذكية قبل النوم بساعة على الأقل.",
        "ويضم المركز الجديد أربعين سريرا وغرفا مجهزة لعمليات القلب المفتوح.",
        "وأشارت {O} إلى أن نسبة التغطية بالتطعيم تجاوزت 90 في المئة العام الماضي.",
        "ومن المقرر أن يبدأ المركز استقبال المرضى مطلع الشهر المقبل.",
    ],
    "culture": [
        "انطلقت في {L} فعاليات {M} بمشاركة أكثر من ثلاثمئة دار نشر من عشرين دولة.",
        "وافتتح الحدث {P} الذي أشاد بالإقبال الكبير من الزوار في اليوم الأول.",
        "وفاز الكاتب {P2} بالجائزة عن روايته التي تتناول حياة الصيادين على ساحل {L2}.",
        "ويتضمن البرنامج أمسيات شعرية وورش عمل للأطفال وندوات حول مستقبل الكتاب الرقمي.",
        "وقالت {O} المنظمة إن الدورة الحالية تحتفي بالتراث الشعبي {wL2} والمنطقة.",
        "وتستمر الفعاليات عشرة أيام وتفتح أبوابها للجمهور من العاشرة صباحا حتى العاشرة مساء.",
        "وشهد حفل الختام تكريم عدد من الفنانين الرواد تقديرا لعطائهم الطويل.",
        "وأعلنت اللجنة أن الدورة المقبلة من {M} ستقام في {L2}.",
    ],
}

SLOT = re.compile(r"\{([wb]?)([PLOM])(2?)\}")
TYPES = {"P": "PERS", "L": "LOC", "O": "ORG", "M": "MISC"}
PREFIX = {"": "", "w": "و", "b": "ب"}


def realise(template: str, cast: dict[str, str]) -> tuple[str, list[Span]]:
    """Fill the slots with the article's cast; each slot becomes one entity (clitic included)."""
    text, ents, pos = "", [], 0
    for m in SLOT.finditer(template):
        text += template[pos:m.start()]
        name = PREFIX[m.group(1)] + cast[m.group(2) + m.group(3)]
        ents.append(Span(TYPES[m.group(2)], len(text), len(text) + len(name)))
        text += name
        pos = m.end()
    return text + template[pos:], ents


def make_article(k: int, rng: random.Random) -> Article:
    topic = rng.choice(sorted(SENTENCES))
    p1, p2 = rng.sample(PEOPLE, 2)
    l1, l2 = rng.sample(PLACES, 2)
    o1, o2 = rng.sample(ORGS, 2)
    cast = {"P": p1, "P2": p2, "L": l1, "L2": l2, "O": o1, "O2": o2, "M": rng.choice(EVENTS)}
    title, title_ents = realise(rng.choice(TITLES[topic]), cast)
    sents = rng.sample(SENTENCES[topic], rng.randint(3, 7))
    paras, ents = [], []
    while sents:
        n = rng.randint(1, 2)
        take, sents = sents[:n], sents[n:]
        text, es = "", []
        for s in take:
            t, e = realise(s, cast)
            off = len(text) + 1 if text else 0
            es += [Span(x.label, x.start + off, x.end + off) for x in e]
            text = f"{text} {t}" if text else t
        paras.append(text)
        ents.append(es)
    return Article(id=f"sample-{k}", title=title, paragraphs=paras, para_entities=ents, title_entities=title_ents,
                   annotate="all", meta={"topic": topic})


def main(out: Path = ROOT / "data" / "sample", examples: Path = ROOT / "examples") -> None:
    rng = random.Random(2024)
    out.mkdir(parents=True, exist_ok=True)
    plan = {"train": (40, 20, "train"), "dev": (10, 8, "train"), "test": (10, 8, "held_out")}
    k = 0
    for split, (n_pages, n_furniture, which) in plan.items():
        arts = [make_article(k + i, rng) for i in range(n_pages + n_furniture)]
        k += len(arts)
        pages = build_pages(arts[:n_pages], arts, rng, which=which, id_prefix=f"sample-{split}-")
        n = write_jsonl(out / f"{split}.jsonl", pages)
        print(f"{split}: {n} pages", file=sys.stderr)
    examples.mkdir(parents=True, exist_ok=True)
    arts = [make_article(k + i, rng) for i in range(12)]
    for name, tmpl in (("news-page-1.txt", "classic"), ("news-page-2.txt", "seedlike")):
        t = next(x for x in templates("train") if x.name == tmpl)
        page = build_page(arts.pop(0), arts, rng, t)
        (examples / name).write_text(page.text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
