"""The optional CRF: its likelihood and Viterbi path equal brute-force enumeration, and a joint model
with a CRF trains (loss falls) and tags pages through the Tagger."""
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig

from data.features import PageEncoder
from data.labels import entity_tagset
from data.schema import Page
from infer.tagger import Tagger
from model import JointConfig, JointModel, train_wordpiece
from model.crf import LinearChainCRF
from synthetic import fit_steps


def _crf(T=3, seed=0):
    torch.manual_seed(seed)
    crf = LinearChainCRF(T)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


@torch.no_grad()
def _path_score(crf, em, tags):
    s = crf.start[tags[0]] + em[0, tags[0]]
    for a, b, t in zip(tags, tags[1:], range(1, len(tags))):
        s = s + crf.transitions[a, b] + em[t, b]
    return s + crf.end[tags[-1]]


def test_nll_equals_brute_force_over_labelled_runs():
    crf, T = _crf(), 3
    em = torch.randn(7, T)
    labels = torch.tensor([0, 2, 1, -100, 1, 0, 2])   # two runs on page 0 (cut by the unlabelled word)...
    page = torch.tensor([0, 0, 0, 0, 0, 1, 1])        # ...and page 1 starts a third run
    runs = [(0, 3), (4, 5), (5, 7)]
    expected = 0.0
    torch.set_grad_enabled(False)
    for a, b in runs:
        e = em[a:b]
        log_z = torch.logsumexp(torch.stack([_path_score(crf, e, p)
                                             for p in itertools.product(range(T), repeat=b - a)]), 0)
        expected += float(log_z - _path_score(crf, e, labels[a:b].tolist()))
    torch.set_grad_enabled(True)
    got = float(crf.nll(em, labels, page).detach()) * 6  # mean over the 6 labelled words
    assert abs(got - expected) < 1e-4
    assert float(crf.nll(em, torch.full((7,), -100), page)) == 0.0


def test_viterbi_equals_brute_force_and_restarts_at_line_changes():
    crf, T = _crf(seed=1), 3
    lp = np.log(np.random.default_rng(0).dirichlet(np.ones(T), size=6)).astype(np.float32)
    best = max(itertools.product(range(T), repeat=6),
               key=lambda p: float(_path_score(crf, torch.from_numpy(lp), list(p))))
    assert crf.viterbi(lp).tolist() == list(best)
    groups = np.array([0, 0, 0, 1, 1, 1])
    halves = []
    for a, b in ((0, 3), (3, 6)):
        halves += max(itertools.product(range(T), repeat=3),
                      key=lambda p: float(_path_score(crf, torch.from_numpy(lp[a:b]), list(p))))
    assert crf.viterbi(lp, groups).tolist() == list(halves)


def test_viterbi_decodes_many_chains_side_by_side_as_each_alone():
    """Chains of every length (1 word too), in any order of lengths, with tied scores: decoding them
    together (the loop over positions, not words) gives each chain's own best path."""
    rng = np.random.default_rng(5)
    for trial in range(30):
        crf, T = _crf(T=3, seed=trial), 3
        lengths = rng.integers(1, 6, size=int(rng.integers(1, 7)))
        n = int(lengths.sum())
        lp = rng.normal(size=(n, T)).astype(np.float32)
        if trial % 3 == 0:
            lp = np.round(lp)  # ties: the same tie-breaking as a chain alone
        ids = rng.permutation(100)[: len(lengths)]  # group values need not ascend, only change
        groups = np.repeat(ids, lengths)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        alone = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            best = max(itertools.product(range(T), repeat=int(b - a)),
                       key=lambda p: float(_path_score(crf, torch.from_numpy(lp[a:b]), list(p))))
            path = crf.viterbi(lp[a:b]).tolist()
            em = torch.from_numpy(lp[a:b])
            assert abs(float(_path_score(crf, em, path)) - float(_path_score(crf, em, list(best)))) < 1e-5
            alone += path
        assert crf.viterbi(lp, groups).tolist() == alone


def _small_model(n_pages: int, **config):
    """The first sample pages, a WordPiece trained on them and a 1x32 joint model with ``config``."""
    pages = [Page.from_dict(json.loads(line)) for line in
             Path("data/sample/train.jsonl").read_text(encoding="utf-8").splitlines()[:n_pages]]
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    ts = entity_tagset(["LOC", "MISC", "ORG", "PERS"])
    enc = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    cfg = JointConfig(encoder=enc, id2label=ts.id2label, label2id=ts.label2id, window_length=64, stride=16,
                      **config)
    torch.manual_seed(0)
    return pages, tok, ts, cfg, JointModel(cfg)


