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

    # the Tagger pools lines across windows and batches and reads the same line ids
    with torch.no_grad():
        one = loaded(**enc.collate([feats[0]]))
    want = [s.to_dict() for s in SECTION_TAGS.decode(page.lines, one.section_logits.argmax(-1).numpy())]
    for budget in (loaded.config.window_length, 1 << 16):
        rec = list(Tagger(loaded, AutoTokenizer.from_pretrained(tmp_path), device="cpu",
                          batch_tokens=budget).tag([page]))[0]
        assert rec["sections"] == want, budget
    # the features matter: the same model without them gives other section scores
    torch.manual_seed(1)
    with torch.no_grad():
        loaded.line_features.weight.normal_()
        moved = loaded(**enc.collate([feats[0]]))
    assert not torch.allclose(moved.section_logits, one.section_logits)
