"""``python -m train CONFIG.yaml [key=value ...]``: train the joint section + NER model.

Flow: config -> training/dev pages -> tokenizer -> model -> encoded pages -> HF Trainer (dev scored
each epoch by the Tagger, best epoch kept) -> the model folder. The folder holds the model
(``save_pretrained``), the tokenizer, ``config.yaml`` (resolved), ``metrics.json``, ``report.md`` and
the model card; Trainer checkpoints sit inside it and a rerun continues from the last one.
Runs unchanged under ``torchrun --nproc_per_node N -m train ...``: ranks split the training pages,
and only rank 0 writes.

Overrides use dotted keys: ``output_dir=runs/x model.hidden_size=128 training.num_train_epochs=2
data.train.0.weight=2``. ``python -m train --help`` lists every option.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from transformers import AutoTokenizer, BertConfig, TrainingArguments, set_seed

from data.features import PageEncoder
from data.labels import entity_tagset
from model import JointConfig, JointModel, enable_fast_dropout, train_wordpiece
from model.crf import check_outside_bias, check_section_once, check_section_required
from train.config import ConfigError, RunConfig, check_paths, help_text, load_config, to_dict
from train.data import (DataError, PageDataset, dev_pages, entity_types, mix, source_repeats, training_sources,
                        vocabulary_texts)
from train.report import write_json, write_model_card, write_report, write_text
from train.trainer import JointTrainer, complete_checkpoints, dev_scores, precision_flags, stream_count

USAGE = "usage: python -m train CONFIG.yaml [key=value ...]"


def parse(argv: list[str]) -> RunConfig:
    if not argv:
        raise ConfigError(f"no config file given\n{USAGE}")
    cfg = load_config(RunConfig, argv[0], argv[1:])
    check_paths(cfg)
    ws = cfg.training.window_stride
    if ws is not None and not 0 <= ws <= (cfg.model.window_length - 2) // 2:
        raise ConfigError(f"training.window_stride: {ws} must be between 0 and half the window "
                          f"({(cfg.model.window_length - 2) // 2})")
    if cfg.model.lexical_tags and not cfg.model.lexical_buckets:
        raise ConfigError("model.lexical_tags: the tag scores are per lexical feature; set model.lexical_buckets too")
    for key in ("lexical_buckets", "line_buckets"):  # hashed tables: 0 (none) or 2+ rows (row 0 is padding)
        n = getattr(cfg.model, key)
        if n < 0 or n == 1:
            raise ConfigError(f"model.{key}: {n} must be 0 (none) or at least 2")
    if cfg.model.line_feature_dim < 1:
        raise ConfigError(f"model.line_feature_dim: {cfg.model.line_feature_dim} must be at least 1")
    if cfg.model.lexical_clusters:
        if not (cfg.model.lexical_buckets and cfg.model.lexical_vectors):
            raise ConfigError("model.lexical_clusters: clusters of word vectors are lexical keys; set "
                              "model.lexical_buckets and model.lexical_vectors too")
        if any(k < 2 for k in cfg.model.lexical_clusters):
            raise ConfigError(f"model.lexical_clusters: {cfg.model.lexical_clusters}: each size must be at least 2")
    if cfg.model.lexical_gazetteer and not cfg.model.lexical_buckets:
        raise ConfigError("model.lexical_gazetteer: gazetteer codes are lexical keys; set model.lexical_buckets too")
    if cfg.model.line_tags and not cfg.model.line_buckets:
        raise ConfigError("model.line_tags: the tag scores are per line feature; set model.line_buckets too")
    if cfg.model.line_topic and not cfg.model.line_buckets:
        raise ConfigError("model.line_topic: topic keys are line features; set model.line_buckets too")
    if cfg.model.line_bare_words and not cfg.model.line_buckets:
        raise ConfigError("model.line_bare_words: bare-word keys are line features; set model.line_buckets too")
    if cfg.model.line_blocks and not cfg.model.line_buckets:
        raise ConfigError("model.line_blocks: block keys are line features; set model.line_buckets too")
    if cfg.model.line_heads and not cfg.model.line_buckets:
        raise ConfigError("model.line_heads: head keys are line features; set model.line_buckets too")
    if cfg.model.line_gazetteer and not (cfg.model.line_buckets and cfg.model.lexical_gazetteer):
        raise ConfigError("model.line_gazetteer: gazetteer keys of a line's words are line features read from the "
                          "silver gazetteer; set model.line_buckets and model.lexical_gazetteer too")
    if cfg.model.line_repeats:
        if not cfg.model.line_buckets:
            raise ConfigError("model.line_repeats: repeat keys are line features; set model.line_buckets too")
        if cfg.model.line_repeats < 2:
            raise ConfigError(f"model.line_repeats: {cfg.model.line_repeats}: a group has at least 2 pages (0: none)")
    if not 0 <= cfg.training.line_repeats_dropout <= 1:
        raise ConfigError(f"training.line_repeats_dropout: {cfg.training.line_repeats_dropout} is not in [0, 1]")
    if cfg.model.line_clusters:
        if not cfg.model.line_buckets:
            raise ConfigError("model.line_clusters: cluster keys are line features; set model.line_buckets too")
        if cfg.model.line_clusters not in (cfg.model.lexical_clusters or []):
            raise ConfigError(f"model.line_clusters: {cfg.model.line_clusters} is not one of "
                              f"model.lexical_clusters ({cfg.model.lexical_clusters})")
    for key, check, example in (("section_once", check_section_once, "[[], [title]]"),
                                ("section_required", check_section_required, "[[], [body]]")):
        try:
            check(getattr(cfg.model, key))
        except ValueError as err:
            raise ConfigError(f"model.{err}") from None
        key += "_candidates"
        cands = getattr(cfg.training, key)
        if cands is None:
            continue
        if not isinstance(cands, list) or not cands or not all(isinstance(c, list) for c in cands):
            raise ConfigError(f"training.{key}: {cands!r} must be a non-empty list of label lists, e.g. {example}")
        for c in cands:
            try:
                check(c)
            except ValueError as err:
                raise ConfigError(f"training.{key}: {err}") from None
    t = cfg.training
    if t.lexical_tags_fit == "crf" or cfg.model.line_tags:
        if t.lexical_tags_fit == "crf" and not cfg.model.lexical_tags:
            raise ConfigError("training.lexical_tags_fit: crf fits model.lexical_tags; set model.lexical_tags: true")
        for key in ("lexical_tags_c1", "lexical_tags_c2", "line_tags_c1", "line_tags_c2"):
            if getattr(t, key) is not None and getattr(t, key) < 0:
                raise ConfigError(f"training.{key}: {getattr(t, key)} must be 0 or more")
        if t.lexical_tags_iterations < 1:
            raise ConfigError(f"training.lexical_tags_iterations: {t.lexical_tags_iterations} must be at least 1")
        try:
            import pycrfsuite  # noqa: F401
        except ImportError:
            key = "training.lexical_tags_fit: crf" if t.lexical_tags_fit == "crf" else "model.line_tags"
            raise ConfigError(f"{key} needs sklearn-crfsuite (pip install 'arabic-page-tagger[baselines]')") from None
    if t.lexical_tags_folds < 1:
        raise ConfigError(f"training.lexical_tags_folds: {t.lexical_tags_folds} must be at least 1")
    if t.lexical_tags_folds > 1 and not (cfg.model.lexical_tags and t.lexical_tags_fit == "crf"):
        raise ConfigError("training.lexical_tags_folds: out-of-fold scores are made by the CRF fit; set "
                          "model.lexical_tags: true and training.lexical_tags_fit: crf")
    if t.line_tags_folds < 1:
        raise ConfigError(f"training.line_tags_folds: {t.line_tags_folds} must be at least 1")
    if t.line_tags_folds > 1 and not cfg.model.line_tags:
        raise ConfigError("training.line_tags_folds: out-of-fold scores are made by the line CRF fit; set "
                          "model.line_tags: true")
    if t.average_checkpoints < 0 or t.average_checkpoints == 1:
        raise ConfigError(f"training.average_checkpoints: {t.average_checkpoints} must be 0 (off) or 2 or more "
                          "(the number of last epoch checkpoints to average)")
    if t.section_bias_rounds < 0:
        raise ConfigError(f"training.section_bias_rounds: {t.section_bias_rounds} must be 0 or more")
    for b in t.outside_bias_grid or []:
        try:
            check_outside_bias(b)
        except ValueError as err:
            raise ConfigError(f"training.outside_bias_grid: {err}") from None
    if cfg.training.streams not in (None, 1, 2):
        raise ConfigError(f"training.streams: {cfg.training.streams} must be 1, 2 or null (auto)")
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    for k in cfg.training.args:
        if k not in known:
            raise ConfigError(f"unknown key 'training.args.{k}': not a transformers TrainingArguments field")
    return cfg


def describe_calibration(chosen: dict) -> str:
    """One line per bias that calibration chose (train.trainer.apply_calibration's summary)."""
    lines = []
    if "ner_outside_bias" in chosen:
        lines.append("NER outside bias on dev: " + ", ".join(
            f"{b}: {100 * v:.2f}" for b, v in chosen["ner_outside_bias_dev_f1"].items())
            + f" (entity micro-F1); kept {chosen['ner_outside_bias']:g}")
    if "section_once_dev_macro_f1" in chosen:
        kept = " | ".join(",".join(chosen[k]) or "none" for k in ("section_once", "section_required") if k in chosen)
        what = ("one section a page" if "section_required" not in chosen else "at most one | at least one section "
                "a page" if "section_once" in chosen else "at least one section a page")
        lines.append(f"{what}, on dev: " + ", ".join(
            f"{k}: {100 * v:.2f}" for k, v in chosen["section_once_dev_macro_f1"].items())
            + f" (section macro-F1); kept {kept}")
    if "section_label_bias" in chosen:
        h = chosen["section_bias_dev_macro_f1"]
        kept = ", ".join(f"{k} {v:+g}" for k, v in sorted(chosen["section_label_bias"].items())) or "none"
        lines.append(f"section label biases on dev: {kept} (section macro-F1 "
                     + " -> ".join(f"{100 * v:.2f}" for v in h) + ")")
    return "\n".join(lines) or "calibration: the dev pages have neither entities nor sections; nothing chosen"


def describe_averaging(result: dict) -> str:
    """One line on what ``JointTrainer.average_checkpoints`` measured and kept."""
    scores = result.get("average_checkpoints_dev") or {}
    if not scores:
        return "checkpoint averaging: fewer than 2 epoch checkpoints; the kept epoch stays"
    metric = result["average_checkpoints_metric"]
    kept = result["averaged_checkpoints"]
    return (f"checkpoint averaging on dev ({metric}): kept epoch {100 * result['average_checkpoints_kept_epoch_dev']:.2f}, "
            + ", ".join(f"last {k}: {100 * v:.2f}" for k, v in scores.items())
            + (f"; kept the average of {', '.join(kept)}" if kept else "; kept the epoch"))


def check_best_metric(name: str, dev) -> None:
    """The best-model metric must be one that the dev pages can produce (else the Trainer would
    fail only after the first epoch)."""
    key = name if name.startswith("eval_") else f"eval_{name}"
    has_ner = any(p.ner_regions for p in dev)
    has_sec = any(p.sections is not None for p in dev)
    ok = (key == "eval_combined_f1" or (key.startswith("eval_entity_") and has_ner)
          or key in ("eval_section_accuracy", "eval_section_macro_f1", "eval_section_body_f1",
                     "eval_section_segment_f1") and has_sec)
    if not ok:
        raise ConfigError(f"training.metric_for_best_model: {name!r} is not produced by these dev pages "
                          f"(entity gold: {has_ner}, section gold: {has_sec}); e.g. eval_combined_f1, "
                          "eval_entity_micro_f1, eval_section_macro_f1, eval_section_accuracy")


def training_arguments(cfg: RunConfig) -> TrainingArguments:
    t = cfg.training
    report_to = t.report_to
    if report_to == "auto":
        report_to = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    kwargs = dict(
        output_dir=cfg.output_dir, num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay, warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler_type, per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, seed=t.seed,
        eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model=t.metric_for_best_model, greater_is_better=True,
        save_total_limit=(max(t.save_total_limit, t.average_checkpoints + 1)
                          if t.average_checkpoints and t.save_total_limit is not None else t.save_total_limit),
        logging_steps=t.logging_steps, logging_first_step=True, report_to=report_to,
        dataloader_num_workers=t.dataloader_num_workers, dataloader_pin_memory=torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        remove_unused_columns=False,  # the collator builds the model's inputs from whole pages
        include_num_input_tokens_seen="non_padding", disable_tqdm=False,
        **precision_flags(t.precision),
    )
    if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs["use_cpu"] = True  # accelerate sets up multi-CPU (gloo) DDP only when told it is on CPU
    kwargs.update(t.args)
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"training: {err}") from None