def test_joint_model_with_crf_trains_and_tags(tmp_path):
    pages, tok, ts, cfg, model = _small_model(4, use_crf=True)
    pe = PageEncoder.from_config(tok, cfg)
    batch = pe.collate([pe.encode(p, ts) for p in pages])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(out.ner_loss.detach()))
    assert losses[-1] < losses[0] * 0.7
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tagger = Tagger.from_pretrained(tmp_path)
    assert tagger.model.crf is not None
    with torch.no_grad():  # a decisive chain, so that decoding the lines together could show
        tagger.model.crf.transitions.normal_(0.0, 3.0)
    together = list(tagger.tag(pages))
    assert sum(len(r["entities"]) for r in together) > 0
    for page, res in zip(pages, together):
        for e in res["entities"]:
            assert page.text[e["start"]:e["end"]] == e["text"]
        # the block's lines are decoded side by side; each page alone gives the same entities
        assert res == tagger.tag_block([page])[0]
    # and the tags of the whole block's lines, decoded in one call, are each line's own Viterbi path
    feats = [tagger.encoder.encode(p) for p in pages]
    probs = tagger.block_outputs(pages, feats)[1]
    got = tagger._ner_ids(probs, [f["word_line"] for f in feats], 0.0)
    for feat, p, ids in zip(feats, probs, got):
        scores = np.log(np.maximum(p, 1e-12))
        path = np.concatenate([tagger.model.crf.viterbi(scores[feat["word_line"] == line])
                               for line in np.unique(feat["word_line"])])
        assert ids.tolist() == path.tolist()


def test_section_crf_trains_and_the_tagger_decodes_each_page_by_viterbi(tmp_path):
    """model.section_crf: the section loss is the chain's NLL over each page's lines, the transitions
    learn, and the Tagger's sections are the Viterbi path over the lines (not the per-line argmax)."""
    from data.labels import SECTION_TAGS

    pages, tok, ts, cfg, model = _small_model(6, section_crf=True, line_buckets=1024, line_feature_dim=8)
    pe = PageEncoder.from_config(tok, cfg)
    batch = pe.collate([pe.encode(p, ts) for p in pages])
    losses = fit_steps(model, batch, 15, 5e-3, loss="section_loss")
    assert losses[-1] < losses[0] * 0.7, losses
    assert model.section_chain.transitions.abs().sum() > 0
    model.eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tagger = Tagger.from_pretrained(tmp_path)
    chain = tagger.model.section_chain
    assert chain is not None and torch.equal(chain.transitions, model.section_chain.transitions)
    # Make the chain decisive: I-x may follow only B-x or I-x of the same label. The Tagger must obey it.
    n = len(SECTION_TAGS.tags)
    with torch.no_grad():
        chain.transitions.fill_(0.0)
        for a in range(n):
            for b in range(1, n, 2):  # I- tags
                if SECTION_TAGS.type_of(np.array([a]))[0] != SECTION_TAGS.type_of(np.array([b]))[0]:
                    chain.transitions[a, b] = -1e4
        chain.start[1::2] = -1e4
    for page, res in zip(pages, tagger.tag(pages)):
        feat = pe.encode(page)
        with torch.no_grad():
            logp = torch.log_softmax(tagger.model(**pe.collate([feat])).section_logits, -1).numpy()
        path = chain.viterbi(logp)
        assert res["sections"] == [s.to_dict() for s in SECTION_TAGS.decode(page.lines, path)]
        types, begin = SECTION_TAGS.type_of(path), SECTION_TAGS.is_begin(path)
        assert begin[0] and all(begin[1:] | (types[1:] == types[:-1]))  # the forbidden moves never happen


def test_joint_model_ner_loss_is_a_chain_per_line():
    """The CRF likelihood in training restarts at each line, like the lexical CRF fit and the Tagger's
    Viterbi: the page's loss equals the labelled-word-weighted mean of each line scored on its own."""
    pages, tok, ts, cfg, model = _small_model(3, use_crf=True)
    with torch.no_grad():
        for p in model.crf.parameters():
            p.normal_()
    pe = PageEncoder.from_config(tok, cfg)
    batch = pe.collate([pe.encode(p, ts) for p in pages])
    model.eval()
    with torch.no_grad():
        out = model(**batch)
        labels, lines = batch["ner_labels"], batch["word_line"]
        total, n = 0.0, 0
        for line in lines.unique().tolist():
            sel = lines == line
            k = int((labels[sel] != -100).sum())
            if k:
                one = torch.zeros(int(sel.sum()), dtype=torch.long)
                total += float(model.crf.nll(out.ner_logits[sel], labels[sel], one).detach()) * k
                n += k
        assert len(lines.unique()) > len(pages) and n > 0
        assert abs(float(out.ner_loss.detach()) - total / n) < 1e-4
        chained = float(model.crf.nll(out.ner_logits, labels, batch["line_page"][lines]))
        assert abs(chained - total / n) > 1e-3  # what the page-long chain gave: not the same loss


