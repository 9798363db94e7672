"""ONNX Runtime for the encoder (CPU option): ``Tagger(..., backend="onnx")``.

The joint model's encoder is exported to ONNX once (batch and sequence length dynamic) and run by
an ONNX Runtime session with all graph optimisations (fused LayerNorm, GELU and attention
patterns); optionally its weights are quantised to int8 (``quantize="int8"``, dynamic
quantisation). The heads (NER, lexical features, line GRU) stay in PyTorch, so everything after
the encoder is the same code as with the PyTorch backend.

Needs ``pip install '.[onnx]'`` (onnxruntime, onnx, onnxscript).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn


class _LastHidden(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        # An additive 4-D mask built here traces to plain tensor ops; the encoder's own mask helper
        # has Python-side branches that a trace would freeze to the example batch.
        bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
        return self.encoder(input_ids=input_ids, attention_mask=bias).last_hidden_state


def export_encoder(encoder: nn.Module, path: Path, opset: int = 17) -> Path:
    """Write the encoder as ONNX. It is traced on a padded batch, so that the graph keeps the
    attention mask (a trace on an all-ones mask could drop it)."""
    import warnings

    import copy

    encoder = copy.deepcopy(encoder).float().eval()  # tracing leaves the traced module unfit for eager use
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LastHidden(encoder), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                        "last_hidden_state": {0: "batch", 1: "seq"}})
    return path


class OnnxEncoder(nn.Module):
    """A stand-in for the HF encoder inside ``JointModel``: same call, ``last_hidden_state`` out."""

    def __init__(self, encoder: nn.Module, quantize: str | None = None, threads: int | None = None,
                 workdir: str | Path | None = None):
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("backend='onnx' needs onnxruntime: pip install '.[onnx]'") from err
        if quantize not in (None, "int8"):
            raise ValueError(f"unknown quantize {quantize!r}; use int8")
        self.config = encoder.config
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="encoder-onnx-")
            workdir = self._tmp.name
        path = export_encoder(encoder, Path(workdir) / "encoder.onnx")
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            qpath = path.with_name("encoder.int8.onnx")
            # ONNX Runtime's defaults (per-tensor scales). On random base weights per-channel scales and
            # 7-bit weights moved agreement with fp32 either way by model (83-93%, per-tensor 89-90%), and
            # per-channel broke the int8 section check on a tiny trained model (tests/test_onnx.py).
            quantize_dynamic(str(path), str(qpath), weight_type=QuantType.QInt8)
            path = qpath
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.quantize = quantize
        self.path = path

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        out = self.session.run(["last_hidden_state"], {
            "input_ids": np.ascontiguousarray(input_ids.cpu().numpy(), dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask.cpu().numpy(), dtype=np.int64)})[0]
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out))

    def __del__(self):
        if getattr(self, "_tmp", None) is not None and os.path.isdir(self._tmp.name):
            self._tmp.cleanup()