@dataclasses.dataclass(frozen=True)
class ScoreTable:
    """A score table fitted before training and then fixed: ``what`` names it in messages, ``prefix`` its
    dataset keys (``<prefix>_ids``, ``<prefix>_prior``), ``folds_key`` / ``fit_key`` the config keys that a
    failed fit names (with folds / without)."""

    what: str
    prefix: str
    folds_key: str
    fit_key: str


LEXICAL_SCORES = ScoreTable("lexical", "lex", "training.lexical_tags_folds", "training.lexical_tags_fit")
LINE_SCORES = ScoreTable("line", "line", "training.line_tags_folds", "model.line_tags")


@dataclasses.dataclass(frozen=True)
class FitRun:
    """What every fixed-score fit of one training run shares: its training pages, their encoded dataset,
    the checkpoint it resumes (None: a new run) and this process's rank."""

    pages: list
    dataset: object
    checkpoint: str | None
    process_index: int


def fixed_scores(fit, table, kind: ScoreTable, k: int, fold_file: Path | None, run: FitRun) -> dict | None:
    """``table`` (a :class:`ScoreTable` ``kind``: the lexical or the line tag scores) fitted before training
    and then fixed: ``fit(folds)`` fits it, except on resume (the checkpoint holds it; returns None). With
    ``k`` >= 2 folds (:func:`train.lexical.page_folds`) the training pages also get out-of-fold scores
    (``<prefix>_prior`` from their ``<prefix>_ids``, :func:`train.lexical.set_fold_priors`), whose fits
    ``fold_file`` keeps for a resumed run. A failed fit is a ConfigError naming ``kind.folds_key`` (with
    folds) or ``kind.fit_key``; an unreadable fold file on resume one naming the file."""
    from train.lexical import load_folds, page_folds, save_folds, set_fold_priors

    folds = page_folds(run.pages, k) if k > 1 else None
    result = None
    if run.checkpoint is None:
        try:
            result = fit(folds)
        except ValueError as err:
            raise ConfigError(f"{kind.folds_key if folds is not None else kind.fit_key}: {err}") from None
        if folds is not None:
            fold_weight = result["fold_weight"]
            if run.process_index == 0:
                save_folds(fold_file, k, fold_weight)
    elif folds is not None:  # the same out-of-fold scores as before the interruption
        try:
            fold_weight = load_folds(fold_file, k, tuple(table.weight.shape), what=kind.what)
        except (OSError, ValueError) as err:
            raise ConfigError(f"resuming {run.checkpoint}: {err}") from None
    if folds is not None:
        set_fold_priors(run.dataset, folds, fold_weight, f"{kind.prefix}_ids", f"{kind.prefix}_prior")
    table.weight.requires_grad_(False)
    return result


