"""report.md, PNG plots, learning curves, the model card, and the evaluation CLI with a stand-in tagger."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml

from data.schema import Page, write_jsonl
from train import evaluate
from train.metrics import entity_metrics, section_metrics, seed_line_table
from train.report import load_log_history, plot_learning_curves, write_model_card, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

TEXT = "عنوان: وصل الوزير إلى القاهرة\n\nقال محمد علي إن الأمم المتحدة ترحب.\nالمصدر: وكالات"


def _sections(text: str) -> list[dict]:
    a = text.index("\n")
    b = text.index("قال")
    c = text.index("\nالمصدر")
    return [{"label": "title", "start": 0, "end": a}, {"label": "body", "start": b, "end": c},
            {"label": "source", "start": c + 1, "end": len(text)}]


def _ent(text: str, word: str, label: str) -> dict:
    i = text.index(word)
    return {"label": label, "start": i, "end": i + len(word)}


GOLD = Page.from_dict({"id": "g1", "text": TEXT, "sections": _sections(TEXT), "entities": [
    _ent(TEXT, "القاهرة", "LOC"), _ent(TEXT, "محمد علي", "PERS"), _ent(TEXT, "الأمم المتحدة", "ORG")]})


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a real PNG's IHDR chunk (fails on anything else)."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _metrics() -> dict:
    pred = {"id": "g1", "sections": [{"label": "body", "start": 0, "end": len(TEXT)}],
            "entities": [_ent(TEXT, "القاهرة", "LOC"), _ent(TEXT, "محمد", "PERS")]}
    return {"model": "tiny", "blocks": {
        "pages": {"source": "x.jsonl", "n_pages": 1, "entities": entity_metrics([GOLD], [pred]),
                  "sections": section_metrics([GOLD], [pred])},
        "seed page": {"lines": seed_line_table(GOLD, pred)}},
        "baselines": {"CRF": {"ANERcorp restored test": {"entities": entity_metrics(
            [["B-LOC", "O"]], [["B-LOC", "O"]])}}}}


def test_report_writes_markdown_and_real_pngs(tmp_path):
    written = write_report(tmp_path, _metrics(), title="T")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| **micro** |" in md and "segment F1" in md and "Baselines side by side" in md
    assert "| CRF | ANERcorp restored test | 100.0 |" in md
    assert "محمد علي" in md  # the line-by-line table shows the text
    pngs = [w for w in written if w.endswith(".png")]
    assert set(pngs) == {"entity_f1.png", "confusion_pages.png"}
    for name in pngs:
        w, h = png_size(tmp_path / name)
        assert w > 200 and h > 150
        assert (tmp_path / name).stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_learning_curves_from_trainer_state(tmp_path):
    hist = [{"loss": 2.0 - 0.1 * i, "step": 10 * i, "epoch": i / 5} for i in range(1, 11)]
    hist += [{"eval_loss": 1.5, "eval_entity_f1": 0.3, "eval_runtime": 1.0, "epoch": 1.0, "step": 50},
             {"eval_loss": 1.2, "eval_entity_f1": 0.5, "eval_runtime": 1.0, "epoch": 2.0, "step": 100}]
    (tmp_path / "checkpoint-100").mkdir()
    (tmp_path / "checkpoint-100" / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
    loaded = load_log_history(tmp_path)
    assert loaded == hist
    assert plot_learning_curves(loaded, tmp_path) == ["learning_loss.png", "learning_eval.png"]
    for name in ("learning_loss.png", "learning_eval.png"):
        w, h = png_size(tmp_path / name)
        assert w > 300 and h > 200


def test_model_card_front_matter(tmp_path):
    path = write_model_card(tmp_path, _metrics(), "Pages built from SaudiNewsNet and ANERcorp train.", name="tiny-ar")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["language"] == ["ar"] and "token-classification" in front["tags"]
    assert front["model-index"][0]["name"] == "tiny-ar" and "# tiny-ar" in text
    values = {m["name"]: m["value"] for r in front["model-index"][0]["results"] for m in r["metrics"]}
    # entities: gold 3, predicted 2, correct 1 -> P 1/2, R 1/3, F1 = 2*(1/2)(1/3)/(5/6) = 0.4
    assert values["entity micro-F1"] == pytest.approx(0.4)
    assert "SaudiNewsNet" in text


class EchoTagger:
    """Stands in for infer.tagger.Tagger: predicts the gold sections and only the first entity."""

    entity_types = ["PERS", "LOC", "ORG", "MISC"]

    def tag(self, pages):
        for p in pages:
            ents = [e.to_dict() for e in (p.entities or [])[:1]]
            yield {"id": p.id, "meta": p.meta, "text": p.text, "entities": ents,
                   "sections": [s.to_dict() for s in p.sections or []]}


def test_evaluate_cli_end_to_end(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}]}))
    pages = tmp_path / "pages.jsonl"
    write_jsonl(pages, [GOLD])
    conll = tmp_path / "mini.txt"
    conll.write_text("زار O\nمحمد B-PERS\nعلي I-PERS\nكابول؛ B-LOC\n\nقال O\nعمر B-PERS\n", encoding="utf-8")
    out = tmp_path / "eval"
    out.mkdir()
    (out / "stale.txt").write_text("old")  # an earlier run's folder is replaced whole
    rc = evaluate.main(["--model", str(model), "--pages", str(pages), "--conll", str(conll),
                        "--seed-page", str(pages), "--out", str(out)], tagger=EchoTagger())
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(m["blocks"]) == {"pages", "mini", "seed page"}
    assert m["blocks"]["pages"]["sections"]["accuracy"] == 1.0
    # pages: 3 gold entities, the first predicted -> R 1/3, P 1
    assert m["blocks"]["pages"]["entities"]["micro"]["recall"] == pytest.approx(1 / 3)
    # CoNLL: 8 sentences per page -> one page; its first entity (محمد علي) predicted: 1 of 3
    assert m["blocks"]["mini"]["entities"]["micro"]["support"] == 3
    assert m["blocks"]["mini"]["entities"]["micro"]["correct"] == 1
    assert len(m["blocks"]["seed page"]["lines"]) == 3
    assert m["learning_curves"] == ["learning_loss.png"]
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_pages.png", "confusion_seed_page.png", "entity_f1.png", "learning_loss.png", "metrics.json",
        "report.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "pages" in capsys.readouterr().out


def test_evaluate_cli_clear_errors(tmp_path, capsys):
    assert evaluate.main(["--model", str(tmp_path / "nope"), "--pages", "x.jsonl", "--out", str(tmp_path / "o")],
                         tagger=EchoTagger()) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert evaluate.main(["--model", str(tmp_path), "--pages", str(tmp_path / "missing.jsonl"),
                          "--out", str(tmp_path / "o")], tagger=EchoTagger()) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_crf_baseline_writes_metrics_for_side_by_side(tmp_path):
    pytest.importorskip("sklearn_crfsuite")
    from train import baselines

    sent = "زار O\nمحمد B-PERS\nعلي I-PERS\nالقاهرة B-LOC\n.  O\n\nقال O\nعمر B-PERS\nفي O\nبغداد B-LOC\n. O\n\n"
    data = tmp_path / "tiny.txt"
    data.write_text(sent * 10, encoding="utf-8")
    out = tmp_path / "crf"
    assert baselines.main(["crf", "--train", str(data), "--test", str(data), "--dev-fraction", "0.1",
                           "--max-iterations", "20", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    blocks = m["systems"]["CRF (sklearn-crfsuite)"]
    assert blocks["dev (last 10% of train)"]["n_sentences"] == 2 and m["settings"]["train_sentences"] == 18
    assert blocks["tiny"]["entities"]["micro"]["f1"] == 1.0  # memorises its own training sentences
    assert (out / "report.md").is_file()
    # train.evaluate shows it next to the model's own blocks
    assert "| CRF (sklearn-crfsuite) | tiny | 100.0 |" in (write_report(tmp_path / "r", {
        "blocks": {}, "baselines": m["systems"]}) and (tmp_path / "r" / "report.md").read_text(encoding="utf-8"))


def test_evaluate_group_by_scores_each_meta_value_as_its_own_block(tmp_path):
    import dataclasses

    from train.metrics import pages_by_meta
    pages = [dataclasses.replace(GOLD, id=f"g{i}", meta=meta) for i, meta in
             enumerate([{"template": "b"}, {"template": "a"}, {"site": "x"}, {"template": "b"}])]
    assert pages_by_meta(pages, "template") == [("(missing)", [2]), ("a", [1]), ("b", [0, 3])]
    assert pages_by_meta(pages, "nokey") == [("(missing)", [0, 1, 2, 3])]
    path = tmp_path / "pages.jsonl"
    write_jsonl(path, pages)
    model = tmp_path / "model"
    model.mkdir()
    out = tmp_path / "eval"
    assert evaluate.main(["--model", str(model), "--pages", str(path), "--group-by", "template",
                          "--out", str(out)], tagger=EchoTagger()) == 0
    blocks = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["blocks"]
    assert set(blocks) == {"pages", "pages [template=(missing)]", "pages [template=a]", "pages [template=b]"}
    assert blocks["pages [template=b]"]["sections"]["n_pages"] == 2
    assert blocks["pages"]["sections"]["n_pages"] == 4