def test_viterbi_once_equals_brute_force_under_the_at_most_once_masks():
    """viterbi_once: the best path among those that use each mask's tags at most once in all."""
    rng = np.random.default_rng(3)
    T = 4
    masks_all = [np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 1], bool)]
    for trial in range(40):
        crf = _crf(T, seed=trial)
        n = int(rng.integers(1, 6))
        lp = rng.normal(size=(n, T)).astype(np.float32)
        masks = masks_all[: trial % 3]
        closed = [(2, 3)] if trial % 2 else []  # tag 3 only after tag 2 or 3, never first
        ok = [p for p in itertools.product(range(T), repeat=n) if all(sum(m[t] for t in p) <= 1 for m in masks)
              and not (closed and (p[0] == 3 or any(b == 3 and a not in (2, 3) for a, b in zip(p, p[1:]))))]
        best = max(ok, key=lambda p: float(_path_score(crf, torch.from_numpy(lp), list(p))))
        assert crf.viterbi_once(lp, masks, closed).tolist() == list(best)
    assert crf.viterbi_once(lp, []).tolist() == crf.viterbi(lp).tolist()


def test_section_once_keeps_one_title_per_page_and_is_saved_with_the_model(tmp_path):
    """model.section_once: [title] - where the section scores call every line a title, the Tagger
    still gives the page a single title section (the most title-like line), with or without a chain."""
    import pytest

    from synthetic import synthetic_pages, tiny_config, write_pages

    from data.labels import SECTION_TAGS
    from train.__main__ import ConfigError, parse

    b_title = SECTION_TAGS.tags.index("B-title")
    for chain in (True, False):
        pages, tok, ts, cfg, model = _small_model(3, section_crf=chain, section_once=["title"])
        with torch.no_grad():  # every line is a title by a wide margin
            model.section_head.bias.zero_()
            model.section_head.bias[b_title] = 20.0
        model.eval()
        model.save_pretrained(tmp_path / str(chain))
        tok.save_pretrained(tmp_path / str(chain))
        free = Tagger.from_pretrained(tmp_path / str(chain), section_once=[])
        once = Tagger.from_pretrained(tmp_path / str(chain))
        assert once.section_once == ["title"]
        for page, a, b in zip(pages, free.tag(pages), once.tag(pages)):
            n_lines = len(page.lines)
            assert sum(s["label"] == "title" for s in a["sections"]) == n_lines > 1
            titles = [s for s in b["sections"] if s["label"] == "title"]
            assert len(titles) == 1 and len(b["sections"]) >= 2
            assert sum(len(page.text[s["start"]:s["end"]].splitlines()) for s in b["sections"]) >= n_lines
    # python -m train.evaluate --section-once: the rule from the saved config, or none
    sample = write_pages(tmp_path / "gold.jsonl", pages)
    titles = _predicted_lines(tmp_path / "True", sample, tmp_path, "--section-once", "title", bad="titel")
    assert titles[0] < titles[2]  # title lines: one title section per page against every line a title
    with pytest.raises(ValueError, match="body"):
        JointConfig(section_once=["body"])
    sample = write_pages(tmp_path / "p.jsonl", synthetic_pages(2, seed=5))
    cfg = str(tiny_config(tmp_path, sample, sample))
    with pytest.raises(ConfigError, match="model.section_once: 'titel'"):
        parse([cfg, "model.section_once=[titel]"])
    assert parse([cfg, "model.section_once=[title, byline]"]).model.section_once == ["title", "byline"]


def _predicted_lines(model_dir, sample, tmp_path, flag, label, bad):
    """python -m train.evaluate on ``sample``: the lines predicted as ``label`` with the model's own rule
    (key 0) and with ``flag none`` (key 2); ``flag bad`` (an unknown label) is a usage error, nothing written."""
    from train import evaluate
    assert evaluate.main(["--model", str(model_dir), "--pages", str(sample), "--out", str(tmp_path / "e"),
                          "--device", "cpu", flag, bad]) == 2
    assert not (tmp_path / "e").exists()
    got = {}
    for extra in ([], [flag, "none"]):
        out = tmp_path / f"eval{len(extra)}"
        assert evaluate.main(["--model", str(model_dir), "--pages", str(sample), "--out", str(out),
                              "--device", "cpu", *extra]) == 0
        m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        got[len(extra)] = m["blocks"]["gold"]["sections"]["labels"][label]["predicted"]
    return got


