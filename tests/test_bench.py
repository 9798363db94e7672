"""Smoke test of the inference benchmark: it runs end to end on a tiny random-weight model and writes
its JSON with sane values. No timing is asserted (the machine is shared)."""
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_infer_bench_writes_json(tmp_path):
    from infer.bench import main

    out = tmp_path / "bench.json"
    res = main(["--size", "tiny", "--pages", str(ROOT / "data" / "sample" / "dev.jsonl"), "--n-pages", "6",
                "--window", "128", "--stride", "32", "--rounds", "1", "--batch-sizes", "1,2", "--threads", "1",
                "--json", str(out)])
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(res))
    for key in ("tagger_tokens_per_s", "pipeline_tokens_per_s", "speedup", "roofline_fraction", "padding_waste",
                "entity_agreement", "peak_rss_mb", "device", "dtype", "size", "quantize"):
        assert key in saved, key
    assert saved["tagger_tokens_per_s"] > 0 and saved["pipeline_tokens_per_s"] > 0 and saved["speedup"] > 0
    assert 0.0 <= saved["entity_agreement"] <= 1.0
    assert 0.0 <= saved["padding_waste"] < 1.0 and saved["roofline_fraction"] > 0
    assert saved["decode_words_per_s"] > 0 and 0.0 < saved["decode_fraction"] < 1.0
    assert saved["entities_tagger"] > 0  # the biased NER head makes entities frequent
    # Same model, same windows: the two runs must find nearly the same entities.
    assert saved["entity_agreement"] > 0.9
    assert saved["entity_agreement_outside_pipeline_overlaps"] > 0.9
    assert saved["device"] == "cpu" and saved["dtype"] == "float32" and saved["size"] == "tiny"



def test_saved_random_model_is_measured_again_the_same(tmp_path):
    """--save-model keeps the random-weight model (vocabulary, weights, the biased NER head and the
    zeroed positions), so a later --model run tags the same entities and reports the same size."""
    from infer.bench import main

    common = ["--pages", str(ROOT / "data" / "sample" / "dev.jsonl"), "--n-pages", "4", "--rounds", "1",
              "--batch-sizes", "2", "--threads", "1"]
    first = main(["--size", "tiny", "--window", "128", "--stride", "32", "--save-model", str(tmp_path / "m"), *common])
    assert (tmp_path / "m" / "config.json").exists() and (tmp_path / "m" / "tokenizer.json").exists()
    again = main(["--model", str(tmp_path / "m"), *common])
    for key in ("entities_tagger", "entities_pipeline", "entity_agreement", "tokens", "size", "window_length"):
        assert again[key] == first[key], key
    assert again["entities_tagger"] > 0
    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path / "m"), "--save-model", str(tmp_path / "other"), *common])
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit, match="is a file"):  # checked before any work, not a traceback at the end
        main(["--size", "tiny", "--save-model", str(tmp_path / "a-file"), *common])

