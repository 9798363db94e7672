"""A WordPiece vocabulary trained from scratch with ``tokenizers`` on the model's view of the text,
wrapped as a fast BERT tokenizer so that it saves and loads like any hub tokenizer."""
from __future__ import annotations

from typing import Iterable, Iterator

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizerFast

from data.text import normalize, words

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _normalised(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        yield " ".join(n for n in (normalize(text[s:e]) for s, e in words(text).tolist()) if n)


def train_wordpiece(texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2,
                    model_max_length: int = 512) -> BertTokenizerFast:
    """Train on ``texts`` (raw page text; words are normalised as the model will see them)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(_normalised(texts), trainer=trainer)
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", do_lower_case=False,
                             tokenize_chinese_chars=False, strip_accents=False,
                             model_max_length=model_max_length)
