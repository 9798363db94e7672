"""Training: loss falls, save/load round trip, long pages, masked NER labels, config errors, resume,
and the pretrained-encoder loading path. Everything runs on tiny models in seconds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from synthetic import TINY_OVERRIDES, synthetic_pages, tiny_config, write_pages
from data.features import PageEncoder
from data.labels import entity_tagset
from data.schema import Page
from infer.tagger import Tagger
from model import JointModel, train_wordpiece
from train.__main__ import main, make_model
from train.config import RunConfig, load_config
from train.data import mix
from train.trainer import dev_scores


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config.classifier_dropout = 0.0
    return model.eval(), tok, PageEncoder.from_config(tok, model.config), entity_tagset(model.config.entity_types)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    return (write_pages(tmp / "train.jsonl", synthetic_pages(16, seed=5)),
            write_pages(tmp / "dev.jsonl", synthetic_pages(4, seed=6)))


def _page(d: dict) -> Page:
    return Page.from_dict(d)


def test_loss_falls_in_20_steps():
    pages = synthetic_pages(8, seed=3)
    cfg = load_config(RunConfig, None, ["output_dir=unused", *TINY_OVERRIDES])
    tok = train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1)
    types = ["LOC", "ORG", "PERS"]
    torch.manual_seed(0)
    model = make_model(cfg, tok, types)
    enc = PageEncoder.from_config(tok, model.config)
    batch = enc.collate([enc.encode(p, entity_tagset(types)) for p in pages])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert out.ner_loss.item() > 0 and out.section_loss.item() > 0


def test_saved_folder_reproduces_training_dev_scores(tiny_model_dir, tmp_path):
    """The folder that training wrote opens with AutoModel (the hub-name code path) and tags the dev
    pages exactly as the in-training evaluation did; a second save/load changes nothing either."""
    metrics = json.loads((tiny_model_dir / "metrics.json").read_text())
    cfg = yaml.safe_load((tiny_model_dir / "config.yaml").read_text(encoding="utf-8"))
    dev_path = Path(cfg["data"]["dev"][0]["paths"][0])
    dev = [_page(json.loads(line)) for line in dev_path.read_text().splitlines() if line.strip()]
    tagger = Tagger.from_pretrained(tiny_model_dir, device="cpu")
    recs = list(tagger.tag(dev))
    again = dev_scores(dev, recs, tagger.entity_types)["flat"]
    for k, v in metrics["dev"].items():
        assert again[k] == pytest.approx(v, abs=1e-6), k

    tagger.model.save_pretrained(tmp_path)
    tagger.encoder.tokenizer.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is JointModel
    enc = tagger.encoder
    batch = enc.collate([enc.encode(p) for p in dev[:3]])
    with torch.no_grad():
        a, b = tagger.model(**batch), reloaded(**batch)
    assert torch.equal(a.ner_logits, b.ner_logits) and torch.equal(a.section_logits, b.section_logits)
    assert list(Tagger(reloaded, AutoTokenizer.from_pretrained(tmp_path), device="cpu").tag(dev[:3])) == recs[:3]


def test_page_three_windows_long_trains_and_evaluates(tiny):
    model, tok, enc, tags = tiny
    pages = synthetic_pages(1, seed=7, min_paragraphs=12, max_paragraphs=12)
    page = pages[0]
    feat = enc.encode(page, tags)
    plan = enc.plan(feat)
    assert len(feat["input_ids"]) > 3 * model.config.window_length and len(plan.starts) >= 4
    model.train()
    try:
        out = model(**enc.collate([feat]))
        out.loss.backward()
        grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
        assert torch.isfinite(out.loss) and grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
        assert out.section_logits.shape[0] == len(page.lines)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    rec = list(Tagger(model, tok, device="cpu").tag([page]))[0]
    covered = sum(s["end"] - s["start"] for s in rec["sections"])
    assert rec["sections"][0]["start"] == page.lines[0, 0] and rec["sections"][-1]["end"] == page.lines[-1, 1]
    assert covered <= len(page.text)
    scores = dev_scores([page], [rec], model.config.entity_types)["flat"]
    assert 0.0 <= scores["section_accuracy"] <= 1.0


def _ner_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.ner_loss.backward()
    g = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out, g


def test_unannotated_page_adds_exactly_zero_ner_gradient(tiny):
    model, _, enc, tags = tiny
    labelled, plain = synthetic_pages(2, seed=8)
    d = plain.to_dict()
    d.pop("entities", None)
    d.pop("entity_regions", None)
    plain = _page(d)
    assert plain.entities is None and plain.entity_regions is None and plain.sections is not None
    f_plain = enc.encode(plain, tags)
    assert (f_plain["ner_labels"] == -100).all()

    out, g = _ner_grads(model, enc.collate([f_plain]))
    assert out.ner_loss.item() == 0.0
    assert all(torch.count_nonzero(v) == 0 for v in g.values())
    assert out.section_loss.item() > 0  # its sections still train

    f_lab = enc.encode(labelled, tags)
    out_a, g_a = _ner_grads(model, enc.collate([f_lab]))
    out_ab, g_ab = _ner_grads(model, enc.collate([f_lab, f_plain]))
    assert out_a.ner_loss.item() > 0
    assert out_ab.ner_loss.item() == pytest.approx(out_a.ner_loss.item(), rel=1e-5)
    for n in g_a:
        torch.testing.assert_close(g_ab[n], g_a[n], rtol=1e-4, atol=1e-7)


def test_entity_regions_mask_ner_loss_outside(tiny):
    model, _, enc, tags = tiny
    page = synthetic_pages(1, seed=9, min_paragraphs=4, max_paragraphs=4)[0]
    body = [s for s in page.sections if s.label == "body"][0]
    d = page.to_dict()
    d["entities"] = [e for e in d["entities"] if body.start <= e["start"] and e["end"] <= body.end]
    d["entity_regions"] = [[body.start, body.end]]
    page = _page(d)
    feat = enc.encode(page, tags)
    inside = (page.words[:, 0] >= body.start) & (page.words[:, 1] <= body.end)
    assert inside.any() and (~inside).any()
    assert (feat["ner_labels"][~inside] == -100).all() and (feat["ner_labels"][inside] >= 0).all()

    batch = enc.collate([feat])
    out = model(**batch)
    out.ner_logits.retain_grad()
    out.ner_loss.backward()
    grad = out.ner_logits.grad
    model.zero_grad(set_to_none=True)
    assert torch.count_nonzero(grad[torch.from_numpy(~inside)]) == 0
    assert torch.count_nonzero(grad[torch.from_numpy(inside)]) > 0
    labels = torch.from_numpy(feat["ner_labels"][inside])
    expected = torch.nn.functional.cross_entropy(out.ner_logits.detach()[torch.from_numpy(inside)], labels)
    assert out.ner_loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("override, names", [
    ("model.hiden_size=32", "model.hiden_size"),
    ("training.num_train_epochs=many", "training.num_train_epochs"),
    ("training.per_device_train_batch_size=2.5", "training.per_device_train_batch_size"),
    ("data.train.0.paths=[/nonexistent/train.jsonl]", "/nonexistent/train.jsonl"),
    ("training.args={no_such_arg: 1}", "training.args.no_such_arg"),
    ("training.metric_for_best_model=eval_bogus", "training.metric_for_best_model"),
    ("training.window_stride=500", "training.window_stride"),
    ("training.streams=3", "training.streams"),
    ("training.outside_bias_grid=[0, .nan]", "training.outside_bias_grid"),
    ("training.section_bias_rounds=-1", "training.section_bias_rounds"),
    ("training.section_once_candidates=[[titel]]", "titel"),
    ("training.section_once_candidates=[]", "training.section_once_candidates"),
    ("training.section_once_candidates=[[body]]", "body"),
    ("training.average_checkpoints=1", "training.average_checkpoints"),
    ("training.average_checkpoints=-2", "training.average_checkpoints"),
    ("model.lexical_tags=true", "model.lexical_tags"),  # the tiny config has no lexical features
    ("data.train.0.augment=0.5", "data.train[0].augment"),  # a pages source: only builder pages are made up
    ("data.train.0.augment=1.5", "data.train[0].augment"),
    ("data.dev.0.augment=0.5", "data.dev[0].augment"),
    ("data.train.0.layouts=0.5", "data.train[0].layouts"),  # random orders: builder pages only
    ("data.dev.0.layouts=2", "data.dev[0].layouts"),
    ("data.train.0.nonce=0.25", "data.train[0].nonce"),  # words drawn into the furniture: builder pages only
    ("data.dev.0.nonce=-1", "data.dev[0].nonce"),
    ("model.line_buckets=1", "model.line_buckets"),  # a hashed table needs a padding row and one more
    ("model.line_buckets=-5", "model.line_buckets"),
    ("model.lexical_buckets=1", "model.lexical_buckets"),
    ("model.line_feature_dim=0", "model.line_feature_dim"),
    ("training.lexical_tags_fit=crf", "training.lexical_tags_fit"),  # no model.lexical_tags to fit
    ("model.line_tags=true", "model.line_tags"),  # the tiny config has no line features
    ("model.lexical_clusters=[64]", "model.lexical_clusters"),  # nor lexical features or word vectors
    ("training.lexical_tags_fit=lbfgs", "training.lexical_tags_fit"),
    (("model.lexical_buckets=512", "model.lexical_tags=true", "training.lexical_tags_fit=crf",
      "training.lexical_tags_c1=-1"), "training.lexical_tags_c1"),
    (("model.lexical_buckets=512", "model.lexical_tags=true", "training.lexical_tags_fit=crf",
      "training.lexical_tags_iterations=0"), "training.lexical_tags_iterations"),
    (("model.line_buckets=512", "model.line_tags=true", "training.line_tags_c2=-1"), "training.line_tags_c2"),
    ("training.lexical_tags_folds=0", "training.lexical_tags_folds"),
    (("model.lexical_buckets=512", "model.lexical_tags=true", "training.lexical_tags_folds=2"),
     "training.lexical_tags_folds"),  # out-of-fold scores come from the CRF fit only
    ("training.line_tags_folds=0", "training.line_tags_folds"),
    (("model.line_buckets=512", "training.line_tags_folds=2"), "training.line_tags_folds"),  # no line CRF to fold
])
def test_config_errors_exit_2_naming_the_key(override, names, data_files, tmp_path, capsys):
    cfg = tiny_config(tmp_path, *data_files)
    assert main([str(cfg), *((override,) if isinstance(override, str) else override)]) == 2
    err = capsys.readouterr().err
    assert names in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()  # failed at start: nothing written


def test_line_crf_penalties_default_to_the_lexical_ones_and_can_be_set_apart(data_files, tmp_path):
    """training.line_tags_c1 / _c2 set the line CRF fit's penalties; unset, it takes lexical_tags_c1 / _c2.
    A large L1 weight leaves few line keys with a score, none leaves most of them."""
    pytest.importorskip("pycrfsuite", reason="model.line_tags needs sklearn-crfsuite")
    from model.modeling import JointModel

    scored = {}
    for name, extra in (("sparse", []), ("dense", ["training.line_tags_c1=0"])):
        (tmp_path / name).mkdir()
        cfg = tiny_config(tmp_path / name, *data_files)
        assert main([str(cfg), *TINY_OVERRIDES, "model.line_buckets=4096", "model.line_tags=true",
                     "training.lexical_tags_c1=50", "training.lexical_tags_iterations=30",
                     "training.num_train_epochs=1", *extra]) == 0
        weight = JointModel.from_pretrained(tmp_path / name / "model").line_tag_scores.weight
        scored[name] = int((weight != 0).any(1).sum())
    assert scored["sparse"] * 4 < scored["dense"]


def test_crf_options_without_sklearn_crfsuite_exit_2_naming_it(data_files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycrfsuite", None)  # import pycrfsuite now raises ImportError
    cfg = tiny_config(tmp_path, *data_files)
    assert main([str(cfg), "model.lexical_buckets=512", "model.lexical_tags=true",
                 "training.lexical_tags_fit=crf"]) == 2
    err = capsys.readouterr().err
    assert "training.lexical_tags_fit: crf needs sklearn-crfsuite" in err and "Traceback" not in err


def test_more_folds_than_pages_is_a_config_error(tmp_path, capsys):
    pytest.importorskip("pycrfsuite", reason="training.lexical_tags_fit: crf needs sklearn-crfsuite")
    cfg = tiny_config(tmp_path, write_pages(tmp_path / "train.jsonl", synthetic_pages(2, seed=5)),
                      write_pages(tmp_path / "dev.jsonl", synthetic_pages(2, seed=6)))
    assert main([str(cfg), *TINY_OVERRIDES, *FOLDS, "training.lexical_tags_folds=7"]) == 2
    err = capsys.readouterr().err
    assert "training.lexical_tags_folds" in err and "every fold needs pages" in err and "Traceback" not in err


def test_cli_exit_status_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train", str(tmp_path / "missing.yaml")], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "missing.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_resume_from_last_checkpoint(data_files, tmp_path, capsys):
    cfg = tiny_config(tmp_path, *data_files)
    out = tmp_path / "model"
    assert main([str(cfg), *TINY_OVERRIDES, "training.num_train_epochs=1"]) == 0
    first = json.loads((out / "metrics.json").read_text())["train"]["global_step"]
    assert first == 4 and (out / f"checkpoint-{first}").is_dir()
    capsys.readouterr()
    assert main([str(cfg), *TINY_OVERRIDES, "training.num_train_epochs=2"]) == 0
    assert f"resuming from {out / f'checkpoint-{first}'}" in capsys.readouterr().err
    log = json.loads((out / "log_history.json").read_text())
    state = json.loads((out / f"checkpoint-{first}" / "trainer_state.json").read_text())
    assert log[:len(state["log_history"])] == state["log_history"]  # the first run's history, kept
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 2 * first


FOLDS = ["model.lexical_buckets=512", "model.lexical_tags=true", "model.use_crf=true", "training.lexical_tags_fit=crf",
         "training.lexical_tags_folds=2", "training.lexical_tags_iterations=20", "training.logging_steps=1"]


def test_out_of_fold_scores_train_save_and_resume(data_files, tmp_path, capsys):
    pytest.importorskip("pycrfsuite", reason="training.lexical_tags_fit: crf needs sklearn-crfsuite")
    cfg = tiny_config(tmp_path, *data_files)
    out = tmp_path / "model"
    assert main([str(cfg), *TINY_OVERRIDES, *FOLDS, "training.num_train_epochs=1"]) == 0
    err = capsys.readouterr().err
    assert "2 out-of-fold fits" in err and (out / "lexical_folds.pt").is_file()
    log = json.loads((out / "log_history.json").read_text())
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # the saved model scores with the mean of the fold fits, which the folds file holds
    from train.lexical import load_folds

    model = AutoModel.from_pretrained(out)
    folds = load_folds(out / "lexical_folds.pt", 2, tuple(model.lexical_tag_scores.weight.shape))
    assert torch.allclose(model.lexical_tag_scores.weight, folds.mean(0))
    # resume reads the folds file; a broken one is a clear error, not a traceback
    saved = (out / "lexical_folds.pt").read_bytes()
    (out / "lexical_folds.pt").write_bytes(b"not a tensor file")
    assert main([str(cfg), *TINY_OVERRIDES, *FOLDS, "training.num_train_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "lexical_folds.pt" in err and "Traceback" not in err
    (out / "lexical_folds.pt").write_bytes(saved)
    assert main([str(cfg), *TINY_OVERRIDES, *FOLDS, "training.num_train_epochs=2"]) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "lexical CRF" not in err  # the fits are not redone
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 8


LINE_FOLDS = ["model.line_buckets=4096", "model.line_tags=true", "model.section_crf=true",
              "training.line_tags_folds=2", "training.lexical_tags_iterations=20", "training.logging_steps=1"]


def test_line_out_of_fold_scores_train_save_and_resume(data_files, tmp_path, capsys):
    """training.line_tags_folds: two line CRF fits, each without half the pages, for the training pages' line
    scores, and the model's own fit on every page; the folds file lets a resumed run give the training pages
    the same out-of-fold line scores."""
    pytest.importorskip("pycrfsuite", reason="model.line_tags needs sklearn-crfsuite")
    cfg = tiny_config(tmp_path, *data_files)
    out = tmp_path / "model"
    assert main([str(cfg), *TINY_OVERRIDES, *LINE_FOLDS, "training.num_train_epochs=1"]) == 0
    err = capsys.readouterr().err
    assert "line CRF, fold 2/2" in err and "line CRF, all pages" in err and "2 out-of-fold fits" in err
    assert (out / "line_folds.pt").is_file()
    log = json.loads((out / "log_history.json").read_text())
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 4 and losses[-1] < losses[0]
    from train.lexical import load_folds

    model = AutoModel.from_pretrained(out)
    folds = load_folds(out / "line_folds.pt", 2, tuple(model.line_tag_scores.weight.shape), what="line")
    assert folds.abs().sum() > 0 and not torch.equal(folds[0], folds[1])
    whole = model.line_tag_scores.weight  # a fit of its own on every page: neither fold's, nor their mean
    assert whole.abs().sum() > 0 and not any(torch.allclose(whole, w) for w in (folds[0], folds[1], folds.mean(0)))
    saved = (out / "line_folds.pt").read_bytes()
    (out / "line_folds.pt").write_bytes(b"not a tensor file")
    assert main([str(cfg), *TINY_OVERRIDES, *LINE_FOLDS, "training.num_train_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "line_folds.pt" in err and "not a readable line fold file" in err and "Traceback" not in err
    (out / "line_folds.pt").write_bytes(saved)
    assert main([str(cfg), *TINY_OVERRIDES, *LINE_FOLDS, "training.num_train_epochs=2"]) == 0
    err = capsys.readouterr().err
    assert "resuming from" in err and "line CRF" not in err  # the fits are not redone
    assert json.loads((out / "metrics.json").read_text())["train"]["global_step"] == 8


def test_joint_model_from_a_saved_encoder_folder(data_files, tmp_path):
    """The pretrained-encoder path (AraBERT & co., or a train.pretrain output): a BERT saved to a
    folder is loaded by JointModel.from_encoder with its weights, then trained by python -m train."""
    pages = synthetic_pages(8, seed=4)
    tok = train_wordpiece([p.text for p in pages], vocab_size=500, min_frequency=1)
    torch.manual_seed(1)
    bert = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=64), add_pooling_layer=False)
    enc_dir = tmp_path / "encoder"
    bert.save_pretrained(enc_dir)
    tok.save_pretrained(enc_dir)

    joint = JointModel.from_encoder(str(enc_dir), entity_tagset(["LOC", "ORG", "PERS"]).tags, window_length=64)
    loaded = joint.encoder.state_dict()
    for k, v in bert.state_dict().items():
        assert torch.equal(loaded[k], v), k

    cfg = tiny_config(tmp_path, *data_files)
    rc = main([str(cfg), *TINY_OVERRIDES, f"model.encoder={enc_dir}", "training.max_steps=3"])
    assert rc == 0
    trained = AutoModel.from_pretrained(tmp_path / "model")
    assert trained.config.encoder_config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(tmp_path / "model").get_vocab() == tok.get_vocab()


def test_mix_weights():
    import random

    a, b = [object() for _ in range(10)], [object() for _ in range(4)]
    out = mix([(a, 2.0), (b, 0.5)], random.Random(0))
    assert len(out) == 22
    assert all(out.count(x) == 2 for x in a)
    assert sum(out.count(x) for x in b) == 2


@pytest.mark.parametrize("pooling", ["mean", "mean+first+length"])
def test_tagger_sections_equal_forward_whatever_the_batching(tiny, pooling):
    """The Tagger pools lines (mean; or mean, first word, length) across windows and batches; the
    result must be the training forward pass's, also when one page is spread over several batches."""
    from data.labels import SECTION_TAGS

    model, tok, enc, tags = tiny
    if model.config.line_pooling != pooling:  # same encoder, a section layer of the other input size
        cfg = type(model.config).from_dict({**model.config.to_dict(), "line_pooling": pooling})
        torch.manual_seed(0)
        other = JointModel(cfg).eval()
        other.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("line_")}, strict=False)
        model = other
    page = synthetic_pages(1, seed=11, min_paragraphs=10, max_paragraphs=10)[0]
    feat = enc.encode(page, tags)
    assert len(enc.plan(feat).starts) >= 3
    with torch.no_grad():
        out = model(**enc.collate([feat]))
    want = [s.to_dict() for s in SECTION_TAGS.decode(page.lines, out.section_logits.argmax(-1).numpy())]
    for budget in (model.config.window_length, 1 << 16):
        rec = list(Tagger(model, tok, device="cpu", batch_tokens=budget).tag([page]))[0]
        assert rec["sections"] == want, budget