def make_tokenizer(cfg: RunConfig, args: TrainingArguments, pages, checkpoint: str | None):
    """The checkpoint's tokenizer when resuming; a named one; or a new WordPiece, trained once on
    rank 0 and read by the other ranks, so every rank has the same vocabulary."""
    if checkpoint:
        return AutoTokenizer.from_pretrained(checkpoint)
    name = cfg.tokenizer.name_or_path or cfg.model.encoder
    if name:
        return AutoTokenizer.from_pretrained(name)
    shared = Path(cfg.output_dir) / ".tokenizer"
    with args.main_process_first(desc="WordPiece vocabulary"):
        if args.process_index == 0:
            t0 = time.time()
            tok = train_wordpiece(vocabulary_texts(pages, cfg.tokenizer.extra_text, cfg.tokenizer.max_texts),
                                  vocab_size=cfg.tokenizer.vocab_size, min_frequency=cfg.tokenizer.min_frequency,
                                  model_max_length=cfg.model.window_length)
            print(f"WordPiece vocabulary: {len(tok)} pieces in {time.time() - t0:.1f}s", file=sys.stderr)
            if args.world_size > 1:
                tok.save_pretrained(shared)
        else:
            tok = AutoTokenizer.from_pretrained(shared)
    return tok


def make_model(cfg: RunConfig, tokenizer, types: list[str], checkpoint: str | None = None) -> JointModel:
    """A new joint model for ``cfg``; ``checkpoint``: the run being resumed, whose word-cluster map is
    read instead of clustering the vectors again."""
    m = cfg.model
    tags = entity_tagset(types).tags
    head = dict(section_loss_weight=m.section_loss_weight, line_hidden_size=m.line_hidden_size,
                line_layers=m.line_layers, classifier_dropout=m.classifier_dropout,
                window_length=m.window_length, stride=m.stride, use_crf=m.use_crf,
                line_pooling=m.line_pooling, section_crf=m.section_crf, section_once=m.section_once,
                section_required=m.section_required)
    if m.line_buckets:
        head["line_buckets"] = m.line_buckets
        head["line_feature_dim"] = m.line_feature_dim
        head["line_tags"] = m.line_tags
        head["line_topic"] = m.line_topic
        head["line_bare_words"] = m.line_bare_words
        head["line_blocks"] = m.line_blocks
        head["line_heads"] = m.line_heads
        head["line_clusters"] = m.line_clusters
        head["line_repeats"] = m.line_repeats
    if m.lexical_buckets:
        head["lexical_buckets"] = m.lexical_buckets
        head["lexical_dim"] = m.lexical_dim
        head["lexical_window"] = m.lexical_window
        head["lexical_tags"] = m.lexical_tags
        if m.lexical_clusters:
            head["lexical_clusters"] = list(m.lexical_clusters)
        if m.lexical_gazetteer:
            head["lexical_gazetteer"] = True
            if m.line_buckets and m.line_gazetteer:
                head["line_gazetteer"] = True
    if m.encoder:
        model = init_lexical(JointModel.from_encoder(m.encoder, tags, **head), m.lexical_vectors, checkpoint,
                             m.lexical_gazetteer)
        limit = model.config.encoder_config.max_position_embeddings
        if m.window_length > limit:
            raise ConfigError(f"model.window_length: {m.window_length} is over the encoder's {limit} positions")
        if len(tokenizer) > model.config.encoder_config.vocab_size:
            raise ConfigError(f"tokenizer: {len(tokenizer)} pieces but the encoder has "
                              f"{model.config.encoder_config.vocab_size} embeddings")
        return model
    enc = BertConfig(vocab_size=len(tokenizer), hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers,
                     num_attention_heads=m.num_attention_heads, intermediate_size=m.intermediate_size,
                     hidden_dropout_prob=m.dropout, attention_probs_dropout_prob=m.dropout,
                     max_position_embeddings=m.window_length, pad_token_id=tokenizer.pad_token_id)
    config = JointConfig(encoder=enc, id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)},
                         **head)
    return init_lexical(JointModel(config), m.lexical_vectors, checkpoint, m.lexical_gazetteer)


