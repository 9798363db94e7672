"""Synthetic labelled pages for the training tests: made-up Arabic news articles (names, places,
organisations with their types) laid out as pages by the real page builder (``data.pages``).
Never the seed page, which is for evaluation only."""
from __future__ import annotations

import random
import re
from pathlib import Path

# Made-up news material: names, places and organisations with their types, and sentence patterns.
_PERS = ["محمد بن سلمان", "عبد الله العتيبي", "فاطمة الزهراني", "أحمد الشمري", "خالد الفيصل", "سارة القحطاني"]
_LOC = ["الرياض", "جدة", "القاهرة", "دبي", "عمان", "بيروت", "مكة المكرمة"]
_ORG = ["وزارة الصحة", "الأمم المتحدة", "جامعة الملك سعود", "البنك المركزي", "الهلال الأحمر"]
_PATTERNS = [
    "قال {PERS} في {LOC} إن {ORG} ستعقد اجتماعا موسعا الأسبوع المقبل لبحث الخطة الجديدة.",
    "أعلنت {ORG} اليوم عن إطلاق برنامج جديد في {LOC} بحضور {PERS} وعدد من المسؤولين.",
    "وأكد {PERS} أن التعاون مع {ORG} سيستمر خلال العام الحالي في مدينة {LOC}.",
    "وشهدت {LOC} أمس افتتاح مقر جديد لـ {ORG} في حفل رسمي حضره المواطنون.",
    "وأوضح المتحدث أن الأعمال تسير وفق الجدول الزمني المحدد دون أي تأخير يذكر.",
    "ومن المتوقع أن تنتهي المرحلة الأولى من المشروع قبل نهاية العام المقبل.",
]
_TITLES = ["{ORG} تطلق مبادرة جديدة في {LOC}", "{PERS} يزور {LOC} لبحث التعاون", "افتتاح معرض الكتاب في {LOC}",
           "{ORG} تعلن نتائج العام", "اجتماع طارئ في {LOC} لمناقشة الأوضاع"]


def _fill(pattern: str, rng: random.Random):
    from data.schema import Span

    text, ents, pos = "", [], 0
    for m in re.finditer(r"\{(PERS|LOC|ORG)\}", pattern):
        text += pattern[pos:m.start()]
        name = rng.choice({"PERS": _PERS, "LOC": _LOC, "ORG": _ORG}[m.group(1)])
        ents.append(Span(m.group(1), len(text), len(text) + len(name)))
        text += name
        pos = m.end()
    return text + pattern[pos:], ents


def synthetic_pages(n: int, seed: int = 0, which: str = "train", min_paragraphs: int = 2,
                    max_paragraphs: int = 5) -> list:
    """``n`` labelled pages (sections and entities) built by the page builder around made-up articles."""
    from data.pages import Article, build_pages

    rng = random.Random(seed)
    arts = []
    for k in range(max(n, 6)):
        title, tents = _fill(rng.choice(_TITLES), rng)
        paras, pents = [], []
        for _ in range(rng.randint(min_paragraphs, max_paragraphs)):
            sents = [_fill(rng.choice(_PATTERNS), rng) for _ in range(rng.randint(1, 3))]
            text, es = "", []
            for s, e in sents:
                off = len(text) + 1 if text else 0
                es += [type(x)(x.label, x.start + off, x.end + off) for x in e]
                text = f"{text} {s}" if text else s
            paras.append(text)
            pents.append(es)
        arts.append(Article(id=f"syn-{seed}-{k}", title=title, paragraphs=paras, para_entities=pents,
                            title_entities=tents, annotate="all"))
    return build_pages(arts[:n], arts, rng, which=which, id_prefix=f"syn{seed}-")


def write_pages(path: Path, pages) -> Path:
    from data.schema import write_jsonl

    write_jsonl(path, pages)
    return path


TINY_OVERRIDES = [
    "model.hidden_size=64", "model.num_hidden_layers=2", "model.num_attention_heads=2", "model.intermediate_size=128",
    "model.window_length=64", "model.stride=16", "model.line_hidden_size=32", "model.dropout=0.0",
    "tokenizer.vocab_size=600", "tokenizer.min_frequency=1",
    "training.learning_rate=3e-3", "training.warmup_steps=0", "training.per_device_train_batch_size=4",
    "training.logging_steps=5", "training.report_to=none", "training.precision=fp32",
]


def tiny_config(tmp: Path, train: Path, dev: Path) -> Path:
    cfg = tmp / "tiny.yaml"
    cfg.write_text(f"""output_dir: {tmp / 'model'}
data:
  train:
    - {{kind: pages, paths: [{train}]}}
  dev:
    - {{kind: pages, paths: [{dev}]}}
training:
  num_train_epochs: 3
""", encoding="utf-8")
    return cfg


def fit_steps(model, batch: dict, steps: int, lr: float, loss: str = "loss") -> list[float]:
    """``steps`` AdamW steps of ``model`` on one batch; the chosen loss (an output field) per step."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    out = []
    for _ in range(steps):
        res = model(**batch)
        res.loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(float(getattr(res, loss).detach()))
    return out


def padded_ids(model, seed: int, lengths: list[int], width: int):
    """Random subword ids for ``model``'s encoder, one row per length, padded to ``width`` (pad id 0),
    and their attention mask."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, model.config.encoder_config.vocab_size, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask
