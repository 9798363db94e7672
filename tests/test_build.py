"""The page builder: valid pages, deterministic for a seed, held-out furniture only in test, entity
gold only where the material is labelled."""
from __future__ import annotations

import importlib.util
import json
import random
import zipfile

import pytest

from conftest import ROOT, shared_path
from data.build import main, parse_args
from data.pages import build_pages
from data.schema import Page, load_pages
from data.templates import TEMPLATES, WORDINGS


def _sample_module():
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "data" / "sample" / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _articles(n: int, seed: int = 0):
    mod, rng = _sample_module(), random.Random(seed)
    return [mod.make_article(k, rng) for k in range(n)]


def test_build_pages_is_deterministic_and_valid():
    arts = _articles(30)
    a = build_pages(arts[:20], arts, random.Random(5))
    b = build_pages(arts[:20], arts, random.Random(5))
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    assert [p.to_dict() for p in a] != [p.to_dict() for p in build_pages(arts[:20], arts, random.Random(6))]
    for p in a:
        Page.from_dict(p.to_dict())
        assert p.sections and p.entities is not None
        body = [s for s in p.sections if s.label == "body"]
        assert body and any(s.label != "body" for s in p.sections)


def test_wordings_and_templates_are_held_out():
    for kind, (train, held) in WORDINGS.items():
        assert held and not set(train) & set(held), kind
    assert not {t.name for t in TEMPLATES[0]} & {t.name for t in TEMPLATES[1]}
    assert not {t.order for t in TEMPLATES[0]} & {t.order for t in TEMPLATES[1]}


CONLL = "\n\n".join(
    f"وقال O\nأحمد B-PERS\nالعلي I-PERS\nفي O\nالرياض، B-LOC\nإن O\nشركة B-ORG\nالنور{k} I-ORG\nتوسعت O\n. O"
    for k in range(40)) + "\n"