def test_encode_windows_splits_short_windows_without_changing_states(tiny):
    model = tiny[0]
    width, lengths = 64, [64, 64, 64, 12, 9, 14]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.encoder_config.vocab_size, (len(lengths), width), generator=g)
    mask = torch.zeros_like(ids)
    for r, n in enumerate(lengths):
        mask[r, :n] = 1
    ids = ids * mask
    calls = []
    hook = model.encoder.register_forward_hook(lambda m, a, kw, out: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        with torch.no_grad():
            split = model.encode_windows(ids, mask)
            whole = model.encode_windows(ids, mask, min_saving=1.0)
    finally:
        hook.remove()
    assert calls == [torch.Size([3, 64]), torch.Size([3, 14]), torch.Size([6, 64])]
    keep = mask.bool()
    assert torch.allclose(split[keep], whole[keep], atol=1e-5)


def test_prefetching_tagger_equals_plain_and_keeps_errors_in_place(tiny):
    model, tok, enc, tags = tiny
    pages = [Page.from_dict(d) if isinstance(d, dict) else d for d in synthetic_pages(7, seed=13)]
    plain = list(Tagger(model, tok, device="cpu", block_size=2, prefetch=False).tag(pages))
    fetched = list(Tagger(model, tok, device="cpu", block_size=2, prefetch=True).tag(pages))
    assert fetched == plain and len(plain) == 7

    def broken():
        yield from pages[:4]
        raise RuntimeError("input broke after 4 pages")

    got = []
    with pytest.raises(RuntimeError, match="after 4 pages"):
        for rec in Tagger(model, tok, device="cpu", block_size=2, prefetch=True).tag(broken()):
            got.append(rec)
    assert got == plain[:4]


_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in _CONFIGS.glob("*.yaml")))
def test_shipped_configs_load_and_pass_the_cross_checks(name, monkeypatch):
    """Every config in configs/ fits its schema and, for ``python -m train``, the cross-field checks
    (paths aside: the shared datasets may be absent here). cpu-full gets its word vectors and its silver
    gazetteer from scripts/cpu_full.py, as there."""
    import train.__main__ as cli
    path = str(_CONFIGS / name)
    if name.startswith("pretrain"):
        from train.pretrain import PretrainConfig
        assert load_config(PretrainConfig, path, []).output_dir
        return
    extra = (["model.lexical_vectors=vectors.kv", "model.lexical_gazetteer=gazetteer.json"]
             if name == "cpu-full.yaml" else [])
    monkeypatch.setattr(cli, "check_paths", lambda c: None)
    parsed = cli.parse([path, *extra])
    assert parsed.model == load_config(RunConfig, path, extra).model and parsed.data.train


