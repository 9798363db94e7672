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


def test_calibrate_writes_the_best_dev_bias_and_the_tagger_uses_it(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    path, dev = _dev(model)
    assert main(["--model", str(model), "--grid=-1,0,0.5,1,3", "--dry-run"]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert json.loads((model / "config.json").read_text()).get("ner_outside_bias", 0.0) == 0.0
    assert not (model / "calibration.json").exists()

    assert main(["--model", str(model), "--grid=-1,0,0.5,1,3"]) == 0  # dev: the run's own data.dev
    cal = json.loads((model / "calibration.json").read_text())
    f1 = {float(k): v for k, v in cal["dev_entity_micro_f1"].items()}
    best = cal["ner_outside_bias"]
    assert sorted(f1) == [-1.0, 0.0, 0.5, 1.0, 3.0] and f1[best] == max(f1.values())
    assert len(set(f1.values())) > 1  # the bias does move the dev score
    assert json.loads((model / "config.json").read_text())["ner_outside_bias"] == best
    tagger = Tagger.from_pretrained(model, device="cpu")
    assert tagger.outside_bias == best
    got = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]["entity_micro_f1"]
    assert got == pytest.approx(f1[best], abs=1e-6)
    assert main(["--model", str(model), "--pages", path, "--grid=-1,0,0.5,1,3", "--dry-run"]) == 0
    assert f"now {best:g}" in capsys.readouterr().out  # the same pages given by name: the same choice


def test_calibrate_errors_exit_2(tiny_model_dir, tmp_path, capsys):
    assert main(["--model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    unlabelled = tmp_path / "plain.jsonl"
    unlabelled.write_text(json.dumps({"id": "a", "text": "نص بلا وسوم"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--pages", str(unlabelled), "--dry-run"]) == 2
    assert "no entity annotation" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": 5}\n', encoding="utf-8")
    assert main(["--model", str(tiny_model_dir), "--pages", str(bad), "--dry-run"]) == 2
    assert "line 1" in capsys.readouterr().err
    for grid in ("a,b", "nan", ","):
        with pytest.raises(SystemExit) as exc:
            main(["--model", str(tiny_model_dir), "--grid", grid])
        assert exc.value.code == 2
