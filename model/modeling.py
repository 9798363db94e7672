"""The joint network: any HF encoder, a word-level NER head and a line-level section head.

The encoder runs on windows (see ``data.features``); words take their first subword's state from
the window that owns them; lines are pooled from their words (``line_pooling``); a bidirectional GRU runs over all the
lines of a page (linear in the number of lines) and predicts B-/I- section tags.
Loss = NER + lambda * section, each masked where its labels are missing (label -100).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from data.labels import SECTION_TAGS
from model.crf import LinearChainCRF, check_outside_bias, check_section_bias, check_section_once, check_section_required


# How a line's words become the section layer's input: "mean" of the word states (the config's default,
# so models saved before this option load unchanged; new trainings use the second),
# or that mean, the line's first word state (header words such as "المصدر:" come first) and
# log(1 + word count) (titles are short, bodies long; a mean alone hides the length).
LINE_POOLINGS = ("mean", "mean+first+length")
CLUSTERS_FILE = "word_clusters.json"
GAZETTEER_FILE = "word_gazetteer.json"


def load_word_clusters(name_or_path, sizes: list[int]) -> dict[str, list[int]]:
    """The word -> cluster map saved beside a model's weights (a folder or a hub name), checked against
    the config's cluster sizes; a missing or broken file is an error naming it."""
    import json

    from transformers.utils import cached_file

    path = cached_file(str(name_or_path), CLUSTERS_FILE, _raise_exceptions_for_missing_entries=False)
    if path is None:
        raise OSError(f"{name_or_path}: the model reads word clusters (config.lexical_clusters) but has no "
                      f"{CLUSTERS_FILE}")
    return read_word_clusters(path, sizes)[1]


def read_word_clusters(path, sizes: list[int] | None = None) -> tuple[list[int], dict[str, list[int]]]:
    """``(sizes, word -> cluster ids)`` from a :data:`CLUSTERS_FILE`, checked (against ``sizes`` when
    given); a broken file is a ValueError naming it, a missing one an OSError."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        words, found = data["words"], list(data.get("sizes") or [])
        if sizes is not None and found != list(sizes):
            raise ValueError(f"cluster sizes {data.get('sizes')} differ from the config's {list(sizes)}")
        if not isinstance(words, dict) or any(len(v) != len(found) for v in words.values()):
            raise ValueError(f"'words' must map each word to {len(found)} cluster ids")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a word-cluster file: {err}") from None
    return found, words


def load_word_gazetteer(name_or_path) -> dict[str, str]:
    """The word -> gazetteer code map saved beside a model's weights (a folder or a hub name); a missing
    or broken file is an error naming it."""
    from transformers.utils import cached_file

    path = cached_file(str(name_or_path), GAZETTEER_FILE, _raise_exceptions_for_missing_entries=False)
    if path is None:
        raise OSError(f"{name_or_path}: the model reads a silver gazetteer (config.lexical_gazetteer) but has no "
                      f"{GAZETTEER_FILE}")
    return read_gazetteer(path)


def read_gazetteer(path) -> dict[str, str]:
    """word -> code of a gazetteer file (``python -m train.gazetteer``'s ``gazetteer.json`` or a model's
    :data:`GAZETTEER_FILE`); a missing file is an OSError, a broken one a ValueError, each naming it."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        words = data["words"]
        if not isinstance(words, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                  for k, v in words.items()):
            raise ValueError("'words' must map each word to a non-empty code string")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a gazetteer file: {err}") from None
    return words