def _entity_words(page: Page, rec: dict) -> int:
    starts = page.words[:, 0]
    return sum(int(((starts >= e["start"]) & (starts < e["end"])).sum()) for e in rec["entities"])


def test_outside_bias_trades_o_for_entities_and_redecoding_equals_tagging(tiny):
    """One model pass decoded with several outside biases gives exactly what a Tagger made with each bias
    gives; a large negative bias leaves no entity, and a larger bias never tags fewer words as entities."""
    model, tok, _, _ = tiny
    pages = synthetic_pages(3, seed=11)
    grid = [-50.0, 0.0, 1.0, 3.0, 50.0]
    tagger = Tagger(model, tok, device="cpu")
    outs = tagger.block_outputs(pages)
    many = {b: tagger.decode_block(pages, outs, outside_bias=b) for b in grid}
    assert tagger.decode_block(pages, outs) == many[0.0] == tagger.tag_block(pages)
    for b in grid:
        assert many[b] == Tagger(model, tok, device="cpu", outside_bias=b).tag_block(pages), b
        assert [r["sections"] for r in many[b]] == [r["sections"] for r in many[0.0]]  # sections unmoved
    assert all(not r["entities"] for r in many[-50.0])
    words = [sum(_entity_words(p, r) for p, r in zip(pages, many[b])) for b in grid]
    assert words == sorted(words) and words[-1] > words[1], words
    assert words[-1] == sum(len(p.words) for p in pages)  # O never wins at +50
    with pytest.raises(ValueError, match="outside_bias"):
        Tagger(model, tok, device="cpu", outside_bias=float("nan"))


