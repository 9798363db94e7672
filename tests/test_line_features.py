"""Line features (model.line_buckets): hashed layout keys of each line and its neighbours, embedded and
given to the section layer. They must describe layout whatever the wording, train, survive save/load,
and reach the same sections through the Tagger as through the training forward pass."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from synthetic import TINY_OVERRIDES, fit_steps, synthetic_pages
from data.features import LINE_FEATURES, PageEncoder, line_feature_ids, line_feature_keys, split_batch
from data.labels import SECTION_TAGS, entity_tagset
from data.schema import Page
from data.text import normalize
from infer.tagger import Tagger
from model import JointModel
from train.__main__ import make_model
from train.config import RunConfig, load_config

BUCKETS = 2048


def _keys(text: str) -> list[set[str]]:
    page = Page(id="k", text=text)
    return [set(k) for k in line_feature_keys(text, page.lines.tolist())]


def test_layout_keys_are_shared_by_different_wordings():
    body = "وقال الوزير إن المشروع سيكتمل خلال العام المقبل بتكلفة كبيرة جدا."
    a = _keys(f"عنوان الخبر هنا\n\n{body}\n\nاقرأ أيضا:\nخبر آخر عن الاقتصاد")
    b = _keys(f"عنوان الخبر هنا\n\n{body}\n\nطالع كذلك:\nخبر آخر عن الاقتصاد")
    header_a, header_b = a[2], b[2]
    layout = {k for k in header_a if not k.startswith(("w", "s", "-1w0", "1w0"))}
    assert layout <= header_b  # same layout, other words: every layout key is shared
    assert "e=:" in header_a and "gb=True" in header_a and "ga=False" in header_a
    w0 = f"w0={normalize('اقرأ')}"
    assert w0 in header_a and w0 not in header_b  # the wording itself is a key too
    assert "-1e=:" in a[3] and "-1e=:" in b[3]  # the line after a header knows it
    assert "e=." in a[1] and "-2none" in a[0] and "1none" in a[3]


def test_ids_are_padded_bucketed_and_deterministic():
    page = synthetic_pages(1, seed=4)[0]
    ids = line_feature_ids(page.text, page.lines, BUCKETS)
    assert ids.shape == (len(page.lines), LINE_FEATURES) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < BUCKETS
    n_keys = [len(k) for k in line_feature_keys(page.text, page.lines.tolist())]
    for row, n in zip(ids, n_keys):
        assert (row[:n] > 0).all() and not row[n:].any()  # 0 is padding, and only padding
    assert np.array_equal(ids, line_feature_ids(page.text, page.lines, BUCKETS))


@pytest.fixture(scope="module")
def setup():
    pages = synthetic_pages(8, seed=3)
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, f"model.line_buckets={BUCKETS}",
                                        "model.line_feature_dim=16"])
    from model import train_wordpiece

    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    types = ["LOC", "ORG", "PERS"]
    torch.manual_seed(0)
    model = make_model(cfg, tok, types)
    enc = PageEncoder.from_config(tok, model.config)
    return model, tok, enc, entity_tagset(types), pages


def test_section_loss_falls_and_the_table_learns(setup):
    model, _, enc, tags, pages = setup
    assert model.config.line_buckets == BUCKETS and model.line_features.embedding_dim == 16
    batch = enc.collate([enc.encode(p, tags) for p in pages])
    assert batch["line_ids"].shape == (len(batch["line_page"]), LINE_FEATURES)
    before = model.line_features.weight.detach().clone()
    losses = fit_steps(model, batch, 15, 3e-3, loss="section_loss")
    assert losses[-1] < 0.6 * losses[0], losses
    assert not torch.equal(before, model.line_features.weight)
    model.eval()


def test_missing_line_ids_is_a_clear_error(setup):
    model, _, enc, tags, pages = setup
    batch = enc.collate([enc.encode(pages[0])])
    del batch["line_ids"]
    with pytest.raises(ValueError, match="line_ids"):
        model(**batch)


def test_saved_model_tags_like_its_forward_pass_and_splits_keep_line_ids(setup, tmp_path):
    model, tok, _, tags, pages = setup
    model.eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is JointModel and loaded.config.line_buckets == BUCKETS
    enc = PageEncoder.from_config(AutoTokenizer.from_pretrained(tmp_path), loaded.config, windows="short", stride=0)
    page = synthetic_pages(1, seed=11, min_paragraphs=10, max_paragraphs=10)[0]
    feats = [enc.encode(p, tags) for p in [page, *pages[:3]]]
    batch = enc.collate(feats)
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.section_logits, b.section_logits)

    # the trainer's half-batches carry each page's own line ids
    for part in split_batch(batch, 2):
        pages_in = torch.unique(part["line_page"])
        assert part["line_ids"].shape[0] == len(part["line_page"]) == len(part["section_labels"])
        with torch.no_grad():
            out = loaded(**part)
        assert out.section_logits.shape[0] == part["line_ids"].shape[0] and len(pages_in) >= 1

    # the Tagger pools lines across windows and batches and reads the same line ids: the forward pass on
    # the Tagger's own windows (line cuts, the model's stride) decodes to its sections at every budget
    own = PageEncoder.for_model(AutoTokenizer.from_pretrained(tmp_path), loaded)
    with torch.no_grad():
        one = loaded(**own.collate([own.encode(page, tags)]))
    want = [s.to_dict() for s in SECTION_TAGS.decode(page.lines, one.section_logits.argmax(-1).numpy())]
    for budget in (loaded.config.window_length, 1 << 16):
        rec = list(Tagger(loaded, AutoTokenizer.from_pretrained(tmp_path), device="cpu",
                          batch_tokens=budget).tag([page]))[0]
        assert rec["sections"] == want, budget
    # the features matter: the same model without them gives other section scores
    torch.manual_seed(1)
    with torch.no_grad():
        loaded.line_features.weight.normal_()
        moved = loaded(**own.collate([own.encode(page, tags)]))
    assert not torch.allclose(moved.section_logits, one.section_logits)


# ------------------------------------------------------------------------------------------------
# Line tag scores (model.line_tags): a line CRF's state weights, fitted before training, kept fixed

def _line_crf_setup():
    """16 synthetic pages, a tiny model with line tag scores and a section CRF, its encoder and dataset."""
    from model import train_wordpiece
    from train.data import PageDataset

    pages = synthetic_pages(16, seed=5)
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, f"model.line_buckets={BUCKETS}",
                                        "model.line_tags=true", "model.section_crf=true"])
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    types = ["LOC", "ORG", "PERS"]
    torch.manual_seed(0)
    model = make_model(cfg, tok, types)
    enc = PageEncoder.from_config(tok, model.config, windows="short", stride=0)
    return pages, cfg, tok, types, model, enc, PageDataset(pages, enc, entity_tagset(types))


def test_line_crf_fit_scores_save_and_reach_the_tagger(tmp_path):
    pytest.importorskip("pycrfsuite", reason="model.line_tags needs sklearn-crfsuite")
    from train.lexical import fit_line_crf, labelled_pages

    pages, cfg, tok, types, model, enc, data = _line_crf_setup()
    assert model.config.line_tags and not model.line_tag_scores.weight.any()  # no prior before the fit
    runs = labelled_pages(data)
    assert 0 < len(runs) <= len(pages) and all(len(x) == len(y) for x, y in runs)
    fit = fit_line_crf(model, data, max_iterations=50, quiet=True)
    assert fit["lines"] > 0 and 0 < fit["iterations"] <= 50 and fit["features"] > 0
    table = model.line_tag_scores
    assert not table.weight.requires_grad and table.weight.any() and not table.weight[0].any()
    # The linear line CRF alone (its scores, bias and transitions) tags its training pages' lines.
    chain = model.section_chain
    right = total = 0
    for i in range(len(data)):
        f = data[i]
        with torch.no_grad():
            s = (table(torch.from_numpy(f["line_ids"]).long()) + model.section_head.bias).log_softmax(-1).numpy()
        pred = chain.viterbi(s)
        right += int((pred == f["section_labels"]).sum())
        total += len(pred)
    assert right / total > 0.9
    b_body, i_body = SECTION_TAGS.label2id["B-body"], SECTION_TAGS.label2id["I-body"]
    b_title = SECTION_TAGS.label2id["B-title"]
    assert chain.transitions[b_body, i_body] > chain.transitions[b_title, i_body]  # body goes on after body
    # The scores add to the section logits, survive save/load, and the Tagger uses them.
    page = pages[0]
    batch = enc.collate([enc.encode(page)])
    model.eval()
    with torch.no_grad():
        with_scores = model(**batch).section_logits
        blank = JointModel(model.config)
        blank.load_state_dict(model.state_dict())
        blank.line_tag_scores.weight.zero_()
        without = blank.eval()(**batch).section_logits
    assert torch.allclose(with_scores - without, table(batch["line_ids"]), atol=1e-5)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded = Tagger.from_pretrained(tmp_path, device="cpu", streams=1)
    assert torch.equal(loaded.model.line_tag_scores.weight, table.weight)
    assert list(loaded.tag(pages[:3])) == list(Tagger(model, tok, device="cpu", streams=1).tag(pages[:3]))


def test_line_crf_folds_score_each_training_page_with_a_fit_that_never_saw_it():
    """training.line_tags_folds: the fold fits leave their fold's pages out, the training pages carry
    those fits' line scores (line_prior) through collate and split_batch, and the model adds them in
    place of its own table, which is a fit on every page."""
    pytest.importorskip("pycrfsuite", reason="model.line_tags needs sklearn-crfsuite")
    import numpy as np

    from data.features import split_batch
    from train.lexical import fit_line_crf, page_folds, set_fold_priors

    pages, cfg, tok, types, model, enc, data = _line_crf_setup()
    folds = page_folds(pages, 2)
    assert set(folds.tolist()) == {0, 1}
    fit = fit_line_crf(model, data, max_iterations=50, quiet=True, folds=folds)
    w = fit["fold_weight"]
    table = model.line_tag_scores
    assert fit["folds"] == 2 and w.shape == (2, *table.weight.shape) and not table.weight.requires_grad
    alone = make_model(cfg, tok, types)
    fit_line_crf(alone, data, max_iterations=50, quiet=True)
    assert torch.equal(table.weight, alone.line_tag_scores.weight)  # the model's own fit is on every page

    def buckets(fold):
        out = set()
        for i in np.flatnonzero(folds == fold):
            f = data[int(i)]
            out |= set(np.asarray(f["line_ids"]).ravel().tolist())
        return out - {0}

    only0 = sorted(buckets(0) - buckets(1))
    assert len(only0) > 20
    assert not w[0, only0].any() and w[1, only0].any()  # the fit without fold 0 knows none of its own keys

    set_fold_priors(data, folds, w, "line_ids", "line_prior")
    f = data[0]
    want = w[int(folds[0])][torch.from_numpy(np.asarray(f["line_ids"]).astype(np.int64))].sum(1)
    assert f["line_prior"].shape == (f["n_lines"], table.weight.shape[1])
    assert torch.allclose(torch.from_numpy(f["line_prior"]), want, atol=1e-5)
    batch = enc.collate([data[i] for i in range(4)])
    assert batch["line_prior"].shape[0] == len(batch["line_page"])
    model.eval()
    with torch.no_grad():
        vectors = torch.randn(len(batch["line_page"]), model.line_rnn.input_size - model.config.line_feature_dim)
        args = (vectors, batch["line_page"], batch["line_pos"], batch["line_ids"])
        with_prior = model.section_logits(*args, batch["line_prior"])
        own = model.section_logits(*args)
    assert torch.allclose(with_prior - own, batch["line_prior"] - table(batch["line_ids"]), atol=1e-4)
    parts = split_batch(batch, 2)  # each line keeps its own scores (the parts may order the pages otherwise)

    def rows(b):
        return sorted(zip(map(tuple, b["line_ids"].tolist()), map(tuple, b["line_prior"].tolist())))

    assert len(parts) == 2 and sorted(r for p in parts for r in rows(p)) == rows(batch)
    with pytest.raises(ValueError, match="line_prior"):
        enc.collate([data[0], enc.encode(pages[1], entity_tagset(types))])  # one page with, one without


# ------------------------------------------------------------------------------------------------
# Topic keys (model.line_topic): what a line shares with the rest of the page, whatever its wording

_BODY = ["أعلنت وزارة الصحة السعودية في الرياض حملة تطعيم واسعة ضد الإنفلونزا الموسمية تشمل المدارس.",
         "وقال المتحدث باسم وزارة الصحة إن حملة التطعيم تبدأ الأسبوع المقبل في مدارس الرياض وجدة.",
         "وأضاف أن الإنفلونزا الموسمية تنتشر في الشتاء وأن التطعيم مجاني في المراكز الصحية والمدارس.",
         "وتهدف الحملة إلى تطعيم مليون طالب قبل نهاية الفصل الدراسي بحسب بيان وزارة الصحة."]
_TEASER = ["اقرأ أيضا:", "منتخب الكرة يفوز على ضيفه الياباني بثلاثة أهداف نظيفة",
           "فاز منتخب الكرة على ضيفه الياباني بثلاثة أهداف نظيفة في المباراة الودية على ملعب الجوهرة."]


def _topic_page() -> tuple[str, list]:
    title = "الصحة تطلق حملة تطعيم ضد الإنفلونزا الموسمية في المدارس"
    lines = [title, *_BODY, *_TEASER, "مقالات مشابهة", "ارتفاع أسعار النفط في الأسواق الآسيوية",
             "افتتاح معرض الكتاب الدولي بمشاركة مئات الناشرين"]
    text = "\n".join(lines)
    return text, Page(id="t", text=text).lines.tolist()


def test_topic_keys_tell_the_main_article_from_teasers_and_related_items():
    from data.features import line_topic_keys
    text, spans = _topic_page()
    keys = line_topic_keys(text, spans)
    title, body, header, t_title, t_para = keys[0], keys[1:5], keys[5], keys[6], keys[7]
    related = keys[9:]
    for k in [title, *body]:  # the main article: the page's largest group of word-sharing lines
        assert k["crank"] == "0" and int(k["cshare"]) >= 4, k
        assert int(k["far"]) >= 2, k  # its words come back 2 lines away or more
    # the teaser's title and paragraph share words with each other only: a group of their own, near
    assert t_title["crank"] == t_para["crank"] != "0"
    assert t_para["far"] == "0" and int(t_para["best"]) >= 3
    for k in related:  # other articles' titles: nothing shared with the page
        assert k["far"] == k["rec"] == k["best"] == "0" and k["crank"] != "0", k
    assert header["far"] == "e" or header["best"] == "0"  # a header's words (function words) link nothing


def test_topic_keys_ignore_words_spread_over_too_many_lines():
    from data.features import _TOPIC_DF_CAP, line_topic_keys
    # every line shares the word "الرياض" and one own word: that word is in more lines than the cap,
    # so it joins nothing, and each line stays on its own
    lines = [f"الرياض كلمة{chr(0x0628 + i % 20)}{i}" for i in range(_TOPIC_DF_CAP + 6)]
    text = "\n".join(lines)
    keys = line_topic_keys(text, Page(id="c", text=text).lines.tolist())
    assert all(k["best"] == "0" for k in keys)
    assert sum(k["crank"] == "0" for k in keys) == 1
    assert all(k["rec"] != "0" for k in keys)  # but it is still counted as a recurring word


def test_topic_ids_widen_the_line_ids_and_follow_the_config(setup, tmp_path):
    from data.features import TOPIC_FEATURES
    text, _ = _topic_page()
    page = Page(id="t", text=text)
    plain = line_feature_ids(page.text, page.lines, BUCKETS)
    both = line_feature_ids(page.text, page.lines, BUCKETS, topic=True)
    assert both.shape == (len(page.lines), LINE_FEATURES + TOPIC_FEATURES)
    n = [len(k) for k in line_feature_keys(page.text, page.lines.tolist())]
    for row, base, k in zip(both, plain, n):
        assert np.array_equal(row[:k], base[:k]) and (row[k:k + 6] > 0).all()
    # a model trained with topic keys saves the switch, and its encoder (the Tagger's) makes them
    tok, loaded, enc = _saved_line_model(setup, tmp_path, "line_topic")
    assert enc.line_topic and enc.encode(page)["line_ids"].shape[1] == LINE_FEATURES + TOPIC_FEATURES
    assert not PageEncoder.for_model(tok, setup[0]).line_topic


@pytest.mark.parametrize("key", ["line_topic", "line_bare_words", "line_blocks", "line_heads"])
def test_line_key_switches_need_line_buckets(tmp_path, key):
    from synthetic import tiny_config, write_pages
    from train.__main__ import ConfigError, parse
    pages = write_pages(tmp_path / "p.jsonl", synthetic_pages(2, seed=5))
    cfg = str(tiny_config(tmp_path, pages, pages))
    with pytest.raises(ConfigError, match=f"model.{key}: .*set model.line_buckets"):
        parse([cfg, f"model.{key}=true"])
    assert getattr(parse([cfg, f"model.{key}=true", "model.line_buckets=64"]).model, key) is True


def test_bare_word_keys_tie_bracketed_and_punctuated_wordings_and_follow_the_config(setup, tmp_path):
    from data.features import BARE_FEATURES
    body = "وقال الوزير إن المشروع سيكتمل خلال العام المقبل بتكلفة كبيرة جدا."
    texts = [f"عنوان الخبر هنا\n{body}\n{src}" for src in ("(رويترز)", "[رويترز]", "«ورويترز»:", "الأناضول")]
    pages = [Page(id=f"b{i}", text=t) for i, t in enumerate(texts)]
    plain = [set(line_feature_keys(p.text, p.lines.tolist())[2]) for p in pages]
    bare = [set(line_feature_keys(p.text, p.lines.tolist(), bare_words=True)[2]) for p in pages]
    assert not any(k.startswith("a0=") for k in plain[0])  # off by default: old models' keys unchanged
    assert {k for k in plain[0] if k.startswith("w0=")} != {k for k in plain[1] if k.startswith("w0=")}
    wa = f"a0={normalize('رويترز')}"
    assert wa in bare[0] and wa in bare[1] and wa in bare[2]  # brackets, quotes, the clitic and ":" off
    assert wa not in bare[3] and f"a0={normalize('أناضول')}" in bare[3]
    assert bare[0] - plain[0] == {wa, "a1=", f"al={normalize('رويترز')}"}  # only the bare keys are added
    # the ids widen by BARE_FEATURES, the other keys keep their ids, and a saved model keeps the switch
    page = pages[1]
    ids = line_feature_ids(page.text, page.lines, BUCKETS)
    wide = line_feature_ids(page.text, page.lines, BUCKETS, bare_words=True)
    assert wide.shape == (len(page.lines), LINE_FEATURES + BARE_FEATURES)
    assert set(ids[2][ids[2] > 0]) < set(wide[2][wide[2] > 0])
    tok, loaded, enc = _saved_line_model(setup, tmp_path, "line_bare_words", "line_topic")
    from data.features import TOPIC_FEATURES
    got = enc.encode(page)["line_ids"]
    assert got.shape[1] == LINE_FEATURES + BARE_FEATURES + TOPIC_FEATURES
    assert np.array_equal(got, line_feature_ids(page.text, page.lines, BUCKETS, topic=True, bare_words=True))
    assert not PageEncoder.for_model(tok, setup[0]).line_bare_words
    # and the section layer takes the wider ids through a forward pass
    batch = enc.collate([enc.encode(page, entity_tagset(["LOC", "ORG", "PERS"]))])
    with torch.no_grad():
        out = loaded(**batch)
    assert torch.isfinite(out.section_logits).all()


def test_block_keys_mark_the_main_run_and_the_header_above_a_teaser(setup, tmp_path):
    from data.features import BLOCK_FEATURES, line_block_keys
    para = "وقال الوزير إن المشروع سيكتمل خلال العام المقبل بتكلفة كبيرة جدا وفق الخطة."
    teaser = "وأعلنت الشركة أمس عن نتائجها المالية للربع الثالث من هذا العام بأرباح قياسية."
    lines = ["عنوان الخبر الرئيسي", para, para, para, "المصدر: واس", "", "إقرأ أيضاً:", "", teaser, teaser,
             "مقالات مشابهة", "• خبر أول"]
    page = Page(id="t", text="\n".join(lines))
    keys = [set(k) for k in line_block_keys(page.text, page.lines.tolist())]
    assert len(keys) == len(page.lines) == 10
    assert all(len(k) <= BLOCK_FEATURES for k in keys)
    assert keys[0] >= {"brun=none", "brel=before", "hdr=none"}
    assert keys[1] >= {"brank=0", "bn=2", "bi=0", "brel=in", f"hdr0={normalize('عنوان')}", "hdrd=0"}
    assert "bi=2" in keys[3] and "brel=in" in keys[3]
    # the teaser: the smaller run, after the body, under the short header line two lines up
    head = {f"hdr0={_bare_of('إقرأ')}", f"hdrl={_bare_of('أيضاً:')}"}
    assert keys[6] >= {"brank=1", "bi=0", "brel=after", "hdrd=0"} | head
    assert keys[7] >= {"brank=1", "bi=1", "brel=after", "hdrd=1"} | head
    assert keys[9] >= {"brun=none", "brel=after", f"hdr0={_bare_of('مقالات')}"}
    # a page without prose or without lines
    assert line_block_keys("قصير\nقصير", [(0, 4), (5, 9)])[1] == ["brun=none", "brel=none", f"hdr0={_bare_of('قصير')}",
                                                                f"hdrl={_bare_of('قصير')}", "hdrd=0"]
    assert line_block_keys("", []) == []
    # the ids widen by BLOCK_FEATURES, and a saved model keeps the switch
    ids = line_feature_ids(page.text, page.lines, BUCKETS, blocks=True)
    assert ids.shape == (len(page.lines), LINE_FEATURES + BLOCK_FEATURES)
    _check_saved_switch(setup, tmp_path, "line_blocks", page, ids)


def test_head_keys_class_a_line_opening_and_its_head_and_follow_the_config(setup, tmp_path):
    from data.features import HEAD_FEATURES, line_head_keys
    lines = ["هاشتاغ: اقتصاد", "▶ الجيش يعلن نتائج العملية في المنطقة", "شاهد أيضاً | عنوان خبر آخر هنا",
             "» عنوان", "وقال الوزير إن المشروع سيكتمل خلال العام المقبل.", "- نعم", "Tags: سياسة"]
    page = Page(id="h", text="\n".join(lines))
    keys = line_head_keys(page.text, page.lines.tolist())
    assert keys[0] == ["hc=Lo", "hs=1", "hr=1"]  # a one-word head before ":", one word after it
    assert keys[1] == ["hc=So", "hcn=So:2", "hs=-"]  # any arrow or bullet is "So", whatever the character
    assert keys[2] == ["hc=Lo", "hs=2", "hr=3"]  # the separator word "|" closes a two-word head
    assert keys[3] == ["hc=Pf", "hcn=Pf:0", "hs=0", "hr=1"] and keys[5][:2] == ["hc=Pd", "hcn=Pd:0"]
    assert keys[4] == ["hc=Lo", "hs=-"] and keys[6] == ["hc=Lu", "hs=1", "hr=1"]
    assert all(len(k) <= HEAD_FEATURES for k in keys) and line_head_keys("", []) == []
    # the same keys for other marks of a class: a teaser behind a bullet the training pages never had
    assert line_head_keys("◆ خبر آخر هنا", [(0, 13)]) == line_head_keys("➤ خبر آخر هنا", [(0, 13)])
    # off by default (old models' ids unchanged); on, the ids widen by HEAD_FEATURES and keep the others
    plain = line_feature_ids(page.text, page.lines, BUCKETS)
    ids = line_feature_ids(page.text, page.lines, BUCKETS, heads=True)
    assert ids.shape == (len(page.lines), LINE_FEATURES + HEAD_FEATURES)
    for a, b in zip(plain, ids):
        assert set(a[a > 0]) < set(b[b > 0])
    _check_saved_switch(setup, tmp_path, "line_heads", page, ids)


def _check_saved_switch(setup, tmp_path, switch, page, ids):
    """A tiny model saved with ``switch`` on: its encoder (the Tagger's) makes ``ids`` for ``page``, a model
    without the switch does not turn it on, and the section layer takes the ids through a forward pass."""
    tok, loaded, enc = _saved_line_model(setup, tmp_path, switch)
    assert np.array_equal(enc.encode(page)["line_ids"], ids)
    assert not getattr(PageEncoder.for_model(tok, setup[0]), switch)
    batch = enc.collate([enc.encode(page, entity_tagset(["LOC", "ORG", "PERS"]))])
    with torch.no_grad():
        out = loaded(**batch)
    assert torch.isfinite(out.section_logits).all()


def _saved_line_model(setup, tmp_path, *switches):
    """A tiny joint model with these line-key switches on, saved and loaded back (each switch checked in
    the loaded config), with its tokenizer and its encoder (the Tagger's)."""
    _, tok, _, _, _ = setup
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, f"model.line_buckets={BUCKETS}",
                                        *(f"model.{k}=true" for k in switches)])
    make_model(cfg, tok, ["LOC", "ORG", "PERS"]).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert all(getattr(loaded.config, k) is True for k in switches)
    return tok, loaded, PageEncoder.for_model(tok, loaded)