class JointConfig(PreTrainedConfig):
    """Holds the encoder's config, both label maps (NER tags in ``id2label``, section tags in
    ``section_labels``) and the windowing the model was trained with."""

    model_type = "arabic-page-joint"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    def __init__(self, encoder=None, section_labels=None, section_loss_weight: float = 1.0,
                 line_hidden_size: int = 128, line_layers: int = 1, classifier_dropout: float = 0.1,
                 window_length: int = 512, stride: int = 128, lexical_buckets: int = 0,
                 lexical_dim: int = 64, lexical_window: int = 0, use_crf: bool = False,
                 line_pooling: str = "mean", lexical_tags: bool = False, line_buckets: int = 0,
                 line_feature_dim: int = 32, section_crf: bool = False, line_tags: bool = False,
                 lexical_clusters: list[int] | None = None, line_topic: bool = False,
                 section_once: list[str] | None = None, line_clusters: int = 0, ner_outside_bias: float = 0.0,
                 section_label_bias: dict[str, float] | None = None, line_repeats: int = 0,
                 line_bare_words: bool = False, line_blocks: bool = False, lexical_gazetteer: bool = False,
                 line_gazetteer: bool = False, section_required: list[str] | None = None,
                 line_heads: bool = False, **kwargs):
        if line_pooling not in LINE_POOLINGS:
            raise ValueError(f"line_pooling {line_pooling!r}: use one of {', '.join(LINE_POOLINGS)}")
        if isinstance(encoder, PreTrainedConfig):
            encoder = encoder.to_dict()
        self.encoder = encoder
        self.section_labels = list(section_labels or SECTION_TAGS.tags)
        self.section_loss_weight = section_loss_weight
        self.line_hidden_size = line_hidden_size
        self.line_layers = line_layers
        self.classifier_dropout = classifier_dropout
        self.window_length = window_length
        self.stride = stride
        self.lexical_buckets = lexical_buckets
        self.lexical_dim = lexical_dim
        self.lexical_window = lexical_window
        self.use_crf = use_crf
        self.line_pooling = line_pooling
        # A linear tag score per lexical feature, added to the NER logits: a CRF's unary weights,
        # fitted before training (train.lexical_tags) and then kept fixed.
        self.lexical_tags = bool(lexical_tags)
        # Hashed layout features of each line and its neighbours (data.features.line_feature_keys),
        # embedded and given to the section BiGRU beside the pooled word states.
        self.line_buckets = line_buckets
        self.line_feature_dim = line_feature_dim
        # A linear section-tag score per line feature, added to the section logits: a line CRF's state
        # weights, fitted before training (train.lexical.fit_line_crf) and then kept fixed.
        self.line_tags = bool(line_tags)
        # Topic keys among the line features (data.features.line_topic_keys): what the line shares with
        # the rest of the page.
        self.line_topic = bool(line_topic)
        # The letters of each line's first two and last words, brackets and punctuation off, among its line
        # features (data.features._bare): `[واس]` is keyed as `(واس)` is.
        self.line_bare_words = bool(line_bare_words)
        # Where each line sits among the page's runs of prose, and the short line above it that may head
        # it (data.features.line_block_keys): a teaser's paragraphs under "إقرأ أيضاً:", after the body.
        self.line_blocks = bool(line_blocks)
        # How a line opens among its line features (data.features.line_head_keys): the Unicode class of its
        # first mark, and where a short head before ":" or "|" ends.
        self.line_heads = bool(line_heads)
        # The clusters (this size, one of lexical_clusters) of a short line's words among its line features
        # (data.features.line_cluster_keys).
        self.line_clusters = int(line_clusters or 0)
        # Repeat keys among the line features (data.features.line_repeats): how many pages of a group of
        # this many pages tagged together have the line (furniture repeats, an article's lines seldom); 0: none.
        self.line_repeats = int(line_repeats or 0)
        # Word clusters of static word vectors at these granularities, as extra lexical keys
        # (data.features.PageEncoder); the word -> cluster map is saved beside the weights (CLUSTERS_FILE).
        self.lexical_clusters = list(lexical_clusters) if lexical_clusters else None
        # A silver gazetteer code per word (train.gazetteer: what a CRF tags the word as in unlabelled news) as
        # one more lexical key; the word -> code map is saved beside the weights (GAZETTEER_FILE).
        self.lexical_gazetteer = bool(lexical_gazetteer)
        # What that gazetteer says of a short line's words (each word's type and band, and the count of its
        # names) among its line features (data.features.line_gazetteer_keys); needs lexical_gazetteer.
        self.line_gazetteer = bool(line_gazetteer)
        if self.line_gazetteer and not (self.lexical_gazetteer and self.line_buckets):
            raise ValueError("line_gazetteer: the line keys read the silver gazetteer; set lexical_gazetteer and "
                             "line_buckets too")
        # A linear-chain CRF over each page's B-/I- section tags (Viterbi over the lines at inference).
        self.section_crf = bool(section_crf)
        # Section labels that a page has at most one section of (e.g. [title]): the Tagger's Viterbi over
        # the lines keeps to it (LinearChainCRF.viterbi_once).
        self.section_once = check_section_once(section_once) or None
        # Section labels that a page with lines has at least one section of (e.g. [body]: the article), kept
        # the same way; chosen on dev after training (training.section_required_candidates); None: no rule.
        self.section_required = check_section_required(section_required) or None
        # Subtracted from the log-probability of the NER tag O before decoding (Tagger): > 0 trades
        # precision for recall. Chosen on dev after training (training.outside_bias_grid); 0: none.
        self.ner_outside_bias = check_outside_bias(ner_outside_bias)
        # Added to each section label's log-probabilities before the section decoding (Tagger), e.g.
        # {"title": -1.5}; chosen on dev after training (training.section_bias_rounds); None: none.
        self.section_label_bias = check_section_bias(section_label_bias) or None
        super().__init__(**kwargs)

    @property
    def encoder_config(self) -> PreTrainedConfig:
        enc = self.encoder
        if isinstance(enc, PreTrainedConfig):
            return enc
        enc = dict(enc or {"model_type": "bert"})
        return AutoConfig.for_model(enc.pop("model_type", "bert"), **enc)

    @property
    def entity_types(self) -> list[str]:
        tags = [self.id2label[i] for i in range(len(self.id2label))]
        return list(dict.fromkeys(t[2:] for t in tags if t != "O"))


