"""python -m train.calibrate: the NER outside bias chosen on a saved model's dev pages."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from data.schema import Page
from infer.tagger import Tagger
from train.calibrate import main
from train.trainer import dev_scores


def _dev(model_dir):
    cfg = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    path = cfg["data"]["dev"][0]["paths"][0]
    return path, [Page.from_dict(json.loads(line)) for line in open(path, encoding="utf-8") if line.strip()]


def test_calibrate_writes_the_best_dev_biases_and_the_tagger_uses_them(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    path, dev = _dev(model)
    before = (model / "config.json").read_bytes()
    assert main(["--model", str(model), "--grid=-1,0,0.5,1,3", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "nothing written" in dry and "NER outside bias on dev" in dry and "section label biases" in dry
    assert (model / "config.json").read_bytes() == before and not (model / "calibration.json").exists()

    assert main(["--model", str(model), "--grid=-1,0,0.5,1,3"]) == 0  # dev: the run's own data.dev
    cal = json.loads((model / "calibration.json").read_text())
    f1 = {float(k): v for k, v in cal["ner_outside_bias_dev_f1"].items()}
    best = cal["ner_outside_bias"]
    assert sorted(f1) == [-1.0, 0.0, 0.5, 1.0, 3.0] and f1[best] == max(f1.values())
    assert len(set(f1.values())) > 1  # the bias does move the dev score
    history = cal["section_bias_dev_macro_f1"]
    assert len(history) == 3 and history == sorted(history)  # 2 rounds, never worse
    saved = json.loads((model / "config.json").read_text())
    assert saved["ner_outside_bias"] == best and (saved["section_label_bias"] or {}) == cal["section_label_bias"]
    tagger = Tagger.from_pretrained(model, device="cpu")
    assert tagger.outside_bias == best and tagger.section_bias == cal["section_label_bias"]
    got = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]
    assert got["entity_micro_f1"] == pytest.approx(f1[best], abs=1e-6)
    assert got["section_macro_f1"] == pytest.approx(history[-1], abs=1e-6)
    capsys.readouterr()
    assert main(["--model", str(model), "--pages", path, "--grid=-1,0,0.5,1,3", "--dry-run"]) == 0
    again = capsys.readouterr().out  # the same pages given by name: the same choice
    assert f"kept {best:g}" in again


def test_calibrate_errors_exit_2(tiny_model_dir, tmp_path, capsys):
    assert main(["--model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    unlabelled = tmp_path / "plain.jsonl"
    unlabelled.write_text(json.dumps({"id": "a", "text": "نص بلا وسوم"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--pages", str(unlabelled), "--dry-run"]) == 2
    assert "no entity or section annotation" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": 5}\n', encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--pages", str(bad), "--dry-run"]) == 2
    assert "line 1" in capsys.readouterr().err
    for bad in (["--grid", "a,b"], ["--grid", "nan"], ["--grid", ","], ["--section-rounds", "-1"]):
        with pytest.raises(SystemExit) as exc:
            main(["--model", str(tiny_model_dir), *bad])
        assert exc.value.code == 2