def _bare_of(word: str) -> str:
    from data.features import _bare
    return _bare(normalize(word))


def test_line_crf_probe_fits_and_scores_the_model_keys(tmp_path, capsys):
    pytest.importorskip("pycrfsuite", reason="scripts/line_crf_probe.py needs sklearn-crfsuite")
    import importlib.util
    import re
    from pathlib import Path
    from synthetic import write_pages
    spec = importlib.util.spec_from_file_location(
        "line_crf_probe", Path(__file__).resolve().parents[1] / "scripts" / "line_crf_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    pages = synthetic_pages(24, seed=8)
    train = write_pages(tmp_path / "train.jsonl", pages[:18])
    dev = write_pages(tmp_path / "dev.jsonl", pages[18:])
    assert probe.main(["--train", str(train), "--dev", str(dev), "--topic", "--iterations", "30"]) == 0
    out = capsys.readouterr().out
    assert probe.main(["--train", str(train), "--dev", str(dev), "--repeats", "6", "--iterations", "5"]) == 0
    assert "6 scored pages" in capsys.readouterr().out
    from data.features import line_repeats
    assert any(k.startswith("r=") for k in probe.items(pages[0], False, None, line_repeats(pages[:6], 6)[0])[0])
    assert "18 training pages" in out and "6 scored pages" in out
    assert probe.main(["--train", str(train), "--dev", str(dev), "--bare-words", "--errors", "2",
                       "--iterations", "3"]) == 0
    errs = capsys.readouterr().out  # three iterations leave mistakes: each confusion with its lines, page named
    assert any(k.startswith("a0=") for k in probe.items(pages[0], False, bare_words=True)[0])
    assert any(k.startswith("brel=") for k in probe.items(pages[0], False, blocks=True)[0])
    assert any(k.startswith("hs=") for k in probe.items(pages[0], False, heads=True)[0])
    assert probe.main(["--train", str(train), "--dev", str(dev), "--heads", "--iterations", "3"]) == 0
    assert "6 scored pages" in capsys.readouterr().out
    # --group-by: one line per value of meta[KEY], over the pages that have it, the rest under "(missing)"
    import dataclasses
    grouped = [dataclasses.replace(p, meta={"template": "odd" if i % 2 else "even"} if i < 4 else {"site": "x"})
               for i, p in enumerate(pages[18:])]
    dev_g = write_pages(tmp_path / "dev_grouped.jsonl", grouped)
    assert probe.main(["--train", str(train), "--dev", str(dev_g), "--group-by", "template",
                       "--iterations", "30"]) == 0
    got = capsys.readouterr().out
    rows = re.findall(r"^  template=(\S+): (\d+) pages, section macro-F1 ([\d.]+)", got, re.M)
    assert [(v, int(n)) for v, n, _ in rows] == [("(missing)", 2), ("even", 2), ("odd", 2)], got
    assert all(0 <= float(f) <= 100 for _, _, f in rows)
    # a key that no page has: one group of every page, scored as the whole dev set is
    assert probe.main(["--train", str(train), "--dev", str(dev_g), "--group-by", "nokey", "--iterations", "30"]) == 0
    got = capsys.readouterr().out
    whole = re.search(r"^section macro-F1 ([\d.]+)  body F1 ([\d.]+)  segment F1 ([\d.]+)$", got, re.M).groups()
    alone = re.findall(r"^  nokey=\(missing\): 6 pages, section macro-F1 ([\d.]+)  body F1 ([\d.]+)  "
                       r"segment F1 ([\d.]+)", got, re.M)
    assert alone == [whole], got
    # --gazetteer: the line gazetteer keys, read from a gazetteer file; a broken file is named
    import json
    gz = tmp_path / "gazetteer.json"
    gz.write_text(json.dumps({"words": {"في": "O"}}, ensure_ascii=False), encoding="utf-8")
    assert probe.main(["--train", str(train), "--dev", str(dev), "--gazetteer", str(gz), "--iterations", "3"]) == 0
    assert "6 scored pages" in capsys.readouterr().out
    assert any(k.startswith("kgn=") for row in probe.items(pages[0], False, gazetteer={"في": "O"}) for k in row)
    assert not any(k.startswith("kgn=") for row in probe.items(pages[0], False) for k in row)
    gz.write_text("{broken", encoding="utf-8")
    assert probe.main(["--train", str(train), "--dev", str(dev), "--gazetteer", str(gz)]) == 2
    assert "--gazetteer" in capsys.readouterr().err
    m = re.search(r"^(\w+) -> (\w+): (\d+) lines\n    (\S+): ", errs, re.M)
    assert m and m.group(1) != m.group(2) and int(m.group(3)) >= 1, errs
    assert m.group(4) in {p.id for p in pages[18:]}  # a dev page, named
    macro = float(out.split("section macro-F1 ")[1].split()[0])
    assert macro > 50, out  # the synthetic pages' layout is learnable from the keys alone
    # the topic keys are among the items it fits
    assert any(k.startswith("tfar=") for k in probe.items(pages[0], topic=True)[0])
    assert not any(k.startswith("tfar=") for k in probe.items(pages[0], topic=False)[0])


def test_line_crf_probe_names_a_bad_input_line(tmp_path, capsys):
    pytest.importorskip("pycrfsuite", reason="scripts/line_crf_probe.py needs sklearn-crfsuite")
    import importlib.util
    from pathlib import Path
    from synthetic import write_pages
    spec = importlib.util.spec_from_file_location(
        "line_crf_probe", Path(__file__).resolve().parents[1] / "scripts" / "line_crf_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    good = write_pages(tmp_path / "good.jsonl", synthetic_pages(3, seed=8))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text(encoding="utf-8") + '{"id": "x"}\n', encoding="utf-8")
    assert probe.main(["--train", str(bad), "--dev", str(good)]) == 2
    err = capsys.readouterr().err
    assert "line 4" in err and "text" in err and "bad.jsonl" in err, err
    assert probe.main(["--train", str(tmp_path / "missing.jsonl"), "--dev", str(good)]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    # --clusters: a file without clusters of the asked size is named; a good one adds the cluster keys
    import json
    clusters = tmp_path / "word_clusters.json"
    clusters.write_text(json.dumps({"sizes": [2, 4], "words": {normalize("الرياض"): [0, 3]}}), encoding="utf-8")
    assert probe.main(["--train", str(good), "--dev", str(good), "--clusters", str(clusters)]) == 2
    assert "word_clusters.json" in capsys.readouterr().err
    assert probe.main(["--train", str(good), "--dev", str(good), "--clusters", str(clusters),
                       "--line-clusters", "4", "--iterations", "5"]) == 0
    page = Page(id="r", text="الرياض\nنص")
    assert probe.items(page, False, ({normalize("الرياض"): [0, 3]}, 1))[0].get("kb=3") == 1.0


# ------------------------------------------------------------------------------------------------
# Repeat keys (model.line_repeats): how many pages tagged together have the line

_FURNITURE = ["انسخ الرابط", "تابعونا على منصات التواصل"]


def _own_line(i: int) -> str:
    """A line that no other page has: words of letters drawn for page ``i``."""
    import random
    rng = random.Random(i)
    return " ".join("".join(rng.choice("بتثجحخدذرزسشصضطظعغفقكلمنهوي") for _ in range(6)) for _ in range(5))


def _repeat_pages(n: int, seed: int = 21) -> list[Page]:
    """Synthetic pages, each with a line of its own and then the same two furniture lines (a site's pages)."""
    out = []
    for i, p in enumerate(synthetic_pages(n, seed=seed)):
        out.append(Page(id=p.id, text=p.text.rstrip("\n") + f"\n{_own_line(seed * 1000 + i)}\n" + "\n".join(_FURNITURE)))
    return out


def test_line_repeats_count_the_pages_of_each_group():
    from data.features import line_repeat_key, line_repeats, repeat_groups
    assert [list(g) for g in repeat_groups(10, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(g) for g in repeat_groups(9, 4)] == [4, 5]  # a last group under half a group joins the one before
    assert [len(g) for g in repeat_groups(3, 8)] == [3] and repeat_groups(0, 8) == []
    # the same line whatever its digits, spaces and letter variants
    assert line_repeat_key("نشر في 12/3/2024  الساعة ٩") == line_repeat_key("نشر في 1/10/2025 الساعة 10")
    assert line_repeat_key("أخبـــارُ\u200f") == line_repeat_key("أخبار") and line_repeat_key("  \u200f") == ""

    pages = _repeat_pages(8)
    counts = line_repeats(pages, 8)
    for p, c in zip(pages, counts):
        lines = [p.text[s:e] for s, e in p.lines.tolist()]
        assert c.shape == (len(lines),) and c.dtype == np.int64
        for text, k in zip(lines, c.tolist()):
            if text.strip() in _FURNITURE:
                assert k == 8  # on every page of the group
            elif not text.strip():
                assert k == 0
        assert c[-3] == 1  # the page's own line is on this page only
    # counts are scaled to the nominal group size; too small a group is tagged as if alone
    half = line_repeats(pages[:4], 8)
    furniture = [k for p, c in zip(pages[:4], half) for (s, e), k in zip(p.lines.tolist(), c.tolist())
                 if p.text[s:e].strip() in _FURNITURE]
    assert set(furniture) == {8}  # 4 of 4 pages, as 8 of 8
    assert line_repeats(pages[:1], 8) == [None] and line_repeats(pages[:3], 16) == [None] * 3
    # a page's counts depend on its own group only
    assert all(np.array_equal(a, b) for a, b in zip(line_repeats(pages, 4)[:4], line_repeats(pages[:4], 4)))


def test_repeat_keys_widen_the_line_ids_and_alone_is_padding(tmp_path):
    from data.features import REPEAT_FEATURES, line_repeat_keys, line_repeats
    pages = _repeat_pages(6)
    counts = line_repeats(pages, 6)
    p, c = pages[0], counts[0]
    plain = line_feature_ids(p.text, p.lines, BUCKETS)
    both = line_feature_ids(p.text, p.lines, BUCKETS, repeats=c)
    alone = line_feature_ids(p.text, p.lines, BUCKETS, repeat_width=True)
    assert both.shape == alone.shape == (len(p.lines), LINE_FEATURES + REPEAT_FEATURES)
    n = [len(k) for k in line_feature_keys(p.text, p.lines.tolist())]
    keys = line_repeat_keys(c)
    for row, a, base, k, extra in zip(both, alone, plain, n, keys):
        assert np.array_equal(row[:k], base[:k]) and (row[k:k + len(extra)] > 0).all()
        assert np.array_equal(a[:k], base[:k]) and not a[k:].any()  # alone: padding where the keys go
    last = len(p.lines) - 1  # the last furniture line: on every page, after a line on every page
    on_all, on_one = keys[last][0], keys[last - 2][0]  # the page's own line: on this page only
    assert keys[last] == [on_all, "-1" + on_all] and keys[last - 1][0] == on_all and on_all != on_one
    with pytest.raises(ValueError, match="repeats"):
        line_feature_ids(p.text, p.lines, BUCKETS, repeats=c[:-1])

    # a model trained with repeat keys saves the group size; its encoder makes them for a block
    from model import train_wordpiece
    tok = train_wordpiece([q.text for q in pages], vocab_size=400, min_frequency=1)
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, f"model.line_buckets={BUCKETS}",
                                        "model.line_repeats=6"])
    model = make_model(cfg, tok, ["LOC", "ORG", "PERS"])
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.line_repeats == 6
    enc = PageEncoder.for_model(tok, loaded)
    block = enc.encode_block(pages)
    assert np.array_equal(block[0]["line_ids"], both)
    assert all(np.array_equal(f["line_ids"], enc.encode(q)["line_ids"])
               for f, q in zip(enc.encode_block(pages, alone=True), pages))
    assert np.array_equal(enc.encode(p)["line_ids"], alone)
    assert np.array_equal(enc.encode_block(pages[:1])[0]["line_ids"], alone)  # a block of one page is alone


def test_a_tagger_with_repeat_keys_learns_them_and_alone_is_each_page_on_its_own(tmp_path):
    """A run with repeat keys (python -m train) counts each source's pages in their own order, saves the
    group size, and its Tagger counts the lines of a block: the keys change the section scores, the same
    block tags to the same records, and ``alone`` tags each page as a block of one would."""
    from data.features import line_repeats
    from synthetic import tiny_config, write_pages
    from train.__main__ import main
    from train.data import source_repeats
    pages = _repeat_pages(16, seed=31)
    # training sources: counted in each source's own order, a dropout share left as if alone
    rep = source_repeats([pages[:8], pages[8:]], 8, 0.0, seed=1)
    assert set(rep) == {id(p) for p in pages}
    assert all(np.array_equal(rep[id(p)], c) for p, c in zip(pages[8:], line_repeats(pages[8:], 8)))
    dropped = source_repeats([pages], 8, 0.5, seed=1)
    assert 0 < len(dropped) < len(pages) and dropped.keys() == source_repeats([pages], 8, 0.5, seed=1).keys()

    data = write_pages(tmp_path / "p.jsonl", pages)
    cfg = str(tiny_config(tmp_path, data, data))
    assert main([cfg, f"model.line_buckets={BUCKETS}", "model.line_repeats=8", "training.max_steps=4",
                 "training.line_repeats_dropout=0.25", f"output_dir={tmp_path / 'm'}"]) == 0
    tagger = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1, block_size=16)
    assert tagger.model.config.line_repeats == 8 and tagger.encoder.line_repeats == 8
    together = list(tagger.tag(pages))
    alone = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1, block_size=16, alone=True)
    apart = list(alone.tag(pages))
    assert apart == [list(tagger.tag([p]))[0] for p in pages]  # alone = each page in a block of its own
    assert list(tagger.tag(pages)) == together  # the same block, the same output
    scores = [tagger.block_outputs(pages)[2], alone.block_outputs(pages)[2]]
    assert any(not np.allclose(a, b) for a, b in zip(*scores))  # the keys reach the section scores


def test_line_repeats_needs_line_buckets_and_a_group(tmp_path):
    from synthetic import tiny_config, write_pages
    from train.__main__ import ConfigError, parse
    pages = write_pages(tmp_path / "p.jsonl", synthetic_pages(2, seed=5))
    cfg = str(tiny_config(tmp_path, pages, pages))
    with pytest.raises(ConfigError, match="model.line_repeats: .*set model.line_buckets"):
        parse([cfg, "model.line_repeats=8"])
    with pytest.raises(ConfigError, match="model.line_repeats: 1"):
        parse([cfg, "model.line_repeats=1", "model.line_buckets=64"])
    with pytest.raises(ConfigError, match="training.line_repeats_dropout"):
        parse([cfg, "training.line_repeats_dropout=1.5"])
    assert parse([cfg, "model.line_repeats=8", "model.line_buckets=64"]).model.line_repeats == 8
