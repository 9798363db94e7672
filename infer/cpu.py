"""CPU inference helpers: the CPU's feature flags, the malloc setting that keeps large activations'
pages mapped between batches (set by ``quantize="int8x3"`` and ``"int8"``), and the int8 Linear layers of
``quantize="int8x3"`` and ``quantize="int8"``.

Split int8 (``int8x3``): each Linear's weight W and each input x are written as an int8 high part and an
int8 low part, the low part being the high part's rounding residual on its own scale
(W ~ sw1 Wh + sw2 Wl per output channel, x ~ sx1 xh + sx2 xl per call). The product takes three int8
matrix products with exact int32 sums and float32 outputs (oneDNN, on AMX):

    x W^T  ~  sx1 sw1 (xh Wh^T)  +  sx2 sw1 (xl Wh^T)  +  sx1 sw2 (xh Wl^T)

The dropped term (xl Wl^T) and the low parts' rounding leave a relative error of about 1e-4 per product,
against about 3e-3 for bf16 and 1e-2 for plain int8. On a CPU with AMX (Intel Xeon, 2 cores) the three
products with the input's split ran at 2-3.3x float32's rate, and the base encoder's forward 2.1x. Without
AMX, oneDNN runs these products (signed int8 inputs) in its reference kernel: 0.1 GFLOP/s with AVX-512 VNNI
alone (measured with ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI), so the Tagger uses them only with AMX.

Plain int8 (``int8``, ``terms=1``): the first of those products alone, x W^T ~ sx1 sw1 (xh Wh^T): dynamic
int8 quantisation with per-channel weight scales and one input scale per call, through the same oneDNN
product, on AMX, instead of ``torch.ao.quantization.quantize_dynamic`` (deprecated by torch; its fbgemm
products are what the Tagger uses for int8 on a CPU without AMX).
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

import torch
from torch import nn


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration, IndexError):
        return set()


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_malloc_tuned: bool | None = None


def keep_malloc_pages() -> bool:
    """Ask glibc's malloc to serve every allocation from its heap and never give freed memory back
    (``mallopt``: no mmap, no trim), so that a batch's large activations (tens of MB) reuse pages that
    are already mapped instead of mapping fresh ones and faulting each 4 KB page in again at every
    layer. The same as ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``
    at start-up. Memory is held until the process ends, and peak memory can grow a little (freed blocks
    of the heap are reused only where they fit: +4% for ``--quantize int8x3`` on 24 base-size pages, +16%
    in float32, where it gained 1% and so is not used). Off where ``TAGGER_KEEP_MALLOC_PAGES=0``; a no-op off glibc (macOS,
    Windows, musl). Returns whether it is in effect."""
    global _malloc_tuned
    if _malloc_tuned is not None:
        return _malloc_tuned
    _malloc_tuned = False
    if os.environ.get("TAGGER_KEEP_MALLOC_PAGES", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _malloc_tuned = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**30))
    except (OSError, AttributeError):
        pass
    return _malloc_tuned


def malloc_pages_kept() -> bool:
    """Whether :func:`keep_malloc_pages` is in effect in this process."""
    return bool(_malloc_tuned)


_EPS = 1e-30


def split_int8_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")


def _split_weight(w: torch.Tensor):
    """(high int8, its scales, low int8, its scales) per output row of a 2-D weight: w ~ s1 high + s2 low."""
    s1 = w.abs().amax(1).clamp_min(_EPS) / 127
    q1 = torch.round(w / s1[:, None])
    r = w - q1 * s1[:, None]
    s2 = r.abs().amax(1).clamp_min(_EPS) / 127
    return q1.to(torch.int8), s1, torch.round(r / s2[:, None]).to(torch.int8), s2


_CHUNK = 196_608  # floats per thread in a chunk of _split_input's work (768 KB: its two buffers stay in L2)


class _Scratch(threading.local):
    buf: torch.Tensor | None = None

    def get(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buf is None or self.buf.numel() < 2 * n:
            self.buf = torch.empty(2 * n)
        return self.buf[:n], self.buf[n:2 * n]


_scratch = _Scratch()


def _split_input(x: torch.Tensor, low_part: bool = True):
    """(high int8, its scale, low int8, its scale) for a whole 2-D input: x ~ s high + (s / 254) low, the
    low part being the high part's rounding residual (within half a step, so within 127 low steps).
    Done in chunks of rows whose float intermediates stay in the core's cache: the work is a few passes
    over the data, which ran about twice as fast this way as over whole tensors in main memory.
    ``low_part=False``: the high part alone (plain int8), the low part and its scale None."""
    lo, hi = torch.aminmax(x)
    s = max(-float(lo), float(hi), _EPS) / 127
    rows, width = x.shape
    step = max(1, _CHUNK * max(1, torch.get_num_threads()) // width)
    high = torch.empty(rows, width, dtype=torch.int8)
    low = torch.empty(rows, width, dtype=torch.int8) if low_part else None
    u_buf, q_buf = _scratch.get(min(rows, step) * width)
    for i in range(0, rows, step):
        j = min(rows, i + step)
        u, q = u_buf[:(j - i) * width].view(j - i, width), q_buf[:(j - i) * width].view(j - i, width)
        torch.mul(x[i:j], 1 / s, out=u)
        torch.round(u, out=q)
        high[i:j].copy_(q)
        if low is not None:
            u.sub_(q).mul_(254).round_()
            low[i:j].copy_(u)
    return (high, s, low, s / 254) if low is not None else (high, s, None, None)


class _SharedInput(threading.local):
    """The last input split by one of a group of Linear layers that read the same tensor (an attention
    layer's query, key and value), per thread, so that it is split once and not three times. It is
    dropped once every member has read it."""
    x: torch.Tensor | None = None
    parts: tuple | None = None
    reads: int = 0


class SplitInt8Linear(nn.Module):
    """A frozen ``nn.Linear`` run as three int8 products (see the module's docstring), or with ``terms=1``
    as one (plain dynamic int8). Inference only."""

    def __init__(self, linear: nn.Linear, shared: tuple[_SharedInput, int] | None = None, terms: int = 3):
        super().__init__()
        if terms not in (1, 3):
            raise ValueError(f"terms must be 1 (int8) or 3 (int8x3), not {terms!r}")
        self.terms = terms
        self._shared = shared  # (the group's split, the group's size)
        w = linear.weight.detach().float().cpu()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        wh, self.wh_scale, wl, self.wl_scale = _split_weight(w)
        prepack = torch.ops.onednn.qlinear_prepack
        self.wh = prepack(wh, None)
        self.wl = prepack(wl, None) if terms == 3 else None
        self.bias = None if linear.bias is None else linear.bias.detach().float().cpu().clone()
        self.zero_points = torch.zeros(self.out_features, dtype=torch.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if x.numel() == 0:
            return x.new_zeros(*shape[:-1], self.out_features, dtype=torch.float32)
        xh, sh, xl, sl = self._split(x)
        op, zp = torch.ops.onednn.qlinear_pointwise, self.zero_points
        y = op(xh, sh, 0, self.wh, self.wh_scale, zp, self.bias, 1.0, 0, torch.float32, "none", [], "")
        if self.terms == 1:
            return y.reshape(*shape[:-1], self.out_features)
        # the next two add onto y (oneDNN's sum post-op)
        y = op.binary(xl, sl, 0, self.wh, self.wh_scale, zp, y, None, 1.0, 0, torch.float32, 1.0, 0,
                      "sum", 1.0, "none", [], "")
        y = op.binary(xh, sh, 0, self.wl, self.wl_scale, zp, y, None, 1.0, 0, torch.float32, 1.0, 0,
                      "sum", 1.0, "none", [], "")
        return y.reshape(*shape[:-1], self.out_features)

    def _split(self, x: torch.Tensor):
        low = self.terms == 3
        if self._shared is None:
            return _split_input(x.reshape(-1, self.in_features).float().contiguous(), low)
        last, size = self._shared
        if last.x is not x:
            last.x, last.parts, last.reads = x, _split_input(x.reshape(-1, self.in_features).float().contiguous(), low), 0
        parts = last.parts
        last.reads += 1
        if last.reads >= size:
            last.x = last.parts = None
        return parts

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {'int8x3' if self.terms == 3 else 'int8'}"


_READ_TOGETHER = ("query", "key", "value")  # BERT's self-attention projections, called on one tensor in turn


def split_int8_linears(module: nn.Module, terms: int = 3) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``module`` by a ``SplitInt8Linear`` with ``terms`` products
    (3: int8x3, 1: plain int8), in place; returns it."""
    if not split_int8_available():
        raise RuntimeError("SplitInt8Linear needs PyTorch's oneDNN int8 products (torch.ops.onednn.qlinear_pointwise), "
                           "which this torch build lacks")
    children = dict(module.named_children())
    together = [n for n in _READ_TOGETHER if isinstance(children.get(n), nn.Linear)]
    shared = (_SharedInput(), len(together)) if len(together) == len(_READ_TOGETHER) else None
    for name, child in children.items():
        if isinstance(child, nn.Linear):
            setattr(module, name, SplitInt8Linear(child, shared if name in together else None, terms))
        else:
            split_int8_linears(child, terms)
    return module


def _full_range_forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False).to(x.dtype)


def full_range_int8(module: nn.Module) -> int:
    """Make torch.ao's dynamic int8 Linear layers (fbgemm) quantise their inputs to all 8 bits, not 7
    (``reduce_range=True``, torch.ao's choice, keeps AVX2's 16-bit pair sums from saturating; VNNI sums in 32
    bits). Only for a CPU with VNNI. Base random model, 24 bench pages, against the float32 Tagger
    (2026-12-07, AMD EPYC Zen 4 with avx512_vnni): per-channel weights and 8-bit inputs agree on 92.2% of
    the entities, 7-bit on 87.5%, torch.ao's default (per-tensor weights, 7-bit) 84.0%; speed 2.44x against
    2.54x and 2.67x float32's. Returns the number of layers changed."""
    import types

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    n = 0
    for m in module.modules():
        if isinstance(m, DynamicLinear) and m._packed_params.dtype == torch.qint8:
            m.forward = types.MethodType(_full_range_forward, m)
            n += 1
    return n
