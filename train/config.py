"""Run configuration: typed dataclasses read from YAML, with dotted ``key=value`` overrides.

Every option is a typed field with help text (``python -m train --help`` lists them). Reading is
strict: an unknown key, a value of the wrong type or a data path that does not exist raises
:class:`ConfigError` with a message that names the key, before any work starts.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class ConfigError(ValueError):
    """A bad configuration; the message names the key (``data.train[0].paths``)."""


# ------------------------------------------------------------------------------------------------
# The options


@dataclass
class SourceConfig:
    """One source of pages. ``pages``: page JSONL files; ``conll``: CoNLL files read as NER-only pages
    (one sentence per line); ``builder``: pages made on the fly by the page builder (``data.pages``)
    around CoNLL documents and/or SaudiNewsNet articles."""

    kind: Literal["pages", "conll", "builder"] = field(metadata={"help": "pages | conll | builder"})
    paths: list[str] = field(default_factory=list, metadata={
        "help": "pages: JSONL files; conll: CoNLL files; builder: CoNLL files used as labelled bodies"})
    news: list[str] = field(default_factory=list, metadata={
        "help": "builder: SaudiNewsNet zips/JSON/folders for bodies, teasers and related titles "
                "(the reserved evaluation days are always excluded)"})
    weight: float = field(default=1.0, metadata={
        "help": "copies of this source per epoch: 2 = every page twice, 0.5 = a random half"})
    count: int | None = field(default=None, metadata={
        "help": "pages to take (pages/conll: the first N; builder: pages to build, default 1000)"})
    part: Literal["all", "train", "dev"] = field(default="all", metadata={
        "help": "all, or the train/dev part: CoNLL documents in the last dev_fraction of a file are dev "
                "(the ANERcorp dev rule), news articles split by a hash of their URL"})
    dev_fraction: float = field(default=0.1, metadata={"help": "share of each CoNLL file used as dev"})
    sentences_per_doc: int = field(default=8, metadata={"help": "CoNLL sentences per document"})
    templates: Literal["train", "held_out"] = field(default="train", metadata={
        "help": "builder: template and wording half (held_out is never trained on)"})
    conll_fraction: float = field(default=0.5, metadata={
        "help": "builder: share of pages whose body is a CoNLL document when news is also given"})
    max_news: int | None = field(default=20000, metadata={"help": "builder: articles read from news, at most"})
    seed: int = field(default=13, metadata={"help": "builder: random seed of the pages"})
    augment: float = field(default=0.0, metadata={
        "help": "builder, train templates: share of furniture wordings made up by data.augment (bullets from "
                "whole symbol blocks, composed headers), never a held-out wording"})
    layouts: float = field(default=0.0, metadata={
        "help": "builder, train templates: share of pages whose parts come in a random order (data.pages.random_layout)"})
    nonce: float = field(default=0.0, metadata={
        "help": "builder, train templates: share of furniture wordings whose Arabic words are partly replaced by "
                "words of other articles' titles (data.augment.nonce_wording), never a held-out wording"})


@dataclass
class DataConfig:
    train: list[SourceConfig] = field(default_factory=list, metadata={"help": "training sources, mixed"})
    dev: list[SourceConfig] = field(default_factory=list, metadata={
        "help": "dev sources (evaluated each epoch with the Tagger; their weight is ignored)"})
    max_dev_pages: int | None = field(default=None, metadata={"help": "cap on dev pages (a random subset)"})


@dataclass
class TokenizerConfig:
    name_or_path: str | None = field(default=None, metadata={
        "help": "hub name or folder of a tokenizer; default: the encoder's own, or a new WordPiece from scratch"})
    vocab_size: int = field(default=8000, metadata={"help": "WordPiece vocabulary size (from scratch)"})
    min_frequency: int = field(default=2, metadata={"help": "WordPiece minimum pair frequency (from scratch)"})
    extra_text: list[str] = field(default_factory=list, metadata={
        "help": "more text for the vocabulary: news zips/JSON/folders, .txt files, page JSONL"})
    max_texts: int = field(default=50000, metadata={"help": "texts used to train the vocabulary, at most"})


@dataclass
class ModelConfig:
    encoder: str | None = field(default=None, metadata={
        "help": "pretrained encoder: hub name (aubmindlab/bert-base-arabertv02) or folder (train.pretrain "
                "output); default: a BERT built from scratch with the sizes below"})
    hidden_size: int = field(default=256, metadata={"help": "from scratch: hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "from scratch: layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "from scratch: attention heads"})
    intermediate_size: int = field(default=1024, metadata={"help": "from scratch: feed-forward size"})
    dropout: float = field(default=0.1, metadata={"help": "from scratch: encoder dropout"})
    window_length: int = field(default=256, metadata={"help": "subword window incl. [CLS]/[SEP]"})
    stride: int = field(default=64, metadata={"help": "subwords shared by neighbouring windows"})
    line_hidden_size: int = field(default=128, metadata={"help": "section BiGRU size"})
    line_layers: int = field(default=1, metadata={"help": "section BiGRU layers"})
    line_pooling: Literal["mean", "mean+first+length"] = field(default="mean", metadata={
        "help": "section layer input per line: mean word state, or mean + first word + log word count"})
    section_loss_weight: float = field(default=1.0, metadata={"help": "loss = ner + weight * section"})
    classifier_dropout: float = field(default=0.1, metadata={"help": "dropout before both heads"})
    lexical_buckets: int = field(default=0, metadata={"help": "hashed lexical word features (0: none)"})
    use_crf: bool = field(default=False, metadata={"help": "a linear-chain CRF over word tags (Viterbi at inference)"})
    section_crf: bool = field(default=False, metadata={
        "help": "a linear-chain CRF over each page's section tags (Viterbi over its lines at inference)"})
    section_once: list[str] | None = field(default=None, metadata={
        "help": "section labels that a page has at most one section of (e.g. [title, byline]): the Tagger's "
                "Viterbi over the lines keeps to it (inference only; saved in the model config)"})
    section_required: list[str] | None = field(default=None, metadata={
        "help": "section labels that a page with lines has at least one section of (e.g. [body]: the article): "
                "the Tagger's Viterbi over the lines keeps to it (inference only; saved in the model config)"})
    lexical_dim: int = field(default=64, metadata={"help": "size of the lexical feature embedding"})
    lexical_window: int = field(default=2, metadata={"help": "neighbour words on each side whose lexical features a word sees"})
    lexical_tags: bool = field(default=False, metadata={
        "help": "also a linear tag score per lexical feature (a CRF's unary weights), fitted before training "
                "and then kept fixed (train.lexical)"})
    line_buckets: int = field(default=0, metadata={
        "help": "hashed layout features of each line and its neighbours for the section layer (0: none)"})
    line_feature_dim: int = field(default=32, metadata={"help": "size of the line feature embedding"})
    line_topic: bool = field(default=False, metadata={
        "help": "also topic keys per line among the line features: how much of its content words the rest "
                "of the page shares, and the rank of its group of word-sharing lines "
                "(data.features.line_topic_keys); needs model.line_buckets"})
    line_bare_words: bool = field(default=False, metadata={
        "help": "also the letters of each line's first two and last words, brackets, quotes and punctuation off "
                "(data.features._bare), among the line features: [واس] is keyed as (واس) is; needs model.line_buckets"})
    line_blocks: bool = field(default=False, metadata={
        "help": "also block keys among the line features: the rank and length of the line's run of prose lines, "
                "whether it is before, within or after the largest run, and the bare words of the short line "
                "above it (data.features.line_block_keys); needs model.line_buckets"})
    line_heads: bool = field(default=False, metadata={
        "help": "also head keys among the line features: the Unicode class of the line's first mark, and where a "
                "short head before ':' or '|' ends and how many words follow it (data.features.line_head_keys); "
                "needs model.line_buckets"})
    line_gazetteer: bool = field(default=False, metadata={
        "help": "also what the silver gazetteer (model.lexical_gazetteer) says of each short line's words among the "
                "line features: each word's type and band, and how many of its words the news names "
                "(data.features.line_gazetteer_keys); needs model.line_buckets and model.lexical_gazetteer"})
    line_clusters: int = field(default=0, metadata={
        "help": "also the word clusters of this size (one of model.lexical_clusters) of each short line's words "
                "among the line features (data.features.line_cluster_keys; 0: none); needs model.line_buckets"})
    line_repeats: int = field(default=0, metadata={
        "help": "also repeat keys among the line features: how many pages of a group of this many pages tagged "
                "together (a Tagger block is cut into such groups; training pages in their source's order) have "
                "the line (data.features.line_repeats; 0: none); needs model.line_buckets"})
    line_tags: bool = field(default=False, metadata={
        "help": "also a linear section-tag score per line feature (a line CRF's state weights; its transitions "
                "go to model.section_crf's chain), fitted before training with sklearn-crfsuite "
                "(training.lexical_tags_c1 / _c2 / _iterations) and then kept fixed (train.lexical)"})
    lexical_vectors: str | None = field(default=None, metadata={
        "help": "word vectors (python -m train.embeddings OUT/vectors.kv) that initialise the lexical table"})
    lexical_clusters: list[int] | None = field(default=None, metadata={
        "help": "k-means clusters of model.lexical_vectors at these sizes (e.g. [64, 256, 1024]) as extra lexical "
                "keys of each word; the word -> cluster map is saved with the model"})
    lexical_gazetteer: str | None = field(default=None, metadata={
        "help": "a silver gazetteer (python -m train.gazetteer OUT/gazetteer.json): each word's code, what a CRF "
                "tags it as in unlabelled news, as one more lexical key; the word -> code map is saved with the model"})
    entity_types: list[str] | None = field(default=None, metadata={
        "help": "NER types; default: the types found in the training data"})


@dataclass
class TrainingConfig:
    num_train_epochs: float = field(default=3.0, metadata={"help": "epochs"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (overrides epochs)"})
    learning_rate: float = field(default=5e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: float = field(default=0.1, metadata={"help": "warmup: steps, or a ratio of all steps if < 1"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "pages per device and step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "steps accumulated per update"})
    eval_batch_tokens: int | None = field(default=None, metadata={
        "help": "Tagger token budget for dev evaluation (default: the Tagger's, 4096 on a CPU, 16384 on a GPU)"})
    lexical_tags_fit: Literal["softmax", "crf"] = field(default="softmax", metadata={
        "help": "how model.lexical_tags are fitted: softmax (per word, Adam) or crf (a linear-chain CRF, "
                "sklearn-crfsuite L-BFGS with L1 + L2; its transitions go to model.use_crf's head)"})
    lexical_tags_c1: float = field(default=0.1, metadata={
        "help": "L1 weight of the CRF fits (lexical, and line unless line_tags_c1 is set)"})
    lexical_tags_c2: float = field(default=0.1, metadata={
        "help": "L2 weight of the CRF fits (lexical, and line unless line_tags_c2 is set)"})
    lexical_tags_iterations: int = field(default=150, metadata={"help": "L-BFGS iterations of the CRF fits"})
    line_tags_c1: float | None = field(default=None, metadata={
        "help": "L1 weight of the line CRF fit (model.line_tags); default: lexical_tags_c1"})
    line_tags_c2: float | None = field(default=None, metadata={
        "help": "L2 weight of the line CRF fit (model.line_tags); default: lexical_tags_c2"})
    lexical_tags_folds: int = field(default=1, metadata={
        "help": "with lexical_tags_fit crf: K >= 2 fits, each without 1/K of the training material (split by the "
                "CoNLL sentences a page was made from); training words get the scores of the fit that never saw "
                "them, dev and inference the mean of the K fits (the CPU recipe lost 4.8 test F1 with 3). 1: one fit on everything"})
    line_tags_folds: int = field(default=1, metadata={
        "help": "with model.line_tags: K >= 2 line CRF fits, each without 1/K of the training pages; training pages "
                "get their lines' scores from the fit that never saw them, so the section layer learns to correct "
                "the line CRF's errors on unseen pages; dev and inference one more fit, on every page (the CPU recipe lost 1.6 "
                "held-out section macro-F1 with 5). 1: one fit on everything"})
    line_repeats_dropout: float = field(default=0.25, metadata={
        "help": "with model.line_repeats: the share of training pages encoded without repeat keys, as if tagged "
                "alone (what a lone page, or the seed page, looks like at inference)"})
    lexical_tags_epochs: int = field(default=4, metadata={
        "help": "epochs of the linear fit of model.lexical_tags over the training pages' labelled words"})
    lexical_tags_penalty: float = field(default=1e-3, metadata={
        "help": "squared-score penalty of that fit (what keeps rare features from memorising words)"})
    lexical_lr_multiplier: float = field(default=1.0, metadata={
        "help": "learning rate of the hashed lexical table, as a multiple of learning_rate"})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = field(default="auto", metadata={
        "help": "auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU"})
    metric_for_best_model: str = field(default="eval_combined_f1", metadata={
        "help": "dev metric that picks the best epoch: eval_entity_micro_f1, eval_section_macro_f1, "
                "eval_section_accuracy, eval_combined_f1 (mean of entity micro-F1 and section macro-F1), ..."})
    outside_bias_grid: list[float] | None = field(default=None, metadata={
        "help": "after training: NER outside biases (subtracted from the tag O's log-probability before decoding; "
                "> 0 trades precision for recall) tried on the dev pages with the kept model, the one with the best "
                "dev entity micro-F1 saved as the model config's ner_outside_bias (ties: the nearest 0); "
                "e.g. [0, 0.5, 1, 1.5]. null: 0, no tuning"})
    section_bias_rounds: int = field(default=0, metadata={
        "help": "after training: per-label section biases (added to a label's log-probabilities before the "
                "section decoding) chosen on the dev pages by this many rounds of coordinate ascent on section "
                "macro-F1 (steps -1, -0.5, +0.5, +1 per label), saved as the model config's section_label_bias. "
                "0: none"})
    section_once_candidates: list[list[str]] | None = field(default=None, metadata={
        "help": "after training, with the section biases: section_once rules (lists of section labels that a page "
                "has at most one section of; [] for none) tried on the dev pages, each with its own section biases, "
                "and the one with the best dev section macro-F1 saved as the model config's section_once (ties: "
                "fewer labels); e.g. [[], [title]]. null: model.section_once, not tuned"})
    section_required_candidates: list[list[str]] | None = field(default=None, metadata={
        "help": "the same for section_required rules (lists of section labels that a page has at least one section "
                "of), every pair with the section_once candidates tried; e.g. [[], [body]]. null: "
                "model.section_required, not tuned"})
    average_checkpoints: int = field(default=0, metadata={
        "help": "after training, before the biases: the weights of the last 2, 3, ... N epoch checkpoints averaged, "
                "each average scored on dev like an epoch (metric_for_best_model, no biases) and kept instead of "
                "the best epoch where it scores higher; save_total_limit is raised to N + 1 where lower. 0: off"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept (best and last)"})
    logging_steps: int = field(default=10, metadata={"help": "log every N steps"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "data loader workers"})
    report_to: str = field(default="auto", metadata={"help": "auto (tensorboard when installed), none, or a list"})
    window_stride: int | None = field(default=0, metadata={
        "help": "overlap of the training windows (0: none, the fastest; null: model.stride). Inference and "
                "evaluation always use model.stride, so every word there keeps context on both sides"})
    fast_dropout: bool = field(default=True, metadata={
        "help": "CPU training: dropout masks from numpy's PCG64 instead of torch's bernoulli_ (same law, "
                "about 3x cheaper; model.fast_dropout). No effect on GPU or at inference"})
    streams: int | None = field(default=None, metadata={
        "help": "CPU training in one process: 2 runs each step's two halves of pages side by side in two threads "
                "(same gradient; needs fast_dropout and fp32), 1 does not; null: 2 where torch has 2+ threads"})
    group_by_length: bool = field(default=True, metadata={"help": "batch pages of similar token counts"})
    args: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "any other transformers TrainingArguments field, passed through"})


@dataclass
class RunConfig:
    output_dir: str = field(metadata={"help": "model folder; checkpoints go inside, and a run resumes from them"})
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


# ------------------------------------------------------------------------------------------------
# Reading


def load_config(cls: type, path: str | Path | None, overrides: list[str] = ()) -> Any:
    """``cls`` from a YAML file plus ``key.sub=value`` overrides (values parsed as YAML)."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys")
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            parsed = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            parsed = value
        _set_dotted(raw, key.strip(), parsed)
    return build(cls, raw)


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {key!r}: {part!r} is not an index of the list {'.'.join(parts[:i])!r}")
            idx = int(part)
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if last:
            node[part] = value
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]


