"""Check that tagging memory stays flat as the input grows: python scripts/memory_flat.py --model DIR

Writes two page JSONL files (3 MB and 30 MB by default, same page distribution, builder-like pages of
synthetic Arabic-looking text), tags each with ``python -m infer`` in a child process, and prints for
each the RSS once the model is loaded, the peak RSS after that point, and the ratio of the peaks of
the larger and the smaller input. The job streams one block at a time, so the ratio must stay <= 1.3.

The child resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) right after the model
loads, so the loading spike does not hide the tagging peak; where that is not possible it samples
RSS every 20 ms instead.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 1.3

WORDS = ("وزير الخارجية الرئيس الحكومة القاهرة الرياض دبي بيروت المملكة مجلس الأمن الدولي اليوم الأحد "
         "الاثنين أكد قال أضاف أعلن مصادر رسمية اجتماع مؤتمر صحفي التعاون الاقتصادي الأسواق النفط "
         "الشركة البنك المركزي الأمم المتحدة جامعة الدول العربية محمد أحمد عبدالله سارة فاطمة الجزيرة "
         "الانتخابات البرلمان العاصمة الشرق الأوسط التنمية المشاريع الطاقة المتجددة 2024 15 في من على إلى "
         "أن التي الذي مع عن بعد خلال حول بين").split()
HEADERS = ["إقرأ أيضاً:", "اقرأ أيضا", "مقالات ذات صلة", "أخبار متعلقة:", "المزيد من الأخبار"]
FURNITURE = ["تابعونا على فيسبوك وتويتر", "جميع الحقوق محفوظة © 2024", "شارك الخبر", "أضف تعليقك"]


def sentence(rnd: random.Random, lo: int = 8, hi: int = 30) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(lo, hi))) + rnd.choice(".،.؟.")


def page(rnd: random.Random, i: int) -> dict:
    """A page shaped like the builder's: title, byline, body paragraphs, source, tags, a teaser block,
    a related list and furniture, with blank lines or not."""
    sep = rnd.choice(["\n", "\n\n"])
    lines = [sentence(rnd, 5, 12), f"{rnd.choice(WORDS)} {rnd.choice(WORDS)} - {rnd.randint(1, 28)}/05/2024"]
    lines += [" ".join(sentence(rnd) for _ in range(rnd.randint(1, 5))) for _ in range(rnd.randint(3, 15))]
    lines += [f"المصدر: {rnd.choice(WORDS)}", "كلمات دلالية: " + "، ".join(rnd.choice(WORDS) for _ in range(4))]
    if rnd.random() < 0.6:
        lines += [rnd.choice(HEADERS), sentence(rnd, 5, 12)] + [sentence(rnd) for _ in range(rnd.randint(1, 4))]
    lines += [rnd.choice(HEADERS)] + [rnd.choice(["• ", "- ", ""]) + sentence(rnd, 5, 12) for _ in range(rnd.randint(3, 10))]
    lines += rnd.sample(FURNITURE, 2)
    return {"id": f"page-{i:07d}", "text": sep.join(lines), "meta": {"n": i}}


def write_input(path: Path, megabytes: float, seed: int = 0) -> int:
    rnd, size, n = random.Random(seed), 0, 0
    with open(path, "w", encoding="utf-8") as fh:
        while size < megabytes * 1e6:
            line = json.dumps(page(rnd, n), ensure_ascii=False) + "\n"
            fh.write(line)
            size += len(line.encode("utf-8"))
            n += 1
    return n


# ---------------------------------------------------------------------------------------------
# The child: run the CLI, measuring RSS after the model is loaded.


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM")


def child(argv: list[str]) -> None:
    import gc

    from infer import tagger as tagger_module
    from infer.__main__ import main

    state: dict = {}
    original = tagger_module.Tagger.from_pretrained.__func__

    def from_pretrained(cls, *a, **k):
        t = original(cls, *a, **k)
        gc.collect()
        state["baseline"] = _rss()
        state["kernel_peak"] = _reset_peak()
        if not state["kernel_peak"]:
            threading.Thread(target=_sample, args=(state,), daemon=True).start()
        return t

    tagger_module.Tagger.from_pretrained = classmethod(from_pretrained)
    t0 = time.perf_counter()
    rc = main(argv)
    state["seconds"] = time.perf_counter() - t0
    state["peak"] = _hwm() if state.get("kernel_peak") else state.get("sampled", 0)
    state["rc"] = rc
    print("MEMORY " + json.dumps(state), flush=True)


def _sample(state: dict) -> None:
    while True:
        state["sampled"] = max(state.get("sampled", 0), _rss())
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------


def measure(model: str, inp: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, str(inp), "-o", str(out), "--no-progress", *extra]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")), None)
    if proc.returncode != 0 or line is None:
        sys.exit(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(line[len("MEMORY "):])


def main() -> int:
    if "--child" in sys.argv:
        argv = [a for a in sys.argv[1:] if a != "--child"]
        child(argv)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a model folder")
    ap.add_argument("--sizes-mb", type=float, nargs=2, default=[3.0, 30.0], metavar=("SMALL", "LARGE"))
    ap.add_argument("--workdir", help="where to write the inputs and outputs (default: a temp folder, removed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("infer_args", nargs="*", help="more options for python -m infer (after --), e.g. --block-size 64")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    peaks = []
    for mb in args.sizes_mb:
        inp, out = work / f"pages-{mb:g}MB.jsonl", work / f"tagged-{mb:g}MB.jsonl"
        n = write_input(inp, mb)
        if out.exists():
            out.unlink()
        m = measure(args.model, inp, out, ["--device", args.device, *args.infer_args])
        peaks.append(m["peak"])
        print(f"{mb:g} MB input ({n} pages): RSS after model load {m['baseline'] / 2**20:,.0f} MiB, "
              f"peak after load {m['peak'] / 2**20:,.0f} MiB, tagging {m['seconds']:.0f} s "
              f"({inp.stat().st_size / max(m['seconds'], 1e-9) / 1e3:,.0f} kB/s)", flush=True)
    ratio = peaks[1] / peaks[0]
    print(f"peak ratio {args.sizes_mb[1]:g} MB / {args.sizes_mb[0]:g} MB: {ratio:.3f} (limit {LIMIT})")
    if tmp:
        tmp.cleanup()
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
