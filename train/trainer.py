"""The HF Trainer, with dev evaluation that runs the real inference code.

``evaluate`` tags the dev pages with :class:`infer.tagger.Tagger` wrapped around the in-memory model
and scores the output records with :mod:`train.metrics`, so a dev score is exactly what
``python -m infer`` would produce with this model. Every rank tags all dev pages (they are few), so
every rank sees the same metrics and picks the same best checkpoint.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

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


class JointTrainer(Trainer):
    """``eval_dataset`` is a list of gold :class:`Page` objects, not features."""

    def __init__(self, *args, eval_batch_tokens: int = 16384, lexical_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_batch_tokens = eval_batch_tokens
        self.lexical_lr_multiplier = lexical_lr_multiplier
        self.last_eval: dict | None = None

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
                groups.setdefault((name in decay, name.startswith("lexical")), []).append(p)
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

    def tag(self, pages: Sequence[Page]) -> list[dict]:
        """Tagger records for ``pages`` from the model being trained (left in training mode after)."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        param = next(model.parameters())
        tagger = Tagger(model, self.processing_class, device=param.device, dtype=param.dtype,
                        batch_tokens=self.eval_batch_tokens)
        try:
            with self.accelerator.autocast():
                return list(tagger.tag(pages))
        finally:
            model.train(was_training)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        pages = list(eval_dataset if eval_dataset is not None else self.eval_dataset)
        start = time.time()
        records = self.tag(pages)
        scores = dev_scores(pages, records, self.accelerator.unwrap_model(self.model).config.entity_types)
        self.last_eval = scores
        runtime = time.time() - start
        metrics = {f"{metric_key_prefix}_{k}": round(v, 6) for k, v in scores["flat"].items()}
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
