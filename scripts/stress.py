"""Stress the tagger end to end: fuzzed pages, SIGKILLed CLI runs that resume, and big-page memory.

    python scripts/stress.py [--pages 10000] [--kills 20] [--model DIR] [--seed 0]

1. ``--pages`` hostile pages (the Hypothesis strategies of ``tests/fuzz_pages.py``, made deterministic
   by ``--seed``) go through the real Tagger; every result must keep the output contract.
2. ``python -m infer --model M INPUT -o OUT`` is SIGKILLed ``--kills`` times at random moments and
   rerun each time until it finishes; every finished output must be byte-identical to an
   uninterrupted run (no line lost, none duplicated, none cut).
3. 0.25, 0.5 and 1 MB single pages are tagged in a fresh process each; time and peak RSS are printed
   (time should grow about linearly, RSS stay bounded).

Prints one summary line and exits 1 on any failure. Without ``--model`` a tiny model is trained into a
temporary folder first (``python -m train``, the test suite's tiny config).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# One intra-op thread everywhere: on a shared small machine torch's spinning threads cost far more
# than they give, and the reference run and the killed runs must compute identically.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
       "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
SIZES_MB = (0.25, 0.5, 1.0)
NL = b"\n"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The model


def tiny_model(tmp: Path) -> Path:
    """Train the test suite's tiny model with ``python -m train`` (a few minutes on 2 busy cores)."""
    from synthetic import TINY_OVERRIDES, synthetic_pages, tiny_config, write_pages

    train = write_pages(tmp / "train.jsonl", synthetic_pages(48, seed=1))
    dev = write_pages(tmp / "dev.jsonl", synthetic_pages(8, seed=2))
    cfg = tiny_config(tmp, train, dev)
    cmd = [sys.executable, "-m", "train", str(cfg), *TINY_OVERRIDES, "training.max_steps=60",
           "training.num_train_epochs=100"]
    log("training a tiny model: " + " ".join(cmd[2:4]) + " ...")
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 or not (tmp / "model" / "config.json").is_file():
        raise SystemExit(f"stress: training the tiny model failed:\n{done.stderr[-3000:]}")
    return tmp / "model"


# ---------------------------------------------------------------------------------------------
# 1. Fuzzed pages through the Tagger


def fuzz(model: Path, n_pages: int, seed: int, block: int = 16) -> tuple[int, list[str], str | None]:
    """Tag ``n_pages`` generated pages in blocks; return (pages checked, some page texts, failure)."""
    import torch
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from data.schema import Page
    from fuzz_pages import check_record, page_text
    from infer.tagger import Tagger

    torch.set_num_threads(1)
    tagger = Tagger.from_pretrained(model, device="cpu", batch_tokens=4096, block_size=block)
    state = {"pages": 0, "kept": []}
    t0 = time.perf_counter()

    def run_round(round_seed: int, n_blocks: int) -> None:
        @hseed(round_seed)
        @settings(max_examples=n_blocks, deadline=None, database=None, derandomize=False, print_blob=True,
                  phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
        @given(st.lists(page_text, min_size=block, max_size=block))
        def check_block(texts):
            recs = list(tagger.tag([Page(id=i, text=t) for i, t in enumerate(texts)]))
            assert len(recs) == len(texts), "one result per page"
            for i, (t, rec) in enumerate(zip(texts, recs)):
                check_record(t, i, rec, tagger.entity_types)
            state["pages"] += len(texts)
            if len(state["kept"]) < 2000:
                state["kept"] += texts
            if state["pages"] % 1000 < block:
                rate = state["pages"] / (time.perf_counter() - t0)
                log(f"  fuzz: {state['pages']} pages ({rate:.0f}/s)")

        check_block()

    round_seed = seed
    try:
        while state["pages"] < n_pages:  # Hypothesis may skip duplicates; top up with the next seed
            run_round(round_seed, -(-(n_pages - state["pages"]) // block))
            round_seed += 1_000_003
    except Exception as err:  # noqa: BLE001 - Hypothesis has printed the shrunk failing example
        return state["pages"], state["kept"], f"{type(err).__name__}: {err}"
    return state["pages"], state["kept"], None


# ---------------------------------------------------------------------------------------------
# 2. SIGKILL and resume of python -m infer


def kill_input(path: Path, texts: list[str], n: int, rng: random.Random) -> int:
    """A JSONL input of ``n`` records: fuzzed pages plus broken lines, duplicate ids and blank texts."""
    bad = ['{"id": "x", "text": ', '[1, 2]', '{"id": [1], "text": "نص"}', '{"id": "b", "text": 5}',
           '{"id": "c", "text": " \\n\\t "}', '{"id": "p0", "text": "مكرر"}', '{"id": "m"}', 'null']
    lines = []
    for i in range(n):
        if rng.random() < 0.05:
            lines.append(rng.choice(bad))
        else:
            lines.append(json.dumps({"id": f"p{i}", "text": texts[i % len(texts)], "meta": {"i": i}},
                                    ensure_ascii=False))
        if rng.random() < 0.03:
            lines.append("")  # an empty input line is not a record
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sum(1 for x in lines if x.strip())


def infer_cmd(model: Path, inp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "infer", "--model", str(model), str(inp), "-o", str(out), "--no-progress",
            "--device", "cpu", "--block-size", "16", "--batch-tokens", "4096"]


def run_to_end(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:4])} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def first_output_after(cmd: list[str], out: Path) -> float:
    """Seconds from start until the first output bytes appear (the model load and first block)."""
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and not (out.exists() and out.stat().st_size):
            time.sleep(0.05)
        return time.perf_counter() - t0
    finally:
        proc.kill()
        proc.wait()


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_and_kill(proc: subprocess.Popen, ready, poll: float = 0.02) -> bool:
    """SIGKILL ``proc`` once ``ready()`` holds; False if it ended by itself first."""
    while proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll)
    return False


