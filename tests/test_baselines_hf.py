"""``python -m train.baselines hf-ner``: a tiny smoke run of HF's run_ner.py recipe on synthetic CoNLL files."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("datasets")
pytest.importorskip("seqeval")

from train.baselines import main  # noqa: E402

PERSONS = ["محمد", "أحمد", "سارة", "خالد", "ليلى", "عمر"]
PLACES = ["القاهرة", "دمشق", "بغداد", "الرياض", "تونس"]
ORGS = [["الأمم", "المتحدة"], ["جامعة", "الدول", "العربية"], ["البنك", "الدولي"]]
FILLER = ["قال", "في", "أن", "وزير", "اليوم", "إلى", "من", "الذي", "بعد", "مع"]


def synthetic_conll(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        sent = [(w, "O") for w in rng.sample(FILLER, 3)]
        sent.append((rng.choice(PERSONS), "B-PERS"))
        sent += [(w, "O") for w in rng.sample(FILLER, 2)]
        sent.append((rng.choice(PLACES), "B-LOC"))
        org = rng.choice(ORGS)
        sent += [(w, "B-ORG" if i == 0 else "I-ORG") for i, w in enumerate(org)]
        sent.append(("\u200f", "O"))  # normalises to "" -> the word becomes "[UNK]"
        sent.append((".", "O"))
        lines += [f"{w} {t}" for w, t in sent] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def test_hf_ner_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    synthetic_conll(train, 48, seed=1)
    synthetic_conll(test, 12, seed=2)
    out = tmp_path / "out"
    rc = main(["hf-ner", "--train", str(train), "--test", str(test), "--out", str(out),
               "--hidden-size", "32", "--layers", "2", "--heads", "2", "--intermediate", "64",
               "--max-length", "12", "--vocab-size", "200", "--epochs", "2", "--lr", "5e-3",
               "--batch-size", "8", "--logging-steps", "1", "--warmup", "0"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    blocks = metrics["systems"]["hf-ner"]
    assert set(blocks) == {"dev (last 10% of train)", "test"}
    for b in blocks.values():
        e = b["entities"]
        assert 0.0 <= e["micro"]["f1"] <= 1.0 and 0.0 <= e["macro"]["f1"] <= 1.0
    # every token of the file is scored, also those cut off by --max-length 12 (which then count as O)
    assert blocks["test"]["entities"]["n_units"] == len([x for x in test.read_text().split("\n") if x])
    assert blocks["test"]["n_sentences"] == 12
    assert metrics["train_s"] > 0 and metrics["train_tokens_per_s"] > 0
    assert metrics["settings"]["dev_sentences"] == 5 and metrics["settings"]["train_sentences"] == 43
    evals = [h for h in metrics["log_history"] if "eval_micro_f1" in h]
    assert len(evals) == 2  # dev after each epoch
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert (out / "report.md").is_file() and (out / "model" / "config.json").is_file()
