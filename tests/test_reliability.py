"""Reliability of the two commands as real processes: SIGKILL and resume, broken and hostile input,
kill-and-resume of training, safe model writes, clear start-up failures, the hard page maximum.

Every subprocess runs with one torch thread (``OMP_NUM_THREADS=1``): the runs that are compared
byte for byte must compute identically, and a busy 2-core machine runs tiny models much faster so.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.schema import DEFAULT_MAX_CHARS, ErrorRecord, Page, parse_line
from fuzz_pages import check_record
from synthetic import TINY_OVERRIDES, synthetic_pages, tiny_config, write_pages
from train.__main__ import last_complete_checkpoint

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
TIMEOUT = 600


def infer_cmd(model: Path, inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "infer", "--model", str(model), str(inp), "-o", str(out), "--no-progress",
            "--device", "cpu", *extra]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)


def kill_when(proc: subprocess.Popen, ready, poll: float = 0.02) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it ended first."""
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None:
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("the process never reached the kill point")
        time.sleep(poll)
    return False


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """A background run whose stderr goes to ``log`` (read it in assertion messages)."""
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=fh)


def tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:] if log.exists() else ""


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


# ---------------------------------------------------------------------------------------------
# python -m infer: SIGKILL at random moments, rerun, byte-identical


def test_sigkilled_tagging_resumes_byte_identical(tiny_model_dir, tmp_path):
    rng = random.Random(7)
    texts = [p.text for p in synthetic_pages(12, seed=3)]
    lines = []
    for i in range(160):
        lines.append(json.dumps({"id": f"k{i}", "text": rng.choice(texts)[: rng.randint(20, 2000)]},
                                ensure_ascii=False))
        if i % 37 == 5:
            lines.append('{"id": "broken", "text": ')
        if i % 41 == 7:
            lines.append("")
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    n_records = sum(1 for x in lines if x.strip())
    cmd_extra = ("--block-size", "4", "--batch-tokens", "2048")

    ref = tmp_path / "ref.jsonl"
    proc = run(infer_cmd(tiny_model_dir, inp, ref, *cmd_extra))
    assert proc.returncode == 0, proc.stderr
    assert lines_in(ref) == n_records

    out = tmp_path / "out.jsonl"
    kills, counts = 0, []
    while kills < 3:
        before = lines_in(out)
        target = before + rng.randint(1, 40)  # a random moment while blocks are being written
        proc = start(infer_cmd(tiny_model_dir, inp, out, *cmd_extra), tmp_path.parent / "infer-kill.log")
        if not kill_when(proc, lambda: lines_in(out) >= target):
            assert proc.returncode == 0, tail(tmp_path.parent / "infer-kill.log")
            break  # it finished before the kill point: the input is exhausted
        kills += 1
        counts.append(lines_in(out))
    assert kills == 3, f"the run finished after {kills} kills; the input is too small"
    assert counts == sorted(counts) and counts[-1] < n_records, counts  # each rerun made progress
    proc = run(infer_cmd(tiny_model_dir, inp, out, *cmd_extra))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == ref.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "ref.jsonl"]


# ---------------------------------------------------------------------------------------------
# Broken input mixed with hostile valid pages


