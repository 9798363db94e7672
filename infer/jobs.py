"""Tagging jobs: input sources, fixed blocks, resume, shards and output writing.

Why blocks: the output must be byte-identical whether a run was interrupted or not, and whether it
ran on one process or many. The tagger's batches depend only on the block it is given, so cutting
the input into fixed blocks of N records (error records included) makes every block tag to the same
bytes wherever and whenever it runs. Resume and sharding are then just "which blocks, from where".

Everything streams: one block of pages is in memory at a time, never the whole input or output.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Union

from data.schema import DEFAULT_MAX_CHARS, ErrorRecord, Page, parse_line

GOLD_FIELDS = ("sections", "entities", "entity_regions")
_GOLD_KEYS = tuple(f'"{k}"'.encode() for k in GOLD_FIELDS)

Raw = Union[bytes, ErrorRecord]  # one input record before parsing: a JSON line, or an error already
Record = Union[Page, ErrorRecord]


class JobError(Exception):
    """Nothing can work (unreadable input, inconsistent shards): the CLI prints it and exits 2."""


# ---------------------------------------------------------------------------------------------
# Input sources: every form of INPUT becomes a stream of (record number, raw record).


def check_input(spec: str) -> None:
    """Fail early, before the model loads, when the input path cannot be read."""
    if spec == "-":
        return
    p = Path(spec)
    if not p.exists():
        raise JobError(f"input not found: {spec}")
    if p.is_dir():
        try:
            next(iter(os.scandir(p)), None)
        except OSError as err:
            raise JobError(f"cannot read input folder {spec}: {err.strerror}") from None
        return
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise JobError(f"cannot read input {spec}: {err.strerror}") from None


def iter_raw(spec: str) -> Iterator[tuple[int, Raw]]:
    """``(number, raw)`` per record. For JSONL the number is the 1-based input line; empty lines are
    skipped (they are not records). For a folder or a .txt file each file is one record."""
    if spec == "-":
        yield from _jsonl_lines(sys.stdin.buffer)
        return
    p = Path(spec)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix == ".txt" and f.is_file())
        for i, f in enumerate(files, 1):
            yield i, _txt_record(f, i)
    elif p.suffix == ".txt":
        yield 1, _txt_record(p, 1)
    else:
        with open(p, "rb") as fh:
            yield from _jsonl_lines(fh)


def count_records(spec: str) -> int:
    """How many output lines the input will give (no parsing: non-empty lines, or .txt files)."""
    p = Path(spec)
    if p.is_dir():
        return sum(1 for f in p.iterdir() if f.suffix == ".txt" and f.is_file())
    if p.suffix == ".txt":
        return 1
    with open(p, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _jsonl_lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for lineno, raw in enumerate(fh, 1):
        if raw.strip():
            yield lineno, raw


def _txt_record(path: Path, number: int) -> Raw:
    """A .txt file as a page record: id = file name, text = the exact decoded bytes (no newline
    translation: ``\\r`` is an ordinary character in a line)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        return ErrorRecord(number, f"line {number}: file {path.name!r}: field 'text': not valid UTF-8 ({err.reason} at byte {err.start})", id=path.name)
    except OSError as err:
        return ErrorRecord(number, f"line {number}: file {path.name!r}: cannot read: {err.strerror}", id=path.name)
    return json.dumps({"id": path.name, "text": text}, ensure_ascii=False).encode("utf-8", "surrogatepass")


def parse_records(raws: Iterable[tuple[int, Raw]], max_chars: int = DEFAULT_MAX_CHARS) -> Iterator[tuple[int, Record]]:
    """Pages and error records, in input order, with duplicate ids tracked across the whole input.

    Gold annotations on input are not used for tagging, so they are dropped before validation: a
    broken gold span must never make a page with a valid text fail."""
    seen: set = set()
    for number, raw in raws:
        if isinstance(raw, ErrorRecord):
            yield number, raw
            continue
        yield number, parse_line(_without_gold(raw), number, seen, max_chars=max_chars, validate_labels=False)


