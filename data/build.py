"""``python -m data.build``: labelled page JSONL (train/dev/test) from real article bodies.

Bodies are SaudiNewsNet articles (section labels only) and CoNLL documents (sections + entity gold
on the body lines). Teasers and related items are other real articles of the SAME split. The author,
dateline and wire lines that a SaudiNewsNet text keeps at its top or end are labelled ``byline`` (the
wire's end mark ``boilerplate``), not body (``news_paragraph_labels``).

Splits, so that no body, teaser or template leaks into the test:
- CoNLL ``--conll`` files: documents in the last 10% of a file's sentences (file order) go to dev,
  the rest to train (the ANERcorp dev rule). ``--test-conll`` files feed the test split only.
- News: the reserved days (``RESERVED_DAYS``) feed the test split only; the other days are split
  train/dev by a stable hash of the article URL (1 in 20 to dev).
- Furniture: train uses the train templates and wordings; test uses the held-out ones
  (``data.templates``). Dev uses the train half by default (``--dev-templates held_out`` to change),
  so that dev measures the same distribution that settings are tuned for, and test stays unseen.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from data.pages import Article, build_pages
from data.readers import (RESERVED_DAYS, ConllDocument, paragraphs, read_conll_documents, read_news)
from data.schema import Page, Span, write_jsonl

SPLITS = ("train", "dev", "test")
_SENTENCE_END = re.compile(r"(?<=[.!؟?])\s+")


# Lines that news sites keep inside an article's text but that are not its body (design: a byline is
# author, place, date, time). Near the top: "فايز الحسيكي – عين اليوم", "الرياض - واس", "محمود وهبي ـ جدة"
# (two short parts around a spaced dash) and the wire dateline "جدة 25 شوال 1436 هـ الموافق 10 أغسطس
# 2015 م واس". At the end: the wire's "// انتهى //" (an end mark: furniture) and its "17:54 ت م" time.
_NOT_IN_LEAD = r"[^.!؟?:\"«»()*\d\n]"
_LEAD_BYLINE = re.compile(rf"^{_NOT_IN_LEAD}{{2,40}}\s+[-–—ـ]+\s+{_NOT_IN_LEAD}{{2,40}}$")
_WIRE_DATELINE = re.compile(r"\d\s*هـ?\s*الموافق\s.*\d\s*م\s*(واس)?\s*$")
_WIRE_TIME = re.compile(r"^\d{1,2}:\d{2}\s*ت\s*م$")
_WIRE_END = re.compile(r"^//\s*انتهى\s*//$")


def news_paragraph_labels(paras: list[str]) -> list[str]:
    """The section of each paragraph of a news text: ``byline`` for a dateline or author line among
    the first two paragraphs and a wire time line among the last two, ``boilerplate`` for a wire end
    mark among the last two, ``body`` for the rest."""
    labels = ["body"] * len(paras)
    for i, p in enumerate(paras[:2]):
        if (_LEAD_BYLINE.match(p) and len(p.split()) <= 8) or (_WIRE_DATELINE.search(p) and len(p) < 100):
            labels[i] = "byline"
    for i in range(max(0, len(paras) - 2), len(paras)):
        if _WIRE_TIME.match(paras[i]):
            labels[i] = "byline"
        elif _WIRE_END.match(paras[i]):
            labels[i] = "boilerplate"
    if "body" not in labels:
        return ["body"] * len(paras)  # nothing left to be the body: keep the text as it is
    return labels


def news_article(a: dict, k: int, max_paragraphs: int = 15, max_chars: int = 700) -> Article | None:
    """A SaudiNewsNet article as page material; very long paragraphs are cut at sentence ends."""
    paras: list[str] = []
    for p in paragraphs(a["content"]):
        if len(p) <= max_chars:
            paras.append(p)
            continue
        chunk = ""
        for s in _SENTENCE_END.split(p):
            if chunk and len(chunk) + len(s) > max_chars // 2:
                paras.append(chunk)
                chunk = ""
            chunk = f"{chunk} {s}" if chunk else s
        if chunk:
            paras.append(chunk)
    title = " ".join(a["title"].split())
    if not paras or not title:
        return None
    return Article(id=f"{a['source'] or 'news'}-{k}", title=title, paragraphs=paras[:max_paragraphs],
                   para_labels=news_paragraph_labels(paras)[:max_paragraphs], author=" ".join(a["author"].split()),
                   meta={"url": a["url"]})


def conll_article(doc: ConllDocument, rng: random.Random, title: str | None = None) -> Article:
    """A CoNLL document as a body: 1-3 sentences per paragraph, entity gold kept per paragraph.
    Without a borrowed ``title`` the first sentence's first words make one (with its names)."""
    paras, ents = [], []
    i = 0
    while i < len(doc.sentences):
        k = rng.randint(1, 3)
        text, es = "", []
        for s, e in zip(doc.sentences[i:i + k], doc.entities[i:i + k]):
            off = len(text) + 1 if text else 0
            es += [Span(x.label, x.start + off, x.end + off) for x in e]
            text = f"{text} {s}" if text else s
        paras.append(text)
        ents.append(es)
        i += k
    title_ents = None
    if title is None:
        first = doc.sentences[0]
        cut = len(first)
        toks = first.split(" ")
        if len(toks) > 12:
            cut = len(" ".join(toks[:rng.randint(6, 12)]))
        title = first[:cut]
        title_ents = [e for e in doc.entities[0] if e.end <= cut]
    return Article(id=doc.id, title=title, paragraphs=paras, para_entities=ents, title_entities=title_ents,
                   annotate="body", meta={"material": doc.material()})