def test_broken_and_hostile_input_one_line_each(tiny_model_dir, tmp_path):
    big = ("خبر عاجل من الرياض\n" * 60_000)[:1_000_000]
    hostile = {
        "latin": "Breaking news from Reuters: nothing Arabic here.\nSecond line, CJK 中文 and हिन्दी.",
        "zw-rlm": "\u200b\u200f\u200d\u2066ب",
        "one-line": "وصل الوزير إلى القاهرة " * 300,
        "crlf": "عنوان الخبر\r\nنص الخبر في القاهرة.\r\n\r\nالمصدر: وكالات\r\n",
        "u2028": "سطر أول\u2028ما زال في السطر نفسه\u2029وكذلك هذا\nسطر ثان",
        "big": big,
    }
    rows: list[tuple[str, str | None, str | None]] = [  # (raw line, expected field in error, or None, text)
        ('{"id": "a1", "text": "نص سليم"', "JSON", None),
        ('{"id": "t5", "text": 5}', "'text'", None),
        ('{"id": [1], "text": "نص"}', "'id'", None),
        ("", None, None),
        ('[1, 2, 3]', "object", None),
        ('"just a string"', "object", None),
        ('{"id": "nt"}', "'text'", None),
        ('{"id": "blank", "text": " \\n\\t\\r\\u2028 "}', "'text'", None),
        ("   ", None, None),
        ('{"id": "deep", "text": ' + "[" * 100_000, "JSON", None),  # deeper than the parser's stack
        ('{"id": "deep2", "sections": ' + "[" * 50_000 + "]" * 50_000 + ', "text": "نص"}', "JSON", None),
        ('{"id": true, "text": "نص"}', "'id'", None),
    ]
    for pid, text in hostile.items():
        rows.append((json.dumps({"id": pid, "text": text}, ensure_ascii=False), None, text))
    rows.append((json.dumps({"id": 7, "text": "رقم"}, ensure_ascii=False), None, "رقم"))
    random.Random(3).shuffle(rows)
    rows.append((json.dumps({"id": "latin", "text": "again"}), "'id'", None))  # a duplicate, after the first
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("\n".join(r[0] for r in rows) + "\n", encoding="utf-8")
    proc = run(infer_cmd(tiny_model_dir, inp, out, "--block-size", "3"))
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(x) for x in out.read_bytes().splitlines()]
    expected = [(n, r) for n, r in enumerate(rows, 1) if r[0].strip()]
    assert len(got) == len(expected)
    for rec, (lineno, (raw, field, text)) in zip(got, expected):
        if field is None:
            d = json.loads(raw)
            check_record(text, d["id"], rec)
        else:
            assert set(rec) == {"id", "line", "error"}, rec
            assert rec["line"] == lineno and f"line {lineno}" in rec["error"], rec
            assert field in rec["error"], (field, rec)


# ---------------------------------------------------------------------------------------------
# python -m train: SIGKILL after the first checkpoint, rerun, same result

TRAIN_STEPS = 12
TRAIN_OVERRIDES = [*TINY_OVERRIDES, f"training.max_steps={TRAIN_STEPS}", "training.num_train_epochs=100",
                   "training.args.save_strategy=steps", "training.args.save_steps=4",
                   "training.args.eval_strategy=steps", "training.args.eval_steps=4", "training.save_total_limit=3"]


@pytest.fixture(scope="module")
def train_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    train = write_pages(tmp / "train.jsonl", synthetic_pages(12, seed=11))
    dev = write_pages(tmp / "dev.jsonl", synthetic_pages(4, seed=12))
    # One vocabulary for every run: the tokenizers WordPiece trainer numbers tied pieces in hash-map
    # order, so two trainings from scratch get different vocabularies (huggingface/tokenizers#1794).
    from model import train_wordpiece

    pages = synthetic_pages(12, seed=11)
    train_wordpiece([p.text for p in pages], vocab_size=600, min_frequency=1, model_max_length=64).save_pretrained(
        tmp / "tokenizer")
    return tiny_config(tmp, train, dev), tmp


def train_cmd(cfg: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", str(cfg), f"output_dir={out}", *TRAIN_OVERRIDES,
            f"tokenizer.name_or_path={cfg.parent / 'tokenizer'}", *extra]


def assert_no_half_written_model(folder: Path) -> None:
    """A folder with config.json is a complete model: weights, tokenizer and metrics are all there."""
    if (folder / "config.json").exists():
        for name in ("model.safetensors", "tokenizer.json", "metrics.json"):
            assert (folder / name).exists(), f"{folder} has config.json but no {name}"