@dataclass
class JointOutput(ModelOutput):
    loss: torch.Tensor | None = None
    ner_loss: torch.Tensor | None = None
    section_loss: torch.Tensor | None = None
    ner_logits: torch.Tensor | None = None
    section_logits: torch.Tensor | None = None


class JointModel(PreTrainedModel):
    config_class = JointConfig
    base_model_prefix = "encoder"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: JointConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        enc_cfg = config.encoder_config
        self.encoder = encoder if encoder is not None else AutoModel.from_config(
            enc_cfg, attn_implementation=getattr(config, "_attn_implementation", None) or "sdpa")
        hidden = enc_cfg.hidden_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.ner_head = nn.Linear(hidden, config.num_labels)
        if config.lexical_buckets:
            # Hashed lexical features (data.features.lexical_keys), summed and added to word states.
            self.lexical = nn.EmbeddingBag(config.lexical_buckets, config.lexical_dim, mode="sum", padding_idx=0)
            self.lexical_proj = nn.Linear(config.lexical_dim, hidden)
            if getattr(config, "lexical_tags", False):
                self.lexical_tag_scores = nn.EmbeddingBag(config.lexical_buckets, config.num_labels, mode="sum",
                                                          padding_idx=0)
        self.crf = LinearChainCRF(config.num_labels) if config.use_crf else None
        self.section_chain = (LinearChainCRF(len(config.section_labels)) if getattr(config, "section_crf", False)
                              else None)
        line_in = hidden if config.line_pooling == "mean" else 2 * hidden + 1
        if getattr(config, "line_buckets", 0):
            self.line_features = nn.EmbeddingBag(config.line_buckets, config.line_feature_dim, mode="sum",
                                                 padding_idx=0)
            line_in += config.line_feature_dim
            if getattr(config, "line_tags", False):
                self.line_tag_scores = nn.EmbeddingBag(config.line_buckets, len(config.section_labels), mode="sum",
                                                       padding_idx=0)
        self.line_rnn = nn.GRU(line_in, config.line_hidden_size, num_layers=config.line_layers,
                               batch_first=True, bidirectional=True)
        self.section_head = nn.Linear(2 * config.line_hidden_size, len(config.section_labels))
        self.post_init()
        for name in ("lexical_tag_scores", "line_tag_scores"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)  # no prior until fitted

    # -- the word -> cluster map of config.lexical_clusters travels with the weights ----------
    word_clusters: dict[str, list[int]] | None = None
    # -- and so does the word -> code map of config.lexical_gazetteer ---------------------------------
    word_gazetteer: dict[str, str] | None = None

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        is_main = kwargs.get("is_main_process", args[0] if args else True)
        if not is_main:
            return
        import json
        from pathlib import Path

        for name, data in ((CLUSTERS_FILE, {"sizes": self.config.lexical_clusters, "words": self.word_clusters}
                            if self.word_clusters else None),
                           (GAZETTEER_FILE, {"words": self.word_gazetteer} if self.word_gazetteer else None)):
            if data is None:
                continue
            path = Path(save_directory) / name
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
            tmp.replace(path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if getattr(model.config, "lexical_clusters", None):
            model.word_clusters = load_word_clusters(pretrained_model_name_or_path, model.config.lexical_clusters)
        if getattr(model.config, "lexical_gazetteer", False):
            model.word_gazetteer = load_word_gazetteer(pretrained_model_name_or_path)
        return model

    def _init_weights(self, module):
        super()._init_weights(module)
        if module in self.encoder.modules() and hasattr(self.encoder, "_init_weights"):
            self.encoder._init_weights(module)

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, ner_tags: list[str], **config_kwargs) -> "JointModel":
        """A new joint model around a pretrained encoder (hub name or local folder)."""
        encoder = AutoModel.from_pretrained(encoder_name_or_path, attn_implementation="sdpa")
        config = JointConfig(encoder=encoder.config.to_dict(), id2label=dict(enumerate(ner_tags)),
                             label2id={t: i for i, t in enumerate(ner_tags)}, **config_kwargs)
        return cls(config, encoder=encoder)

    # -- the pieces the Tagger calls on chunks of a long page --------------------------------
    def word_states(self, input_ids, attention_mask, word_index) -> torch.Tensor:
        """States of each word's first subword, taken from the window that owns the word."""
        hidden = self.encode_windows(input_ids, attention_mask)
        return hidden.reshape(-1, hidden.shape[-1]).index_select(0, word_index)

    def encode_windows(self, input_ids, attention_mask, min_saving: float = 0.15) -> torch.Tensor:
        """The encoder over right-padded windows. A training batch mixes full windows with pages'
        short last windows; when running the shorter ones as a second, narrower batch saves at
        least ``min_saving`` of the positions, the encoder runs twice. Same result, less padding."""
        n, width = input_ids.shape
        if n > 1 and min_saving < 1:
            lengths = attention_mask.sum(1)
            order = torch.argsort(lengths, descending=True, stable=True)
            ls = lengths[order].tolist()
            cost = [ls[0] * k + ls[k] * (n - k) for k in range(1, n)]
            k = min(range(len(cost)), key=cost.__getitem__) + 1
            if cost[k - 1] <= (1 - min_saving) * n * width:
                parts = []
                for rows in (order[:k], order[k:]):
                    w = int(lengths[rows[0]])
                    h = self.encoder(input_ids=input_ids[rows, :w], attention_mask=attention_mask[rows, :w]).last_hidden_state
                    parts.append(nn.functional.pad(h, (0, 0, 0, width - w)))
                return torch.cat(parts).index_select(0, torch.argsort(order))
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def add_lexical(self, words: torch.Tensor, lex_ids: torch.Tensor | None) -> torch.Tensor:
        """Word states plus the projected lexical embedding (when the model has one)."""
        if lex_ids is None or not self.config.lexical_buckets:
            return words
        return words + self.lexical_proj(self.lexical(lex_ids)).to(words.dtype)

    def ner_logits(self, words: torch.Tensor, lex_ids: torch.Tensor | None = None,
                   lex_prior: torch.Tensor | None = None) -> torch.Tensor:
        """NER tag scores of word states (plus the lexical tag scores, when the model has them).
        ``lex_prior``: per-word tag scores given by the training data in place of the model's own table
        (out-of-fold scores, ``training.lexical_tags_folds``); inference never passes it."""
        logits = self.ner_head(self.dropout(words))
        if lex_prior is not None:
            logits = logits + lex_prior.to(logits.dtype)
        elif lex_ids is not None and hasattr(self, "lexical_tag_scores"):
            logits = logits + self.lexical_tag_scores(lex_ids).to(logits.dtype)
        return logits

    @staticmethod
    def line_sums(words: torch.Tensor, word_line: torch.Tensor, n_lines: int):
        """Sum and count of word states per line (pooled across windows and chunks)."""
        sums = words.new_zeros(n_lines, words.shape[-1]).index_add_(0, word_line, words)
        counts = words.new_zeros(n_lines).index_add_(0, word_line, torch.ones_like(word_line, dtype=words.dtype))
        return sums, counts

    @staticmethod
    def line_firsts(words: torch.Tensor, word_line: torch.Tensor, n_lines: int) -> torch.Tensor:
        """The state of each line's first word (zeros for a line without words)."""
        order = torch.arange(len(word_line), device=words.device)
        first = torch.full((n_lines,), len(word_line), dtype=torch.long, device=words.device)
        first = first.scatter_reduce(0, word_line, order, reduce="amin", include_self=True)
        return torch.cat([words, words.new_zeros(1, words.shape[-1])]).index_select(0, first)

    def pool_lines(self, sums: torch.Tensor, counts: torch.Tensor, firsts: torch.Tensor | None = None) -> torch.Tensor:
        """The section layer's input per line, from the pooled sums, word counts and first-word states."""
        mean = sums / counts.clamp(min=1).unsqueeze(-1)
        if self.config.line_pooling == "mean":
            return mean
        length = torch.log1p(counts).unsqueeze(-1) / 4
        return torch.cat([mean, firsts if firsts is not None else torch.zeros_like(mean), length.to(mean.dtype)], -1)

    def section_logits(self, line_vectors: torch.Tensor, line_page: torch.Tensor, line_pos: torch.Tensor,
                       line_ids: torch.Tensor | None = None, line_prior: torch.Tensor | None = None) -> torch.Tensor:
        """B-/I- section logits for every line; the GRU runs over each page's lines in order
        (with each line's layout features beside its vector, when the model has them). ``line_prior``:
        per-line section scores given by the training data in place of the line tag scores (out-of-fold
        scores, ``training.line_tags_folds``); inference never passes it."""
        if hasattr(self, "line_features"):
            if line_ids is None:
                raise ValueError("this model reads line features (config.line_buckets): pass line_ids, from a "
                                 "PageEncoder made with PageEncoder.for_model(tokenizer, model)")
            line_vectors = torch.cat([line_vectors, self.line_features(line_ids).to(line_vectors.dtype)], -1)
        n_pages = int(line_page.max()) + 1 if len(line_page) else 0
        lengths = torch.bincount(line_page, minlength=n_pages)
        width = int(lengths.max()) if n_pages else 0
        grid = line_vectors.new_zeros(n_pages, width, line_vectors.shape[-1])
        grid[line_page, line_pos] = line_vectors
        packed = nn.utils.rnn.pack_padded_sequence(grid, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.line_rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=width)
        logits = self.section_head(self.dropout(out[line_page, line_pos]))
        if line_prior is not None:
            logits = logits + line_prior.to(logits.dtype)
        elif hasattr(self, "line_tag_scores"):
            logits = logits + self.line_tag_scores(line_ids).to(logits.dtype)
        return logits

    def forward(self, input_ids, attention_mask, word_index, word_line, line_page, line_pos,
                lex_ids=None, line_ids=None, ner_labels=None, section_labels=None, lex_prior=None,
                line_prior=None, **kwargs) -> JointOutput:
        words = self.add_lexical(self.word_states(input_ids, attention_mask, word_index), lex_ids)
        ner = self.ner_logits(words, lex_ids, lex_prior)
        sums, counts = self.line_sums(words, word_line, len(line_page))
        firsts = self.line_firsts(words, word_line, len(line_page))
        sec = self.section_logits(self.pool_lines(sums, counts, firsts), line_page, line_pos, line_ids, line_prior)
        loss = ner_loss = sec_loss = None
        if ner_labels is not None or section_labels is not None:
            if self.crf is not None and ner_labels is not None:
                # a chain per line, as the lexical CRF fit and the Tagger's Viterbi (entities never cross lines)
                ner_loss = self.crf.nll(ner, ner_labels, word_line)
            else:
                ner_loss = _masked_ce(ner, ner_labels)
            if self.section_chain is not None and section_labels is not None:
                sec_loss = self.section_chain.nll(sec, section_labels, line_page)
            else:
                sec_loss = _masked_ce(sec, section_labels)
            loss = ner_loss + self.config.section_loss_weight * sec_loss
        return JointOutput(loss=loss, ner_loss=ner_loss, section_loss=sec_loss, ner_logits=ner, section_logits=sec)


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy over labelled units; exactly zero (and zero gradient) when none is labelled."""
    if labels is None:
        return logits.sum() * 0.0
    total = nn.functional.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
    return total / (labels != -100).sum().clamp(min=1)


AutoConfig.register(JointConfig.model_type, JointConfig)
AutoModel.register(JointConfig, JointModel)
