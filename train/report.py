"""report.md, PNG plots and the model card, from the metrics dicts of :mod:`train.metrics`.

The metrics layout that this module reads (``metrics.json`` of ``train.evaluate``)::

    {"model": ..., "measured": {"date": ..., "machine": ...},
     "blocks": {"<name>": {"source": ..., "entities": {...}, "sections": {...}, "lines": [...]}, ...},
     "baselines": {"<system>": {"<block name>": {"entities": {...}} or {"body": {...}}}},
     "learning_curves": [...png names...]}

Every block key is optional, so one writer serves the evaluation CLI, the baselines and training.
All files are written to a temporary name and moved into place with ``os.replace``.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Safe writes


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file in the same folder, then ``os.replace`` it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _save_figure(fig, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() or "block"


# ---------------------------------------------------------------------------------------------
# Markdown tables


def _f(x: float) -> str:
    return f"{100 * x:.1f}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def entity_table(m: Mapping) -> str:
    """Per type, then micro and macro averages; P/R/F1 in percent."""
    rows = [[t, _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["support"], r.get("predicted", "")]
            for t, r in m["types"].items()]
    for avg in ("micro", "macro"):
        r = m[avg]
        rows.append([f"**{avg}**", _f(r["precision"]), _f(r["recall"]), f"**{_f(r['f1'])}**", r["support"],
                     r.get("predicted", "")])
    return _table(["type", "P", "R", "F1", "support", "predicted"], rows)


def section_table(m: Mapping) -> str:
    rows = [[lab, _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["support"], r["predicted"]]
            for lab, r in m["labels"].items()]
    table = _table(["section (lines)", "P", "R", "F1", "support", "predicted"], rows)
    seg = m["segment"]
    summary = _table(["macro-F1 (lines)", "accuracy (lines)", "body F1 (lines)", "segment F1 (exact spans)"],
                     [[_f(m["macro_f1"]), _f(m["accuracy"]), _f(m.get("body_f1", 0.0)),
                       f"{_f(seg['f1'])} ({seg['correct']}/{seg['gold']} gold, {seg['predicted']} predicted)"]])
    return table + "\n\n" + summary


def confusion_table(m: Mapping) -> str:
    labels = m["labels_order"]
    rows = [[f"**{g}**"] + row for g, row in zip(labels, m["confusion"])]
    return _table(["gold \\ predicted"] + labels, rows)


def line_table(rows: list[Mapping]) -> str:
    body = [[r["line"], r["gold"], r["pred"], "✓" if r["ok"] else "✗", r["text"].replace("|", "\\|")]
            for r in rows]
    return _table(["line", "gold", "predicted", "ok", "text (first 60 chars)"], body)


def baselines_table(metrics: Mapping) -> str:
    """One row per (system, block): entity micro/macro F1 and body-line F1 where each applies."""
    rows = []
    systems = {"this model": metrics.get("blocks", {})}
    systems.update(metrics.get("baselines", {}))
    for system, blocks in systems.items():
        for name, b in blocks.items():
            if not isinstance(b, Mapping):
                continue
            ent = b.get("entities")
            body = b.get("body") or (b.get("sections") or {}).get("body")
            if ent is None and body is None:
                continue
            rows.append([system, name,
                         _f(ent["micro"]["f1"]) if ent else "–", _f(ent["macro"]["f1"]) if ent else "–",
                         _f(body["f1"]) if body else "–"])
    return _table(["system", "evaluated on", "entity micro-F1", "entity macro-F1", "body-line F1"], rows)


# ---------------------------------------------------------------------------------------------
# Plots


def plot_confusion(m: Mapping, path: Path, title: str) -> None:
    labels = m["labels_order"]
    cm = np.asarray(m["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 0.8 + 0.65 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    _save_figure(fig, path)


def plot_entity_f1(blocks: Mapping[str, Mapping], path: Path) -> None:
    """Grouped bars: F1 per entity type (and micro), one colour per evaluated block."""
    names = [n for n, b in blocks.items() if b.get("entities")]
    types = sorted({t for n in names for t in blocks[n]["entities"]["types"]}) + ["micro", "macro"]
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(types)), 3.5))
    for k, n in enumerate(names):
        e = blocks[n]["entities"]
        vals = [e["types"].get(t, {}).get("f1", 0.0) if t not in ("micro", "macro") else e[t]["f1"] for t in types]
        ax.bar(np.arange(len(types)) + k * width - 0.4 + width / 2, vals, width, label=n)
    ax.set_xticks(range(len(types)), types)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title("Entity F1 per type")
    ax.legend(fontsize=7)
    _save_figure(fig, path)


def load_log_history(model_dir: str | Path) -> list[dict] | None:
    """HF Trainer ``log_history`` from ``trainer_state.json`` (or ``log_history.json``), if any.

    A training run may leave it in the model folder or only in its latest checkpoint."""
    d = Path(model_dir)
    candidates = [d / "trainer_state.json", d / "log_history.json"]
    candidates += sorted(d.glob("checkpoint-*/trainer_state.json"),
                         key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit() else -1,
                         reverse=True)
    for p in candidates:
        if p.is_file():
            data = json.loads(p.read_text(encoding="utf-8"))
            hist = data.get("log_history") if isinstance(data, dict) else data
            if isinstance(hist, list) and hist:
                return hist
    return None


_SCORES = ("f1", "accuracy")


def plot_learning_curves(log_history: list[dict], out_dir: Path) -> list[str]:
    """``learning_loss.png`` (loss vs step) and ``learning_eval.png`` (eval metrics vs epoch)."""
    written = []
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [h for h in log_history if any(k.startswith("eval_") for k in h)]
    ev_loss = [(h["step"], h["eval_loss"]) for h in evals if "eval_loss" in h and "step" in h]
    if train or ev_loss:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        if train:
            ax.plot(*zip(*train), label="train loss")
        if ev_loss:
            ax.plot(*zip(*ev_loss), "o-", label="eval loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("Loss")
        ax.legend()
        _save_figure(fig, out_dir / "learning_loss.png")
        written.append("learning_loss.png")
    # Scores on a 0-1 scale only (F1 and accuracy); throughput, runtime and P/R would crowd the plot.
    keys = sorted({k for h in evals for k, v in h.items() if k.startswith("eval_") and isinstance(v, (int, float))
                   and k.endswith(_SCORES)})
    if keys:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k in keys:
            pts = [(h.get("epoch", h.get("step")), h[k]) for h in evals if k in h]
            ax.plot(*zip(*pts), "o-", label=k[5:])
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.set_title("Evaluation metrics")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        _save_figure(fig, out_dir / "learning_eval.png")
        written.append("learning_eval.png")
    return written


# ---------------------------------------------------------------------------------------------
# report.md


def write_report(out_dir: str | Path, metrics: dict, title: str = "Evaluation report",
                 log_history: list[dict] | None = None) -> list[str]:
    """Write report.md and its PNGs into ``out_dir``; return the file names written.

    Adds the names of the learning-curve plots to ``metrics["learning_curves"]``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = metrics.get("blocks", {})
    written: list[str] = []
    md = [f"# {title}", ""]
    if metrics.get("model"):
        md.append(f"Model: `{metrics['model']}`  ")
    meas = metrics.get("measured") or {}
    if meas:
        md.append(f"Measured {meas.get('date', '')} on {meas.get('machine', '')}  ")
    md += ["", "Entity scores: seqeval, default (lenient, conlleval-compatible) mode, counted only inside each "
           "page's annotated regions. Section scores: per non-blank line; segment F1 is exact (label, start, end) "
           "match. All figures in percent.", ""]
    if any(b.get("entities") for b in blocks.values()):
        plot_entity_f1(blocks, out / "entity_f1.png")
        written.append("entity_f1.png")
        md += ["![entity F1 per type](entity_f1.png)", ""]
    for name, b in blocks.items():
        md += [f"## {name}", ""]
        if b.get("source"):
            count = f"; pages scored: {b['n_pages']}" if "n_pages" in b else ""
            md += [f"Source: `{b['source']}`{count}.", ""]
        if b.get("entities"):
            e = b["entities"]
            md += [f"### Entities (pages or documents: {e['n_pages']}; {b.get('unit', 'word')}s scored: {e['n_units']})",
                   "", entity_table(e), ""]
        if b.get("sections") and b["sections"].get("n_lines"):
            s = b["sections"]
            png = f"confusion_{slug(name)}.png"
            plot_confusion(s, out / png, f"Sections: {name}")
            written.append(png)
            md += [f"### Sections ({s['n_pages']} pages, {s['n_lines']} lines)", "", section_table(s), "",
                   "Confusion (line counts):", "", confusion_table(s), "", f"![section confusion]({png})", ""]
        if b.get("lines"):
            md += ["### Line by line", "", line_table(b["lines"]), ""]
    if metrics.get("baselines"):
        md += ["## Baselines side by side", "", baselines_table(metrics), ""]
    if log_history:
        curves = plot_learning_curves(log_history, out)
        written += curves
        metrics["learning_curves"] = curves
        if curves:
            md += ["## Learning curves", ""] + [f"![{c}]({c})" for c in curves] + [""]
    write_text(out / "report.md", "\n".join(md))
    return ["report.md"] + written