def _news_split(url: str) -> str:
    return "dev" if zlib.crc32(url.encode("utf-8")) % 20 == 0 else "train"


def load_sources(args) -> tuple[dict[str, list[ConllDocument]], dict[str, list[Article]]]:
    """CoNLL documents and news articles per split."""
    docs: dict[str, list[ConllDocument]] = {s: [] for s in SPLITS}
    for path in args.conll or []:
        ds = read_conll_documents(path, args.sentences_per_doc, args.conll_format)
        n_dev = max(1, round(len(ds) * args.dev_fraction)) if len(ds) > 1 else 0
        docs["train"] += ds[:len(ds) - n_dev]
        docs["dev"] += ds[len(ds) - n_dev:]
    for path in args.test_conll or []:
        docs["test"] += read_conll_documents(path, args.sentences_per_doc, args.conll_format)
    news: dict[str, list[Article]] = {s: [] for s in SPLITS}
    if args.news:
        for k, a in enumerate(read_news(args.news, exclude_days=RESERVED_DAYS)):
            art = news_article(a, k)
            if art is not None:
                news[_news_split(a["url"])].append(art)
        if not args.no_reserved_test:
            for k, a in enumerate(read_news(args.news, exclude_days=None, only_days=RESERVED_DAYS)):
                art = news_article(a, k)
                if art is not None:
                    news["test"].append(art)
    return docs, news


def make_split(split: str, n_pages: int, docs: list[ConllDocument], news: list[Article], args,
               rng: random.Random, which: str) -> list[Page]:
    """``n_pages`` pages: a ``--conll-fraction`` share on CoNLL bodies (cycled in train, each used at
    most once in dev/test), the rest on news bodies."""
    n_conll = min(round(n_pages * args.conll_fraction), n_pages) if docs else 0
    if not news:
        n_conll = n_pages if docs else 0
    if split != "train":
        n_conll = min(n_conll, len(docs))
    n_news = min(n_pages - n_conll, len(news)) if news else 0
    news = rng.sample(news, len(news))
    bodies: list[Article] = []
    order: list[ConllDocument] = []
    while len(order) < n_conll:
        order += rng.sample(docs, len(docs))
    for d in order[:n_conll]:
        title = rng.choice(news).title if news and rng.random() < 0.7 else None
        bodies.append(conll_article(d, rng, title))
    bodies += news[:n_news]
    rng.shuffle(bodies)
    furniture = news[n_news:] or news or [conll_article(d, rng) for d in docs]
    pages: list[Page] = []
    with tqdm(total=len(bodies), desc=split, unit="page", disable=args.quiet) as bar:
        for i in range(0, len(bodies), 100):
            pages += build_pages(bodies[i:i + 100], furniture, rng, which=which, id_prefix=f"{split}-{i // 100}-",
                                 augment=getattr(args, "augment", 0.0) if split == "train" == which else 0.0,
                                 layouts=getattr(args, "layouts", 0.0) if split == "train" == which else 0.0,
                                 nonce=getattr(args, "nonce", 0.0) if split == "train" == which else 0.0)
            bar.update(len(bodies[i:i + 100]))
    return pages