def build(cls: type, raw: Any, key: str = "") -> Any:
    """A dataclass from a mapping, checking every key and type."""
    where = key or "the config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in raw.items():
        name = f"{key}.{k}" if key else str(k)
        if k not in fields:
            raise ConfigError(f"unknown key {name!r}; known keys here: {', '.join(fields)}")
        kwargs[k] = coerce(hints[k], v, name)
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {(key + '.' if key else '') + missing[0]!r}")
    return cls(**kwargs)


def coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` as type ``tp`` (numbers written as strings such as ``5e-4`` are accepted)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(a, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and item is str:
            value = [value]  # a single path where a list is expected
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = float(value) if tp is float else int(value)
            except ValueError:
                pass
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float))
        if not ok or isinstance(value, bool):
            raise ConfigError(f"{key}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported option type {tp}")


# ------------------------------------------------------------------------------------------------
# Checks that need the file system


def looks_local(name: str) -> bool:
    """A model reference that must be a local folder (not a hub ``owner/name``)."""
    p = Path(name)
    return p.exists() or name.startswith((".", "/", "~")) or len(p.parts) > 2


def check_paths(cfg: RunConfig) -> None:
    """Every data path must exist; a local encoder or tokenizer folder too."""
    for split in ("train", "dev"):
        for i, src in enumerate(getattr(cfg.data, split)):
            for what in ("paths", "news"):
                for j, p in enumerate(getattr(src, what)):
                    if not Path(p).exists():
                        raise ConfigError(f"data.{split}[{i}].{what}[{j}]: path {p!r} does not exist")
            if not src.paths and not src.news:
                raise ConfigError(f"data.{split}[{i}]: give paths (or news, for a builder source)")
            if src.kind != "builder" and src.news:
                raise ConfigError(f"data.{split}[{i}].news: only a builder source takes news")
            for key in ("augment", "layouts", "nonce"):
                share = getattr(src, key)
                if not 0.0 <= share <= 1.0:
                    raise ConfigError(f"data.{split}[{i}].{key}: {share} is not a share between 0 and 1")
                if share and (split != "train" or src.kind != "builder" or src.templates != "train"):
                    raise ConfigError(f"data.{split}[{i}].{key}: only a training builder source on train templates takes it")
    for j, p in enumerate(cfg.tokenizer.extra_text):
        if not Path(p).exists():
            raise ConfigError(f"tokenizer.extra_text[{j}]: path {p!r} does not exist")
    for key, name in (("model.encoder", cfg.model.encoder), ("tokenizer.name_or_path", cfg.tokenizer.name_or_path)):
        if name and looks_local(name) and not Path(name).expanduser().is_dir():
            raise ConfigError(f"{key}: folder {name!r} does not exist")
    if cfg.model.lexical_vectors and not Path(cfg.model.lexical_vectors).exists():
        raise ConfigError(f"model.lexical_vectors: path {cfg.model.lexical_vectors!r} does not exist")
    if cfg.model.lexical_gazetteer and not Path(cfg.model.lexical_gazetteer).exists():
        raise ConfigError(f"model.lexical_gazetteer: path {cfg.model.lexical_gazetteer!r} does not exist")
    if not cfg.data.train:
        raise ConfigError("data.train: no training source given")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def help_text(cls: type, prefix: str = "") -> list[str]:
    """One line per option: dotted key, type, default, help."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += help_text(tp, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        tname = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        out.append(f"  {key}: {tname} = {default!r}\n      {f.metadata.get('help', '')}")
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out += help_text(typing.get_args(tp)[0], f"{key}[i].")
    return out