def test_section_bias_moves_lines_to_a_label_and_redecoding_equals_tagging(tiny):
    """A large section bias toward a label puts every line in it; the model config's biases are the
    default; bad labels or values are errors naming them."""
    model, tok, _, _ = tiny
    pages = synthetic_pages(3, seed=12)
    tagger = Tagger(model, tok, device="cpu")
    outs = tagger.block_outputs(pages)
    plain = tagger.decode_block(pages, outs)
    toward = tagger.decode_block(pages, outs, section_bias={"related": 80.0})
    assert toward == Tagger(model, tok, device="cpu", section_bias={"related": 80.0}).tag_block(pages)
    assert {s["label"] for r in toward for s in r["sections"]} == {"related"}
    assert {s["label"] for r in plain for s in r["sections"]} != {"related"}
    assert [r["entities"] for r in toward] == [[{**e, "section": "related"} for e in r["entities"]] for r in plain]
    model.config.section_label_bias = {"related": 80.0}
    try:
        assert Tagger(model, tok, device="cpu").tag_block(pages) == toward
        assert Tagger(model, tok, device="cpu", section_bias={}).tag_block(pages) == plain
    finally:
        model.config.section_label_bias = None
    for bad, what in (({"titel": 1.0}, "titel"), ({"title": float("inf")}, "title"), ({"title": "x"}, "title")):
        with pytest.raises(ValueError, match=what):
            Tagger(model, tok, device="cpu", section_bias=bad)


