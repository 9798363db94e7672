"""Low-precision CPU options of the Tagger in PyTorch: ``quantize="bf16"`` (the encoder under bf16
autocast) and ``quantize="int8"`` (dynamic int8 Linear layers). Both leave the caller's model as it
was, keep the heads in float32, and tag nearly as the float32 Tagger does."""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from synthetic import padded_ids, synthetic_pages
from infer.bench import f1
from infer.tagger import AutocastEncoder, Tagger


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def _entities(records):
    return {(r["id"], e["start"], e["end"], e["label"]) for r in records for e in r["entities"]}


def test_bf16_encoder_states_close_to_float32_and_float32_out(tiny):
    model, _ = tiny
    ids, mask = padded_ids(model, 3, [40, 25], 40)
    enc = AutocastEncoder(model.encoder, "cpu", torch.bfloat16)
    with torch.inference_mode():
        want = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        got = enc(input_ids=ids, attention_mask=mask).last_hidden_state
    assert got.dtype == torch.float32 and got.shape == want.shape
    keep = mask.bool()
    rel = ((got[keep] - want[keep]).norm() / want[keep].norm()).item()
    assert 0 < rel < 0.03, rel  # bf16 products: close, and not the float32 path by mistake
    assert next(model.encoder.parameters()).dtype == torch.float32  # the weights stay float32


@pytest.mark.parametrize("how", ["bf16", "int8"])
def test_tagger_low_precision_tags_like_float32_and_leaves_the_model(tiny, how):
    model, tok = tiny
    before = copy.deepcopy(model.state_dict())
    pages = synthetic_pages(6, seed=31, min_paragraphs=6, max_paragraphs=8)
    want = list(Tagger(model, tok, device="cpu").tag(pages))
    tagger = Tagger(model, tok, device="cpu", quantize=how)
    got = list(tagger.tag(pages))
    assert [r["id"] for r in got] == [r["id"] for r in want]
    assert [r["text"] for r in got] == [p.text for p in pages]  # offsets index the same text
    same = sum(a["sections"] == b["sections"] for a, b in zip(got, want))
    assert same >= len(pages) - 1
    assert f1(_entities(got), _entities(want)) >= 0.9
    assert tagger.model is not model and tagger.model.ner_head.weight.dtype == torch.float32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the caller's model untouched


def test_quantize_errors_name_the_choices(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="int8 or bf16"):
        Tagger(model, tok, device="cpu", quantize="int4")
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime (pip install '.[onnx]')")
    with pytest.raises(ValueError, match="int8"):
        Tagger(model, tok, device="cpu", backend="onnx", quantize="bf16")


def test_cli_quantize_bf16(tiny_model_dir, tmp_path):
    page = synthetic_pages(1, seed=32)[0]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(page.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-m", "infer", str(src), "--model", str(tiny_model_dir), "-o", str(out),
                    "--device", "cpu", "--no-progress", "--quantize", "bf16"], check=True, capture_output=True)
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["id"] == page.id and rec["sections"]


def test_bf16_warns_on_a_cpu_without_bf16_products(tiny, monkeypatch):
    import warnings

    import infer.tagger as tagger_module

    model, tok = tiny
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: {"avx2", "fma"})
    with pytest.warns(UserWarning, match="avx512_bf16"):
        Tagger(model, tok, device="cpu", quantize="bf16")
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Tagger(model, tok, device="cpu", quantize="bf16")
