"""Word clusters (model.lexical_clusters): k-means clusters of static word vectors as extra lexical keys.
They must group words whose vectors agree, reach the lexical features, travel with a saved model, and
tag the same through a loaded Tagger as in memory."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthetic import TINY_OVERRIDES, synthetic_pages
from data.features import LEXICAL_FEATURES, PageEncoder
from data.text import normalize
from infer.tagger import Tagger
from model import JointModel, train_wordpiece
from model.modeling import CLUSTERS_FILE
from train.__main__ import make_model
from train.config import RunConfig, load_config
from train.embeddings import word_clusters


def _vectors(groups: list[list[str]], dim: int = 16, seed: int = 0):
    """Stand-in KeyedVectors: the words of a group point the same way, plus a little noise."""
    rng = np.random.default_rng(seed)
    words, vecs = [], []
    for g in groups:
        centre = rng.normal(size=dim)
        for w in g:
            words.append(w)
            vecs.append(centre + 0.05 * rng.normal(size=dim))
    return SimpleNamespace(index_to_key=words, vectors=np.asarray(vecs, dtype=np.float32))


PLACES = [normalize(w) for w in ("الرياض", "جدة", "القاهرة", "دبي", "عمان")]
PEOPLE = [normalize(w) for w in ("محمد", "أحمد", "خالد", "سارة", "فاطمة")]
VERBS = [normalize(w) for w in ("قال", "أكد", "أعلن", "أوضح", "ذكر")]


def test_clusters_group_words_whose_vectors_agree_and_are_deterministic():
    kv = _vectors([PLACES, PEOPLE, VERBS])
    cl = word_clusters(kv, [3, 6])
    assert set(cl) == set(PLACES + PEOPLE + VERBS) and all(len(v) == 2 for v in cl.values())
    for group in (PLACES, PEOPLE, VERBS):
        assert len({cl[w][0] for w in group}) == 1  # one cluster per group at size 3
    assert len({cl[g[0]][0] for g in (PLACES, PEOPLE, VERBS)}) == 3
    assert all(0 <= cl[w][1] < 6 for w in cl)
    assert word_clusters(kv, [3, 6]) == cl


def test_encoder_adds_one_cluster_key_per_size_shared_within_a_cluster(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cl = word_clusters(_vectors([PLACES, PEOPLE]), [2, 4])
    enc = PageEncoder(tok, lexical_buckets=4096, lexical_window=1, word_clusters=cl)
    plain = PageEncoder(tok, lexical_buckets=4096, lexical_window=1)
    words = ["الرياض", "جدة", "محمد", "كلمةمجهولة"]
    h, p = enc.lexical_hashes(words), plain.lexical_hashes(words)
    assert h.shape == (4, LEXICAL_FEATURES + 2) and p.shape == (4, LEXICAL_FEATURES)
    assert np.array_equal(h[:, :LEXICAL_FEATURES], p)  # the word's own keys are unchanged
    assert h[0, LEXICAL_FEATURES] == h[1, LEXICAL_FEATURES] != h[2, LEXICAL_FEATURES]  # places share a key
    unknown = h[3, LEXICAL_FEATURES:]
    assert not set(unknown) & set(h[:3, LEXICAL_FEATURES:].ravel())  # an unknown word has its own key
    page = synthetic_pages(1, seed=2)[0]
    feat = enc.encode(page)
    assert feat["lex_ids"].shape == (len(page.words), 3 * (LEXICAL_FEATURES + 2))


def _cluster_model(pages, tmp_path, *overrides):
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, "model.lexical_buckets=4096",
                                        "model.lexical_window=1", "model.lexical_clusters=[2, 4]", *overrides])
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    torch.manual_seed(0)
    model = make_model(cfg, tok, ["LOC", "ORG", "PERS"])
    vocab = sorted({normalize(p.text[s:e]) for p in pages for s, e in p.words.tolist()} - {""})
    half = len(vocab) // 2
    model.word_clusters = word_clusters(_vectors([vocab[:half], vocab[half:]]), [2, 4])
    return model, tok


def test_saved_model_keeps_its_clusters_and_the_tagger_uses_them(tmp_path):
    pages = synthetic_pages(6, seed=8)
    model, tok = _cluster_model(pages, tmp_path)
    assert model.config.lexical_clusters == [2, 4]
    with pytest.raises(ValueError, match="word clusters"):
        PageEncoder.from_config(tok, model.config)  # the map is part of the model's features
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / CLUSTERS_FILE).exists()
    loaded = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1)
    assert loaded.model.word_clusters == model.word_clusters
    assert loaded.encoder.n_cluster_keys == 2
    ours = list(Tagger(model, tok, device="cpu", streams=1).tag(pages))
    assert list(loaded.tag(pages)) == ours
    # the clusters reach the tags: other clusters, other lexical ids, other NER scores
    enc = PageEncoder.for_model(tok, model)
    other = PageEncoder.from_config(tok, model.config, word_clusters={w: [1 - c[0], 3 - c[1]]
                                                                       for w, c in model.word_clusters.items()})
    a, b = enc.encode(pages[0]), other.encode(pages[0])
    assert not np.array_equal(a["lex_ids"], b["lex_ids"])
    with torch.no_grad():
        torch.nn.init.normal_(model.lexical.weight)
        la = model.eval()(**enc.collate([a])).ner_logits
        lb = model(**other.collate([b])).ner_logits
    assert not torch.allclose(la, lb)
    # a model folder without its map is a clear error
    (tmp_path / "m" / CLUSTERS_FILE).unlink()
    with pytest.raises(ValueError, match=CLUSTERS_FILE):
        Tagger.from_pretrained(tmp_path / "m", device="cpu")


def test_training_config_builds_clusters_from_the_vectors(tmp_path):
    gensim = pytest.importorskip("gensim", reason="word vectors need gensim (the baselines extra)")
    kv = gensim.models.KeyedVectors(vector_size=64)
    src = _vectors([PLACES, PEOPLE, VERBS], dim=64)
    kv.add_vectors(src.index_to_key, src.vectors)
    kv.save(str(tmp_path / "vectors.kv"))
    pages = synthetic_pages(4, seed=9)
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES, "model.lexical_buckets=4096",
                                        "model.lexical_dim=64", f"model.lexical_vectors={tmp_path / 'vectors.kv'}",
                                        "model.lexical_clusters=[3]"])
    model = make_model(cfg, tok, ["LOC", "ORG", "PERS"])
    assert isinstance(model, JointModel) and set(model.word_clusters) == set(PLACES + PEOPLE + VERBS)
    assert len({model.word_clusters[w][0] for w in PLACES}) == 1


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not a word-cluster file"),
    ('{"sizes": [2, 8], "words": {}}', "cluster sizes"),
    ('{"sizes": [2, 4], "words": {"a": [1]}}', "2 cluster ids"),
    ('{"sizes": [2, 4]}', "not a word-cluster file"),
])
def test_a_broken_cluster_file_is_an_error_naming_it(content, reason, tmp_path):
    pages = synthetic_pages(3, seed=10)
    model, tok = _cluster_model(pages, tmp_path)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / CLUSTERS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=CLUSTERS_FILE) as err:
        Tagger.from_pretrained(tmp_path / "m", device="cpu")
    assert reason in str(err.value)


def test_resume_with_a_broken_cluster_file_is_an_error_naming_it(tmp_path, capsys):
    gensim = pytest.importorskip("gensim", reason="word vectors need gensim (the baselines extra)")
    from synthetic import tiny_config, write_pages
    from train.__main__ import main

    kv = gensim.models.KeyedVectors(vector_size=32)
    src = _vectors([PLACES, PEOPLE, VERBS], dim=32)
    kv.add_vectors(src.index_to_key, src.vectors)
    kv.save(str(tmp_path / "vectors.kv"))
    cfg = tiny_config(tmp_path, write_pages(tmp_path / "train.jsonl", synthetic_pages(8, seed=5)),
                      write_pages(tmp_path / "dev.jsonl", synthetic_pages(2, seed=6)))
    opts = [str(cfg), *TINY_OVERRIDES, "model.lexical_buckets=1024", "model.lexical_dim=32",
            f"model.lexical_vectors={tmp_path / 'vectors.kv'}", "model.lexical_clusters=[3]"]
    assert main([*opts, "training.num_train_epochs=1"]) == 0
    ckpts = sorted((tmp_path / "model").glob("checkpoint-*"))
    assert ckpts and (ckpts[-1] / CLUSTERS_FILE).is_file()
    (ckpts[-1] / CLUSTERS_FILE).write_text("{not json", encoding="utf-8")
    capsys.readouterr()
    assert main([*opts, "training.num_train_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert CLUSTERS_FILE in err and "resuming" in err and "Traceback" not in err


def test_line_cluster_keys_share_a_key_across_words_of_one_cluster():
    """model.line_clusters: a short line's words give their clusters as line keys, so furniture in
    a word the training pages never had shares keys with furniture in a word of the same cluster."""
    from data.features import CLUSTER_LINE_WORDS, line_cluster_keys
    from data.schema import Page

    social = {normalize(w): [0, 7] for w in ("تويتر", "يوتيوب")}
    clusters = {**social, normalize("تابعونا"): [1, 3], normalize("على"): [2, 5]}
    long_line = " ".join(["كلمة"] * (CLUSTER_LINE_WORDS + 1))
    text = f"تابعونا على تويتر\nتابعونا على يوتيوب\nتابعونا على تلغرام\n{long_line}"
    page = Page(id="k", text=text)
    keys = line_cluster_keys(text, page.lines.tolist(), clusters, 1)
    assert keys[0] == keys[1] == ["kb=3", "kb=5", "kb=7"]
    assert keys[2] == ["kb=3", "kb=5", "kb=-"]  # an unknown word is a key of its own
    assert keys[3] == []  # long lines are text, not furniture: no cluster keys
    assert line_cluster_keys(text, page.lines.tolist(), clusters, 0)[0] == ["kb=1", "kb=2", "kb=0"]


def test_line_cluster_ids_follow_the_saved_config_to_the_tagger(tmp_path):
    from data.features import CLUSTER_LINE_WORDS, LINE_FEATURES, line_feature_ids
    from train.__main__ import ConfigError, parse

    pages = synthetic_pages(4, seed=9)
    model, tok = _cluster_model(pages, tmp_path, "model.line_buckets=1024", "model.line_clusters=4")
    assert model.config.line_clusters == 4
    enc = PageEncoder.for_model(tok, model)
    assert enc.line_cluster_level == 1
    ids = enc.encode(pages[0])["line_ids"]
    assert ids.shape == (len(pages[0].lines), LINE_FEATURES + CLUSTER_LINE_WORDS)
    short = [i for i, (s, e) in enumerate(pages[0].lines.tolist())
             if 0 < len(pages[0].text[s:e].split()) <= CLUSTER_LINE_WORDS]
    plain = line_feature_ids(pages[0].text, pages[0].lines, 1024)
    extra = (ids > 0).sum(1) - (plain > 0).sum(1)
    assert short and all(extra[i] > 0 for i in short) and not extra[[i for i in range(len(ids)) if i not in short]].any()
    # other clusters, other line ids; the saved model's Tagger makes the same ids and tags
    other = PageEncoder.from_config(tok, model.config, word_clusters={w: [1 - c[0], 3 - c[1]]
                                                                       for w, c in model.word_clusters.items()})
    assert not np.array_equal(other.encode(pages[0])["line_ids"], ids)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1)
    assert np.array_equal(loaded.encoder.encode(pages[0])["line_ids"], ids)
    assert list(loaded.tag(pages)) == list(Tagger(model, tok, device="cpu", streams=1).tag(pages))
    # the config's cross-checks name the key
    from synthetic import tiny_config, write_pages
    sample = write_pages(tmp_path / "p.jsonl", pages)
    cfg = str(tiny_config(tmp_path, sample, sample))
    with pytest.raises(ConfigError, match="model.line_clusters: .*model.line_buckets"):
        parse([cfg, "model.line_clusters=4"])
    with pytest.raises(ConfigError, match="model.line_clusters: 8 is not one of"):
        parse([cfg, "model.line_clusters=8", "model.line_buckets=64", "model.lexical_buckets=64",
               f"model.lexical_vectors={tmp_path / 'p.jsonl'}", "model.lexical_clusters=[2, 4]"])