def init_lexical(model: JointModel, vectors: str | None, checkpoint: str | None = None,
                 gazetteer: str | None = None) -> JointModel:
    """Start the hashed lexical table from static word vectors (``python -m train.embeddings``), and
    cluster their words (``config.lexical_clusters``), or, when resuming ``checkpoint``, read the map
    that the checkpoint was trained with (a missing or broken file is a ConfigError naming it). Read
    the silver gazetteer (``config.lexical_gazetteer``) from ``gazetteer``, or from the checkpoint."""
    if model.config.lexical_gazetteer:
        from model.modeling import load_word_gazetteer, read_gazetteer

        try:
            model.word_gazetteer = (load_word_gazetteer(checkpoint) if checkpoint is not None
                                    else read_gazetteer(gazetteer))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{'resuming ' + checkpoint if checkpoint is not None else 'model.lexical_gazetteer'}: "
                              f"{err}") from None
        print(f"silver gazetteer: {len(model.word_gazetteer)} words", file=sys.stderr)
    if vectors and model.config.lexical_buckets:
        from gensim.models import KeyedVectors

        from train.embeddings import init_lexical_table

        kv = KeyedVectors.load(vectors)
        table = model.lexical.weight.data
        arr = table.numpy().copy()
        n = init_lexical_table(arr, kv, radius=model.config.lexical_window)
        table.copy_(torch.from_numpy(arr))
        print(f"lexical table: {n} rows initialised from {vectors}", file=sys.stderr)
        if model.config.lexical_clusters and checkpoint is not None:
            from model.modeling import load_word_clusters

            try:
                model.word_clusters = load_word_clusters(checkpoint, model.config.lexical_clusters)
            except (OSError, ValueError) as err:
                raise ConfigError(f"resuming {checkpoint}: {err}") from None
        elif model.config.lexical_clusters:
            from train.embeddings import word_clusters

            t0 = time.time()
            model.word_clusters = word_clusters(kv, model.config.lexical_clusters)
            print(f"word clusters: {len(model.word_clusters)} words in {model.config.lexical_clusters} clusters "
                  f"({time.time() - t0:.0f} s)", file=sys.stderr)
    return model