def _without_gold(raw: bytes) -> bytes:
    if not any(k in raw for k in _GOLD_KEYS):  # cheap test; a false positive only costs a re-dump
        return raw
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return raw  # parse_line reports it
    if not isinstance(d, dict) or not any(k in d for k in GOLD_FIELDS):
        return raw
    for k in GOLD_FIELDS:
        d.pop(k, None)
    return json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")


def fixed_blocks(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive blocks of ``size`` items, the last one shorter: block k holds items kN .. kN+N-1.
    The unit of the Tagger and of the CLI's records (where error records count too)."""
    it = iter(items)
    while block := list(islice(it, size)):
        yield block



# ---------------------------------------------------------------------------------------------
# Output lines


def encode_record(d: dict) -> bytes:
    """One output line. A text holding a lone surrogate cannot be UTF-8 encoded raw; such a record
    falls back to ASCII escapes, which is still valid JSON for the very same string."""
    try:
        return (json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(d, ensure_ascii=True) + "\n").encode("ascii")


def complete_lines(path: Path) -> int:
    """Count the complete lines of ``path`` and cut away a partial last line (a run killed while
    writing can stop anywhere, even inside a UTF-8 character)."""
    n, last_nl, pos = 0, -1, 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            c = chunk.count(b"\n")
            if c:
                n += c
                last_nl = pos + chunk.rindex(b"\n")
            pos += len(chunk)
    if pos != last_nl + 1:
        with open(path, "r+b") as fh:
            fh.truncate(last_nl + 1)
    return n


def _write(fh: IO[bytes], data: bytes, durable: bool) -> None:
    fh.write(data)
    fh.flush()
    if durable:
        os.fsync(fh.fileno())


# ---------------------------------------------------------------------------------------------
# Tagging one block


def tag_block(tagger, block: list[tuple[int, Record]], no_text: bool = False, warn: Callable[[str], None] | None = None,
              feats: list[dict] | None = None) -> list[dict]:
    """Output dicts for one block, in record order: the tagger's results merged with the errors.
    ``feats``: the block's pages already encoded (``tagger.encoder.encode_block``), e.g. by a prefetching
    worker; None: encoded here.

    If the tagger raises on the block, each page is retried alone so that one bad page becomes one
    error record instead of ending the job (deterministic: the same block fails the same way)."""
    pages = [r for _, r in block if isinstance(r, Page)]
    try:
        results = (tagger.tag_block(pages) if feats is None else tagger.tag_block(pages, feats)) if pages else []
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - isolate the page that breaks the tagger
        if warn:
            warn(f"warning: tagging a block failed ({type(err).__name__}: {err}); retrying its pages one by one")
        results = [_tag_alone(tagger, p) for p in pages]
    out, it = [], iter(results)
    for number, rec in block:
        if isinstance(rec, ErrorRecord):
            out.append(rec.to_dict())
            continue
        res = next(it)
        if isinstance(res, Exception):
            why = f"line {number}: page {rec.id!r}: tagging failed: {type(res).__name__}: {res}"
            out.append(ErrorRecord(number, why, id=rec.id).to_dict())
            continue
        if no_text:
            res = {k: v for k, v in res.items() if k != "text"}
        out.append(res)
    return out


def _tag_alone(tagger, page: Page):
    try:
        return tagger.tag_block([page])[0]
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001
        return err


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass
class Job:
    """One tagging run. ``rank``/``world`` select the blocks (k % world == rank) for sharded runs."""

    tagger: object
    input: str
    output: Path | None
    block_size: int
    max_chars: int = DEFAULT_MAX_CHARS
    no_text: bool = False
    rank: int = 0
    world: int = 1
    progress: bool = True
    on_record: Callable[[dict], None] | None = None  # e.g. the HTML page view writer
    durable: bool = False

    @property
    def part(self) -> Path:
        return self.output.with_name(f"{self.output.name}.part-{self.rank}-of-{self.world}")

    def records(self) -> Iterator[tuple[int, Record]]:
        return parse_records(iter_raw(self.input), self.max_chars)

    # -- single process -----------------------------------------------------------------------
    def run(self) -> int:
        """Tag the whole input into ``output`` (or stdout), resuming a previous run. Returns the
        number of records written by this run."""
        if self.world > 1:
            return self.run_shard()
        done = 0
        if self.output is not None and self.output.exists():
            done = complete_lines(self.output)
            if self.on_record:
                _replay(self.output, done, self.on_record)
        if self.output is None:
            return self._tag_into(sys.stdout.buffer, done, owned=lambda k: True)
        with open(self.output, "ab") as fh:
            return self._tag_into(fh, done, owned=lambda k: True)

    # -- sharded ------------------------------------------------------------------------------
    def run_shard(self) -> int:
        """This rank's blocks into its part file; rank 0 then merges all parts into ``output``."""
        out = self.output
        marker = Path(f"{self.part}.done")
        if not self._output_complete():
            if not marker.exists():
                done = complete_lines(self.part) if self.part.exists() else 0
                with open(self.part, "ab") as fh:
                    self._tag_into(fh, done, owned=lambda k: k % self.world == self.rank, on_record=None)
                    os.fsync(fh.fileno())
                marker.write_text("done\n")
            if self.rank == 0:
                self._wait_for_shards()
                self._merge()
        if self.rank == 0 and self.on_record:
            _replay(out, None, self.on_record)
        return 0

    def _output_complete(self) -> bool:
        """A finished merge is renamed into place, so an output that holds every record means the
        sharded job is done (every rank sees the same answer)."""
        if not self.output.exists():
            return False
        return complete_lines(self.output) >= count_records(self.input)

    def _wait_for_shards(self) -> None:
        try:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                dist.barrier()
        except ImportError:
            pass
        markers = [Path(f"{self._part_of(r)}.done") for r in range(self.world)]
        if not all(m.exists() for m in markers):
            waiting = [r for r, m in enumerate(markers) if not m.exists()]
            print(f"rank 0: waiting for ranks {waiting} to finish their parts", file=sys.stderr, flush=True)
        while not all(m.exists() for m in markers):
            time.sleep(0.2)

    def _part_of(self, rank: int) -> Path:
        return self.output.with_name(f"{self.output.name}.part-{rank}-of-{self.world}")

    def _merge(self) -> None:
        """Interleave the parts block by block (block k is in part k % world) into ``output``."""
        parts = [open(self._part_of(r), "rb") for r in range(self.world)]
        tmp = self.output.with_name(self.output.name + ".merging")
        n = 0
        try:
            with open(tmp, "wb") as out:
                k = 0
                while True:
                    fh = parts[k % self.world]
                    got = 0
                    for _ in range(self.block_size):
                        line = fh.readline()
                        if not line:
                            break
                        out.write(line)
                        got += 1
                    n += got
                    if got < self.block_size:
                        break
                    k += 1
                out.flush()
                os.fsync(out.fileno())
            leftover = [r for r, fh in enumerate(parts) if fh.read(1)]
        finally:
            for fh in parts:
                fh.close()
        total = count_records(self.input)
        if leftover or n != total:
            raise JobError(f"shards do not add up ({n} merged records for {total} input records; "
                           f"leftover lines in parts {leftover}); delete the part files and rerun")
        os.replace(tmp, self.output)
        for r in range(self.world):
            self._part_of(r).unlink()
            Path(f"{self._part_of(r)}.done").unlink()

    # -- the loop -----------------------------------------------------------------------------
    def _tag_into(self, fh: IO[bytes], done: int, owned: Callable[[int], bool], on_record="job") -> int:
        """Tag the owned blocks from the record ``done`` on (counted in this file's own lines) and
        append them to ``fh``, flushing after every block."""
        from tqdm import tqdm

        on_record = self.on_record if on_record == "job" else on_record

        total = count_records(self.input) if self.world == 1 and self.input != "-" and self.progress else None
        bar = tqdm(unit="page", initial=done, total=total, disable=not self.progress, file=sys.stderr, dynamic_ncols=True,
                   desc=f"rank {self.rank}" if self.world > 1 else "tagging")
        written, chars, t0 = 0, 0, time.perf_counter()
        tokens0 = getattr(self.tagger, "tokens_seen", None)  # the Tagger counts the subwords it encodes
        warn = lambda msg: bar.write(msg, file=sys.stderr)  # noqa: E731

        def todo() -> Iterator[tuple[list[tuple[int, Record]], int]]:
            """The owned blocks still to write, each with how many of its records the file already has."""
            seen_in_file = 0  # records of owned blocks that come before this point in the file
            for k, block in enumerate(fixed_blocks(self.records(), self.block_size)):
                if not owned(k):
                    continue
                skip = max(0, done - seen_in_file)
                seen_in_file += len(block)
                if skip < len(block):  # else already in the file: parsed only, for the duplicate-id set
                    yield block, skip

        try:
            for block, skip, feats in _prefetched(todo(), self.tagger):
                out = tag_block(self.tagger, block, self.no_text, warn, feats)[skip:]
                _write(fh, b"".join(encode_record(d) for d in out), self.durable)
                if on_record:
                    for d in out:
                        on_record(d)
                written += len(out)
                chars += sum(len(r.text) for _, r in block[skip:] if isinstance(r, Page))
                bar.update(len(out))
                dt = max(time.perf_counter() - t0, 1e-9)
                rate = f"{chars / dt:,.0f} chars/s"
                if tokens0 is not None:
                    rate += f", {(self.tagger.tokens_seen - tokens0) / dt:,.0f} subword tokens/s"
                bar.set_postfix_str(rate, refresh=False)
        finally:
            bar.close()
        return written


_END = object()


def read_ahead(items: Iterator, work: Callable, name: str = "prefetch") -> Iterator[tuple]:
    """``(item, work(item))`` for each item, in order, with the next item read and worked on in a worker
    thread while the caller uses this one (the prefetch of ``Tagger.outputs`` and ``python -m infer``:
    reading, parsing and encoding the next block while the model runs). An error in reading an item or
    in ``work`` surfaces in order, once the items before it are out."""
    from concurrent.futures import ThreadPoolExecutor

    def step():
        item = next(items, _END)
        return item, (None if item is _END else work(item))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) as pool:
        pending = pool.submit(step)
        while True:
            item, result = pending.result()
            if item is _END:
                return
            pending = pool.submit(step)
            yield item, result