def test_pipeline_seams_are_the_words_two_stride_chunks_cover():
    from data.features import PageEncoder
    from infer.bench import bench_pages, pipeline_seams, random_model

    pages = bench_pages(3, min_words=300, max_words=400)
    model, tok = random_model("tiny", pages, window=66, stride=16)
    enc = PageEncoder.from_config(tok, model.config)
    seams = pipeline_seams(pages, enc, body=64, stride=16)
    for p in pages:
        n = len(enc.encode(p)["input_ids"])
        assert n > 200
        # about 16 shared subwords per chunk boundary, boundaries every 48 subwords
        words = len(seams[p.id])
        assert (n // 48 - 1) * 4 <= words <= (n // 48 + 1) * 16, (n, words)
        assert all(p.text[s:e].strip() for s, e in seams[p.id])


def test_window_plans_cover_every_token():
    import numpy as np

    from data.features import plan_windows

    for n in (5, 100, 126, 127, 500, 1001):
        first = np.arange(n)
        for last in ("align", "short"):
            p = plan_windows(first, n, 126, 32, last)
            assert p.starts[0] == 0 and p.ends[-1] == n
            assert np.all(p.starts[1:] < p.ends[:-1])  # windows overlap
            assert np.all(first >= p.starts[p.word_window]) and np.all(first < p.ends[p.word_window])
        if n > 126:
            short, align = plan_windows(first, n, 126, 32, "short"), plan_windows(first, n, 126, 32, "align")
            assert (short.ends - short.starts).sum() <= (align.ends - align.starts).sum()


def _random_lines(seed: int):
    """Words of 1-3 subwords in 1-39 lines of 1-59 words (one line of 200 words for every third seed):
    the words' first subwords, their lines, the subword count, words per line, line count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_lines = int(rng.integers(1, 40))
    per_line = rng.integers(1, 60, n_lines)
    if seed % 3 == 0:
        per_line[rng.integers(n_lines)] = 200  # a line longer than the window
    word_line = np.repeat(np.arange(n_lines), per_line)
    lens = rng.integers(1, 4, len(word_line))
    first = np.concatenate([[0], np.cumsum(lens)[:-1]])
    return first, word_line, int(lens.sum()), per_line, n_lines


@pytest.mark.parametrize("seed", range(30))
def test_line_windows_cut_at_line_starts_without_overlap(seed):
    """Words of 1-3 subwords in lines of 1-60 words, one line sometimes longer than a window."""
    import numpy as np

    from data.features import plan_windows

    first, word_line, n, per_line, n_lines = _random_lines(seed)
    body, stride = 126, 32
    p = plan_windows(first, n, body, stride, "lines", word_line)
    assert p.starts[0] == 0 and p.ends[-1] == n
    assert np.all(p.ends - p.starts <= body) and np.all(p.ends > p.starts)
    assert np.all(p.starts[1:] <= p.ends[:-1])  # no gap
    line_start = set(first[np.r_[True, word_line[1:] != word_line[:-1]]].tolist())
    for a, b in zip(p.starts[1:], p.ends[:-1]):
        if a == b:  # adjacent windows: cut at a line start, never inside a line
            assert int(a) in line_start
        else:  # overlap only inside a line that is longer than a window
            assert b - a == stride
    # every word owned by a window that holds it, with its whole first subword
    w = p.word_window
    assert np.all(first >= p.starts[w]) and np.all(first < p.ends[w])
    assert np.all(first - p.starts[w] + 1 == p.word_pos)
    if max(per_line) * 3 <= body and n > body:  # short lines: no overlap at all
        assert int((p.ends - p.starts).sum()) == n


@pytest.mark.parametrize("seed", range(20))
def test_one_line_windows_hold_one_line_each(seed):
    """windows="line": a window per line (a line longer than a window cut with the stride), every
    subword in some window, every word owned by a window of its own line."""
    import numpy as np

    from data.features import plan_windows

    first, word_line, n, per_line, n_lines = _random_lines(seed)
    body, stride = 126, 32
    p = plan_windows(first, n, body, stride, "line", word_line)
    line_start = first[np.r_[True, word_line[1:] != word_line[:-1]]]
    line_end = np.r_[line_start[1:], n]
    assert p.starts[0] == 0 and p.ends[-1] == n and np.all(p.starts[1:] <= p.ends[:-1])  # no gap
    assert np.all(p.ends - p.starts <= body) and np.all(p.ends > p.starts)
    k = np.searchsorted(line_start, p.starts, side="right") - 1  # the line each window starts in
    assert np.all(p.ends <= line_end[k])  # and ends in
    assert set(line_start.tolist()) <= set(p.starts.tolist())
    long_lines = int(((line_end - line_start) > body).sum())
    assert len(p.starts) == n_lines if not long_lines else len(p.starts) > n_lines
    w = p.word_window
    assert np.all(first >= p.starts[w]) and np.all(first < p.ends[w])
    assert np.all(k[w] == np.searchsorted(line_start, first, side="right") - 1)
    assert np.all(first - p.starts[w] + 1 == p.word_pos)


def test_one_line_windows_tag_each_line_as_if_alone(tiny_model_dir):
    """With windows="line" a word sees its own line only: a page's entities are those of its lines
    tagged one by one, each as a page of its own (offsets shifted)."""
    from data.schema import Page
    from infer.tagger import Tagger
    from synthetic import synthetic_pages

    tagger = Tagger.from_pretrained(tiny_model_dir, device="cpu", windows="line")
    page = synthetic_pages(1, seed=9, min_paragraphs=6, max_paragraphs=6)[0]
    got = [(e["start"], e["end"], e["label"]) for e in next(iter(tagger.tag([page])))["entities"]]
    alone = []
    lines = [Page(id=str(k), text=page.text[a:b]) for k, (a, b) in enumerate(page.lines.tolist())]
    for (a, _), rec in zip(page.lines.tolist(), tagger.tag(lines)):
        alone += [(a + e["start"], a + e["end"], e["label"]) for e in rec["entities"]]
    assert got == alone and len(got) > 5
    # lines: windows of many lines, so a word sees other lines too. The entities may still agree (a
    # well-trained tiny model often finds the same ones), but the probabilities must not.
    whole = Tagger.from_pretrained(tiny_model_dir, device="cpu")
    ner_line = tagger.block_outputs([page])[1][0]
    ner_whole = whole.block_outputs([page])[1][0]
    assert ner_line.shape == ner_whole.shape and not np.allclose(ner_line, ner_whole, atol=1e-4)


def test_longest_of_overlaps_is_the_pipelines_rule():
    """Our copy of the pipeline's rule for entities of overlapping chunks gives what the pipeline's
    own ``aggregate_overlapping_entities`` gives, on random entity lists with many overlaps and ties."""
    import random

    from transformers.pipelines.token_classification import TokenClassificationPipeline

    from infer.tagger import _longest_of_overlaps

    rng = random.Random(0)
    for _ in range(300):
        cands = []
        for _ in range(rng.randint(0, 12)):
            s = rng.randint(0, 40)
            cands.append((s, s + rng.randint(1, 8), rng.randint(0, 3), rng.choice([0.5, 0.7, 0.9])))
        theirs = TokenClassificationPipeline.aggregate_overlapping_entities(
            None, [{"start": s, "end": e, "type": t, "score": sc} for s, e, t, sc in cands])
        ours = list(zip(*(a.tolist() for a in _longest_of_overlaps(cands))))
        assert ours == [(d["start"], d["end"], d["type"], d["score"]) for d in theirs]


def test_pipeline_windows_and_rule_give_the_pipelines_entities(tiny_model_dir, tmp_path):
    """A trained model: with the pipeline's stride windows and its overlap rule, the Tagger finds the
    pipeline's entities (the speed-up is then the batching alone); with its own rule nearly all."""
    from infer.bench import main

    pages = str(ROOT / "data" / "sample" / "dev.jsonl")
    common = ["--model", str(tiny_model_dir), "--pages", pages, "--rounds", "1", "--batch-sizes", "4",
              "--threads", "1", "--windows", "short"]
    same = main(common + ["--overlap", "longest"])
    own = main(common)
    assert same["entities_tagger"] > 20 and same["overlap"] == "longest"
    assert same["entity_agreement"] >= 0.99, same["entity_agreement"]
    assert same["entity_agreement"] >= own["entity_agreement"] >= 0.9


def test_gpu_check_script_dry_run_on_the_cpu(tmp_path):
    """scripts/gpu_check.sh, the one script that a lent GPU runs, goes through all of its steps (the
    benchmark, a saved model, the CLI with and without --prefetch) in its small CPU dry run, so that
    device time is not spent finding a typo in it."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DEVICE": "cpu", "SIZE": "tiny", "N_PAGES": "4", "COMPILE": "0", "CLI_REPEAT": "1",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((tmp_path / "out" / "bench_tiny_bf16.json").read_text(encoding="utf-8"))
    assert bench["device"] == "cpu" and bench["dtype"] == "bfloat16" and bench["tagger_tokens_per_s"] > 0
    n = sum(1 for part in ("train", "dev", "test") for _ in open(ROOT / "data" / "sample" / f"{part}.jsonl", encoding="utf-8"))
    for pf in ("prefetch", "no-prefetch"):
        recs = [json.loads(x) for x in (tmp_path / "out" / f"cli_{pf}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(recs) == n and all("error" not in r for r in recs)
    assert "the same records with and without --prefetch" in (tmp_path / "out" / "cli_times.txt").read_text()
