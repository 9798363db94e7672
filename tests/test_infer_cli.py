"""The tagging CLI on a real tiny model: resume, order, bad input, hostile pages, input forms, shards.

Most runs call ``infer.__main__.main(argv)`` in-process (the model loads in well under a second once
torch is imported); stdin, exit codes and torchrun run as real subprocesses.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from data.schema import Page
from infer.__main__ import main

REPO = Path(__file__).resolve().parents[1]

SENTENCES = [
    "أكد وزير الخارجية المصري سامح شكري، اليوم الأحد، أن القاهرة تدعم الحل السياسي في ليبيا.",
    "وقال شكري في مؤتمر صحفي مع نظيره الفرنسي إن بلاده ترفض أي تدخل أجنبي.",
    "وأضاف أن جامعة الدول العربية ستعقد اجتماعا طارئا في الرياض الأسبوع المقبل.",
    "من جهته، أشاد الوزير الفرنسي بدور مصر في دعم الاستقرار في المنطقة.",
    "المصدر: وكالة الأنباء الفرنسية",
    "إقرأ أيضاً: الأمم المتحدة تحذر من تفاقم الأزمة الإنسانية في اليمن",
    "• تعرف على أسعار الذهب اليوم في الأسواق المصرية",
    "تابعونا على فيسبوك وتويتر",
]


def page_text(n_lines: int, seed: int) -> str:
    rnd = random.Random(seed)
    return "\n".join(rnd.choice(SENTENCES) + ("\n" if rnd.random() < 0.3 else "") for _ in range(n_lines))


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def page_line(pid, text: str, **extra) -> str:
    return json.dumps({"id": pid, "text": text, **extra}, ensure_ascii=False)


def run(model: Path, inp, out: Path | None, *extra: str) -> int:
    argv = ["--model", str(model), str(inp), "--no-progress", *extra]
    if out is not None:
        argv += ["-o", str(out)]
    return main(argv)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def assert_valid_result(rec: dict, text: str) -> None:
    """A result's sections and entities must be valid labels for its own text (whole lines, every
    non-blank line covered, entities on words inside one section), and carry the slice texts."""
    assert "error" not in rec, rec
    page = Page.from_dict({"id": rec["id"], "text": text, "sections": rec["sections"], "entities": rec["entities"]})
    assert len(page.sections) >= 1
    for e in rec["entities"]:
        assert e["text"] == text[e["start"]:e["end"]]
        assert 0.0 <= e["score"] <= 1.0
    body = [text[s["start"]:s["end"]] for s in rec["sections"] if s["label"] == "body"]
    assert rec["body"] == "\n\n".join(body)


# ---------------------------------------------------------------------------------------------
# Resume


@pytest.fixture(scope="module")
def resume_case(tiny_model_dir, tmp_path_factory):
    """14 records in blocks of 3 (errors and a duplicate id of an earlier block included) and the
    output of an uninterrupted run."""
    d = tmp_path_factory.mktemp("resume")
    lines = [page_line(f"p{i}", page_text(1 + (i * 7) % 12, i), meta={"n": i}) for i in range(12)]
    lines.insert(4, '{"id": "broken", "text": ')
    lines.insert(9, page_line("p1", "نص مكرر المعرف"))  # duplicate of a page two blocks earlier
    lines.insert(6, "")
    inp = write_lines(d / "in.jsonl", lines)
    ref = d / "ref.jsonl"
    assert run(tiny_model_dir, inp, ref, "--block-size", "3") == 0
    return inp, ref.read_bytes()


def test_uninterrupted_output_shape(resume_case):
    inp, ref = resume_case
    out = [json.loads(x) for x in ref.splitlines()]
    assert len(out) == 14 and ref.endswith(b"\n")
    assert [r["id"] for r in out] == ["p0", "p1", "p2", "p3", None, "p4", "p5", "p6", "p7", "p1", "p8", "p9", "p10", "p11"]
    assert out[4]["line"] == 5 and "invalid JSON" in out[4]["error"]
    assert out[9]["line"] == 11 and "duplicate id" in out[9]["error"]  # its first use is 3 blocks back
    assert out[0]["meta"] == {"n": 0}


def _cuts(ref: bytes) -> list[int]:
    rnd = random.Random(1234)
    inside_char = [i for i, b in enumerate(ref) if 0x80 <= b < 0xC0]  # UTF-8 continuation bytes
    newlines = [i + 1 for i, b in enumerate(ref) if b == 0x0A]
    return sorted({0, len(ref), newlines[2], newlines[7], *rnd.sample(range(1, len(ref)), 4),
                   *rnd.sample(inside_char, 3)})


def test_resume_after_cut_is_byte_identical(resume_case, tiny_model_dir, tmp_path):
    inp, ref = resume_case
    for cut in _cuts(ref):
        out = tmp_path / f"cut{cut}.jsonl"
        out.write_bytes(ref[:cut])
        assert run(tiny_model_dir, inp, out, "--block-size", "3") == 0
        assert out.read_bytes() == ref, f"cut at byte {cut}"


def test_resume_twice_in_a_row_changes_nothing(resume_case, tiny_model_dir, tmp_path):
    inp, ref = resume_case
    out = tmp_path / "done.jsonl"
    out.write_bytes(ref)
    assert run(tiny_model_dir, inp, out, "--block-size", "3") == 0
    assert out.read_bytes() == ref


def test_prefetching_run_writes_the_same_bytes_and_resumes(resume_case, tiny_model_dir, tmp_path):
    """--prefetch (the default on a GPU: the next block is read, parsed and encoded in a worker thread)
    writes what the plain loop writes, errors and duplicate ids in place, and resumes the same way."""
    inp, ref = resume_case
    out = tmp_path / "fetched.jsonl"
    assert run(tiny_model_dir, inp, out, "--block-size", "3", "--prefetch") == 0
    assert out.read_bytes() == ref
    for cut in _cuts(ref)[1:4]:
        part = tmp_path / f"fetched{cut}.jsonl"
        part.write_bytes(ref[:cut])
        assert run(tiny_model_dir, inp, part, "--block-size", "3", "--prefetch") == 0
        assert part.read_bytes() == ref, f"cut at byte {cut}"


def test_prefetched_block_whose_encoding_fails_isolates_the_page(tiny_model_dir, tmp_path, monkeypatch):
    """A block that the prefetching worker cannot encode is tagged again page by page, so only the page
    that breaks the encoder becomes an error record, and the rest of the run goes on."""
    import threading

    from data.features import PageEncoder

    real = PageEncoder.encode_block
    calls = {"worker": 0}

    def encode_block(self, pages, **kw):
        if threading.current_thread().name.startswith("infer-prefetch"):
            calls["worker"] += 1
        if any(p.id == "bad" for p in pages):
            raise RuntimeError("encoder broke on purpose")
        return real(self, pages, **kw)

    monkeypatch.setattr(PageEncoder, "encode_block", encode_block)
    ids = ["a", "b", "bad", "c", "d", "e", "f"]
    inp = write_lines(tmp_path / "in.jsonl", [page_line(i, page_text(3, k)) for k, i in enumerate(ids)])
    out = tmp_path / "out.jsonl"
    assert run(tiny_model_dir, inp, out, "--block-size", "2", "--prefetch") == 0
    recs = records(out)
    assert [r["id"] for r in recs] == ids
    bad = [r for r in recs if "error" in r]
    assert len(bad) == 1 and bad[0]["id"] == "bad" and bad[0]["line"] == 3
    assert "encoder broke on purpose" in bad[0]["error"]
    assert calls["worker"] >= 3  # the blocks were encoded in the worker thread


# ---------------------------------------------------------------------------------------------
# Order, bad input, hostile pages


def test_input_order_kept_across_length_sorted_batches(tiny_model_dir, tmp_path):
    sizes = [1, 120, 3, 60, 1, 240, 10, 2]  # lines per page: windows of very different lengths
    texts = [page_text(n, i) for i, n in enumerate(sizes)]
    inp = write_lines(tmp_path / "in.jsonl", [page_line(f"page-{i}", t) for i, t in enumerate(texts)])
    out = tmp_path / "out.jsonl"
    # A small token budget forces many batches inside each block; a block holds every page.
    assert run(tiny_model_dir, inp, out, "--block-size", "8", "--batch-tokens", "64") == 0
    recs = records(out)
    assert [r["id"] for r in recs] == [f"page-{i}" for i in range(len(sizes))]
    for rec, text in zip(recs, texts):
        assert rec["text"] == text
        assert_valid_result(rec, text)


def test_stream_and_overlap_options(tiny_model_dir, tmp_path, capsys):
    """--streams changes nothing in the output; --windows short --overlap longest (the HF pipeline's
    windows and rule) gives valid records for every page, in order."""
    texts = [page_text(n, 40 + i) for i, n in enumerate([2, 90, 5, 150])]
    inp = write_lines(tmp_path / "in.jsonl", [page_line(f"p{i}", t) for i, t in enumerate(texts)])
    outs = {}
    for name, extra in {"one": ["--streams", "1"], "two": ["--streams", "2"],
                        "longest": ["--windows", "short", "--overlap", "longest"]}.items():
        outs[name] = tmp_path / f"{name}.jsonl"
        assert run(tiny_model_dir, inp, outs[name], "--batch-tokens", "64", *extra) == 0
    assert outs["one"].read_bytes() == outs["two"].read_bytes()
    recs = records(outs["longest"])
    assert [r["id"] for r in recs] == ["p0", "p1", "p2", "p3"]
    for rec, text in zip(recs, texts):
        assert_valid_result(rec, text)
    assert run(tiny_model_dir, inp, tmp_path / "bad.jsonl", "--streams", "0") == 2
    # --section-once title: at most one title section per page; a bad label is a load error naming it
    assert run(tiny_model_dir, inp, tmp_path / "once.jsonl", "--section-once", "title") == 0
    for rec, text in zip(records(tmp_path / "once.jsonl"), texts):
        assert_valid_result(rec, text)
        assert sum(s["label"] == "title" for s in rec["sections"]) <= 1
    # the tiny model has no rule, so "none" is its default: the same bytes, with the same batches (with other
    # batches a score's last digit can differ: one fresh-clone CI run on an AVX2 machine, 2026-12-07)
    same = ("--batch-tokens", "64", "--streams", "1")  # the batches of outs["one"]
    assert run(tiny_model_dir, inp, tmp_path / "none.jsonl", *same, "--section-once", "none") == 0
    assert (tmp_path / "none.jsonl").read_bytes() == outs["one"].read_bytes()
    capsys.readouterr()
    assert run(tiny_model_dir, inp, tmp_path / "bad2.jsonl", "--section-once", "titel") == 2
    assert "'titel'" in capsys.readouterr().err and not (tmp_path / "bad2.jsonl").exists()
    # --outside-bias: 0 is the tiny model's own (no bias chosen); a large negative bias leaves no entity,
    # a large positive one puts every word in one; not a number: exit 2
    assert run(tiny_model_dir, inp, tmp_path / "b0.jsonl", *same, "--outside-bias", "0") == 0
    assert (tmp_path / "b0.jsonl").read_bytes() == outs["one"].read_bytes()
    assert run(tiny_model_dir, inp, tmp_path / "neg.jsonl", "--outside-bias", "-50") == 0
    assert all(not r["entities"] for r in records(tmp_path / "neg.jsonl"))
    assert run(tiny_model_dir, inp, tmp_path / "pos.jsonl", "--outside-bias", "50") == 0
    for rec, text in zip(records(tmp_path / "pos.jsonl"), texts):
        assert_valid_result(rec, text)
        starts = Page.from_dict({"id": rec["id"], "text": text}).words[:, 0]
        inside = sum(int(((starts >= e["start"]) & (starts < e["end"])).sum()) for e in rec["entities"])
        assert inside == len(starts)
    with pytest.raises(SystemExit) as exc:
        run(tiny_model_dir, inp, tmp_path / "nan.jsonl", "--outside-bias", "nan")
    assert exc.value.code == 2
    # --section-bias LABEL=X: a large one puts every line under that label; 'none' is the tiny model's own
    assert run(tiny_model_dir, inp, tmp_path / "rel.jsonl", "--section-bias", "related=80") == 0
    for rec, text in zip(records(tmp_path / "rel.jsonl"), texts):
        assert_valid_result(rec, text)
        assert {s["label"] for s in rec["sections"]} <= {"related"}
    assert run(tiny_model_dir, inp, tmp_path / "sb0.jsonl", *same, "--section-bias", "none") == 0
    assert (tmp_path / "sb0.jsonl").read_bytes() == outs["one"].read_bytes()
    for bad in ("titel=1", "title", "title=x"):
        with pytest.raises(SystemExit) as exc:
            run(tiny_model_dir, inp, tmp_path / "bad3.jsonl", "--section-bias", bad)
        assert exc.value.code == 2
    # --section-required body with every line pushed to related: each page still keeps a body section;
    # 'none' is the tiny model's own (no rule); a bad label is a load error naming it
    assert run(tiny_model_dir, inp, tmp_path / "req.jsonl", "--section-bias", "related=80", "--section-required", "body") == 0
    for rec, text in zip(records(tmp_path / "req.jsonl"), texts):
        assert_valid_result(rec, text)
        assert {s["label"] for s in rec["sections"]} == {"related", "body"}
    assert run(tiny_model_dir, inp, tmp_path / "req0.jsonl", *same, "--section-required", "none") == 0
    assert (tmp_path / "req0.jsonl").read_bytes() == outs["one"].read_bytes()
    capsys.readouterr()
    assert run(tiny_model_dir, inp, tmp_path / "bad4.jsonl", "--section-required", "bodi") == 2
    assert "'bodi'" in capsys.readouterr().err and not (tmp_path / "bad4.jsonl").exists()
    # a model folder whose saved biases are bad: a load error naming the field, nothing written
    import shutil

    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model_dir, broken)
    cfg = json.loads((broken / "config.json").read_text())
    for field, value, named in (("section_label_bias", {"titel": 1.0}, "'titel'"),
                                ("ner_outside_bias", "lots", "outside_bias")):
        (broken / "config.json").write_text(json.dumps({**cfg, field: value}))
        capsys.readouterr()
        assert run(broken, inp, tmp_path / "bad4.jsonl") == 2
        assert named in capsys.readouterr().err and not (tmp_path / "bad4.jsonl").exists()


def test_bad_input_gives_one_line_per_record_naming_line_and_field(tiny_model_dir, tmp_path):
    good = "وصل الوزير إلى القاهرة."
    lines = [
        page_line("ok1", good),                          # 1
        '{"id": "x", "text": "بلا نهاية',                 # 2 broken JSON
        "",                                              # 3 empty: skipped, not a record
        '["not", "an", "object"]',                       # 4
        '{"id": "no-text"}',                             # 5
        '{"id": "num", "text": 42}',                     # 6
        page_line("empty", ""),                          # 7
        page_line("blank", " \n\t \n"),                  # 8
        page_line("ok1", good),                          # 9 duplicate id
        "   ",                                           # 10 whitespace only: skipped
        page_line("long", "ا" * 80),                     # 11 over --max-chars
        page_line("gold-broken", good, sections=[{"label": "nope", "start": 5, "end": 999}],
                  entities="not a list", entity_regions=[[3, 1]]),  # 12 invalid gold: still tagged
        page_line(7, good),                              # 13 integer id
        '"just a string"',                               # 14
    ]
    inp = write_lines(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    assert run(tiny_model_dir, inp, out, "--block-size", "4", "--max-chars", "50") == 0
    recs = records(out)
    assert len(recs) == sum(1 for x in lines if x.strip()) == 12
    errors = {r["line"]: r for r in recs if "error" in r}
    expect = {2: "invalid JSON", 4: "'<record>'", 5: "'text': missing", 6: "'text': must be a string",
              7: "'text': empty or blank", 8: "'text': empty or blank", 9: "'id': duplicate id",
              11: "'text': 80 characters, over the hard maximum 50", 14: "'<record>'"}
    assert sorted(errors) == sorted(expect)
    for line, what in expect.items():
        assert errors[line]["error"].startswith(f"line {line}: ") and what in errors[line]["error"], errors[line]
        assert set(errors[line]) == {"id", "line", "error"}
    assert errors[9]["id"] == "ok1" and errors[2]["id"] is None and errors[6]["id"] == "num"
    tagged = [r for r in recs if "error" not in r]
    assert [r["id"] for r in tagged] == ["ok1", "gold-broken", 7]
    for r in tagged:
        assert_valid_result(r, good)


HOSTILE = {
    "latin": "Breaking news: the minister arrived in Cairo today.\nSource: Reuters",
    "marks": "\u200f\u200fوصل\u200d الوزير\u200c إلى\u200e القاهرة\n\u200f\n\u2066نص\u2069 معزول",
    "one-line": "وصل الوزير إلى القاهرة " * 300,
    "crlf": "وصل الوزير إلى القاهرة.\r\nالمصدر: وكالات\r\n\r\nتابعونا\r",
    "cr-only": "عنوان\rسطر\rآخر",
    "u2028": "وصل الوزير\u2028إلى القاهرة\u2029اليوم\n\x0bسطر",
    "emoji-digits": "🔥🔥 ١٢٣ 2024/05/01 ؟؟ «» …",
    "leading-blank": "\n\n   \n" + page_text(20, 99) + "\n\n\n",
}


def test_hostile_valid_pages_are_tagged_not_refused(tiny_model_dir, tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [page_line(k, v) for k, v in HOSTILE.items()])
    out = tmp_path / "out.jsonl"
    assert run(tiny_model_dir, inp, out) == 0
    recs = records(out)
    assert [r["id"] for r in recs] == list(HOSTILE)
    for rec in recs:
        assert rec["text"] == HOSTILE[rec["id"]]  # exact round trip: CR, U+2028, marks untouched
        assert_valid_result(rec, HOSTILE[rec["id"]])


def test_no_text_and_html(tiny_model_dir, tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [page_line("a/../b", page_text(6, 1)), "{oops", page_line("ج", "نص")])
    out, html_dir = tmp_path / "out.jsonl", tmp_path / "html"
    assert run(tiny_model_dir, inp, out, "--no-text", "--html", str(html_dir)) == 0
    recs = records(out)
    assert "text" not in recs[0] and "sections" in recs[0] and "error" in recs[1]
    pages = sorted(p.name for p in html_dir.glob("*.html") if p.name != "index.html")
    assert len(pages) == 2 and all("/" not in p and ".." not in p for p in pages)
    index = (html_dir / "index.html").read_text(encoding="utf-8")
    assert all(f'href="{p}"' in index for p in pages) and "invalid JSON" in index


# ---------------------------------------------------------------------------------------------
# Input forms and exit codes


def test_stdin_to_stdout_equals_file_output(tiny_model_dir, tmp_path):
    lines = [page_line(f"s{i}", page_text(2 + i, i)) for i in range(4)] + ["{bad"]
    inp = write_lines(tmp_path / "in.jsonl", lines)
    ref = tmp_path / "ref.jsonl"
    assert run(tiny_model_dir, inp, ref, "--block-size", "2") == 0
    proc = subprocess.run([sys.executable, "-m", "infer", "--model", str(tiny_model_dir), "-", "--block-size", "2"],
                          input=inp.read_bytes(), capture_output=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == ref.read_bytes()


def test_folder_of_txt_files(tiny_model_dir, tmp_path):
    d = tmp_path / "pages"
    d.mkdir()
    (d / "b.txt").write_bytes("عنوان الخبر\r\nوصل الوزير إلى القاهرة.\r\n".encode())
    (d / "a.txt").write_text(page_text(5, 3), encoding="utf-8")
    (d / "c.txt").write_text("  \n", encoding="utf-8")
    (d / "d.txt").write_bytes(b"\xff\xfe broken utf-8")
    (d / "notes.md").write_text("not a page", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run(tiny_model_dir, d, out) == 0
    recs = records(out)
    assert [r["id"] for r in recs] == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert recs[1]["text"] == "عنوان الخبر\r\nوصل الوزير إلى القاهرة.\r\n"
    assert_valid_result(recs[1], recs[1]["text"])
    assert recs[2]["line"] == 3 and "empty or blank" in recs[2]["error"]
    assert recs[3]["line"] == 4 and "UTF-8" in recs[3]["error"]
    single = tmp_path / "single.jsonl"
    assert run(tiny_model_dir, d / "b.txt", single) == 0
    assert records(single)[0]["text"] == recs[1]["text"]


@pytest.mark.parametrize("case", ["missing-model", "model-is-file", "missing-input", "corrupt-model", "no-onnxruntime"])
def test_fatal_errors_exit_2_with_one_message(case, tiny_model_dir, tmp_path):
    inp = write_lines(tmp_path / "in.jsonl", [page_line("a", "نص")])
    model = tiny_model_dir
    if case == "missing-model":
        model = tmp_path / "no-such-model"
    elif case == "model-is-file":
        model = inp
    elif case == "missing-input":
        inp = tmp_path / "no-such-input.jsonl"
    elif case == "corrupt-model":
        model = tmp_path / "corrupt"
        model.mkdir()
        (model / "config.json").write_text("{ not json", encoding="utf-8")
    extra, env = [], dict(os.environ)
    if case == "no-onnxruntime":  # --backend onnx where onnxruntime cannot be imported
        shim = tmp_path / "shim" / "onnxruntime"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text("raise ImportError('No module named onnxruntime')\n", encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env.get("PYTHONPATH", "")])
        extra = ["--backend", "onnx"]
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "infer", "--model", str(model), str(inp), "-o", str(out), *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert proc.returncode == 2
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    if case == "no-onnxruntime":
        assert "pip install '.[onnx]'" in err[0]
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# Sharded


@pytest.mark.slow
def test_torchrun_two_ranks_equals_single_process(tiny_model_dir, tmp_path):
    lines = [page_line(f"r{i}", page_text(1 + (i * 5) % 9, i)) for i in range(9)]
    lines.insert(5, "not json")
    lines.insert(8, page_line("r2", "مكرر"))  # duplicate id seen by another rank's block
    inp = write_lines(tmp_path / "in.jsonl", lines)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, sharded = tmp_path / "single.jsonl", tmp_path / "sharded.jsonl"
    base = ["-m", "infer", "--model", str(tiny_model_dir), str(inp), "--block-size", "2", "--no-progress"]
    p1 = subprocess.Popen([sys.executable, *base, "-o", str(single)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                         *base, "-o", str(sharded)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out1, err1 = p1.communicate(timeout=300)
    assert p1.returncode == 0, err1.decode()
    assert p2.returncode == 0, p2.stderr
    assert sharded.read_bytes() == single.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "sharded.jsonl", "single.jsonl"]


# ---------------------------------------------------------------------------------------------
# Repeat keys (model.line_repeats): a line counted on the pages of its group in the block


@pytest.fixture(scope="module")
def repeats_model_dir(tmp_path_factory) -> Path:
    from synthetic import TINY_OVERRIDES, synthetic_pages, tiny_config, write_pages
    from train.__main__ import main as train_main
    tmp = tmp_path_factory.mktemp("repeats_model")
    data = write_pages(tmp / "p.jsonl", synthetic_pages(16, seed=41))
    cfg = tiny_config(tmp, data, data)
    assert train_main([str(cfg), *TINY_OVERRIDES, "training.max_steps=6", "model.line_buckets=512",
                       "model.line_repeats=4"]) == 0
    return tmp / "model"


def test_repeat_keys_resume_byte_identical_and_pages_alone(resume_case, repeats_model_dir, tmp_path):
    inp, _ = resume_case
    ref = tmp_path / "ref.jsonl"
    assert run(repeats_model_dir, inp, ref, "--block-size", "6") == 0
    want = ref.read_bytes()
    assert len(want.splitlines()) == 14
    for cut in _cuts(want):  # a resumed block is counted again whole: the same keys, the same bytes
        out = tmp_path / f"cut{cut}.jsonl"
        out.write_bytes(want[:cut])
        assert run(repeats_model_dir, inp, out, "--block-size", "6") == 0
        assert out.read_bytes() == want, f"cut at byte {cut}"
    # --pages-alone: every page as in a block of its own, whatever the block size
    alone, ones = tmp_path / "alone.jsonl", tmp_path / "ones.jsonl"
    assert run(repeats_model_dir, inp, alone, "--block-size", "6", "--pages-alone") == 0
    assert run(repeats_model_dir, inp, ones, "--block-size", "1") == 0
    assert alone.read_bytes() == ones.read_bytes()
    tagged = [rec for rec in records(alone) if "error" not in rec]
    assert len(tagged) == 12
    for rec in tagged:
        assert_valid_result(rec, rec["text"])


def test_calibration_runs_a_repeat_keys_model_in_blocks_and_alone(repeats_model_dir):
    """Dev biases are chosen on both ways a user tags: the pages in blocks, and each page alone."""
    from synthetic import synthetic_pages
    from infer.tagger import Tagger
    from train.trainer import decode_all, model_outputs

    pages = synthetic_pages(10, seed=43)
    tagger = Tagger.from_pretrained(repeats_model_dir, device="cpu", block_size=6)
    outputs = model_outputs(tagger, pages)
    assert tagger.alone is False
    assert [len(b) for b, _ in outputs] == [6, 4, 6, 4]  # the blocks, then the same blocks alone
    assert [p.id for b, _ in outputs for p in b] == [p.id for p in pages] * 2
    recs = decode_all(tagger, outputs)
    keyed, alone = recs[:10], recs[10:]
    assert keyed == list(tagger.tag(pages))
    lone = Tagger.from_pretrained(repeats_model_dir, device="cpu", block_size=6, alone=True)
    assert alone == list(lone.tag(pages))
    # the two passes see other line keys: their section probabilities differ
    import numpy as np
    probs = [np.asarray(o) for _, out in outputs for o in out[2]]
    assert any(not np.array_equal(a, b) for a, b in zip(probs[:10], probs[10:]))
    # a Tagger that tags alone is run once; so is a model without repeat keys
    assert [len(b) for b, _ in model_outputs(lone, pages)] == [6, 4]
    # the same passes through the prefetching path that Tagger.tag takes on a GPU
    fetching = Tagger.from_pretrained(repeats_model_dir, device="cpu", block_size=6, prefetch=True)
    assert decode_all(fetching, model_outputs(fetching, pages)) == recs


def test_dev_scores_of_a_repeat_keys_model_count_both_ways(repeats_model_dir, tiny_model_dir):
    """The per-epoch dev score that picks the kept checkpoint tags a repeat-keys model's dev pages in
    blocks and alone (as the bias calibration does); a model without repeat keys is tagged once."""
    def passes(folder):
        hist = json.loads((folder / "log_history.json").read_text(encoding="utf-8"))
        evals = [h for h in hist if "eval_combined_f1" in h]
        assert evals
        return {h["eval_passes"] for h in evals}

    assert passes(repeats_model_dir) == {2}
    assert passes(tiny_model_dir) == {1}


def test_default_batch_budget_per_device(tiny_model_dir, tmp_path, capsys):
    """No budget given: 4096 subword tokens a batch on a CPU, 16384 on a GPU (never under one window)."""
    import torch

    from infer.tagger import Tagger, default_batch_tokens

    assert default_batch_tokens(torch.device("cpu")) == 4096
    assert default_batch_tokens(torch.device("cuda")) == 16384
    tagger = Tagger.from_pretrained(tiny_model_dir, device="cpu")
    assert tagger.batch_tokens == max(4096, tagger.model.config.window_length)
    assert Tagger.from_pretrained(tiny_model_dir, device="cpu", batch_tokens=64).batch_tokens == \
        tagger.model.config.window_length
    inp = write_lines(tmp_path / "in.jsonl", [page_line("p", page_text(3, 1))])
    for bad in ("0", "-5"):  # a given budget must be positive; none given is the device's default
        with pytest.raises(SystemExit) as exc:
            run(tiny_model_dir, inp, tmp_path / f"o{bad}.jsonl", "--batch-tokens", bad)
        assert exc.value.code == 2 and "--batch-tokens must be positive" in capsys.readouterr().err
    assert run(tiny_model_dir, inp, tmp_path / "ok.jsonl") == 0 and len(records(tmp_path / "ok.jsonl")) == 1


def test_tagger_api_names_a_blank_or_oversized_page(tiny_model_dir):
    """The Python API checks each page as the CLI checks its records: the pages before a bad one come out,
    then a PageError names the page and the field (not an error deep in the model)."""
    from data.schema import Page, PageError
    from infer.tagger import Tagger

    tagger = Tagger.from_pretrained(tiny_model_dir, device="cpu", block_size=1, max_chars=2_000)
    for bad, why in ((Page(id="b", text=" \n\t"), "empty or blank page"),
                     (Page(id="b", text="نص " * 1_000), "3000 characters, over the hard maximum 2000"),
                     (Page(id="b", text=None), "must be a string")):
        results = tagger.tag([Page(id="a", text="خبر عن بيروت"), bad, Page(id="c", text="خبر آخر")])
        assert next(results)["id"] == "a"
        with pytest.raises(PageError, match=f"page 'b': field 'text': {why}"):
            next(results)