def _prefetched(blocks: Iterator[tuple[list, int]], tagger) -> Iterator[tuple[list, int, list[dict] | None]]:
    """``(block, skip, feats)`` for each ``(block, skip)``. Where the tagger prefetches (its ``prefetch``:
    the default on a GPU), the next block is read, parsed and encoded ahead (:func:`read_ahead`); else
    ``feats`` is None (encoded by ``tag_block``). A block whose encoding fails gets None too: ``tag_block``
    encodes it again and isolates the bad page."""
    encoder = getattr(tagger, "encoder", None)
    if not getattr(tagger, "prefetch", False) or not hasattr(encoder, "encode_block"):
        for block, skip in blocks:
            yield block, skip, None
        return

    def encode(item):
        pages = [r for _, r in item[0] if isinstance(r, Page)]
        try:
            return encoder.encode_block(pages, alone=getattr(tagger, "alone", False)) if pages else None
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # noqa: BLE001 - tag_block retries the pages one by one and names the bad one
            return None

    for (block, skip), feats in read_ahead(blocks, encode, "infer-prefetch"):
        yield block, skip, feats


def _replay(path: Path, limit: int | None, on_record: Callable[[dict], None]) -> None:
    """Feed records already in an output file to ``on_record`` (the page view after a resume)."""
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            on_record(json.loads(line))