def test_viterbi_once_with_required_masks_equals_brute_force():
    """viterbi_once(required=): the best path among those that use a tag of each required mask at least once
    (and each once mask's tags at most once, the closed pairs kept); a path that cannot meet them: the best."""
    rng = np.random.default_rng(5)
    T = 4
    once_all = [np.array([1, 0, 0, 0], bool)]
    req_all = [np.array([0, 1, 0, 0], bool), np.array([0, 0, 1, 1], bool)]
    for trial in range(60):
        crf = _crf(T, seed=100 + trial)
        n = int(rng.integers(1, 6))
        lp = rng.normal(size=(n, T)).astype(np.float32)
        lp[:, 1] -= 3.0  # tag 1 (the first required mask) seldom wins unconstrained
        once = once_all[: trial % 2]
        required = req_all[: 1 + trial % 2] if n > 1 or trial % 2 == 0 else req_all[:1]
        closed = [(2, 3)] if trial % 3 == 0 else []
        ok = [p for p in itertools.product(range(T), repeat=n) if all(sum(m[t] for t in p) <= 1 for m in once)
              and all(any(m[t] for t in p) for m in required)
              and not (closed and (p[0] == 3 or any(b == 3 and a not in (2, 3) for a, b in zip(p, p[1:]))))]
        best = max(ok, key=lambda p: float(_path_score(crf, torch.from_numpy(lp), list(p))))
        got = crf.viterbi_once(lp, once, closed, required).tolist()
        assert got == list(best), (trial, got, best)
    # one line cannot hold both required masks: the rule gives way to the best path under the others
    lp = rng.normal(size=(1, T)).astype(np.float32)
    free = crf.viterbi_once(lp, [], (), [])
    assert crf.viterbi_once(lp, [], (), req_all).tolist() == free.tolist()


def test_section_required_gives_a_page_a_body_and_is_saved_with_the_model(tmp_path):
    """model.section_required: [body] - where the section scores call no line body, the Tagger still finds
    one body section a page (the most body-like lines), with or without a chain; the rule is read from the
    saved config, the CLI flag overrides it, and a bad label is an error that names it."""
    import pytest

    from synthetic import synthetic_pages, tiny_config, write_pages

    from data.labels import SECTION_TAGS
    from train.__main__ import ConfigError, parse

    tags = SECTION_TAGS.tags
    b_tags = tags.index("B-tags")
    for chain in (True, False):
        pages, tok, ts, cfg, model = _small_model(3, section_crf=chain, section_required=["body"])
        with torch.no_grad():  # every line is a tag line by a wide margin, body the least likely of all
            model.section_head.bias.zero_()
            model.section_head.bias[b_tags] = 20.0
            model.section_head.bias[[tags.index("B-body"), tags.index("I-body")]] = -5.0
        model.eval()
        model.save_pretrained(tmp_path / str(chain))
        tok.save_pretrained(tmp_path / str(chain))
        assert json.loads((tmp_path / str(chain) / "config.json").read_text())["section_required"] == ["body"]
        free = Tagger.from_pretrained(tmp_path / str(chain), section_required=[])
        need = Tagger.from_pretrained(tmp_path / str(chain))
        assert need.section_required == ["body"] and free.section_required == []
        for page, a, b in zip(pages, free.tag(pages), need.tag(pages)):
            assert not any(s["label"] == "body" for s in a["sections"])
            assert sum(s["label"] == "body" for s in b["sections"]) >= 1
            assert [(s["start"], s["end"]) for s in b["sections"]] == sorted((s["start"], s["end"]) for s in b["sections"])
            assert all(0 <= s["start"] < s["end"] <= len(page.text) for s in b["sections"])
    sample = write_pages(tmp_path / "gold.jsonl", pages)
    bodies = _predicted_lines(tmp_path / "True", sample, tmp_path, "--section-required", "body", bad="bodi")
    assert bodies[0] >= len(pages) > bodies[2] == 0
    with pytest.raises(ValueError, match="'bodi'"):
        JointConfig(section_required=["bodi"])
    sample = write_pages(tmp_path / "p.jsonl", synthetic_pages(2, seed=5))
    cfg = str(tiny_config(tmp_path, sample, sample))
    with pytest.raises(ConfigError, match="model.section_required: 'bodi'"):
        parse([cfg, "model.section_required=[bodi]"])
    with pytest.raises(ConfigError, match="training.section_required_candidates"):
        parse([cfg, "training.section_required_candidates=[[bodi]]"])
    assert parse([cfg, "training.section_required_candidates=[[], [body]]"]).training.section_required_candidates == [[], ["body"]]