def test_sigkilled_training_resumes_from_its_checkpoint(train_setup):
    """Tolerance: the resumed run's dev metrics equal the uninterrupted run's within 1e-6 (fixed
    seeds and vocabulary, fp32 on CPU, one thread; Trainer restores RNG, optimizer, scheduler and
    data position)."""
    cfg, tmp = train_setup
    ref, out = tmp / "ref", tmp / "killed"
    proc = run(train_cmd(cfg, ref))
    assert proc.returncode == 0, proc.stderr[-3000:]

    first = out / "checkpoint-4"
    log = tmp / "killed.log"
    proc = start(train_cmd(cfg, out), log)
    # Kill once the first checkpoint is complete (its trainer_state.json, written last, parses);
    # a kill in the middle of writing that file would rightly leave nothing to resume from.
    assert kill_when(proc, lambda: last_complete_checkpoint(out) is not None), \
        f"ended before its first checkpoint: {tail(log)}"
    assert_no_half_written_model(out)
    assert not (out / "config.json").exists()
    # A kill can also land while the next checkpoint is being saved; plant such a half-written one
    # (config.json, no weights, no trainer_state.json): resume must skip it, and overwrite it later.
    half = out / "checkpoint-8"
    if not (half / "trainer_state.json").exists():
        half.mkdir(exist_ok=True)
        shutil.copy(first / "config.json", half / "config.json")
    done = run(train_cmd(cfg, out))
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [x for x in done.stderr.splitlines() if x.startswith("resuming from")]
    assert resumed and resumed[0].endswith(("checkpoint-4", "checkpoint-8")), done.stderr[-3000:]
    step = int(resumed[0].rsplit("-", 1)[1])

    metrics, ref_metrics = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert metrics["train"]["global_step"] == ref_metrics["train"]["global_step"] == TRAIN_STEPS
    log = json.loads((out / "log_history.json").read_text())
    state = json.loads((out / f"checkpoint-{step}" / "trainer_state.json").read_text())
    assert state["global_step"] == step
    ref_log = json.loads((ref / "log_history.json").read_text())
    # The history goes on from the checkpoint: the same logging and evaluation steps as the
    # uninterrupted run, none twice, and the same dev scores at every evaluation.
    assert [e["step"] for e in log if "loss" in e] == [e["step"] for e in ref_log if "loss" in e]
    evals = [(e["step"], e["eval_combined_f1"]) for e in log if "eval_combined_f1" in e]
    ref_evals = [(e["step"], e["eval_combined_f1"]) for e in ref_log if "eval_combined_f1" in e]
    assert [s for s, _ in evals] == [s for s, _ in ref_evals]
    assert [v for _, v in evals] == pytest.approx([v for _, v in ref_evals], abs=1e-6)
    for k, v in ref_metrics["dev"].items():
        assert metrics["dev"][k] == pytest.approx(v, abs=1e-6), k
    assert_no_half_written_model(out)


def test_killed_training_never_leaves_a_half_written_model(train_setup):
    """SIGKILL at random moments (a few tries): a folder that has config.json is always complete."""
    cfg, tmp = train_setup
    rng = random.Random(5)
    for i in range(2):
        out = tmp / f"rand-{i}"
        log = tmp / f"rand-{i}.log"
        proc = start(train_cmd(cfg, out), log)
        t_kill = time.monotonic() + rng.uniform(6, 30)
        kill_when(proc, lambda: time.monotonic() >= t_kill or (out / "metrics.json").exists()
                  or any(out.glob(".final-*")), poll=0.005)
        assert proc.returncode in (0, -signal.SIGKILL), tail(log)
        for folder in [out, *out.glob("*")]:
            if folder.is_dir() and not folder.name.startswith(("checkpoint-", ".final-")):
                assert_no_half_written_model(folder)


