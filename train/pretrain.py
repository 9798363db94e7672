"""``python -m train.pretrain CONFIG.yaml [key=value ...]``: masked-language-model pre-training.

Continues an existing encoder (``model.encoder``: a hub name or folder) or builds a BERT from scratch
with a new WordPiece vocabulary, on raw text: SaudiNewsNet zips/JSON/folders (the reserved evaluation
days are never read), .txt files and page JSONL. Text is cut into subwords exactly as the joint model
sees it (``PageEncoder``: words normalised, then split into subwords), packed into blocks of
``data.max_length`` and masked by transformers' ``DataCollatorForLanguageModeling``.

The output folder is an encoder (``save_pretrained`` + tokenizer) for ``model.encoder: PATH`` in a
``python -m train`` config. A run continues from the last checkpoint in its output folder.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from transformers import (AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM,
                          DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed)

from data.features import PageEncoder
from data.schema import Page
from model import train_wordpiece
from train.__main__ import last_complete_checkpoint, publish
from train.config import ConfigError, TokenizerConfig, help_text, load_config, looks_local, to_dict
from train.data import texts_of
from train.report import write_json, write_text
from train.trainer import precision_flags


@dataclass
class EncoderConfig:
    encoder: str | None = field(default=None, metadata={
        "help": "encoder to continue (hub name or folder); default: a new BERT with the sizes below"})
    hidden_size: int = field(default=256, metadata={"help": "from scratch: hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "from scratch: layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "from scratch: attention heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "from scratch: feed-forward size"})
    dropout: float = field(default=0.1, metadata={"help": "from scratch: dropout"})
    max_position_embeddings: int = field(default=512, metadata={
        "help": "from scratch: positions (at least the joint model's window_length)"})


@dataclass
class TextConfig:
    text: list[str] = field(default_factory=list, metadata={
        "help": "news zips/JSON/folders, .txt files or folders of them, page JSONL"})
    max_texts: int | None = field(default=None, metadata={"help": "texts read, at most"})
    max_length: int = field(default=128, metadata={"help": "subwords per example, [CLS]/[SEP] included"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of subwords masked"})
    eval_blocks: int = field(default=200, metadata={"help": "blocks held out for the eval loss (the last ones)"})


@dataclass
class PretrainTraining:
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (overrides epochs)"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: float = field(default=0.06, metadata={"help": "warmup steps, or a ratio if < 1"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "blocks per device and step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps accumulated per update"})
    precision: str = field(default="auto", metadata={"help": "auto | fp32 | bf16 | fp16"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    logging_steps: int = field(default=50, metadata={"help": "log every N steps"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    report_to: str = field(default="auto", metadata={"help": "auto (tensorboard when installed) or none"})
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "other TrainingArguments fields"})


@dataclass
class PretrainConfig:
    output_dir: str = field(metadata={"help": "encoder folder; checkpoints inside; a run resumes from them"})
    model: EncoderConfig = field(default_factory=EncoderConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: TextConfig = field(default_factory=TextConfig)
    training: PretrainTraining = field(default_factory=PretrainTraining)


def parse(argv: list[str]) -> PretrainConfig:
    if not argv:
        raise ConfigError("no config file given\nusage: python -m train.pretrain CONFIG.yaml [key=value ...]")
    cfg = load_config(PretrainConfig, argv[0], argv[1:])
    if not cfg.data.text:
        raise ConfigError("data.text: no text given")
    for j, p in enumerate(cfg.data.text + cfg.tokenizer.extra_text):
        if not Path(p).exists():
            key = f"data.text[{j}]" if j < len(cfg.data.text) else f"tokenizer.extra_text[{j - len(cfg.data.text)}]"
            raise ConfigError(f"{key}: path {p!r} does not exist")
    if cfg.training.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"training.precision: {cfg.training.precision!r} is not one of auto, fp32, bf16, fp16")
    for key, name in (("model.encoder", cfg.model.encoder), ("tokenizer.name_or_path", cfg.tokenizer.name_or_path)):
        if name and looks_local(name) and not Path(name).expanduser().is_dir():
            raise ConfigError(f"{key}: folder {name!r} does not exist")
    if cfg.data.max_length < 8:
        raise ConfigError("data.max_length: must be at least 8")
    return cfg


def read_texts(cfg: PretrainConfig) -> list[str]:
    texts: list[str] = []
    for p in cfg.data.text:
        for t in texts_of(Path(p)):
            texts.append(t)
            if cfg.data.max_texts is not None and len(texts) >= cfg.data.max_texts:
                return texts
    return texts


def blocks(texts: list[str], tokenizer, max_length: int) -> list[dict]:
    """Subwords of every text in the joint model's view, concatenated and cut into full blocks."""
    enc = PageEncoder(tokenizer, max_length=max_length)
    flat = [enc.encode(Page(id=i, text=t))["input_ids"] for i, t in enumerate(texts) if t.strip()]
    ids = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    body = max_length - 2
    n = len(ids) // body
    return [{"input_ids": [enc.cls_id, *ids[i * body:(i + 1) * body].tolist(), enc.sep_id]} for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__ + "\nOptions:\n" + "\n".join(help_text(PretrainConfig)))
        return 0
    try:
        cfg = parse(argv)
        t = cfg.training
        report_to = t.report_to if t.report_to != "auto" else (
            "tensorboard" if __import__("importlib").util.find_spec("tensorboard") else "none")
        kwargs = dict(output_dir=cfg.output_dir, num_train_epochs=t.num_train_epochs, max_steps=t.max_steps,
                      learning_rate=t.learning_rate, weight_decay=t.weight_decay, warmup_steps=t.warmup_steps,
                      per_device_train_batch_size=t.per_device_train_batch_size,
                      per_device_eval_batch_size=t.per_device_train_batch_size,
                      gradient_accumulation_steps=t.gradient_accumulation_steps, eval_strategy="epoch",
                      save_strategy="epoch", save_total_limit=t.save_total_limit, logging_steps=t.logging_steps,
                      logging_first_step=True, seed=t.seed, report_to=report_to,
                      include_num_input_tokens_seen="non_padding",
                      dataloader_pin_memory=torch.cuda.is_available(), **precision_flags(t.precision))
        if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            kwargs["use_cpu"] = True  # multi-CPU (gloo) DDP under torchrun
        kwargs.update(t.args)
        try:
            args = TrainingArguments(**kwargs)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"training: {err}") from None
        set_seed(t.seed)
        texts = read_texts(cfg)
        if not texts:
            raise ConfigError("data.text: no text found in the given paths")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = last_complete_checkpoint(out)
    m = cfg.model
    if checkpoint:
        print(f"resuming from {checkpoint}", file=sys.stderr)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    elif cfg.tokenizer.name_or_path or m.encoder:
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer.name_or_path or m.encoder)
    else:
        shared = out / ".tokenizer"
        with args.main_process_first(desc="WordPiece vocabulary"):
            if args.process_index == 0:
                tokenizer = train_wordpiece(texts[:cfg.tokenizer.max_texts] + [
                    x for p in cfg.tokenizer.extra_text for x in texts_of(Path(p))],
                    vocab_size=cfg.tokenizer.vocab_size, min_frequency=cfg.tokenizer.min_frequency)
                if args.world_size > 1:
                    tokenizer.save_pretrained(shared)
            else:
                tokenizer = AutoTokenizer.from_pretrained(shared)
    if m.encoder:
        model = AutoModelForMaskedLM.from_pretrained(m.encoder)
    else:
        model = BertForMaskedLM(BertConfig(
            vocab_size=len(tokenizer), hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers,
            num_attention_heads=m.num_attention_heads, intermediate_size=m.intermediate_size,
            hidden_dropout_prob=m.dropout, attention_probs_dropout_prob=m.dropout,
            max_position_embeddings=max(m.max_position_embeddings, cfg.data.max_length),
            pad_token_id=tokenizer.pad_token_id))
    t0 = time.time()
    data = blocks(texts, tokenizer, cfg.data.max_length)
    n_eval = min(cfg.data.eval_blocks, len(data) // 10)
    train_set, eval_set = data[:len(data) - n_eval], data[len(data) - n_eval:]
    if not train_set or not eval_set:
        print(f"error: data.text: only {len(data)} blocks of {cfg.data.max_length} subwords; give more text",
              file=sys.stderr)
        return 2
    print(f"{len(texts)} texts -> {len(train_set)} training and {len(eval_set)} eval blocks of "
          f"{cfg.data.max_length} subwords in {time.time() - t0:.0f}s", file=sys.stderr)

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=cfg.data.mlm_probability)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collator, processing_class=tokenizer)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    ev = trainer.evaluate()
    if trainer.is_world_process_zero():
        runtime = result.metrics.get("train_runtime", 0.0)
        tokens = trainer.state.num_input_tokens_seen
        metrics = {"train": {**result.metrics, "global_step": trainer.state.global_step,
                             "input_tokens_seen": tokens,
                             "train_tokens_per_second": round(tokens / runtime, 1) if runtime else None},
                   "eval": {**ev, "perplexity": math.exp(min(ev["eval_loss"], 50))},
                   "texts": len(texts), "blocks": {"train": len(train_set), "eval": len(eval_set)},
                   "measured": {"date": dt.date.today().isoformat(),
                                "machine": f"{platform.node()}, {os.cpu_count()} CPUs, {args.device}"}}
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".final-"))
        try:
            trainer.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_text(tmp / "config.yaml", yaml.safe_dump(to_dict(cfg), allow_unicode=True, sort_keys=False))
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "log_history.json", trainer.state.log_history)
            publish(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        print(f"done in {runtime:.0f}s; eval loss {ev['eval_loss']:.3f} (perplexity "
              f"{metrics['eval']['perplexity']:.1f}); wrote {out}", file=sys.stderr)
    trainer.accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