def describe_sources(cfg: RunConfig, n_train: int, n_dev: int) -> str:
    def line(s):
        what = ", ".join(f"`{p}`" for p in s.paths + s.news)
        extra = f", {s.templates} templates" if s.kind == "builder" else ""
        return f"- {s.kind}: {what} (part {s.part}, weight {s.weight}, count {s.count}{extra})"
    return "\n".join([f"Training pages per epoch: {n_train}."] + [line(s) for s in cfg.data.train]
                     + ["", f"Dev pages: {n_dev}."] + [line(s) for s in cfg.data.dev])


def last_complete_checkpoint(out: Path) -> str | None:
    """The newest checkpoint that Trainer finished saving (a folder that a kill interrupted mid-save,
    config.json and maybe part of the weights, is skipped instead of failing the resume)."""
    done = complete_checkpoints(out)
    return str(done[-1]) if done else None


def publish(tmp: Path, out: Path) -> None:
    """Move the finished files into ``out``. ``config.json`` goes last and the old one goes first,
    so a folder that a killed run leaves behind never looks like a complete model."""
    (out / "config.json").unlink(missing_ok=True)
    names = sorted(os.listdir(tmp), key=lambda n: n == "config.json")
    for name in names:
        dst = out / name
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(tmp / name, dst)
    tmp.rmdir()