def summary(pages: list[Page]) -> str:
    sec = Counter(s.label for p in pages for s in (p.sections or []))
    ent = Counter(e.label for p in pages for e in (p.entities or []))
    with_ner = sum(p.entities is not None for p in pages)
    return (f"{len(pages)} pages ({with_ner} with entity gold); sections: "
            + ", ".join(f"{k} {v}" for k, v in sorted(sec.items()))
            + "; entities: " + (", ".join(f"{k} {v}" for k, v in sorted(ent.items())) or "none"))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m data.build", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conll", action="append", metavar="FILE",
                    help="CoNLL file for train/dev bodies (repeatable); last --dev-fraction of its documents go to dev")
    ap.add_argument("--test-conll", action="append", metavar="FILE",
                    help="CoNLL file whose documents are bodies of the test split only (repeatable)")
    ap.add_argument("--conll-format", default="auto", choices=["auto", "anercorp", "aqmar", "wojood"],
                    help="tag mapping for CoNLL files; auto guesses from the path (default: auto)")
    ap.add_argument("--news", action="append", metavar="PATH",
                    help="SaudiNewsNet .zip/.json file or folder (repeatable); reserved days go to test only")
    ap.add_argument("--no-reserved-test", action="store_true",
                    help="do not use the reserved news days at all (test then gets no news bodies)")
    ap.add_argument("--sentences-per-doc", type=int, default=8,
                    help="consecutive CoNLL sentences per document/body (default: 8)")
    ap.add_argument("--dev-fraction", type=float, default=0.1,
                    help="share of each --conll file's documents (the last ones) used for dev (default: 0.1)")
    ap.add_argument("--pages", type=int, nargs="+", default=[3000, 300, 300], metavar="N",
                    help="pages per split: one number for all, or three for train dev test (default: 3000 300 300)")
    ap.add_argument("--conll-fraction", type=float, default=0.5,
                    help="share of pages whose body is a CoNLL document when news is also given (default: 0.5)")
    ap.add_argument("--dev-templates", default="train", choices=["train", "held_out"],
                    help="templates and wordings for dev pages (default: train)")
    ap.add_argument("--test-templates", default="held_out", choices=["train", "held_out"],
                    help="templates and wordings for test pages (default: held_out, never seen in train)")
    ap.add_argument("--augment", type=float, default=0.0, metavar="P",
                    help="share of furniture wordings made up (data.augment) on the train split's pages; "
                         "never a held-out wording (default: 0)")
    ap.add_argument("--layouts", type=float, default=0.0, metavar="P",
                    help="share of the train split's pages whose parts (title, body, byline, tags, ...) come in a "
                         "random order, with random spacing; train wordings only (default: 0)")
    ap.add_argument("--nonce", type=float, default=0.0, metavar="P",
                    help="share of the train split's furniture wordings whose Arabic words are partly replaced by words "
                         "of other articles' titles, never a held-out wording (default: 0)")
    ap.add_argument("--seed", type=int, default=13, help="random seed; the output is a function of it (default: 13)")
    ap.add_argument("--out", type=Path, required=True, help="output folder for train.jsonl, dev.jsonl, test.jsonl")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if len(args.pages) not in (1, 3):
        ap.error("--pages takes one or three numbers")
    if not (args.conll or args.test_conll or args.news):
        ap.error("give at least one of --conll, --test-conll, --news")
    for name in ("augment", "layouts", "nonce"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            ap.error(f"--{name} {getattr(args, name)}: a share between 0 and 1")
    return args


def main(argv=None) -> dict[str, list[Page]]:
    args = parse_args(argv)
    t0 = time.time()
    counts = dict(zip(SPLITS, args.pages * 3 if len(args.pages) == 1 else args.pages))
    docs, news = load_sources(args)
    which = {"train": "train", "dev": args.dev_templates, "test": args.test_templates}
    args.out.mkdir(parents=True, exist_ok=True)
    result = {}
    for i, split in enumerate(SPLITS):
        rng = random.Random(args.seed * 1000 + i)
        pages = make_split(split, counts[split], docs[split], news[split], args, rng, which[split])
        write_jsonl(args.out / f"{split}.jsonl", pages)
        print(f"{split}: {summary(pages)}", file=sys.stderr)
        result[split] = pages
    print(f"wrote {args.out}/{{train,dev,test}}.jsonl in {time.time() - t0:.1f}s", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