def kills(model: Path, work: Path, texts: list[str], n_kills: int, seed: int, n_records: int = 3000) -> tuple[int, int, str | None]:
    """Return (kills done, kills whose job resumed byte-identical, failure)."""
    rng = random.Random(seed)
    inp = work / "kill-input.jsonl"
    n_records = kill_input(inp, texts, n_records, rng)
    ref = work / "kill-ref.jsonl"
    total = run_to_end(infer_cmd(model, inp, ref))
    ref_bytes = ref.read_bytes()
    if ref_bytes.count(b"\n") != n_records:
        return 0, 0, f"uninterrupted run wrote {ref_bytes.count(NL)} lines for {n_records} records"
    first = first_output_after(infer_cmd(model, inp, work / "probe.jsonl"), work / "probe.jsonl")
    log(f"  kills: uninterrupted run {total:.1f} s, first output after {first:.1f} s, {n_records} records")

    done_kills, ok_kills, job = 0, 0, 0
    while done_kills < n_kills:
        job += 1
        out = work / f"kill-{job}.jsonl"
        job_kills = 0
        while True:  # one job: kill it at random moments, rerun, until it finishes by itself
            errlog = open(work / "kill-stderr.txt", "w+b")
            written = size_of(out)
            proc = subprocess.Popen(infer_cmd(model, inp, out), cwd=ROOT, env=ENV,
                                    stdout=subprocess.DEVNULL, stderr=errlog)
            # The moment is drawn in output bytes, not seconds, so it lands while blocks are written
            # whatever the machine's load; now and then it falls during the start-up instead.
            if done_kills >= n_kills:
                killed = wait_and_kill(proc, lambda: False)  # enough kills: let this run finish
            elif rng.random() < 0.15:
                t_kill = time.monotonic() + first * rng.uniform(0.2, 0.9)
                killed = wait_and_kill(proc, lambda: time.monotonic() >= t_kill)
            else:
                target = rng.randint(written + 1, max(written + 1, len(ref_bytes) - 1))
                killed = wait_and_kill(proc, lambda: size_of(out) >= target)
            errlog.close()
            if killed:
                done_kills += 1
                job_kills += 1
                data = out.read_bytes() if out.exists() else b""
                cut = " (last line cut)" if data and not data.endswith(NL) else ""
                log(f"  kill {done_kills}/{n_kills}: job {job}, {data.count(NL)} lines written{cut}")
                continue
            err = (work / "kill-stderr.txt").read_text(encoding="utf-8", errors="replace")
            if proc.returncode != 0:
                return done_kills, ok_kills, f"job {job}: rerun exited {proc.returncode}: {err[-2000:]}"
            break
        if out.read_bytes() != ref_bytes:
            got = out.read_bytes().count(NL)
            return done_kills, ok_kills, (f"job {job} ({job_kills} kills): output differs from the uninterrupted "
                                          f"run ({got} lines vs {n_records})")
        ok_kills += job_kills
        leftovers = [p.name for p in work.iterdir() if p.name.startswith(out.name + ".")]
        if leftovers:
            return done_kills, ok_kills, f"job {job} left files behind: {leftovers}"
    return done_kills, ok_kills, None


# ---------------------------------------------------------------------------------------------
# 3. Big pages: time and peak RSS, one fresh process each

