"""Low-precision CPU options of the Tagger in PyTorch: ``quantize="bf16"`` (the encoder under bf16
autocast), ``quantize="int8"`` (dynamic int8 Linear layers) and ``quantize="int8x3"`` (three int8
products of split weights and inputs). All leave the caller's model as it was, keep the heads in
float32, and tag nearly as the float32 Tagger does; int8x3 all but exactly."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from synthetic import padded_ids, synthetic_pages
from infer.bench import f1
from infer.cpu import SplitInt8Linear, cpu_flags, malloc_pages_kept, split_int8_available
from infer.tagger import AutocastEncoder, Tagger

needs_int8x3 = pytest.mark.skipif(not split_int8_available(),
                                  reason="this torch build lacks oneDNN's int8 products (torch.ops.onednn.qlinear_pointwise)")
# oneDNN's u8 x s8 products are exact with VNNI or AMX; on a CPU with neither (AVX2 only) its kernel adds pairs
# of products in 16 bits, which saturate (2026-12-07, AMD EPYC AVX2: 12% relative error on random inputs, a
# row of +-1 weights times ones gave 0.15 for 10.07). The Tagger takes these products only with AMX
# (quantize_encoder), so only the tests that run them on this CPU anyway (directly, or through the amx
# fixture) and check their precision need this.
needs_exact_int8 = pytest.mark.skipif(
    not cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"},
    reason="oneDNN's int8 products saturate on a CPU without VNNI or AMX (AVX2 only), as this one: "
           "the precision checks need VNNI or AMX")


@pytest.fixture
def amx(monkeypatch):
    """The Tagger reads the CPU's flags as if it had AMX, where the oneDNN int8 paths (int8x3; int8 on
    oneDNN) are chosen. On a CPU with VNNI but no AMX their products then run in oneDNN's reference kernel:
    slow, and the same numbers, which is what these tests check on the tests' tiny model; on a CPU with
    neither they saturate (``needs_exact_int8``)."""
    import infer.tagger as tagger_module

    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: cpu_flags() | {"amx_int8"})


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


@pytest.mark.parametrize("how", ["bf16", "int8", pytest.param("int8x3", marks=[needs_int8x3, needs_exact_int8])])
def test_tagger_low_precision_tags_like_float32_and_leaves_the_model(tiny, how, amx):
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
    if how == "int8x3":  # near float32: every section, and all but a rare entity
        assert same == len(pages) and f1(_entities(got), _entities(want)) >= 0.99
        if sys.platform.startswith("linux") and os.environ.get("TAGGER_KEEP_MALLOC_PAGES", "1") != "0":
            assert malloc_pages_kept()  # int8x3 keeps malloc's pages mapped for the process


@needs_int8x3
@needs_exact_int8
def test_split_int8_linear_is_float32_grade():
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    torch.nn.init.normal_(lin.bias, std=0.3)
    x = torch.randn(3, 7, 96)
    x[0, 0, 5] = 30.0  # an outlier widens the input's int8 step; the low part keeps its precision
    q = SplitInt8Linear(lin)
    with torch.inference_mode():
        want = torch.nn.functional.linear(x.double(), lin.weight.double(), lin.bias.double())
        got = q(x)
        bf16 = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16())
        rel = lambda y: ((y.double() - want).norm() / want.norm()).item()  # noqa: E731
        assert got.dtype == torch.float32 and got.shape == (3, 7, 40)
        assert 0 < rel(got) < 1e-3 and rel(got) < rel(bf16) / 5, (rel(got), rel(bf16))
        assert q(x[:, :0]).shape == (3, 0, 40)  # no rows: no products, the right shape
        lin_nb = torch.nn.Linear(96, 40, bias=False)
        nb = SplitInt8Linear(lin_nb)(x)
        assert ((nb - lin_nb(x)).norm() / lin_nb(x).norm()).item() < 1e-3


@needs_int8x3
@needs_exact_int8
def test_int8x3_splits_an_attention_input_once_for_query_key_and_value(tiny, monkeypatch):
    import infer.cpu as cpu

    model, _ = tiny
    enc = cpu.split_int8_linears(copy.deepcopy(model.encoder))
    calls = []
    real = cpu._split_input
    monkeypatch.setattr(cpu, "_split_input", lambda x, *a: calls.append(x.shape) or real(x, *a))
    ids, mask = padded_ids(model, 3, [40, 25], 40)
    with torch.inference_mode():
        shared = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        layers = model.encoder.config.num_hidden_layers
        per_token = lambda: sum(shape[0] == ids.numel() for shape in calls)  # noqa: E731  (not the pooler's)
        assert per_token() == 4 * layers  # query/key/value once, attention output, FFN in, FFN out
        for m in enc.modules():
            if isinstance(m, SplitInt8Linear):
                m._shared = None
        alone = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        assert per_token() == 4 * layers + 6 * layers
        want = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(shared, alone)  # the shared split is the same split
    keep = mask.bool()
    assert ((shared[keep] - want[keep]).norm() / want[keep].norm()).item() < 2e-3


@needs_int8x3
@needs_exact_int8
def test_int8_runs_on_onednn_without_torch_ao(tiny, monkeypatch):
    """quantize="int8": one oneDNN int8 product per Linear (per-channel weight scales, one input scale per
    call), not torch.ao.quantization's deprecated quantize_dynamic, so no deprecation warnings; about
    int8's precision (between int8x3's and nothing). Without oneDNN's int8 product it falls back to
    quantize_dynamic, and so does a CPU without AMX (fbgemm's products there)."""
    import warnings

    import infer.tagger as tagger_module

    model, tok = tiny
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: cpu_flags() | {"amx_int8"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning or UserWarning from torch.ao would raise here
        tagger = Tagger(model, tok, device="cpu", quantize="int8")
    layers = [m for m in tagger.model.encoder.modules() if isinstance(m, SplitInt8Linear)]
    assert layers and all(m.terms == 1 and m.wl is None for m in layers)
    assert not any(isinstance(m, torch.nn.Linear) for m in tagger.model.encoder.modules())
    ids, mask = padded_ids(model, 3, [40, 25], 40)
    keep = mask.bool()
    with torch.inference_mode():
        want = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[keep]
        got = tagger.model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[keep]
        three = Tagger(model, tok, device="cpu", quantize="int8x3").model.encoder
        finer = three(input_ids=ids, attention_mask=mask).last_hidden_state[keep]
    rel = ((got - want).norm() / want.norm()).item()
    assert 1e-4 < rel < 0.05, rel  # int8's rounding: not float32 by mistake, not broken
    assert ((finer - want).norm() / want.norm()).item() < rel / 5  # int8x3 is the precise one
    for flags, available in (({"avx2", "avx512_vnni"}, True), ({"amx_int8"}, False)):
        monkeypatch.setattr(tagger_module, "cpu_flags", lambda: flags)
        monkeypatch.setattr(tagger_module, "split_int8_available", lambda: available)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch.ao's deprecation warnings are filtered out
            old = Tagger(model, tok, device="cpu", quantize="int8")
        assert not any(isinstance(m, SplitInt8Linear) for m in old.model.encoder.modules())
        assert any("quantized" in type(m).__module__ for m in old.model.encoder.modules())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert [r["id"] for r in old.tag(synthetic_pages(2, seed=5))]


def test_int8_on_fbgemm_has_per_channel_weights_and_8_bit_inputs_with_vnni(tiny, monkeypatch):
    """quantize="int8" without AMX: torch.ao's dynamic int8 Linear layers with one weight scale per output
    channel, and, where the CPU has VNNI (32-bit sums), inputs on all 8 bits instead of torch.ao's 7: the
    encoder's states come closer to float32's. Without VNNI the 7 bits stay (AVX2's 16-bit sums)."""
    import infer.tagger as tagger_module
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    model, tok = tiny
    ids, mask = padded_ids(model, 3, [40, 25], 40)
    keep = mask.bool()
    with torch.inference_mode():
        want = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state[keep]
    errs = {}
    for flags in ({"avx2"}, {"avx2", "avx512_vnni"}):
        monkeypatch.setattr(tagger_module, "cpu_flags", lambda: flags)
        monkeypatch.setattr(tagger_module, "split_int8_available", lambda: False)
        enc = Tagger(model, tok, device="cpu", quantize="int8").model.encoder
        layers = [m for m in enc.modules() if isinstance(m, DynamicLinear)]
        assert layers and all(m.weight().qscheme() == torch.per_channel_affine for m in layers)
        assert all(("forward" in vars(m)) == ("avx512_vnni" in flags) for m in layers)  # 8-bit inputs only with VNNI
        with torch.inference_mode():
            got = enc(input_ids=ids, attention_mask=mask).last_hidden_state[keep]
        errs["vnni" if "avx512_vnni" in flags else "avx2"] = ((got - want).norm() / want.norm()).item()
    assert 1e-4 < errs["avx2"] < 0.1, errs
    if cpu_flags() & {"avx512_vnni", "avx_vnni"}:  # on this CPU fbgemm really sums in 32 bits
        assert errs["vnni"] < errs["avx2"] * 0.8, errs


def test_keep_malloc_pages_stops_page_faults_on_reallocation():
    """After keep_malloc_pages freed 64 MB buffers' pages are reused, not mapped and faulted in again at
    every allocation; TAGGER_KEEP_MALLOC_PAGES=0 leaves malloc as it was."""
    import os

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc malloc settings: Linux only")
    code = ("import resource, torch\n"
            "from infer.cpu import keep_malloc_pages\n"
            "on = keep_malloc_pages()\n"
            "faults = []\n"
            "for _ in range(12):\n"
            "    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "    x = torch.ones(16 * 2**20); del x\n"
            "    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
            "print(on, sum(f < 1_000 for f in faults[1:]))\n")
    runs = {}
    for env in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                             env={**os.environ, "TAGGER_KEEP_MALLOC_PAGES": env}).stdout.split()
        runs[env] = (out[0] == "True", int(out[1]))  # (in effect, reallocations that faulted no fresh pages)
    assert runs["0"] == (False, 0), runs  # each time 64 MB mapped again and faulted in, 4 KB at a time
    # kept: most reallocations reuse the pages (a few still fault, as the heap's layout has it)
    assert runs["1"][0] is True and runs["1"][1] >= 3, runs


def test_quantize_errors_name_the_choices(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="int8, int8x3, bf16"):
        Tagger(model, tok, device="cpu", quantize="int4")
    if split_int8_available():
        with pytest.raises(ValueError, match="float32"):
            Tagger(model, tok, device="cpu", dtype="bfloat16", quantize="int8x3")
    pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime (pip install '.[onnx]')")
    with pytest.raises(ValueError, match="int8"):
        Tagger(model, tok, device="cpu", backend="onnx", quantize="bf16")


@pytest.mark.parametrize("how", ["bf16", "int8", pytest.param("int8x3", marks=[needs_int8x3, pytest.mark.skipif(
    "amx_int8" not in cpu_flags(), reason="quantize=int8x3 refuses a CPU without AMX (amx_int8), as this one")])])
def test_cli_quantize(tiny_model_dir, tmp_path, how):
    page = synthetic_pages(1, seed=32)[0]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(page.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    subprocess.run([sys.executable, "-m", "infer", str(src), "--model", str(tiny_model_dir), "-o", str(out),
                    "--device", "cpu", "--no-progress", "--quantize", how], check=True, capture_output=True)
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


@needs_int8x3
def test_int8x3_refuses_a_cpu_without_amx(tiny, monkeypatch):
    """Without AMX oneDNN runs int8x3's products in its reference kernel (0.1 GFLOP/s with VNNI alone):
    a clear error naming the flag and the other options; a warning where the flags cannot be read."""
    import warnings

    import infer.tagger as tagger_module

    model, tok = tiny
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    with pytest.raises(ValueError, match="amx_int8.*quantize='int8' or 'bf16'"):
        Tagger(model, tok, device="cpu", quantize="int8x3")
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: set())
    with pytest.warns(UserWarning, match="cannot be read"):
        Tagger(model, tok, device="cpu", quantize="int8x3")
    monkeypatch.setattr(tagger_module, "cpu_flags", lambda: {"avx512f", "amx_int8"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Tagger(model, tok, device="cpu", quantize="int8x3")