def test_biases_chosen_on_dev_are_saved_and_reproduced(data_files, tmp_path, capsys):
    """training.outside_bias_grid, training.section_bias_rounds and training.section_once_candidates: every
    outside bias scored on dev, the best kept; each section_once rule scored with its own section biases, the
    best kept (ties: fewer labels); section biases only ever raise dev section macro-F1; all saved in the
    config, and the saved model tags dev to exactly the final dev scores."""
    cfg = tiny_config(tmp_path, *data_files)
    out = tmp_path / "model"
    grid = [0.0, 0.5, 2.0]
    assert main([str(cfg), *TINY_OVERRIDES, "training.num_train_epochs=2", "training.outside_bias_grid=[0, 0.5, 2]",
                 "training.section_bias_rounds=1", "training.section_once_candidates=[[title], []]"]) == 0
    err = capsys.readouterr().err
    assert "NER outside bias on dev: 0: " in err and "section label biases on dev: " in err
    assert "one section a page, on dev: title: " in err
    metrics = json.loads((out / "metrics.json").read_text())
    f1 = {float(k): v for k, v in metrics["train"]["ner_outside_bias_dev_f1"].items()}
    assert sorted(f1) == grid
    best = metrics["train"]["ner_outside_bias"]
    assert f1[best] == max(f1.values())
    history = metrics["train"]["section_bias_dev_macro_f1"]
    assert len(history) == 2 and history[1] >= history[0]
    once = metrics["train"]["section_once_dev_macro_f1"]
    assert sorted(once) == ["none", "title"]
    kept = "title" if once["title"] > once["none"] else "none"  # a tie keeps no rule
    assert (metrics["train"]["section_once"] or ["none"]) == [kept] and once[kept] == pytest.approx(history[-1])
    saved = json.loads((out / "config.json").read_text())
    assert saved["ner_outside_bias"] == best
    assert (saved["section_label_bias"] or {}) == metrics["train"]["section_label_bias"]
    assert (saved["section_once"] or ["none"]) == [kept]
    assert metrics["dev"]["entity_micro_f1"] == pytest.approx(f1[best], abs=1e-6)
    assert metrics["dev"]["section_macro_f1"] == pytest.approx(history[-1], abs=1e-6)
    dev = [_page(json.loads(line)) for line in data_files[1].read_text().splitlines() if line.strip()]
    tagger = Tagger.from_pretrained(out, device="cpu")
    assert tagger.outside_bias == best and (tagger.section_once or ["none"]) == [kept]
    again = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]
    assert again["entity_micro_f1"] == pytest.approx(f1[best], abs=1e-6)
    assert again["section_macro_f1"] == pytest.approx(history[-1], abs=1e-6)


