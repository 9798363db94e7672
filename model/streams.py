"""CPU compute streams: a few worker threads that each run torch with their share of its threads.

Two one-thread streams keep two cores busier than one two-thread stream: while one stream is in the
glue between matrix products (element-wise ops, Python), the other computes, and one-thread products
waste nothing on synchronisation. Used by the Tagger (batches side by side), the trainer (a step's
two halves side by side) and the benchmark's matmul probe.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import torch


@contextlib.contextmanager
def stream_pool(streams: int, name: str = "stream") -> Iterator[ThreadPoolExecutor]:
    """``streams`` worker threads, each with ``torch.get_num_threads() // streams`` torch threads.
    MKL's thread count is process-wide, so the caller's count is lowered to the same share while the
    pool lives and restored after. Results are the caller's to order (``pool.map`` keeps input order)."""
    total = torch.get_num_threads()
    per = max(1, total // max(1, streams))
    torch.set_num_threads(per)
    try:
        with ThreadPoolExecutor(max_workers=streams, initializer=torch.set_num_threads, initargs=(per,),
                                thread_name_prefix=name) as pool:
            yield pool
    finally:
        torch.set_num_threads(total)