def test_model_write_is_atomic_when_saving_fails(train_setup, monkeypatch):
    """Death while the finished model is moved into place (simulated: the second rename fails): the
    files were written under a temporary name first and config.json, the mark of a complete model,
    is moved last, so the folder is never taken for a model."""
    import train.__main__ as train_main

    cfg, tmp = train_setup
    out = tmp / "save-fails"
    renames = []
    real_replace = os.replace

    def dying_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        if len(renames) == 2:
            raise OSError("killed while publishing (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(train_main.os, "replace", dying_replace)
    with pytest.raises(OSError, match="simulated"):
        train_main.main([str(cfg), f"output_dir={out}", *TINY_OVERRIDES, "training.max_steps=1",
                         "training.num_train_epochs=100"])
    assert renames and all(src.parent.name.startswith(".final-") for src, _ in renames), renames
    assert renames[-1][1].name != "config.json" and not (out / "config.json").exists()
    assert not list(out.glob(".final-*")), "the temporary folder was left behind"


# ---------------------------------------------------------------------------------------------
# Clear failures at start: exit 2, one message naming the key or path, no traceback


@pytest.mark.parametrize("case", ["unknown-key", "wrong-type", "missing-data"])
def test_training_config_errors_exit_2_naming_the_key(train_setup, tmp_path, capsys, case):
    from train.__main__ import main

    cfg, _ = train_setup
    extra, names = {
        "unknown-key": (["model.hidden_sise=64"], "model.hidden_sise"),
        "wrong-type": (["training.max_steps=many"], "training.max_steps"),
        "missing-data": ([f"data.train.0.paths=[{tmp_path / 'nope.jsonl'}]"], str(tmp_path / "nope.jsonl")),
    }[case]
    assert main([str(cfg), f"output_dir={tmp_path / 'm'}", *extra]) == 2
    err = capsys.readouterr().err
    msgs = [x for x in err.splitlines() if x.strip()]
    assert len(msgs) == 1 and msgs[0].startswith("error:") and names in msgs[0], err
    assert not (tmp_path / "m").exists()


def test_training_config_error_as_a_process_has_no_traceback(train_setup, tmp_path):
    cfg, _ = train_setup
    proc = run([sys.executable, "-m", "train", str(cfg), f"output_dir={tmp_path / 'm'}", "training.max_steps=[1]"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    msgs = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(msgs) == 1 and "training.max_steps" in msgs[0], proc.stderr


@pytest.mark.parametrize("case", ["missing", "garbage-config", "config-without-weights"])
def test_tagging_with_a_bad_model_folder_exits_2(tiny_model_dir, tmp_path, capsys, case):
    from infer.__main__ import main

    model = tmp_path / "model"
    if case == "garbage-config":
        model.mkdir()
        (model / "config.json").write_bytes(b"\x00\xff garbage {{{")
    elif case == "config-without-weights":  # what a killed, non-atomic save would leave
        model.mkdir()
        shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "text": "نص"}\n', encoding="utf-8")
    assert main(["--model", str(model), str(inp), "-o", str(tmp_path / "out.jsonl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    msgs = [x for x in err.splitlines() if x.strip()]
    assert len(msgs) == 1 and msgs[0].startswith("error:") and str(model) in msgs[0], err
    assert not (tmp_path / "out.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# The hard maximum


def test_hard_maximum_is_at_least_5m_and_enforced():
    ok = parse_line(json.dumps({"id": "max", "text": "ب" * DEFAULT_MAX_CHARS}), 1)
    assert DEFAULT_MAX_CHARS >= 5_000_000 and isinstance(ok, Page)
    over = parse_line(json.dumps({"id": "over", "text": "ب" * (DEFAULT_MAX_CHARS + 1)}), 2)
    assert isinstance(over, ErrorRecord) and over.id == "over"
    assert "line 2" in over.error and "'text'" in over.error and str(DEFAULT_MAX_CHARS) in over.error


def test_max_chars_option_tags_up_to_the_limit_and_refuses_beyond(tiny_model_dir, tmp_path):
    limit = 3000
    at = ("وصل الوزير إلى القاهرة\n" * 200)[:limit]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                           for i, t in enumerate([at, at + "x", "قصير"])), encoding="utf-8")
    from infer.__main__ import main

    assert main(["--model", str(tiny_model_dir), str(inp), "-o", str(out), "--no-progress", "--device", "cpu",
                 "--max-chars", str(limit)]) == 0
    recs = [json.loads(x) for x in out.read_bytes().splitlines()]
    check_record(at, 0, recs[0])
    assert recs[1]["id"] == 1 and recs[1]["line"] == 2 and "'text'" in recs[1]["error"] and str(limit) in recs[1]["error"]
    check_record("قصير", 2, recs[2])


@pytest.mark.skipif(not os.environ.get("RELIABILITY_SLOW"),
                    reason="tags a 5,000,000-character page (about a minute per MB on a busy 2-core box); "
                           "set RELIABILITY_SLOW=1 to run it")
def test_a_page_at_the_hard_maximum_is_tagged(tiny_model_dir, tmp_path):
    text = ("خبر عاجل من الرياض اليوم\n" * (DEFAULT_MAX_CHARS // 20))[:DEFAULT_MAX_CHARS]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "max", "text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    proc = run(infer_cmd(tiny_model_dir, inp, out))
    assert proc.returncode == 0, proc.stderr
    (rec,) = [json.loads(x) for x in out.read_bytes().splitlines()]
    check_record(text, "max", rec)
