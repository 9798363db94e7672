"""The ONNX Runtime backend of the encoder (CPU option): same states as PyTorch on padded batches,
same records through the Tagger, int8 close to them, and the CLI option."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime (pip install '.[onnx]')")

from synthetic import padded_ids, synthetic_pages  # noqa: E402
from infer.onnx import OnnxEncoder  # noqa: E402
from infer.tagger import Tagger  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return AutoModel.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_states_equal_pytorch_on_padded_batches_and_model_untouched(tiny):
    model, _ = tiny
    ids, mask = padded_ids(model, 0, [50, 31, 6], 50)
    onnx = OnnxEncoder(model.encoder)
    with torch.no_grad():
        want = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = model.encoder(input_ids=ids[2:, :6], attention_mask=mask[2:, :6]).last_hidden_state
    got = onnx(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    assert torch.allclose(got[keep], want[keep], atol=1e-4)
    # the eager model still gives a padded row what it gives the row alone (the export did not touch it)
    assert torch.allclose(want[2, :6], alone[0], atol=1e-5)
    other = onnx(input_ids=ids[:, :20], attention_mask=mask[:, :20]).last_hidden_state  # another length
    assert other.shape == (3, 20, want.shape[-1])


def test_tagger_records_match_pytorch(tiny):
    model, tok = tiny
    pages = synthetic_pages(6, seed=21, min_paragraphs=6, max_paragraphs=8)
    want = list(Tagger(model, tok, device="cpu").tag(pages))
    got = list(Tagger(model, tok, device="cpu", backend="onnx").tag(pages))
    strip = lambda recs: [{**r, "entities": [{k: v for k, v in e.items() if k != "score"} for e in r["entities"]]}
                          for r in recs]  # noqa: E731
    assert strip(got) == strip(want)
    q = list(Tagger(model, tok, device="cpu", backend="onnx", quantize="int8").tag(pages))
    assert [r["id"] for r in q] == [r["id"] for r in want]
    same = sum(a["sections"] == b["sections"] for a, b in zip(q, want))
    assert same >= len(pages) - 1


def test_cli_backend_onnx(tiny_model_dir, tmp_path):
    page = synthetic_pages(1, seed=22)[0]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(page.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
    outs = []
    for extra in ([], ["--backend", "onnx"]):
        out = tmp_path / f"out{len(outs)}.jsonl"
        subprocess.run([sys.executable, "-m", "infer", str(src), "--model", str(tiny_model_dir), "-o", str(out),
                        "--device", "cpu", "--no-progress", *extra], check=True, capture_output=True)
        outs.append(json.loads(out.read_text(encoding="utf-8")))
    assert outs[0]["sections"] == outs[1]["sections"]
    assert [(e["start"], e["end"], e["label"]) for e in outs[0]["entities"]] == \
           [(e["start"], e["end"], e["label"]) for e in outs[1]["entities"]]