def _news(day: str, n: int) -> list[dict]:
    return [{"source": "src", "url": f"http://n/{day}/{k}", "date_extracted": f"{day} 08:00:00",
             "title": f"عنوان خبر رقم {k} عن السوق المحلية", "author": "الرياض - واس",
             "content": "\n\n".join(f"فقرة {j} من الخبر {k} تتحدث عن الأسواق والطقس." for j in range(4))}
            for k in range(n)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    (tmp / "doc.txt").write_text(CONLL, encoding="utf-8")
    (tmp / "heldout.txt").write_text(CONLL.replace("النور", "الضياء"), encoding="utf-8")
    for day in ("2015-07-21", "2015-08-10"):
        with zipfile.ZipFile(tmp / f"{day}.zip", "w") as z:
            z.writestr(f"{day}.json", json.dumps(_news(day, 60), ensure_ascii=False))
    args = ["--conll", str(tmp / "doc.txt"), "--test-conll", str(tmp / "heldout.txt"), "--news", str(tmp),
            "--sentences-per-doc", "4", "--pages", "40", "8", "8", "--seed", "3", "--quiet"]
    first = main(args + ["--out", str(tmp / "a")])
    main(args + ["--out", str(tmp / "b")])
    return tmp, first


def test_cli_writes_valid_deterministic_splits(built):
    tmp, result = built
    for split in ("train", "dev", "test"):
        a = (tmp / "a" / f"{split}.jsonl").read_bytes()
        assert a == (tmp / "b" / f"{split}.jsonl").read_bytes()
        pages = load_pages(tmp / "a" / f"{split}.jsonl")
        assert len(pages) == len(result[split]) > 0
        assert len({p.id for p in pages}) == len(pages)
    assert len(result["train"]) == 40


def test_test_split_uses_only_held_out_furniture(built):
    _, result = built
    held = {w for _, h in WORDINGS.values() for w in h}
    train_used = {w for p in result["train"] for w in p.meta["furniture"]}
    test_used = {w for p in result["test"] for w in p.meta["furniture"]}
    assert train_used and test_used and not train_used & held and test_used <= held
    assert {p.meta["template"] for p in result["test"]} <= {t.name for t in TEMPLATES[1]}
    train_lines = {ln.strip() for p in result["train"] for ln in p.text.split("\n")}
    for header in WORDINGS["read_also_header"][1] + WORDINGS["related_header"][1]:
        assert header not in train_lines


def test_entity_gold_only_on_conll_bodies(built):
    _, result = built
    for split, pages in result.items():
        for p in pages:
            if p.meta["body"].startswith(("doc-", "heldout-")):
                body = [(s.start, s.end) for s in p.sections if s.label == "body"]
                assert p.entity_regions and all(any(a <= s and e <= b for a, b in body) for s, e in p.entity_regions)
                assert {p.text[e.start:e.end] for e in p.entities} >= {"أحمد العلي", "الرياض"}
                assert split == "test" or "الضياء" not in p.text  # test-only documents stay in test
            else:
                assert p.entities is None and p.entity_regions is None  # raw news: sections only
                assert split != "test" or "/2015-08-10/" in p.meta["url"]  # reserved days feed test only
                assert split == "test" or "/2015-08-10/" not in p.meta["url"]


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for opt in ("--conll", "--test-conll", "--news", "--sentences-per-doc", "--pages", "--seed", "--out",
                "--dev-templates", "--test-templates", "--conll-fraction", "--no-reserved-test"):
        assert opt in out


def test_build_over_a_tiny_subset_of_shared(tmp_path):
    conll = shared_path("datasets/AQMAR/articles/Damascus.txt")
    news = shared_path("datasets/SaudiNewsNet/dataset/2015-08-09.zip")
    result = main(["--conll", str(conll), "--news", str(news), "--pages", "30", "6", "4", "--quiet",
                   "--out", str(tmp_path)])
    assert len(result["train"]) == 30 and len(result["dev"]) == 6
    assert result["test"] == []  # no reserved day and no --test-conll given: nothing to test on
    assert any(p.entities for p in result["train"]) and any(p.entities is None for p in result["train"])
    for p in load_pages(tmp_path / "train.jsonl"):
        assert {s.label for s in p.sections} >= {"body"}


def test_augmented_wordings_never_give_a_held_out_wording():
    from data.augment import AUGMENTED_KINDS, SYMBOLS, _letters, allowed, augmented_wording

    rng = random.Random(0)
    import unicodedata

    held_symbols = {ch for k in ("bullet", "inline_prefix") for w in WORDINGS[k][1] for ch in w
                    if unicodedata.category(ch)[0] in "SP" and ch not in "{}:.-|()[]"}
    assert held_symbols == {"«", "»", "■", "▶", "◀"}
    assert held_symbols and not held_symbols & set(SYMBOLS)
    for kind in AUGMENTED_KINDS:
        held = {_letters(w) for w in WORDINGS[kind][1]} - {""}
        made = {augmented_wording(kind, rng) for _ in range(3000)}
        assert len(made) > 30, kind  # many wordings, not a handful
        assert not made & set(WORDINGS[kind][1]), kind
        assert not {_letters(w) for w in made} & held, kind
        assert not {ch for w in made for ch in w} & held_symbols, kind
        assert all(not allowed(kind, w) for w in WORDINGS[kind][1]), kind


def test_made_up_sources_can_be_the_name_alone_and_no_made_up_line_opens_a_square_bracket():
    from data.augment import _letters, augmented_wording

    rng = random.Random(0)
    sources = [augmented_wording("source", rng) for _ in range(2000)]
    alone = [w for w in sources if not _letters(w)]  # the name alone, only symbols around its slot
    assert 300 < len(alone) < 1000 and len(set(alone)) >= 6
    assert all(w.count("{}") == 1 for w in alone)
    assert "[{}]" not in alone and "[{}]" in WORDINGS["source"][1]  # the held-out wrap stays held out
    ads = [augmented_wording("ad", rng) for _ in range(2000)]
    assert not [w for w in sources + ads if w.lstrip().startswith("[")]


def test_augmented_wordings_leave_out_the_held_out_content_words():
    from data.augment import _HELD_OUT_WORDS, AUGMENTED_KINDS, _words, allowed, augmented_wording

    # the words that make the held-out share, ad and byline lines new stay new
    assert {"يوتيوب", "تلغرام", "قناتنا", "الرابط"} <= _HELD_OUT_WORDS["share"]
    assert {"مدفوع", "محتوي"} <= _HELD_OUT_WORDS["ad"] and {"كتبت", "مراسلنا"} <= _HELD_OUT_WORDS["byline"]
    assert "المصدر" not in _HELD_OUT_WORDS["source"] and "مصدر" not in _HELD_OUT_WORDS["source"]  # a train word
    assert not allowed("share", "تابعونا على يوتيوب") and allowed("share", "تابعونا على إنستغرام")
    rng = random.Random(1)
    for kind in AUGMENTED_KINDS:
        made = [augmented_wording(kind, rng) for _ in range(2000)]
        assert not set().union(*map(_words, made)) & _HELD_OUT_WORDS[kind], kind
    bylines = {augmented_wording("byline", rng) for _ in range(500)}
    assert any("{person}" in w for w in bylines) and any("{date}" in w for w in bylines)
    assert any("\n" in w for w in bylines)  # two-line bylines too


@pytest.mark.parametrize("kind", ["share", "comments", "copyright", "nav", "ad"])
def test_made_up_boilerplate_fills_its_slots(kind):
    from data.pages import Furniture

    f = Furniture(random.Random(3), "train", augment=1.0)
    lines = [piece.text for _ in range(400) for piece in f.boilerplate(kind)]
    assert len(set(lines)) > 30
    assert not [t for t in lines if "{" in t or "}" in t or not t.strip()]


def _made_up_pages(arts, **share):
    """Pages built with ``share`` (augment= or nonce=) twice, to be equal, and the furniture wordings that
    are in none of the lists; pages built without it use the lists' wordings only."""
    pages = build_pages(arts[:30], arts, random.Random(5), **share)
    assert [p.to_dict() for p in build_pages(arts[:30], arts, random.Random(5), **share)] == [p.to_dict() for p in pages]
    listed = {w for pair in WORDINGS.values() for half in pair for w in half}
    assert not {w for p in build_pages(arts[:30], arts, random.Random(5)) for w in p.meta["furniture"]} - listed
    return pages, listed, {w for p in pages for w in p.meta["furniture"]} - listed


def test_augmented_pages_are_valid_and_vary_the_furniture():
    arts = _articles(40)
    aug, _, made = _made_up_pages(arts, augment=0.8)
    assert len(made) > 20
    for p in aug:
        Page.from_dict(p.to_dict())
        assert p.sections and any(s.label == "body" for s in p.sections)
    with pytest.raises(ValueError, match="train half"):
        build_pages(arts[:2], arts, random.Random(5), which="held_out", augment=0.5)


@pytest.mark.parametrize("flag", ["--augment", "--layouts", "--nonce"])
@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_share_outside_0_1_is_a_usage_error(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--news", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_random_layouts_vary_the_order_with_train_wordings_only():
    from data.pages import LAYOUT_PARTS

    arts = _articles(40)
    plain = build_pages(arts[:30], arts, random.Random(5))
    lay = build_pages(arts[:30], arts, random.Random(5), layouts=1.0)
    assert [p.to_dict() for p in build_pages(arts[:30], arts, random.Random(5), layouts=1.0)] == [p.to_dict() for p in lay]
    assert [p.to_dict() for p in build_pages(arts[:30], arts, random.Random(5), layouts=0.0)] == [p.to_dict() for p in plain]
    assert all(p.meta["template"].endswith("+layout") for p in lay)
    assert not any(p.meta["template"].endswith("+layout") for p in plain)
    orders = {tuple(dict.fromkeys(s.label for s in p.sections)) for p in lay}
    assert len({o[0] for o in orders}) >= 4 and len(orders) >= 20  # many orders, many first parts
    held = {w for pair in WORDINGS.values() for w in pair[1]}
    for p in lay:
        labels = [s.label for s in p.sections]
        assert "title" in labels and "body" in labels
        assert not set(p.meta["furniture"]) & held
    assert set(LAYOUT_PARTS) >= {"title", "body", "tags", "read_also", "related", "byline", "source"}
    with pytest.raises(ValueError, match="train half"):
        build_pages(arts[:2], arts, random.Random(5), which="held_out", layouts=0.5)


def test_random_layouts_keep_title_above_body_menu_on_top_copyright_at_bottom():
    from data.pages import random_layout
    from data.templates import templates

    rng = random.Random(11)
    orders = [random_layout(t, rng).order for _ in range(100) for t in templates("train")]
    assert all(o.index("title") < o.index("body") for o in orders)
    assert sum(o[0] == "title" for o in orders) < 0.6 * len(orders)  # other parts come above the title too
    assert any(o.index("body") - o.index("title") > 1 for o in orders)  # and between the title and the body
    assert any(o[-1] != "body" for o in orders) and any(o[-1] == "body" for o in orders)
    assert all(o.index("nav") == 0 for o in orders if "nav" in o)  # the menu at the top
    assert all(o[-1] == "copyright" for o in orders if "copyright" in o)  # the copyright line at the bottom
    assert sum("nav" in o for o in orders) > 100 and sum("copyright" in o for o in orders) > 100


def test_augment_makes_up_train_wordings_only(built):
    tmp, _ = built
    args = ["--conll", str(tmp / "doc.txt"), "--test-conll", str(tmp / "heldout.txt"), "--news", str(tmp),
            "--sentences-per-doc", "4", "--pages", "20", "6", "6", "--seed", "3", "--quiet", "--augment", "1.0"]
    res = main(args + ["--out", str(tmp / "aug")])
    listed = {w for pair in WORDINGS.values() for half in pair for w in half}
    assert {w for p in res["train"] for w in p.meta["furniture"]} - listed
    for split in ("dev", "test"):
        assert {w for p in res[split] for w in p.meta["furniture"]} <= listed, split


@pytest.mark.parametrize("paras, want", [
    (["فايز الحسيكي – عين اليوم", "أعلنت الوزارة اليوم عن خطة جديدة.", "وقال الوزير إن الخطة تبدأ غدا."],
     ["byline", "body", "body"]),
    (["محمود وهبي ـ جدة", "الرياض - واس", "نص الخبر هنا."], ["byline", "byline", "body"]),
    (["جدة 25 شوال 1436 هـ الموافق 10 أغسطس 2015 م واس", "نص الخبر.", "// انتهى //", "17:54 ت م"],
     ["byline", "body", "boilerplate", "byline"]),
    # not a byline: a sentence, digits, a colon, too many words, a dash inside a word, or past the second line
    (["أكد الوزير أن المشروع - وهو الأول - سيبدأ غدا.", "نثريات الخميس - 24", "نص."], ["body", "body", "body"]),
    (["صدر أمس أمر ملكي فيما يلي نصه:", "نص الخبر.", "نص آخر."], ["body", "body", "body"]),
    (["قال مدير عام الشركة في المنطقة الشرقية اليوم - في تصريح له لوسائل الإعلام", "نص."], ["body", "body"]),
    (["نص أول.", "نص ثان.", "فايز الحسيكي – عين اليوم", "نص رابع."], ["body"] * 4),
    (["الرياض - واس"], ["body"]),  # nothing else to be the body: kept as it is
])
def test_news_paragraph_labels(paras, want):
    from data.build import news_paragraph_labels
    assert news_paragraph_labels(paras) == want


def test_news_bylines_become_byline_sections_and_the_text_is_unchanged():
    """A SaudiNewsNet text's dateline and wire end lines get their own sections, in place; the page
    text is the same as with every paragraph labelled body."""
    from data.build import news_article
    from data.templates import templates
    art = {"source": "was", "url": "u", "date_extracted": "2015-08-01", "title": "عنوان الخبر هنا", "author": "",
           "content": "جدة 25 شوال 1436 هـ الموافق 10 أغسطس 2015 م واس\nأعلنت الوزارة اليوم خطة.\n"
                      "وقال الوزير إن الخطة تبدأ غدا.\n// انتهى //\n17:54 ت م"}
    a = news_article(art, 0)
    assert a.para_labels == ["byline", "body", "body", "boilerplate", "byline"]
    plain = news_article(art, 0)
    plain.para_labels = None
    others = _articles(5)
    for seed in range(12):
        tpl = templates("train")[seed % len(templates("train"))]
        p = build_pages([a], others, random.Random(seed), template_set=(tpl,))[0]
        q = build_pages([plain], others, random.Random(seed), template_set=(tpl,))[0]
        assert p.text == q.text
        lab = {p.text[s.start:s.end]: s.label for s in p.sections}
        assert lab.get("جدة 25 شوال 1436 هـ الموافق 10 أغسطس 2015 م واس") == "byline"
        assert lab.get("// انتهى //") == "boilerplate" and lab.get("17:54 ت م") == "byline"
        body = [p.text[s.start:s.end] for s in p.sections if s.label == "body"]
        assert any("أعلنت الوزارة" in b for b in body) and not any("واس" in b or "انتهى" in b for b in body)


def test_augmented_wordings_never_use_a_held_out_wording_or_word_of_another_kind():
    """A held-out wording or a word only held-out wordings use is never made up under another label:
    "قد يعجبك أيضا" (a held-out related header) is no read-also header, "تابع" (of a held-out share
    line) no read-also verb."""
    from data.augment import AUGMENTED_KINDS, _letters, _words, allowed, augmented_wording

    held_letters = {_letters(w) for pair in WORDINGS.values() for w in pair[1]} - {""}
    assert not allowed("read_also_header", "قد يعجبك أيضا:") and not allowed("inline_prefix", "تابع أيضا: ")
    assert allowed("read_also_header", "قد يهمك كذلك:")
    rng = random.Random(2)
    for kind in AUGMENTED_KINDS:
        made = [augmented_wording(kind, rng) for _ in range(3000)]
        assert not {_letters(w) for w in made} & held_letters, kind
        assert not set().union(*map(_words, made)) & {"تابع", "يعجبك", "الرابط", "تلغرام", "مراسلنا"}, kind


def test_nonce_wordings_swap_words_and_keep_slots_symbols_and_held_out_words_out():
    """A nonce wording keeps a wording's slots, symbols, digits and Latin words and swaps at least one of
    its Arabic words for a pool word; no held-out wording or held-out-only word comes out."""
    from data.augment import (_HELD_OUT_WORDS, AUGMENTED_KINDS, _letters, _words, augmented_wording, nonce_pool,
                              nonce_wording)

    titles = ["وزير الخارجية يصل إلى القاهرة لبحث الأزمة", "ارتفاع أسعار النفط في الأسواق العالمية",
              "شاهد الفيديو: طالع التفاصيل", "مقالات ذات صلة بالحدث"]
    pool = nonce_pool(tuple(titles))
    assert "الخارجية" in pool and "النفط" in pool and len(pool) == len(set(pool))
    assert not {"شاهد", "طالع"} & set(pool)  # held-out read-also verbs are never drawn
    assert "في" not in pool  # 3 to 9 letters
    rng = random.Random(4)
    assert nonce_wording("byline", "{person} - {date}", pool, rng) == "{person} - {date}"  # no Arabic word
    assert nonce_wording("share", "شارك", (), rng) == "شارك"  # nothing to draw from
    w = nonce_wording("source", "المصدر: {}", pool, rng, share=1.0)
    assert w.endswith(": {}") and w[:-4] in pool
    held_letters = {_letters(x) for pair in WORDINGS.values() for x in pair[1]} - {""}
    for kind in AUGMENTED_KINDS:
        if kind == "bullet":
            continue
        for _ in range(300):
            base = augmented_wording(kind, rng)
            made = nonce_wording(kind, base, pool, rng)
            assert made.count("{") == base.count("{") and "".join(sorted(c for c in made if not c.isalpha())) == \
                "".join(sorted(c for c in base if not c.isalpha()))  # slots, marks, digits and spaces kept
            assert _letters(made) not in held_letters and not _words(made) & _HELD_OUT_WORDS[kind]
    swapped = [nonce_wording("read_also_header", "اقرأ أيضا:", pool, rng) for _ in range(200)]
    assert all(s.endswith(":") and s != "اقرأ أيضا:" for s in swapped)
    assert len(set(swapped)) > 20 and any(s.startswith("اقرأ ") or s.endswith(" أيضا:") for s in swapped)  # some words kept


def test_nonce_pages_are_valid_and_leave_drawn_words_unannotated():
    arts = _articles(40)
    nonce, listed, made = _made_up_pages(arts, nonce=1.0)
    assert len(made) > 30
    from data.augment import _ARABIC_WORD, nonce_pool

    pool = set(nonce_pool(tuple(a.title for a in arts)))
    assert all(set(_ARABIC_WORD.findall(w)) & pool for w in made)  # each made-up wording has drawn words
    checked = 0
    for p in nonce:
        Page.from_dict(p.to_dict())
        assert any(s.label == "body" for s in p.sections) and any(s.label == "title" for s in p.sections)
        if set(p.meta["furniture"]) - listed and (p.entity_regions is not None or p.entities):
            # the sample's pages are annotated everywhere; with drawn words (maybe names) only the body is
            checked += 1
            regions = p.entity_regions or [(0, len(p.text))]
            for s in p.sections:
                if s.label not in ("body", "title"):
                    assert not any(a < s.end and s.start < b for a, b in regions), (p.id, s.label)
    assert checked > 10
    with pytest.raises(ValueError, match="train half"):
        build_pages(arts[:2], arts, random.Random(5), which="held_out", nonce=0.5)


def test_every_slot_is_left_out_of_a_wordings_letters():
    """``{year2}`` and ``{n_ar}`` are slots like ``{year}``: a made-up copyright line with them is still the
    held-out "جميع الحقوق محفوظة ل {site} ©" in its letters, and is refused."""
    from data.augment import _letters, allowed, nonce_wording

    assert _letters("© {year}-{year2} {n_ar}") == ""
    assert not allowed("copyright", "جميع الحقوق محفوظة لـ {site} - © {year}-{year2}")
    assert allowed("copyright", "حقوق النشر محفوظة | {site} - © {year}-{year2}")
    made = nonce_wording("comments", "تعليقات ({n_ar}) {year2}", ("كلمة",), random.Random(0), share=1.0)
    assert made == "كلمة ({n_ar}) {year2}"  # slots with digits kept whole