# ---------------------------------------------------------------------------------------------
# Model card


def write_model_card(model_dir: str | Path, metrics: Mapping, training_data_desc: str,
                     name: str | None = None) -> Path:
    """The model folder's README.md: HF model-card YAML front matter, then what it is and its scores.

    ``name`` is the model's name when ``model_dir`` is a temporary folder that is renamed later."""
    model_dir = Path(model_dir)
    name = name or model_dir.name
    results = []
    for block, b in (metrics.get("blocks") or {}).items():
        if b.get("entities"):
            e = b["entities"]
            results.append({"task": {"type": "token-classification", "name": "Named entity recognition"},
                            "dataset": {"name": block, "type": slug(block)},
                            "metrics": [{"type": "f1", "value": round(e["micro"]["f1"], 4), "name": "entity micro-F1"},
                                        {"type": "f1", "value": round(e["macro"]["f1"], 4), "name": "entity macro-F1"}]})
        if b.get("sections") and b["sections"].get("n_lines"):
            s = b["sections"]
            results.append({"task": {"type": "token-classification", "name": "Section segmentation (lines)"},
                            "dataset": {"name": block, "type": slug(block)},
                            "metrics": [{"type": "f1", "value": round(s["macro_f1"], 4), "name": "line macro-F1"},
                                        {"type": "f1", "value": round(s["body_f1"], 4), "name": "body-line F1"},
                                        {"type": "f1", "value": round(s["segment_f1"], 4), "name": "segment F1"}]})
    front = {"language": ["ar"], "license": "apache-2.0", "library_name": "transformers",
             "pipeline_tag": "token-classification",
             "tags": ["token-classification", "ner", "arabic", "news", "page-segmentation"],
             "metrics": ["precision", "recall", "f1"]}
    if results:
        front["model-index"] = [{"name": name, "results": results}]
    md = ["---", yaml.safe_dump(front, allow_unicode=True, sort_keys=False).rstrip(), "---", "",
          f"# {name}", "",
          "Joint section segmentation (which lines of a scraped Arabic news page are the article) and named-entity "
          "recognition. Open it with `infer.tagger.Tagger.from_pretrained` or run "
          f"`python -m infer --model {name} PAGES.jsonl`.", "",
          "## Training data", "", training_data_desc.strip(), "", "## Evaluation", ""]
    for block, b in (metrics.get("blocks") or {}).items():
        if b.get("entities"):
            md += [f"### {block}: entities", "", entity_table(b["entities"]), ""]
        if b.get("sections") and b["sections"].get("n_lines"):
            md += [f"### {block}: sections", "", section_table(b["sections"]), ""]
    path = model_dir / "README.md"
    write_text(path, "\n".join(md))
    return path
