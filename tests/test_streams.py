"""CPU streams: the Tagger's batches and the trainer's half-batches run side by side in two threads.
The outputs must not change: the same records, the same loss and gradients as one stream, and a
reproducible run with dropout on."""
from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, TrainingArguments

from synthetic import synthetic_pages
from data.features import PageEncoder, split_batch, split_groups
from data.labels import entity_tagset
from infer.tagger import Tagger
from model import enable_fast_dropout
from train.trainer import JointTrainer, stream_count


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = PageEncoder.from_config(tok, model.config, windows="short", stride=0)
    return model, tok, enc, entity_tagset(model.config.entity_types)


@pytest.fixture(scope="module")
def batch(tiny):
    _, _, enc, tags = tiny
    pages = synthetic_pages(5, seed=21, min_paragraphs=1, max_paragraphs=6)
    feats = [enc.encode(p, tags) for p in pages]
    assert max(len(enc.plan(f).starts) for f in feats) >= 3  # pages of one and of several windows
    return enc.collate(feats)


def test_split_batch_parts_give_the_whole_batch_outputs(tiny, batch):
    model = tiny[0]
    groups = split_groups(batch, 2)
    parts = split_batch(batch, 2)
    assert len(parts) == len(groups) == 2
    assert sorted(sum(groups, [])) == list(range(int(batch["line_page"].max()) + 1))
    with torch.no_grad():
        whole = model(**batch)
        outs = [model(**p) for p in parts]
    word_page = batch["line_page"][batch["word_line"]]
    for pages, part, out in zip(groups, parts, outs):
        lines = torch.isin(batch["line_page"], torch.tensor(pages))
        words = torch.isin(word_page, torch.tensor(pages))
        assert torch.equal(part["section_labels"], batch["section_labels"][lines])
        assert torch.equal(part["ner_labels"], batch["ner_labels"][words])
        assert torch.allclose(out.section_logits, whole.section_logits[lines], atol=1e-4)
        assert torch.allclose(out.ner_logits, whole.ner_logits[words], atol=1e-4)
        assert part["input_ids"].shape[1] <= batch["input_ids"].shape[1]


def test_split_batch_balances_and_keeps_one_page_batches_whole(tiny, batch):
    parts = split_batch(batch, 2)
    loads = [int(p["attention_mask"].sum()) for p in parts]
    assert max(loads) <= 0.75 * sum(loads)  # no half does (nearly) all the work
    _, _, enc, tags = tiny
    one = enc.collate([enc.encode(synthetic_pages(1, seed=3)[0], tags)])
    assert split_batch(one, 2) == [one]
    assert split_batch(batch, 1) == [batch]


def _trainer(model, tmp_path, streams):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no",
                             per_device_train_batch_size=5)
    trainer = JointTrainer(model=model, args=args, streams=streams)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; the step reads it
    return trainer


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _with_lexical_and_crf(tiny):
    """The tiny model's encoder with hashed lexical features and a CRF head, and a batch for it."""
    from model import JointModel

    model, tok, _, tags = tiny
    cfg = type(model.config).from_dict({**model.config.to_dict(), "lexical_buckets": 4096, "lexical_window": 1,
                                        "use_crf": True})
    torch.manual_seed(0)
    other = JointModel(cfg)
    other.load_state_dict(model.state_dict(), strict=False)
    enc = PageEncoder.from_config(tok, cfg, windows="short", stride=0)
    pages = synthetic_pages(5, seed=21, min_paragraphs=1, max_paragraphs=6)
    return other.eval(), enc.collate([enc.encode(p, tags) for p in pages])


@pytest.mark.parametrize("variant", ["plain", "lexical+crf"])
def test_two_streams_give_the_one_stream_loss_and_gradient(tiny, batch, tmp_path, variant):
    base, batch = (copy.deepcopy(tiny[0]), batch) if variant == "plain" else _with_lexical_and_crf(tiny)
    assert ("lex_ids" in batch) == (variant != "plain")
    base.config.classifier_dropout = 0.0
    for m in base.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    base.encoder.config.attention_probs_dropout_prob = 0.0
    results = {}
    threads = torch.get_num_threads()
    for streams in (1, 2):
        model = copy.deepcopy(base)
        enable_fast_dropout(model)
        loss = _trainer(model, tmp_path, streams).training_step(model, dict(batch))
        results[streams] = (float(loss), _grads(model))
        assert torch.get_num_threads() == threads  # restored after the streams
    (l1, g1), (l2, g2) = results[1], results[2]
    assert l2 == pytest.approx(l1, rel=1e-5)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        assert torch.allclose(g1[name], g2[name], atol=1e-5, rtol=1e-3), name


def test_two_streams_with_dropout_are_reproducible(tiny, batch, tmp_path):
    runs = []
    for _ in range(2):
        model = copy.deepcopy(tiny[0])
        model.config.classifier_dropout = 0.1
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.1
        enable_fast_dropout(model)
        torch.manual_seed(7)
        trainer = _trainer(model, tmp_path, 2)
        losses = [float(trainer.training_step(model, dict(batch))) for _ in range(2)]
        runs.append((losses, _grads(model)))
    (la, ga), (lb, gb) = runs
    assert la == lb and la[0] != la[1]  # dropout masks differ between steps, not between runs
    assert all(torch.equal(ga[n], gb[n]) for n in ga)


def test_stream_count_rules(tiny, tmp_path):
    model = copy.deepcopy(tiny[0])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert stream_count(None, model, args) == 1  # torch's own dropout: one stream
    enable_fast_dropout(model)
    assert stream_count(None, model, args) == (2 if torch.get_num_threads() >= 2 else 1)
    assert stream_count(1, model, args) == 1
    with pytest.raises(ValueError, match="training.streams"):
        stream_count(3, model, args)


def test_tagger_streams_give_identical_records(tiny):
    model, tok, _, _ = tiny
    pages = synthetic_pages(6, seed=22, min_paragraphs=1, max_paragraphs=8)
    threads = torch.get_num_threads()
    one = Tagger(model, tok, device="cpu", batch_tokens=128, streams=1).tag_block(pages)
    two = Tagger(model, tok, device="cpu", batch_tokens=128, streams=2).tag_block(pages)
    assert torch.get_num_threads() == threads
    assert two == one and sum(len(r["entities"]) for r in one) > 0
    with pytest.raises(ValueError, match="streams"):
        Tagger(model, tok, device="cpu", streams=0)
    with pytest.raises(ValueError, match="overlap"):
        Tagger(model, tok, device="cpu", overlap="widest")
