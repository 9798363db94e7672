"""Dropout with a cheaper random source on the CPU, for training.

On the CPU, ``torch.nn.functional.dropout`` draws its mask with ``bernoulli_``, which costs about as
much as the matrix products of a small encoder: in a training step of a 4-layer, 256-wide BERT it
took 16% of the time, most of it in the attention-probability dropout (batch x heads x length x
length numbers per layer). Here the mask comes from numpy's PCG64 generator (``Generator.random``
in float32, about three times faster), seeded from torch's generator at every call, so that
``torch.manual_seed`` and the Trainer's saved RNG states still make a run reproducible and
resumable. The mask has the same law (each element dropped with probability ``p``, the others
scaled by ``1 / (1 - p)``); only the random numbers differ.

Off the CPU, and in eval mode, everything falls through to PyTorch's own dropout and SDPA.

    enable_fast_dropout(model)   # every nn.Dropout of the model and the encoder's attention
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import torch
from torch import nn

ATTENTION_NAME = "sdpa_fast_dropout"
_local = threading.local()


@contextlib.contextmanager
def thread_generator(seed: int):
    """Masks drawn in this thread come from a generator seeded with ``seed`` instead of torch's
    global one: threads that train side by side (``training.streams``) then draw reproducibly,
    whichever thread runs first."""
    previous = getattr(_local, "generator", None)
    _local.generator = torch.Generator().manual_seed(int(seed))
    try:
        yield
    finally:
        _local.generator = previous


def drop_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """A bool tensor, True where an element is dropped (probability ``p`` each)."""
    # torch's generator (or this thread's, see thread_generator) drives the stream
    seed = int(torch.randint(0, 2**62, (1,), generator=getattr(_local, "generator", None)).item())
    u = np.random.Generator(np.random.PCG64(seed)).random(tuple(shape), dtype=np.float32)
    return torch.from_numpy(u < p)


class _DropWithMask(torch.autograd.Function):
    """``x`` with the ``drop`` elements zeroed, times ``scale`` (1.0: the caller scales later)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, drop: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(drop)
        ctx.scale = scale
        out = torch.where(drop, 0.0, x)
        return out.mul_(scale) if scale != 1.0 else out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (drop,) = ctx.saved_tensors
        out = torch.where(drop, 0.0, grad)
        return (out.mul_(ctx.scale) if ctx.scale != 1.0 else out), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x``; torch's own off the CPU."""
    if not training or p == 0.0 or x.device.type != "cpu" or x.numel() == 0:
        return nn.functional.dropout(x, p, training)
    if p >= 1.0:
        return x * 0.0
    return _DropWithMask.apply(x, drop_mask(x.shape, p), 1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training mask comes from :func:`drop_mask`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def sdpa_fast_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs):
    """The HF attention interface: SDPA, except for CPU training with attention dropout, where the
    probabilities are computed as SDPA's math path does and dropped with :func:`fast_dropout`."""
    if dropout == 0.0 or dropout >= 1.0 or not module.training or query.device.type != "cpu" or kwargs.get("is_causal"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # [batch, 1, q, k]: made additive before it meets the heads
            attention_mask = torch.where(attention_mask, 0.0, torch.finfo(weights.dtype).min).to(weights.dtype)
        weights = weights + attention_mask
    probs = torch.softmax(weights, dim=-1)
    probs = _DropWithMask.apply(probs, drop_mask(probs.shape, dropout), 1.0)  # scaled below, on the smaller tensor
    out = torch.matmul(probs, value) * (1.0 / (1.0 - dropout))
    return out.transpose(1, 2).contiguous(), None


def uses_fast_dropout(model: nn.Module) -> bool:
    """Whether :func:`enable_fast_dropout` was applied to ``model``."""
    return any(isinstance(m, FastDropout) for m in model.modules())


def enable_fast_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` in ``model`` for :class:`FastDropout` and point SDPA encoders at
    :func:`sdpa_fast_dropout`. Eval-mode results are unchanged. Returns the number of modules changed."""
    from transformers import AttentionInterface, PreTrainedModel

    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, sdpa_fast_dropout)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # else the encoder builds no padding mask
    n = 0
    for m in model.modules():
        if type(m) is nn.Dropout:
            m.__class__ = FastDropout
            n += 1
    enc = getattr(model, "encoder", None)
    target = enc if isinstance(enc, PreTrainedModel) else model
    if isinstance(target, PreTrainedModel) and getattr(target.config, "_attn_implementation", None) == "sdpa":
        target.set_attn_implementation(ATTENTION_NAME)
        n += 1
    return n