def write_output(trainer: JointTrainer, cfg: RunConfig, tokenizer, dev, scores: dict, summary: dict,
                 describe: str) -> None:
    out = Path(cfg.output_dir)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".final-"))
    try:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        resolved = to_dict(cfg)
        resolved["model"]["entity_types"] = list(trainer.model.config.entity_types)
        write_text(tmp / "config.yaml", yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False))
        block = {"source": ", ".join(p for s in cfg.data.dev for p in s.paths + s.news), "n_pages": len(dev),
                 "unit": "word"}
        block.update({k: scores[k] for k in ("entities", "sections") if scores.get(k)})
        metrics = {"model": str(out), "entity_types": list(trainer.model.config.entity_types),
                   "measured": {"date": dt.date.today().isoformat(),
                                "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
                                           f"{trainer.args.device}, {trainer.args.world_size} process(es)"},
                   "train": summary, "dev": scores["flat"], "blocks": {"dev": block}}
        write_json(tmp / "log_history.json", trainer.state.log_history)
        write_report(tmp, metrics, title=f"Training: {out.name}", log_history=trainer.state.log_history)
        write_json(tmp / "metrics.json", metrics)
        write_model_card(tmp, metrics, describe, name=out.name)
        publish(tmp, out)
        shutil.rmtree(out / ".tokenizer", ignore_errors=True)  # the vocabulary shared between ranks
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__ + "\nOptions (YAML keys, or dotted key=value overrides):\n" + "\n".join(help_text(RunConfig)))
        return 0
    try:
        cfg = parse(argv)
        args = training_arguments(cfg)
        set_seed(cfg.training.seed)
        sources = training_sources(cfg.data)
        train_pages = mix(sources, random.Random(cfg.training.seed))
        dev = dev_pages(cfg.data, cfg.training.seed)
        if not dev:
            raise ConfigError("data.dev: no dev source given (the best epoch is chosen on dev)")
        check_best_metric(cfg.training.metric_for_best_model, dev)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = last_complete_checkpoint(out)
    if checkpoint:
        print(f"resuming from {checkpoint}", file=sys.stderr)
    types = cfg.model.entity_types or entity_types(train_pages)
    try:
        tokenizer = make_tokenizer(cfg, args, train_pages, checkpoint)
        model = make_model(cfg, tokenizer, types, checkpoint)
        if cfg.training.fast_dropout:
            enable_fast_dropout(model)
        # Training windows: fixed cuts without overlap by default (each subword is computed once, and
        # the model sees words at every distance from a cut); the last window of a page left short.
        # The evaluation uses the Tagger, which cuts at line starts.
        stride = cfg.training.window_stride
        encoder = PageEncoder.for_model(tokenizer, model, windows="short",
                                          stride=model.config.stride if stride is None else stride)
        repeats = (source_repeats([p for p, _ in sources], cfg.model.line_repeats, cfg.training.line_repeats_dropout,
                                  cfg.training.seed) if cfg.model.line_repeats and cfg.model.line_buckets else None)
        train_set = PageDataset(train_pages, encoder, entity_tagset(types), repeats)
        t = cfg.training
        run = FitRun(train_pages, train_set, checkpoint, args.process_index)
        if hasattr(model, "lexical_tag_scores"):
            from train.lexical import fit_lexical_crf, fit_lexical_tags

            if t.lexical_tags_fit == "crf":
                fit = fixed_scores(
                    lambda folds: fit_lexical_crf(model, train_set, c1=t.lexical_tags_c1, c2=t.lexical_tags_c2,
                                                  max_iterations=t.lexical_tags_iterations, folds=folds),
                    model.lexical_tag_scores, LEXICAL_SCORES, t.lexical_tags_folds, out / "lexical_folds.pt", run)
                if fit is not None:
                    each = f" ({fit['folds']} out-of-fold fits)" if "folds" in fit else ""
                    print(f"lexical tag scores: a CRF fitted on {fit['words']} labelled words in {fit['runs']} "
                          f"runs{each}, {fit.get('features', 0)} non-zero weights, {fit.get('seconds', 0)} s",
                          file=sys.stderr)
            else:
                fit = fixed_scores(
                    lambda folds: fit_lexical_tags(model, train_set, epochs=t.lexical_tags_epochs,
                                                   penalty=t.lexical_tags_penalty, seed=t.seed),
                    model.lexical_tag_scores, LEXICAL_SCORES, 1, None, run)
                if fit is not None:
                    print(f"lexical tag scores: fitted on {fit['words']} labelled words, loss per epoch "
                          f"{fit['losses']}", file=sys.stderr)
        if hasattr(model, "line_tag_scores"):
            from train.lexical import fit_line_crf

            c1 = t.lexical_tags_c1 if t.line_tags_c1 is None else t.line_tags_c1
            c2 = t.lexical_tags_c2 if t.line_tags_c2 is None else t.line_tags_c2
            fit = fixed_scores(
                lambda folds: fit_line_crf(model, train_set, c1=c1, c2=c2, max_iterations=t.lexical_tags_iterations,
                                           folds=folds),
                model.line_tag_scores, LINE_SCORES, t.line_tags_folds, out / "line_folds.pt", run)
            if fit is not None:
                each = f" ({fit['folds']} out-of-fold fits)" if "folds" in fit else ""
                print(f"line tag scores: a CRF fitted on {fit['lines']} labelled lines in {fit['runs']} runs{each}, "
                      f"{fit.get('features', 0)} non-zero weights, {fit.get('seconds', 0)} s", file=sys.stderr)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{len(train_set)} training pages ({train_set.n_tokens} subwords), {len(dev)} dev pages; "
          f"entity types {types}; {n_params / 1e6:.2f}M parameters", file=sys.stderr)

    trainer = JointTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=dev,
                           data_collator=encoder.collate, processing_class=tokenizer,
                           eval_batch_tokens=cfg.training.eval_batch_tokens,
                           lexical_lr_multiplier=cfg.training.lexical_lr_multiplier,
                           streams=stream_count(cfg.training.streams, model, args))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    runtime = result.metrics.get("train_runtime", 0.0)
    tokens = trainer.state.num_input_tokens_seen
    summary = {**result.metrics, "global_step": trainer.state.global_step,
               "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
               "input_tokens_seen": tokens, "train_tokens_per_second": round(tokens / runtime, 1) if runtime else None}
    if cfg.training.average_checkpoints:
        averaged = trainer.average_checkpoints(cfg.training.average_checkpoints)
        summary.update(averaged)
        print(describe_averaging(averaged), file=sys.stderr)
    t = cfg.training
    if t.outside_bias_grid or t.section_bias_rounds > 0 or t.section_once_candidates or t.section_required_candidates:
        chosen = trainer.calibrate(t.outside_bias_grid, t.section_bias_rounds,
                                   section_once_candidates=t.section_once_candidates,
                                   section_required_candidates=t.section_required_candidates)
        summary.update(chosen)
        print(describe_calibration(chosen), file=sys.stderr)
    trainer.evaluate()  # the kept (best) model, scored by the same code as every epoch
    scores = trainer.last_eval
    if trainer.is_world_process_zero():
        write_output(trainer, cfg, tokenizer, dev, scores, summary,
                     describe_sources(cfg, len(train_set), len(dev)))
        flat = scores["flat"]
        print(f"done in {runtime:.0f}s ({summary['train_tokens_per_second']} tokens/s); dev: "
              + ", ".join(f"{k} {v:.3f}" for k, v in flat.items() if not k.startswith("entity_") or "micro" in k)
              + f"\nwrote {out}", file=sys.stderr)
    trainer.accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