_BIG_PAGE = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    torch.set_num_threads(1)
    from data.schema import Page
    from fuzz_pages import check_record, tile
    from infer.tagger import Tagger
    model, frag_file, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tagger = Tagger.from_pretrained(model, device="cpu")
    list(tagger.tag([Page(id=0, text="تجربة أولى\\nسطر")]))  # warm up (regex classes, first batch)
    def status_kb(key):
        with open("/proc/self/status") as fh:
            return next(int(x.split()[1]) for x in fh if x.startswith(key + ":"))
    text = tile(json.load(open(frag_file, encoding="utf-8")), size)
    try:  # reset the peak (VmHWM) so that it measures the tagging, not the model load
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base, peak_of = status_kb("VmRSS"), lambda: status_kb("VmHWM")
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    (rec,) = tagger.tag([Page(id="big", text=text)])
    dt = time.perf_counter() - t0
    peak = peak_of()
    check_record(text, "big", rec, tagger.entity_types)
    print(json.dumps({"chars": len(text), "seconds": dt, "base_kb": base, "peak_kb": peak,
                      "sections": len(rec["sections"]), "entities": len(rec["entities"])}))
""")


def big_pages(model: Path, work: Path, texts: list[str]) -> tuple[list[dict], str | None]:
    from synthetic import synthetic_pages

    frags = [p.text for p in synthetic_pages(12, seed=5)] + texts[:40]  # news layout plus hostile bits
    frag_file = work / "fragments.json"
    frag_file.write_text(json.dumps(frags, ensure_ascii=False), encoding="utf-8")
    rows = []
    for mb in SIZES_MB:
        size = int(mb * 1_000_000)
        done = subprocess.run([sys.executable, "-c", _BIG_PAGE, str(model), str(frag_file), str(size)],
                              cwd=ROOT, env={**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
                              capture_output=True, text=True)
        if done.returncode != 0:
            return rows, f"{mb} MB page failed: {done.stderr[-2000:]}"
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["mb"] = mb
        rows.append(row)
        log(f"  {mb:g} MB page: {row['chars']} chars, {row['seconds']:.1f} s, peak RSS {row['peak_kb'] / 1024:.0f} MB "
            f"(before tagging {row['base_kb'] / 1024:.0f} MB), {row['sections']} sections, {row['entities']} entities")
    small, big = rows[0], rows[-1]
    ratio = big["chars"] / small["chars"]
    if big["seconds"] > 2.0 * ratio * small["seconds"] + 2.0:
        return rows, f"time grows faster than linearly: {small['seconds']:.1f} s -> {big['seconds']:.1f} s for x{ratio:.0f} chars"
    grow_small = max(small["peak_kb"] - small["base_kb"], 1)
    grow_big = big["peak_kb"] - big["base_kb"]
    if grow_big > 2.0 * ratio * grow_small + 64 * 1024 or big["peak_kb"] > 4 * 1024 * 1024:
        return rows, f"memory not bounded: +{grow_small / 1024:.0f} MB at {small['mb']} MB, +{grow_big / 1024:.0f} MB at 1 MB"
    return rows, None


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=10_000, help="fuzzed pages through the Tagger (default 10000)")
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs of python -m infer (default 20)")
    ap.add_argument("--model", type=Path, help="model folder (default: train a tiny one into a temp folder)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of pages and kill moments")
    args = ap.parse_args(argv)

    failures = []
    with tempfile.TemporaryDirectory(prefix="stress-") as tmp:
        work = Path(tmp)
        model = args.model or tiny_model(work)
        t0 = time.perf_counter()
        n, texts, err = fuzz(model, args.pages, args.seed)
        log(f"fuzz: {n} pages in {time.perf_counter() - t0:.0f} s" + (f"; FAILED: {err}" if err else ""))
        if err:
            failures.append(f"fuzz: {err}")
        texts = texts or ["نص قصير\nسطر ثان"]
        k, k_ok, err = kills(model, work, texts, args.kills, args.seed)
        if err:
            failures.append(f"kills: {err}")
            log(f"kills: FAILED: {err}")
        rows, err = big_pages(model, work, texts)
        if err:
            failures.append(f"big pages: {err}")
            log(f"big pages: FAILED: {err}")
    big = next((r for r in rows if r["mb"] == 1.0), None)
    big_s = f"1MB page {big['seconds']:.1f} s / {big['peak_kb'] / 1024:.0f} MB peak RSS" if big else "1MB page not measured"
    status = "ok" if not failures else f"FAILED ({len(failures)})"
    print(f"stress: {n} pages {'ok' if not any(f.startswith('fuzz') for f in failures) else 'FAILED'}, "
          f"{k_ok}/{args.kills} kills resumed byte-identical, {big_s} — {status}")
    for f in failures:
        print(f"  {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
