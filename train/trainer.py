"""The HF Trainer, with dev evaluation that runs the real inference code.

``evaluate`` tags the dev pages with :class:`infer.tagger.Tagger` wrapped around the in-memory model
and scores the output records with :mod:`train.metrics`, so a dev score is exactly what
``python -m infer`` would produce with this model. Every rank tags all dev pages (they are few), so
every rank sees the same metrics and picks the same best checkpoint.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from data.features import split_batch
from data.schema import Page
from infer.tagger import Tagger
from train.metrics import entity_metrics, section_metrics


def dev_scores(pages: Sequence[Page], records: Sequence[dict], types: Sequence[str]) -> dict:
    """Flat dev metrics (no prefix) and the full metric blocks, from pages and Tagger records."""
    ents = entity_metrics(pages, records, list(types)) if any(p.ner_regions for p in pages) else None
    secs = section_metrics(pages, records) if any(p.sections is not None for p in pages) else None
    flat: dict[str, float] = {}
    if ents:
        for avg in ("micro", "macro"):
            for k in ("precision", "recall", "f1"):
                flat[f"entity_{avg}_{k}"] = ents[avg][k]
        for t, m in ents["types"].items():
            flat[f"entity_{t}_f1"] = m["f1"]
    if secs and secs.get("n_lines"):
        flat.update(section_accuracy=secs["accuracy"], section_macro_f1=secs["macro_f1"],
                    section_body_f1=secs["body_f1"], section_segment_f1=secs["segment_f1"])
    parts = [v for v in (flat.get("entity_micro_f1") if ents else None,
                         flat.get("section_macro_f1") if secs else None) if v is not None]
    flat["combined_f1"] = sum(parts) / len(parts) if parts else 0.0
    return {"flat": flat, "entities": ents, "sections": secs}


def model_outputs(tagger: Tagger, pages: Sequence[Page], progress: bool = False) -> list[tuple[list[Page], tuple]]:
    """One pass of the model over ``pages``: each block and its :meth:`Tagger.block_outputs`, to be decoded
    as often as wanted (:func:`decode_all`).

    A model with repeat keys (``config.line_repeats``) tagging in blocks (not ``tagger.alone``) is run over
    the pages twice, in blocks and each page alone, and the outputs of both passes are returned (each page
    then comes twice): users tag both ways, the two see different line keys, and biases chosen on the first
    alone can hurt the second (``cpu-full25``: a body bias of +0.5 chosen in blocks read four lines of the
    seed page's teaser, tagged alone, as body)."""
    from tqdm.auto import tqdm

    pages = list(pages)
    both = bool(getattr(tagger.model.config, "line_repeats", None)) and not tagger.alone
    out = []
    with tqdm(total=len(pages) * (1 + both), desc="dev pages", unit="page", disable=not progress) as bar:
        for alone in (False, True)[: 1 + both]:
            for block, outputs in tagger.outputs(pages, alone=alone or tagger.alone):  # Tagger.tag's own path
                out.append((block, outputs))
                bar.update(len(block))
    return out


def decode_all(tagger: Tagger, outputs: list[tuple[list[Page], tuple]], **biases) -> list[dict]:
    """The records of every block of :func:`model_outputs`, decoded with ``biases`` (``outside_bias=``,
    ``section_bias=``; default: the Tagger's own)."""
    return [r for block, outs in outputs for r in tagger.decode_block(block, outs, **biases)]


def choose_outside_bias(tagger: Tagger, outputs: list[tuple[list[Page], tuple]],
                        grid: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The NER outside bias of ``grid`` whose decoding of ``outputs`` (:func:`model_outputs` of labelled
    pages) has the best entity micro-F1 (ties: the one nearest 0), and the entity micro-F1 of each."""
    grid = [float(b) for b in grid]
    if not grid:
        raise ValueError("no outside bias to try")
    pages = [p for block, _ in outputs for p in block]
    types = tagger.entity_types
    f1 = {b: dev_scores(pages, decode_all(tagger, outputs, outside_bias=b), types)["flat"].get("entity_micro_f1", 0.0)
          for b in grid}
    return max(grid, key=lambda b: (round(f1[b], 9), -abs(b))), f1


SECTION_BIAS_STEPS = (-1.0, -0.5, 0.5, 1.0)


def choose_section_bias(tagger: Tagger, outputs: list[tuple[list[Page], tuple]], rounds: int = 2,
                        steps: Sequence[float] = SECTION_BIAS_STEPS,
                        start: dict[str, float] | None = None) -> tuple[dict[str, float], list[float]]:
    """Per-label section biases (added to a label's log-probabilities before the section decoding) by
    coordinate ascent on the section macro-F1 of ``outputs`` (:func:`model_outputs` of pages with gold
    sections): ``rounds`` passes over the labels, each label moved by the step of ``steps`` that raises the
    score most, if any does, from ``start`` (default: none). Returns the biases (labels left at 0 omitted) and
    the score after each round, the score at ``start`` first."""
    from data.labels import SECTION_TAGS

    pages = [p for block, _ in outputs for p in block]
    types = tagger.entity_types
    labels = sorted({t[2:] for t in SECTION_TAGS.tags})

    def score(bias: dict[str, float]) -> float:
        recs = decode_all(tagger, outputs, section_bias=bias, with_entities=False)  # only sections are scored
        return dev_scores(pages, recs, types)["flat"].get("section_macro_f1", 0.0)

    bias: dict[str, float] = dict(start or {})
    best = score(bias)
    history = [best]
    for _ in range(rounds):
        for label in labels:
            trials = [(score({**bias, label: bias.get(label, 0.0) + step}), -abs(step), step) for step in steps]
            top, _, step = max(trials)
            if top > best + 1e-9:
                best, bias = top, {**bias, label: bias.get(label, 0.0) + step}
        history.append(best)
    return {k: v for k, v in bias.items() if v}, history


def choose_section_once(tagger: Tagger, outputs: list[tuple[list[Page], tuple]],
                        candidates: Sequence[Sequence[str]], rounds: int = 2,
                        required_candidates: Sequence[Sequence[str]] | None = None) -> dict:
    """Of ``candidates`` (lists of section labels that a page has at most one section of: ``[]`` for no such
    rule, ``["title"]`` for one title a page), the one whose decoding of ``outputs`` scores the best section
    macro-F1, each with its own section biases (:func:`choose_section_bias`, ``rounds`` rounds from none; 0:
    the Tagger's own biases, kept). With ``required_candidates`` (lists of labels that a page has at least one
    section of: ``[]``, ``["body"]``), every pair of the two is tried (None: the Tagger's own). Ties go to the
    rules with fewer labels, then the earlier ones. The Tagger is left decoding with the winner. Returns
    ``section_once``, ``section_required``, their ``section_label_bias`` and its history, and
    ``section_once_dev_macro_f1`` (each pair's final score, keyed ``once`` or ``once | required``)."""
    from model.crf import check_section_once, check_section_required

    cands = list(dict.fromkeys(tuple(check_section_once(c)) for c in candidates))
    if not cands:
        raise ValueError("no section_once candidate to try")
    given = required_candidates is not None
    reqs = list(dict.fromkeys(tuple(check_section_required(c)) for c in (required_candidates if given
                                                                           else [tagger.section_required])))
    if not reqs:
        raise ValueError("no section_required candidate to try")
    results = []
    for k, (c, r) in enumerate((c, r) for r in reqs for c in cands):
        tagger.set_section_once(c, r)
        bias, history = choose_section_bias(tagger, outputs, rounds, start=None if rounds else tagger.section_bias)
        name = (",".join(c) or "none") + (f" | {','.join(r) or 'none'}" if given else "")
        results.append(((round(history[-1], 9), -len(c) - len(r), -k), c, r, bias, history, name))
    _, once, req, bias, history, _ = max(results, key=lambda x: x[0])
    tagger.set_section_once(once, req)
    return {"section_once": list(once), "section_required": list(req), "section_label_bias": bias,
            "section_bias_dev_macro_f1": history,
            "section_once_dev_macro_f1": {x[-1]: round(x[0][0], 6) for x in results}}


def apply_calibration(config, tagger: Tagger, outputs, outside_bias_grid: Sequence[float] | None,
                      section_bias_rounds: int, section_once_candidates: Sequence[Sequence[str]] | None = None,
                      section_required_candidates: Sequence[Sequence[str]] | None = None) -> dict:
    """Choose the biases on ``outputs`` (what the pages allow) and write them into ``config``; returns a
    summary: ``ner_outside_bias`` and the dev entity micro-F1 of each bias, ``section_label_bias`` and the
    dev section macro-F1 before and after each round, and with ``section_once_candidates`` (and
    ``section_required_candidates``) the ``section_once`` (and ``section_required``) rule chosen among them
    (:func:`choose_section_once`) and each one's dev section macro-F1."""
    pages = [p for block, _ in outputs for p in block]
    done: dict = {}
    if outside_bias_grid and any(p.ner_regions for p in pages):
        best, f1 = choose_outside_bias(tagger, outputs, outside_bias_grid)
        config.ner_outside_bias = best
        done.update(ner_outside_bias=best, ner_outside_bias_dev_f1={f"{b:g}": round(v, 6) for b, v in f1.items()})
    if not any(p.sections is not None for p in pages) or not (section_once_candidates or section_required_candidates
                                                               or section_bias_rounds > 0):
        return done
    # without candidates, the Tagger's own rule is the one candidate: the same search, nothing to choose
    chosen = choose_section_once(tagger, outputs, section_once_candidates or [tagger.section_once], section_bias_rounds,
                                 required_candidates=section_required_candidates or None)
    if section_once_candidates or section_required_candidates:
        done.update(section_once_dev_macro_f1=chosen["section_once_dev_macro_f1"])
    if section_once_candidates:
        config.section_once = chosen["section_once"] or None
        done.update(section_once=chosen["section_once"])
    if section_required_candidates:
        config.section_required = chosen["section_required"] or None
        done.update(section_required=chosen["section_required"])
    if section_bias_rounds > 0:
        config.section_label_bias = chosen["section_label_bias"] or None
        done.update(section_label_bias=chosen["section_label_bias"],
                    section_bias_dev_macro_f1=[round(v, 6) for v in chosen["section_bias_dev_macro_f1"]])
    return done


def complete_checkpoints(out: str | Path) -> list[Path]:
    """The checkpoint folders in ``out`` that Trainer finished saving, oldest first. Trainer writes
    ``trainer_state.json`` last, so a folder that a kill interrupted mid-save is left out."""
    done = []
    for p in Path(out).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = p.name[len(PREFIX_CHECKPOINT_DIR) + 1:]
        try:
            if step.isdigit() and json.loads((p / "trainer_state.json").read_text(encoding="utf-8")):
                done.append((int(step), p))
        except (OSError, ValueError):
            continue
    return [p for _, p in sorted(done)]


def average_weights(folders: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The mean of the weights saved in ``folders`` (each a ``model.safetensors``): floating-point tensors
    averaged (in float64, then back to their dtype), any other tensor the same in every folder."""
    if not folders:
        raise ValueError("no checkpoint to average")
    states = [load_file(str(Path(f) / "model.safetensors")) for f in folders]
    keys = set(states[0])
    for f, sd in zip(folders[1:], states[1:]):
        if set(sd) != keys:
            raise ValueError(f"{f}: its weights are not those of {folders[0]} (keys differ: "
                             f"{sorted(keys ^ set(sd))[:3]})")
    out = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            out[k] = (sum(sd[k].double() for sd in states) / len(states)).to(v.dtype)
        elif all(torch.equal(sd[k], v) for sd in states):
            out[k] = v
        else:
            raise ValueError(f"{k}: a non-float tensor that differs between checkpoints; it cannot be averaged")
    return out


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped order that depends only on (seed, epoch). The stock sampler draws from the global
    RNG, so a run resumed mid-epoch skipped the first batches of a *different* order: some pages were
    trained twice in that epoch and others not at all. Trainer calls ``set_epoch`` before each epoch."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + int(epoch))


def stream_count(requested: int | None, model, args) -> int:
    """Training streams (``training.streams``; None: auto). Streams run on one process's CPU in fp32
    with the CPU dropout masks (whose per-thread generators keep a run reproducible); anywhere else
    one stream. Auto: 2 where torch has 2 threads or more."""
    from model.fast_dropout import uses_fast_dropout

    possible = (args.device.type == "cpu" and args.world_size == 1 and not (args.bf16 or args.fp16)
                and uses_fast_dropout(model))
    if requested is None:
        return 2 if possible and torch.get_num_threads() >= 2 else 1
    if requested not in (1, 2):
        raise ValueError(f"training.streams must be 1 or 2, not {requested!r}")
    return requested if possible else 1


class JointTrainer(Trainer):
    """``eval_dataset`` is a list of gold :class:`Page` objects, not features.

    With ``streams=2`` (CPU), each step's pages are cut in two halves (``data.features.split_batch``)
    that run forward and backward side by side in two threads, each with half of torch's threads:
    the many small element-wise operations of a backward pass keep two one-thread streams busier
    than one two-thread stream. Each half's loss is weighted by its share of the labelled words and
    lines, so the gradient is the whole batch's; the halves' gradients are added in a fixed order,
    and each thread draws its dropout masks from its own generator seeded from torch's, so a run
    stays bit-reproducible."""

    def __init__(self, *args, eval_batch_tokens: int | None = None, lexical_lr_multiplier: float = 1.0,
                 streams: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_batch_tokens = eval_batch_tokens
        self.lexical_lr_multiplier = lexical_lr_multiplier
        self.last_eval: dict | None = None
        self.streams = int(streams)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.streams < 2:
            return super().training_step(model, inputs, num_items_in_batch)
        from model.fast_dropout import thread_generator
        from model.streams import stream_pool

        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        parts = split_batch(inputs, self.streams)
        if len(parts) < 2:
            return super().training_step(model, inputs, num_items_in_batch)
        count = lambda part, key: int((part[key] != -100).sum()) if key in part else 0  # noqa: E731
        n_ner = max(1, sum(count(q, "ner_labels") for q in parts))
        n_sec = max(1, sum(count(q, "section_labels") for q in parts))
        lam = self.accelerator.unwrap_model(model).config.section_loss_weight
        scale = 1.0 / self.current_gradient_accumulation_steps
        seeds = torch.randint(0, 2**62, (len(parts),)).tolist()  # from torch's generator, in order

        params = [p for p in model.parameters() if p.requires_grad]

        def run(k: int):
            part = parts[k]
            with thread_generator(seeds[k]), self.compute_loss_context_manager():
                out = model(**part)
                loss = (out.ner_loss * (count(part, "ner_labels") / n_ner)
                        + lam * out.section_loss * (count(part, "section_labels") / n_sec))
            grads = torch.autograd.grad(loss * scale, params, allow_unused=True)
            return loss.detach(), grads

        with stream_pool(len(parts), "train-stream") as pool:
            results = list(pool.map(run, range(len(parts))))
        with torch.no_grad():  # the halves' gradients summed in a fixed order: bit-reproducible
            for i, p in enumerate(params):
                gs = [g[i] for _, g in results if g[i] is not None]
                if not gs:
                    continue
                g = gs[0]
                for more in gs[1:]:
                    g = g + more
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad += g
        return sum(loss for loss, _ in results) * scale

    def create_optimizer(self, model=None):
        """The default AdamW groups, with the hashed lexical table on its own learning rate: each of
        its rows is touched by few words per step, so it learns slowly at the encoder's rate."""
        if self.optimizer is not None or self.lexical_lr_multiplier == 1.0:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, p in opt_model.named_parameters():
            if p.requires_grad:
                # the hashed table only: its projection is a dense layer that every word trains
                groups.setdefault((name in decay, name == "lexical.weight"), []).append(p)
        lr = self.args.learning_rate
        param_groups = [{"params": ps, "weight_decay": self.args.weight_decay if d else 0.0,
                         "lr": lr * (self.lexical_lr_multiplier if lex else 1.0)}
                        for (d, lex), ps in groups.items()]
        cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        kwargs.pop("lr", None)
        self.optimizer = cls(param_groups, lr=lr, **kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler:
            return EpochSeededLengthSampler(sampler.batch_size, sampler.lengths, self.args.seed)
        return sampler

    def _run_tagger(self, work, **tagger_kwargs):
        """``work(tagger)`` with a Tagger around the model being trained, under the accelerator's autocast;
        the model is left in the mode it was in."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        param = next(model.parameters())
        tagger = Tagger(model, self.processing_class, device=param.device, dtype=param.dtype,
                        batch_tokens=self.eval_batch_tokens, **tagger_kwargs)
        try:
            with self.accelerator.autocast():
                return work(tagger)
        finally:
            model.train(was_training)

    def calibrate(self, outside_bias_grid: Sequence[float] | None, section_bias_rounds: int,
                  pages: Sequence[Page] | None = None,
                  section_once_candidates: Sequence[Sequence[str]] | None = None,
                  section_required_candidates: Sequence[Sequence[str]] | None = None) -> dict:
        """Decode-time biases chosen on the dev pages with the model being trained (one pass of the model):
        the NER outside bias of ``outside_bias_grid`` (:func:`choose_outside_bias`, where the pages have
        entities), per-label section biases (:func:`choose_section_bias`, ``section_bias_rounds`` > 0, where they
        have sections) and, with ``section_once_candidates`` / ``section_required_candidates``, the
        one-section-a-page and at-least-one-a-page rules (:func:`choose_section_once`). They go into the model
        config (``ner_outside_bias``, ``section_label_bias``, ``section_once``, ``section_required``), which every
        later Tagger reads. Returns what was chosen and measured."""
        pages = list(pages if pages is not None else self.eval_dataset)
        tagger, outputs = self._run_tagger(lambda t: (t, model_outputs(t, pages)), outside_bias=0.0, section_bias={})
        return apply_calibration(tagger.model.config, tagger, outputs, outside_bias_grid, section_bias_rounds,
                                 section_once_candidates, section_required_candidates)

    def _dev_scores(self, pages: Sequence[Page]) -> tuple[dict, int]:
        """:func:`dev_scores` of the model as it is now over ``pages``, and how many passes it made."""
        def work(tagger):  # a model with repeat keys: its dev pages in blocks and each alone, as calibration does
            outputs = model_outputs(tagger, pages)
            return [p for block, _ in outputs for p in block], decode_all(tagger, outputs)

        scored, records = self._run_tagger(work)
        scores = dev_scores(scored, records, self.accelerator.unwrap_model(self.model).config.entity_types)
        return scores, len(scored) // max(1, len(pages))

    def average_checkpoints(self, last: int) -> dict:
        """After training: the weights of the last 2, 3, ... ``last`` epoch checkpoints of the output folder
        averaged (:func:`average_weights`), each average scored on the dev pages by ``metric_for_best_model``
        as every epoch was (no biases), and the model left with the best of these and of the epoch that
        training kept (an average only where it scores strictly higher). Returns what was measured; nothing
        is logged to the training history."""
        folders = complete_checkpoints(self.args.output_dir)[-last:]
        name = self.args.metric_for_best_model
        key = name[len("eval_"):] if name.startswith("eval_") else name
        kept = self.state.best_metric
        result = {"average_checkpoints_dev": {}, "averaged_checkpoints": []}
        if len(folders) < 2 or kept is None:
            return result
        model = self.accelerator.unwrap_model(self.model)
        chosen = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the kept epoch
        pages = list(self.eval_dataset)
        best, best_value = None, kept
        for k in range(2, len(folders) + 1):
            weights = average_weights(folders[-k:])
            model.load_state_dict(weights)
            value = round(self._dev_scores(pages)[0]["flat"][key], 6)  # as each epoch's logged metric
            result["average_checkpoints_dev"][k] = value
            if value > best_value:
                best, best_value, chosen = k, value, weights
        if best != len(folders):  # the model holds the last average tried
            model.load_state_dict(chosen)
        if best is not None:
            result["averaged_checkpoints"] = [f.name for f in folders[-best:]]
        result["average_checkpoints_metric"] = name
        result["average_checkpoints_kept_epoch_dev"] = kept
        return result

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        pages = list(eval_dataset if eval_dataset is not None else self.eval_dataset)
        start = time.time()
        scores, passes = self._dev_scores(pages)
        self.last_eval = scores
        runtime = time.time() - start
        metrics = {f"{metric_key_prefix}_{k}": round(v, 6) for k, v in scores["flat"].items()}
        metrics[f"{metric_key_prefix}_passes"] = passes  # 2: in blocks and alone
        metrics[f"{metric_key_prefix}_runtime"] = round(runtime, 3)
        metrics[f"{metric_key_prefix}_pages_per_second"] = round(len(pages) / max(runtime, 1e-9), 3)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


def precision_flags(precision: str) -> dict[str, bool]:
    """TrainingArguments bf16/fp16 from the config's precision (``auto``: bf16 where the GPU has it)."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
