"""Lexical tag scores (model.lexical_tags): fitted as a linear model before training, added to the NER
logits, kept fixed by the trainer, saved and loaded with the model, and used by the Tagger."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, TrainingArguments

from synthetic import synthetic_pages
from data.features import IGNORE, PageEncoder
from data.labels import entity_tagset
from infer.tagger import Tagger
from model import JointModel
from train.data import PageDataset
from train.lexical import fit_lexical_tags, labelled_words
from train.trainer import JointTrainer


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    base = AutoModel.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = type(base.config).from_dict({**base.config.to_dict(), "lexical_buckets": 8192, "lexical_window": 1,
                                       "lexical_tags": True})
    torch.manual_seed(0)
    model = JointModel(cfg)
    model.load_state_dict(base.state_dict(), strict=False)
    tags = entity_tagset(cfg.entity_types)
    enc = PageEncoder.from_config(tok, cfg, windows="short", stride=0)
    data = PageDataset(synthetic_pages(12, seed=31), enc, tags)
    return model, tok, enc, tags, data


def test_fit_learns_the_training_words_and_freezes_the_scores(setup):
    model, _, _, _, data = setup
    model = copy.deepcopy(model)
    assert not model.lexical_tag_scores.weight.any()  # no prior before the fit
    fit = fit_lexical_tags(model, data, epochs=4, quiet=True)
    x, y = labelled_words(data)
    assert fit["words"] == len(y) > 100 and not (y == IGNORE).any()
    assert fit["losses"][-1] < 0.5 * fit["losses"][0]
    table = model.lexical_tag_scores
    assert not table.weight.requires_grad and table.weight.any() and not table.weight[0].any()
    with torch.no_grad():
        pred = (table(x) + model.ner_head.bias).argmax(-1)
    assert (pred == y).float().mean() > 0.9  # the linear model alone fits its training words
    # Deterministic for a seed.
    again = copy.deepcopy(setup[0])
    fit_lexical_tags(again, data, epochs=4, quiet=True)
    assert torch.equal(again.lexical_tag_scores.weight, table.weight)


def test_scores_add_to_the_ner_logits_and_stay_fixed_in_training(setup, tmp_path):
    model, _, enc, _, data = setup
    model = copy.deepcopy(model)
    fit_lexical_tags(model, data, epochs=2, quiet=True)
    batch = enc.collate([data[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        words = model.add_lexical(model.word_states(batch["input_ids"], batch["attention_mask"], batch["word_index"]),
                                  batch["lex_ids"])
        with_scores = model.ner_logits(words, batch["lex_ids"])
        without = model.ner_logits(words)
        out = model(**batch)
    assert torch.allclose(with_scores - without, model.lexical_tag_scores(batch["lex_ids"]), atol=1e-5)
    assert torch.allclose(out.ner_logits, with_scores, atol=1e-5)
    before = model.lexical_tag_scores.weight.clone()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no",
                             per_device_train_batch_size=4, learning_rate=1e-2)
    trainer = JointTrainer(model=model, args=args, streams=1, lexical_lr_multiplier=10.0)
    trainer.current_gradient_accumulation_steps = 1
    trainer.create_optimizer()
    head = model.ner_head.weight.clone()
    for _ in range(2):
        trainer.training_step(model, dict(batch))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    assert torch.equal(model.lexical_tag_scores.weight, before)
    assert not torch.equal(model.ner_head.weight, head)  # the rest trains


def test_saved_model_keeps_the_scores_and_the_tagger_uses_them(setup, tmp_path):
    model, tok, _, _, data = setup
    model = copy.deepcopy(model)
    fit_lexical_tags(model, data, epochs=2, quiet=True)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded = Tagger.from_pretrained(tmp_path / "m", device="cpu", streams=1)
    assert loaded.model.config.lexical_tags
    assert torch.equal(loaded.model.lexical_tag_scores.weight, model.lexical_tag_scores.weight)
    pages = synthetic_pages(3, seed=32)
    ours = list(loaded.tag(pages))
    assert ours == list(Tagger(model, tok, device="cpu", streams=1).tag(pages))
    blank = copy.deepcopy(model)
    with torch.no_grad():
        blank.lexical_tag_scores.weight.zero_()
    assert list(Tagger(blank, tok, device="cpu", streams=1).tag(pages)) != ours  # the scores change the tags


# ------------------------------------------------------------------------------------------------
# The CRF fit (training.lexical_tags_fit: crf)

def test_labelled_runs_cut_at_lines_and_unlabelled_words_and_drop_repeats(setup):
    from train.lexical import labelled_runs

    _, _, _, _, data = setup
    runs = labelled_runs(data)
    n_words = sum(len(y) for _, y in runs)
    _, y = labelled_words(data)
    assert 0 < n_words <= len(y)
    n_runs = 0
    for i in range(len(data)):
        f = data[i]
        lab = f["ner_labels"] != IGNORE
        line = f["word_line"]
        starts = lab & ~(torch.from_numpy(lab).roll(1).numpy() & (torch.from_numpy(line).roll(1).numpy() == line))
        starts[0] = lab[0]
        n_runs += int(starts.sum())
    assert len(runs) <= n_runs  # at most one run per line stretch of labelled words, repeats once
    twice = labelled_runs(torch.utils.data.ConcatDataset([data, data]))
    assert twice == runs  # a page seen twice adds nothing
    xs, ys = runs[0]
    assert all(k.startswith("b") and int(k[1:]) > 0 for x in xs for k in x)  # the padding bucket is dropped
    assert all(t.isdigit() for t in ys)


def test_crf_fit_writes_state_weights_bias_and_transitions(setup):
    pytest.importorskip("pycrfsuite", reason="training.lexical_tags_fit: crf needs sklearn-crfsuite")
    from train.lexical import fit_lexical_crf

    model, tok, _, tags, data = setup
    cfg = type(model.config).from_dict({**model.config.to_dict(), "use_crf": True})
    torch.manual_seed(0)
    crf_model = JointModel(cfg)
    crf_model.load_state_dict(model.state_dict(), strict=False)
    fit = fit_lexical_crf(crf_model, data, max_iterations=60, quiet=True)
    assert fit["words"] > 100 and fit["features"] > 0 and 0 < fit["iterations"] <= 60
    table = crf_model.lexical_tag_scores
    assert not table.weight.requires_grad and table.weight.any() and not table.weight[0].any()
    trans = crf_model.crf.transitions.detach()
    o, b_per, i_per = tags.label2id["O"], tags.label2id["B-PERS"], tags.label2id["I-PERS"]
    assert trans[b_per, i_per] > trans[o, i_per]  # the CRF learnt that I-PERS follows B-PERS, not O
    # The linear CRF alone (encoder head weights zeroed) tags its training words.
    x, y = labelled_words(data)
    with torch.no_grad():
        scores = (table(x) + crf_model.ner_head.bias).log_softmax(-1).numpy()
    pred = crf_model.crf.viterbi(scores)
    assert (torch.from_numpy(pred) == y).float().mean() > 0.9
    # Deterministic, and the Tagger of a saved model uses the scores and transitions.
    again = JointModel(cfg)
    again.load_state_dict(model.state_dict(), strict=False)
    fit_lexical_crf(again, data, max_iterations=60, quiet=True)
    assert torch.equal(again.lexical_tag_scores.weight, table.weight)
    assert torch.equal(again.crf.transitions, crf_model.crf.transitions)


def test_only_the_hashed_table_gets_the_lexical_learning_rate(setup, tmp_path):
    model = copy.deepcopy(setup[0])
    model.lexical_tag_scores.weight.requires_grad_(False)  # as after the fit
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no",
                             learning_rate=1e-3)
    trainer = JointTrainer(model=model, args=args, streams=1, lexical_lr_multiplier=10.0)
    opt = trainer.create_optimizer()
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model.lexical.weight)] == pytest.approx(1e-2)  # sparse rows: a higher rate
    # its projection is dense (every word trains it): at 10x it drove the CRF-fitted run of 2026-12-01 to diverge
    assert lr_of[id(model.lexical_proj.weight)] == pytest.approx(1e-3)
    assert lr_of[id(model.ner_head.weight)] == pytest.approx(1e-3)
    assert id(model.lexical_tag_scores.weight) not in lr_of  # fixed


# ------------------------------------------------------------------------------------------------
# Out-of-fold scores (training.lexical_tags_folds): each training word scored by a fit that never saw it

def test_fold_fits_leave_their_fold_out_and_training_words_get_those_scores(setup):
    pytest.importorskip("pycrfsuite", reason="training.lexical_tags_fit: crf needs sklearn-crfsuite")
    import numpy as np

    from data.schema import Page
    from train.lexical import fit_lexical_crf, page_folds, set_fold_priors

    model, _, enc, tags, _ = setup
    pages = synthetic_pages(12, seed=31)
    data = PageDataset(pages, enc, tags)  # its own copy: the priors are written into the features
    folds = page_folds(pages, 2)
    assert set(folds.tolist()) == {0, 1} and (page_folds(pages, 2) == folds).all()
    twins = [Page(id=f"p{i}", text="x", meta={"material": "ANER#3"}) for i in range(5)]
    assert len(set(page_folds(twins, 3).tolist())) == 1  # the same material, the same fold

    cfg = type(model.config).from_dict({**model.config.to_dict(), "use_crf": True})
    crf_model = JointModel(cfg)
    crf_model.load_state_dict(model.state_dict(), strict=False)
    fit = fit_lexical_crf(crf_model, data, max_iterations=40, quiet=True, folds=folds)
    w = fit["fold_weight"]
    assert fit["folds"] == 2 and w.shape == (2, *crf_model.lexical_tag_scores.weight.shape)
    assert torch.allclose(crf_model.lexical_tag_scores.weight, w.mean(0))  # what dev and inference use

    def buckets(fold):
        out = set()
        for i in np.flatnonzero(folds == fold):
            f = data[int(i)]
            out |= set(np.asarray(f["lex_ids"])[f["ner_labels"] != IGNORE].ravel().tolist())
        return out - {0}

    only0 = sorted(buckets(0) - buckets(1))
    assert len(only0) > 50
    assert not w[0, only0].any()  # the fit that left fold 0 out knows nothing of its own features...
    assert w[1, only0].any()      # ...which the other fit learnt from

    set_fold_priors(data, folds, w)
    for i in (0, 5):
        f = data[i]
        want = w[int(folds[i])][torch.from_numpy(np.asarray(f["lex_ids"]).astype(np.int64))].sum(1)
        assert torch.allclose(torch.from_numpy(f["lex_prior"]), want, atol=1e-5)
    # the batch carries the priors, the model adds them in place of its table, and half-batches keep them
    from data.features import split_batch

    batch = enc.collate([data[i] for i in range(4)])
    crf_model.eval()
    with torch.no_grad():
        words = torch.randn(len(batch["word_line"]), crf_model.ner_head.in_features)
        plain = crf_model.ner_logits(words)
        assert torch.allclose(crf_model.ner_logits(words, batch["lex_ids"], batch["lex_prior"]) - plain,
                              batch["lex_prior"], atol=1e-5)
        assert not torch.allclose(crf_model.ner_logits(words, batch["lex_ids"]) - plain, batch["lex_prior"])
    parts = split_batch(batch, 2)
    assert len(parts) == 2 and torch.equal(torch.cat([p["lex_prior"] for p in parts]), batch["lex_prior"])
