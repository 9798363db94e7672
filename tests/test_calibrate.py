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


def test_choose_section_once_keeps_the_best_rule_with_its_own_biases(monkeypatch):
    """choose_section_once: every rule is scored with the section biases chosen under it, the best kept
    (ties: fewer labels, then the earlier), and the Tagger is left decoding with it."""
    import train.trainer as trainer

    class FakeTagger:  # only what the choice touches: the rule in force, and its biases
        section_bias: dict = {}

        def __init__(self):
            self.section_once, self.section_required, self.calls = [], [], []

        def set_section_once(self, labels, required=None):
            self.section_once = list(labels or [])
            if required is not None:
                self.section_required = list(required)
            self.calls.append(tuple(self.section_once))

    scores = {(): 0.90, ("title",): 0.93, ("title", "byline"): 0.93, ("tags",): 0.95}

    def fake_bias(tagger, outputs, rounds, start=None):
        got = scores[tuple(tagger.section_once)]
        return {"title": len(tagger.section_once)}, [got - 0.01] * rounds + [got]

    monkeypatch.setattr(trainer, "choose_section_bias", fake_bias)
    tagger = FakeTagger()
    got = trainer.choose_section_once(tagger, [], [[], ["title", "byline"], ["title"], ["title"]], rounds=2)
    assert got["section_once"] == ["title"] and tagger.section_once == ["title"]  # the tie went to fewer labels
    assert tagger.calls == [(), ("title", "byline"), ("title",), ("title",)]  # each rule once, then the winner
    assert got["section_once_dev_macro_f1"] == {"none": 0.9, "title,byline": 0.93, "title": 0.93}  # each once
    assert got["section_label_bias"] == {"title": 1} and got["section_bias_dev_macro_f1"][-1] == 0.93
    tagger = FakeTagger()
    assert trainer.choose_section_once(tagger, [], [["title"], ["tags"], []])["section_once"] == ["tags"]
    assert tagger.section_once == ["tags"]
    assert trainer.choose_section_once(FakeTagger(), [], [[]])["section_once"] == []
    with pytest.raises(ValueError, match="titel"):
        trainer.choose_section_once(FakeTagger(), [], [["titel"]])
    with pytest.raises(ValueError, match="no section_once candidate"):
        trainer.choose_section_once(FakeTagger(), [], [])


def test_calibrate_chooses_section_once_and_the_tagger_keeps_to_it(tiny_model_dir, tmp_path, capsys):
    """--section-once 'title;none': both rules scored on dev, each with its own biases; the kept one (ties:
    no rule) is saved as config.section_once and reproduces its dev score; a bad label is a usage error."""
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    _, dev = _dev(model)
    assert main(["--model", str(model), "--grid=0", "--section-once", "title;none"]) == 0
    out = capsys.readouterr().out
    assert "one section a page, on dev: title: " in out
    cal = json.loads((model / "calibration.json").read_text())
    once = cal["section_once_dev_macro_f1"]
    assert sorted(once) == ["none", "title"]
    kept = ["title"] if once["title"] > once["none"] else []
    assert cal["section_once"] == kept and cal["section_bias_dev_macro_f1"][-1] == pytest.approx(once[",".join(kept) or "none"])
    saved = json.loads((model / "config.json").read_text())
    assert (saved["section_once"] or []) == kept and (saved["section_label_bias"] or {}) == cal["section_label_bias"]
    tagger = Tagger.from_pretrained(model, device="cpu")
    assert tagger.section_once == kept
    got = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]
    assert got["section_macro_f1"] == pytest.approx(once[",".join(kept) or "none"], abs=1e-6)
    for bad in ("titel", "title;body"):
        with pytest.raises(SystemExit) as exc:
            main(["--model", str(model), "--section-once", bad])
        assert exc.value.code == 2
    assert "section_once" in capsys.readouterr().err


def test_calibrate_chooses_section_required_with_section_once(tiny_model_dir, tmp_path, capsys):
    """--section-once 'none;title' --section-required 'none;body': every pair scored on dev, each with its own
    biases; the kept pair is saved (config.section_once, config.section_required) and reproduces its dev score;
    a bad label is a usage error that names the flag."""
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    _, dev = _dev(model)
    assert main(["--model", str(model), "--grid=0", "--section-once", "none;title", "--section-required", "none;body"]) == 0
    assert "at most one | at least one section a page, on dev: none | none: " in capsys.readouterr().out
    cal = json.loads((model / "calibration.json").read_text())
    pairs = cal["section_once_dev_macro_f1"]
    assert sorted(pairs) == ["none | body", "none | none", "title | body", "title | none"]
    kept = f"{','.join(cal['section_once']) or 'none'} | {','.join(cal['section_required']) or 'none'}"
    assert pairs[kept] == max(pairs.values()) == pytest.approx(cal["section_bias_dev_macro_f1"][-1])
    saved = json.loads((model / "config.json").read_text())
    assert (saved["section_once"] or []) == cal["section_once"] and (saved["section_required"] or []) == cal["section_required"]
    tagger = Tagger.from_pretrained(model, device="cpu")
    assert tagger.section_required == cal["section_required"]
    got = dev_scores(dev, list(tagger.tag(dev)), tagger.entity_types)["flat"]
    assert got["section_macro_f1"] == pytest.approx(pairs[kept], abs=1e-6)
    with pytest.raises(SystemExit) as exc:
        main(["--model", str(model), "--section-required", "bodi"])
    assert exc.value.code == 2 and "--section-required" in capsys.readouterr().err