def test_average_weights_means_floats_and_refuses_what_cannot_be_averaged(tmp_path):
    from safetensors.torch import save_file

    from train.trainer import average_weights

    a, b, c = (tmp_path / n for n in "abc")
    for d, x, step in ((a, 1.0, 7), (b, 4.0, 7), (c, 2.0, 8)):
        d.mkdir()
        save_file({"w": torch.full((2, 3), x), "h": torch.tensor([x], dtype=torch.bfloat16),
                   "n": torch.tensor([step])}, str(d / "model.safetensors"))
    avg = average_weights([a, b])
    assert torch.equal(avg["w"], torch.full((2, 3), 2.5)) and avg["h"].dtype == torch.bfloat16
    assert avg["h"].item() == 2.5 and torch.equal(avg["n"], torch.tensor([7]))
    with pytest.raises(ValueError, match="n: a non-float tensor"):
        average_weights([a, c])
    save_file({"w": torch.zeros(2, 3)}, str(c / "model.safetensors"))
    with pytest.raises(ValueError, match="keys differ"):
        average_weights([a, c])


@pytest.mark.parametrize("boost", [False, True])
def test_checkpoint_averaging_scores_each_average_on_dev_and_saves_the_winner(boost, data_files, tmp_path, capsys,
                                                                              monkeypatch):
    """training.average_checkpoints: the averages of the last 2..N epoch checkpoints are each scored on
    dev; the saved model is the best of them and the kept epoch, weight for weight, and tags dev to the
    final dev scores. ``boost``: the dev score of the first average (the 4th dev pass) is raised, so that
    it must win."""
    from safetensors.torch import load_file

    from train.trainer import JointTrainer, average_weights, complete_checkpoints

    if boost:
        calls, real = [], JointTrainer._dev_scores

        def boosted(self, pages):
            scores, passes = real(self, pages)
            calls.append(1)
            if len(calls) == 4:  # 3 epochs, then the average of the last 2
                scores["flat"]["combined_f1"] += 0.5
            return scores, passes

        monkeypatch.setattr(JointTrainer, "_dev_scores", boosted)
    cfg = tiny_config(tmp_path, *data_files)
    out = tmp_path / "model"
    assert main([str(cfg), *TINY_OVERRIDES, "training.num_train_epochs=3", "training.average_checkpoints=3",
                 "training.save_total_limit=1"]) == 0  # raised to 4: every epoch's checkpoint kept
    err = capsys.readouterr().err
    assert "checkpoint averaging on dev (eval_combined_f1): kept epoch " in err and "last 3: " in err, err
    folders = complete_checkpoints(out)
    assert len(folders) == 3
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["train"]
    scores = {int(k): v for k, v in train["average_checkpoints_dev"].items()}
    assert sorted(scores) == [2, 3]
    kept_epoch = train["average_checkpoints_kept_epoch_dev"]
    assert kept_epoch == train["best_metric"]
    saved = load_file(str(out / "model.safetensors"))
    if train["averaged_checkpoints"]:
        k = len(train["averaged_checkpoints"])
        assert train["averaged_checkpoints"] == [f.name for f in folders[-k:]]
        assert scores[k] == max(scores.values()) > kept_epoch
        assert k == 2 or not boost
        expected = average_weights(folders[-k:])
        assert "kept the average of " + ", ".join(train["averaged_checkpoints"]) in err
    else:
        assert not boost and max(scores.values()) <= kept_epoch and "; kept the epoch" in err
        expected = load_file(str(Path(train["best_checkpoint"]) / "model.safetensors"))
    assert saved.keys() == expected.keys() and all(torch.equal(saved[n], expected[n]) for n in saved)
    if boost:  # an average is not any one epoch's weights
        assert all(any(not torch.equal(saved[n], w[n]) for n in saved)
                   for w in (load_file(str(f / "model.safetensors")) for f in folders))
    dev = [_page(json.loads(line)) for line in data_files[1].read_text().splitlines() if line.strip()]
    tagger = Tagger.from_pretrained(out, device="cpu")
    again = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]
    assert again["combined_f1"] == pytest.approx(metrics["dev"]["combined_f1"], abs=1e-6)
    if not boost:
        assert again["combined_f1"] == pytest.approx(max(kept_epoch, *scores.values()), abs=1e-6)
