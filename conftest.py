"""Shared test fixtures.

``tiny_model_dir`` trains a tiny joint model (WordPiece from scratch, a 2-layer 64-wide BERT,
window length 64) through the real ``python -m train`` code path, once per test session, and returns
the model folder. It trains on ``data/sample/train.jsonl`` when the project's sample is there, else on
synthetic pages made here with the page builder (never on the seed page, which is for evaluation only).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SAMPLE = ROOT / "data" / "sample"
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import TINY_OVERRIDES, synthetic_pages, tiny_config, write_pages  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny trained joint model folder (60 optimisation steps; well under a minute on 2 CPUs)."""
    from train.__main__ import main

    tmp = tmp_path_factory.mktemp("tiny_model")
    train, dev = SAMPLE / "train.jsonl", SAMPLE / "dev.jsonl"
    if not (train.is_file() and dev.is_file()):
        train = write_pages(tmp / "train.jsonl", synthetic_pages(48, seed=1))
        dev = write_pages(tmp / "dev.jsonl", synthetic_pages(8, seed=2))
    cfg = tiny_config(tmp, train, dev)
    rc = main([str(cfg), *TINY_OVERRIDES, "training.max_steps=60", "training.num_train_epochs=100"])
    assert rc == 0
    out = tmp / "model"
    assert (out / "config.json").is_file()
    return out
