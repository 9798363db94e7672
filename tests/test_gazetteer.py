"""The silver gazetteer (train.gazetteer, model.lexical_gazetteer): a CRF fitted on the labelled sentences
tags unlabelled news, and each word's share of entity tags becomes one more lexical key. The codes must
follow the counts, the build must leave the dev documents out and reach words that only the news has,
and the map must reach the lexical features, travel with a saved model and tag the same when loaded."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from synthetic import TINY_OVERRIDES, synthetic_pages
from data.features import LEXICAL_FEATURES, PageEncoder
from data.text import normalize
from infer.tagger import Tagger
from model import train_wordpiece
from model.modeling import GAZETTEER_FILE
from train.__main__ import make_model
from train.config import RunConfig, load_config
from train.gazetteer import build, codes, count_tags, main, tagger_features, train_sentences, word_code


def test_codes_follow_the_share_of_entity_tags_in_bands():
    assert word_code(10, {"PERS": 7}) == "PERS:hi"
    assert word_code(10, {"LOC": 3, "ORG": 1}) == "LOC:mid|ORG:lo"
    assert word_code(100, {"ORG": 4}) == "O"  # under the lowest band
    assert word_code(5, {}) == "O"
    assert word_code(1, {"PERS": 1}) is None  # too rare to say
    total, by_type = count_tags([(["قال", "محمّد", "في", "الرياض"], ["O", "B-PERS", "O", "B-LOC"]),
                                 (["محمد", "بن", "سلمان"], ["B-PERS", "I-PERS", "I-PERS"]),
                                 (["محمد"], ["O"])])
    assert total[normalize("محمّد")] == 3 and by_type["محمد"]["PERS"] == 2  # words are normalised
    got = codes(total, by_type)
    assert got["محمد"] == "PERS:hi" and "الرياض" not in got  # seen once
    with pytest.raises(ValueError, match="2 words but 1 tags"):
        count_tags([(["a", "b"], ["O"])])


def test_tagger_features_add_the_clusters_of_the_word_and_its_neighbours():
    cl = {"قال": [1, 10, 100], "الرئيس": [2, 20, 200]}
    plain = tagger_features(["قال", "الرئيس", "رامي"])
    feats = tagger_features(["قال", "الرئيس", "رامي"], cl)
    assert "c0" not in plain[0] and all(set(p) <= set(f) for p, f in zip(plain, feats))
    assert (feats[0]["c0"], feats[0]["c1"], feats[0]["c2"], feats[0]["1:c1"]) == ("1", "10", "100", "20")
    assert feats[2]["c1"] == "-" and feats[2]["-1:c1"] == "20" and "1:c1" not in feats[2]


def _conll(path, sentences):
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(*s)) for s in sentences) + "\n",
                    encoding="utf-8")
    return path


PEOPLE = ["سامر", "خالد", "فهد", "ماجد", "نايف", "بدر", "وليد", "هشام"]
PLACES = ["الرياض", "جدة", "الدمام", "أبها", "تبوك", "حائل"]


def _sentence(rng, name, place):
    return ([*"قال الرئيس".split(), name, *"في مؤتمر عقد في".split(), place, "أمس"],
            ["O", "O", "B-PERS", "O", "O", "O", "O", "B-LOC", "O"])


def test_build_leaves_the_dev_documents_out_and_codes_words_only_the_news_has(tmp_path):
    rng = random.Random(0)
    sents = [_sentence(rng, rng.choice(PEOPLE), rng.choice(PLACES)) for _ in range(80)]
    # the last document (8 sentences of 80 = 10%) is dev: a name there must not be learned from it
    for i in range(72, 80):
        sents[i] = _sentence(rng, "زيدان", rng.choice(PLACES))
    conll = _conll(tmp_path / "train.txt", sents)
    assert len(train_sentences(str(conll))) == 72
    from argparse import Namespace

    from data.build import load_sources  # the builder's own split agrees
    docs = load_sources(Namespace(conll=[str(conll)], test_conll=None, news=None, conll_format="auto",
                                  sentences_per_doc=8, dev_fraction=0.1, no_reserved_test=True))[0]
    assert sum(len(d.sentences) for d in docs["train"]) == 72
    # news: a name the labelled data never has, in the same contexts, and a reserved day that is never read
    news = tmp_path / "news"
    news.mkdir()
    arts = [{"url": f"u{i}", "date_extracted": "2015-07-21 10:00:00", "title": "خبر",
             "content": f"قال الرئيس رامي في مؤتمر عقد في {rng.choice(PLACES)} أمس. وأضاف أن الاجتماع ناجح."}
            for i in range(30)]
    (news / "2015-07-21.json").write_text(json.dumps(arts, ensure_ascii=False), encoding="utf-8")
    data = build(str(conll), [str(news)], max_words=10_000, max_iterations=50, progress=False)
    words = data["words"]
    assert words["رامي"].startswith("PERS:") and words[normalize("أمس")] == "O"
    assert "زيدان" not in words  # only in the dev documents, and not in the news
    assert data["settings"]["train_sentences"] == 72 and data["settings"]["news_words"] > 300
    from data.readers import RESERVED_DAYS

    day = sorted(RESERVED_DAYS)[0]
    (news / "2015-07-21.json").rename(news / f"{day}.json")
    with pytest.raises(ValueError, match="no news sentences"):
        build(str(conll), [str(news)], max_words=10_000, max_iterations=5, progress=False)


def test_cli_writes_the_file_once_and_names_bad_paths(tmp_path, capsys):
    rng = random.Random(1)
    conll = _conll(tmp_path / "train.txt", [_sentence(rng, rng.choice(PEOPLE), rng.choice(PLACES))
                                            for _ in range(24)])
    news = tmp_path / "news.json"
    news.write_text(json.dumps([{"url": "a", "date_extracted": "2015-07-30", "content": "قال الرئيس رامي "
                                 "في مؤتمر عقد في جدة أمس. قال الرئيس رامي في مؤتمر عقد في جدة أمس."}],
                               ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "gz"
    assert main(["--conll", str(conll), "--news", str(news), "--out", str(out), "--quiet",
                 "--max-iterations", "20"]) == 0
    data = json.loads((out / "gazetteer.json").read_text(encoding="utf-8"))
    assert data["words"]["رامي"].startswith("PERS:")
    before = (out / "gazetteer.json").stat().st_mtime_ns
    assert main(["--conll", str(conll), "--news", str(news), "--out", str(out), "--quiet"]) == 0
    assert (out / "gazetteer.json").stat().st_mtime_ns == before  # resumable: kept
    assert main(["--conll", str(tmp_path / "missing.txt"), "--news", str(news), "--out", str(tmp_path / "x")]) == 2
    assert "missing.txt does not exist" in capsys.readouterr().err


def _gazetteer_model(pages, tmp_path):
    vocab = sorted({normalize(p.text[s:e]) for p in pages for s, e in p.words.tolist()} - {""})
    gz = {w: ("PERS:hi" if i % 3 == 0 else "O") for i, w in enumerate(vocab)}
    path = tmp_path / "gazetteer.json"
    path.write_text(json.dumps({"words": gz}, ensure_ascii=False), encoding="utf-8")
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, "model.lexical_buckets=4096",
                                        "model.lexical_window=1", f"model.lexical_gazetteer={path}"])
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    torch.manual_seed(0)
    return make_model(cfg, tok, ["LOC", "ORG", "PERS"]), tok, gz


def test_encoder_adds_the_gazetteer_key_and_the_model_keeps_its_map(tmp_path):
    pages = synthetic_pages(6, seed=8)
    model, tok, gz = _gazetteer_model(pages, tmp_path)
    assert model.config.lexical_gazetteer and model.word_gazetteer == gz
    with pytest.raises(ValueError, match="silver gazetteer"):
        PageEncoder.from_config(tok, model.config)  # the map is part of the model's features
    enc = PageEncoder.for_model(tok, model)
    plain = PageEncoder(tok, lexical_buckets=4096, lexical_window=1)
    words = [w for w in gz][:6] + ["كلمةمجهولة"]
    h, p = enc.lexical_hashes(words), plain.lexical_hashes(words)
    assert h.shape == (7, LEXICAL_FEATURES + 1) and np.array_equal(h[:, :LEXICAL_FEATURES], p)
    col = h[:, LEXICAL_FEATURES]
    assert col[0] == col[3] != col[1] == col[2]  # one key per code
    assert col[6] not in col[:6]  # an unknown word has the "no code" key
    # the codes reach the NER scores
    other = PageEncoder.from_config(tok, model.config, word_gazetteer={w: "LOC:hi" for w in gz})
    a, b = enc.encode(pages[0]), other.encode(pages[0])
    assert not np.array_equal(a["lex_ids"], b["lex_ids"])
    with torch.no_grad():
        torch.nn.init.normal_(model.lexical.weight)
        assert not torch.allclose(model.eval()(**enc.collate([a])).ner_logits, model(**other.collate([b])).ner_logits)
    # saved and loaded: the same map, the same tags
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / GAZETTEER_FILE).exists()
    loaded = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1)
    assert loaded.model.word_gazetteer == gz
    assert list(loaded.tag(pages)) == list(Tagger(model, tok, device="cpu", streams=1).tag(pages))
    (tmp_path / "m" / GAZETTEER_FILE).write_text('{"words": {"a": 3}}', encoding="utf-8")
    with pytest.raises(ValueError, match=GAZETTEER_FILE):
        Tagger.from_pretrained(tmp_path / "m", device="cpu")
    (tmp_path / "m" / GAZETTEER_FILE).unlink()
    with pytest.raises(ValueError, match=f"has no {GAZETTEER_FILE}"):
        Tagger.from_pretrained(tmp_path / "m", device="cpu")


def test_training_with_a_gazetteer_resumes_with_its_map(tmp_path, capsys):
    from synthetic import tiny_config, write_pages
    from train.__main__ import main as train_main

    pages = synthetic_pages(8, seed=5)
    vocab = sorted({normalize(p.text[s:e]) for p in pages for s, e in p.words.tolist()} - {""})
    path = tmp_path / "gazetteer.json"
    path.write_text(json.dumps({"words": {w: "O" for w in vocab}}, ensure_ascii=False), encoding="utf-8")
    cfg = tiny_config(tmp_path, write_pages(tmp_path / "train.jsonl", pages),
                      write_pages(tmp_path / "dev.jsonl", synthetic_pages(2, seed=6)))
    opts = [str(cfg), *TINY_OVERRIDES, "model.lexical_buckets=1024", f"model.lexical_gazetteer={path}"]
    assert train_main([*opts, "model.lexical_buckets=0"]) == 2
    assert "set model.lexical_buckets too" in capsys.readouterr().err
    assert train_main([*opts[:-1], f"model.lexical_gazetteer={tmp_path / 'none.json'}"]) == 2
    assert "none.json" in capsys.readouterr().err
    assert train_main([*opts, "training.num_train_epochs=1"]) == 0
    ckpts = sorted((tmp_path / "model").glob("checkpoint-*"))
    assert ckpts and (ckpts[-1] / GAZETTEER_FILE).is_file() and (tmp_path / "model" / GAZETTEER_FILE).is_file()
    (ckpts[-1] / GAZETTEER_FILE).write_text("{not json", encoding="utf-8")
    capsys.readouterr()
    assert train_main([*opts, "training.num_train_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert GAZETTEER_FILE in err and "resuming" in err and "Traceback" not in err


def test_line_gazetteer_keys_class_short_lines_by_their_names():
    from data.features import CLUSTER_LINE_WORDS, GAZETTEER_LINE_FEATURES, gazetteer_class, line_feature_ids, line_gazetteer_keys

    assert [gazetteer_class(c) for c in ("PERS:hi", "LOC:mid|ORG:lo", "ORG:lo|PERS:mid", "MISC:lo", "O", None)] == \
        ["P", "Lm", "Pm", "Ml", "O", "-"]
    gz = {"طارق": "PERS:hi", "السويدي": "PERS:mid", "الرياض": "LOC:hi", "في": "O", "مراسلنا": "ORG:lo"}
    lines = ["طارق السويدي الرياض", "مراسلنا في الرياض 2015", "،", " ".join(["في"] * (CLUSTER_LINE_WORDS + 1)), "",
             "كلمة أخرى"]
    text = "\n".join(lines)
    spans, pos = [], 0
    for line in lines:
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    keys = line_gazetteer_keys(text, spans, gz)
    assert keys[0] == ["kg=P", "kg=Pm", "kg=L", "kgn=3/3"]  # a byline: three names of three words
    assert keys[1] == ["kg=Gl", "kg=O", "kg=L", "kg=#", "kgn=1/4"]  # a low share is no name
    assert keys[2] == ["kg=p", "kgn=0/1"]
    assert keys[3] == [] and keys[4] == []  # a long line and a blank one: nothing
    assert keys[5] == ["kg=-", "kgn=0/2"]  # words the news never coded
    assert max(map(len, keys)) <= GAZETTEER_LINE_FEATURES
    # the keys widen the model's line ids, and another gazetteer gives other ids
    import numpy as np
    arr = np.array(spans)
    plain, wide = line_feature_ids(text, arr, 4096), line_feature_ids(text, arr, 4096, gazetteer=gz)
    assert wide.shape == (len(lines), plain.shape[1] + GAZETTEER_LINE_FEATURES)
    for a, b in zip(plain, wide):  # each line's keys, then its gazetteer keys
        n = int((a > 0).sum())
        assert np.array_equal(b[:n], a[:n]) and (b > 0).sum() > n or not b[n:].any()
    other = line_feature_ids(text, arr, 4096, gazetteer={w: "O" for w in gz})
    assert not np.array_equal(wide[0], other[0]) and np.array_equal(wide[3], other[3])


def test_training_with_line_gazetteer_keys_learns_and_the_tagger_reads_them(tmp_path, capsys):
    from synthetic import tiny_config, write_pages
    from train.__main__ import main as train_main
    from transformers import AutoTokenizer

    from model.modeling import JointModel

    pages = synthetic_pages(8, seed=5)
    vocab = sorted({normalize(p.text[s:e]) for p in pages for s, e in p.words.tolist()} - {""})
    rng = random.Random(0)
    path = tmp_path / "gazetteer.json"
    path.write_text(json.dumps({"words": {w: rng.choice(["O", "PERS:hi", "LOC:mid"]) for w in vocab}},
                               ensure_ascii=False), encoding="utf-8")
    cfg = tiny_config(tmp_path, write_pages(tmp_path / "train.jsonl", pages),
                      write_pages(tmp_path / "dev.jsonl", synthetic_pages(2, seed=6)))
    opts = [str(cfg), *TINY_OVERRIDES, "model.lexical_buckets=1024", "model.line_buckets=1024",
            "model.line_tags=true", f"model.lexical_gazetteer={path}", "model.line_gazetteer=true"]
    assert train_main([*opts[:-2], "model.line_gazetteer=true"]) == 2  # no gazetteer to read
    assert "model.line_gazetteer" in capsys.readouterr().err
    assert train_main([*opts, "training.num_train_epochs=3"]) == 0
    out = tmp_path / "model"
    losses = [r["loss"] for r in json.loads((out / "log_history.json").read_text()) if "loss" in r]
    assert len(losses) >= 2 and losses[-1] < losses[0]
    model = JointModel.from_pretrained(out)
    assert model.config.line_gazetteer and model.word_gazetteer
    enc = PageEncoder.for_model(AutoTokenizer.from_pretrained(out), model)
    assert enc.line_gazetteer
    plain = PageEncoder.for_model(AutoTokenizer.from_pretrained(out), model, line_gazetteer=False)
    assert enc.encode(pages[0])["line_ids"].shape[1] > plain.encode(pages[0])["line_ids"].shape[1]
    # the Tagger keeps offsets: each section and entity is a span of the page's own text
    tagger = Tagger.from_pretrained(out, device="cpu", streams=1)
    for page, rec in zip(pages, tagger.tag(pages)):
        for s in rec["sections"]:
            assert 0 <= s["start"] < s["end"] <= len(page.text)
        for e in rec["entities"]:
            assert page.text[e["start"]:e["end"]] == e["text"]
    with pytest.raises(ValueError, match="line_gazetteer"):
        PageEncoder(enc.tokenizer, line_buckets=1024, line_gazetteer=True)
