"""A silver gazetteer from unlabelled news: what a CRF trained on the labelled sentences tags each word
as, counted over millions of words of SaudiNewsNet, kept as one lexical key per word.

A word that the labelled data never shows, or shows once, is often seen hundreds of times in the news
text, in contexts that make it plainly a person ("قال الرئيس ..."), a place or an organisation. The CRF
baseline's features (:func:`train.baselines.sentence_features`), with the k-means clusters of the recipe's
word vectors added when ``--vectors`` is given (:func:`tagger_features`), tag those contexts; the share of a word's
occurrences tagged with each type, in three bands, becomes the word's gazetteer code (``LOC:hi``,
``PERS:mid|ORG:lo``, ``O``), and the model reads it as one more lexical key (``model.lexical_gazetteer``,
:class:`data.features.PageEncoder`), beside the word's clusters. This is the classic self-training
gazetteer of semi-supervised NER, one more way to distil the news text into a small model.

    python -m train.gazetteer --conll ANERCorp_CamelLab_train.txt --news SaudiNewsNet/dataset \
        [--vectors OUT/vectors/vectors.kv] --out DIR

writes ``DIR/gazetteer.json`` (resumable: an existing file is kept). Only the training part of the CoNLL
file is read: the last ``--dev-fraction`` of its documents is the dev set of ``python -m train`` and is
left out, by the builder's own split. The reserved SaudiNewsNet days are never read.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, Sequence

GAZETTEER_FILE = "gazetteer.json"
# A word needs this many occurrences in the tagged news to get a code (rarer ones get none: "-")
MIN_COUNT = 2
# Share of a word's occurrences tagged with a type -> band (below the last: not kept)
BANDS = ((0.6, "hi"), (0.25, "mid"), (0.05, "lo"))
_SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+")


def word_code(total: int, by_type: dict[str, int], min_count: int = MIN_COUNT) -> str | None:
    """The gazetteer code of a word seen ``total`` times, ``by_type[t]`` of them inside an entity of type
    ``t``: ``"LOC:hi"``, ``"ORG:mid|PERS:lo"`` (types in name order), ``"O"`` when no type reaches the lowest
    band, ``None`` when the word is too rare to say."""
    if total < min_count:
        return None
    parts = []
    for t in sorted(by_type):
        share = by_type[t] / total
        band = next((b for edge, b in BANDS if share >= edge), None)
        if band:
            parts.append(f"{t}:{band}")
    return "|".join(parts) or "O"


def count_tags(tagged: Iterable[tuple[Sequence[str], Sequence[str]]]) -> tuple[Counter, dict[str, Counter]]:
    """Occurrences of each normalised word, and per entity type how many were tagged inside one."""
    from data.text import normalize

    total: Counter = Counter()
    by_type: dict[str, Counter] = defaultdict(Counter)
    for ws, tags in tagged:
        if len(ws) != len(tags):
            raise ValueError(f"{len(ws)} words but {len(tags)} tags")
        for w, t in zip(ws, tags):
            n = normalize(w) or w
            total[n] += 1
            if t != "O":
                by_type[n][t[2:]] += 1
    return total, by_type


def codes(total: Counter, by_type: dict[str, Counter], min_count: int = MIN_COUNT) -> dict[str, str]:
    out = {}
    for w, c in total.items():
        code = word_code(c, by_type.get(w, {}), min_count)
        if code is not None:
            out[w] = code
    return out


def news_sentences(paths, max_words: int) -> Iterator[list[str]]:
    """Sentences (3 to 80 words, the model's pre-tokenizer) of SaudiNewsNet bodies, reserved days left
    out, up to about ``max_words`` words."""
    from data.readers import paragraphs, read_news
    from data.text import words

    n = 0
    for art in read_news(paths):
        for para in paragraphs(art.get("content", "")):
            for s in _SENTENCE_END.split(para):
                ws = [s[a:b] for a, b in words(s).tolist()]
                if 3 <= len(ws) <= 80:
                    n += len(ws)
                    yield ws
        if n >= max_words:
            return


CLUSTER_SIZES = (64, 256, 1024)  # as configs/cpu-full.yaml's model.lexical_clusters


def tagger_features(tokens: Sequence[str], clusters: dict[str, list[int]] | None = None) -> list[dict]:
    """The CRF baseline's features of each token, plus, with ``clusters`` (word -> ids at
    :data:`CLUSTER_SIZES`), the word's cluster at each size and its neighbours' (±1) at the middle size.
    On ANERcorp dev (last 10% of train), a gazetteer from this tagger gave the clusters CRF 70.7 micro-F1,
    one from the plain tagger 69.8, none 68.0 (4M news words)."""
    from data.text import normalize
    from train.baselines import sentence_features

    feats = sentence_features(tokens)
    if clusters is None:
        return feats
    ids = [clusters.get(normalize(t) or t) for t in tokens]
    for i, f in enumerate(feats):
        c = ids[i]
        for j in range(len(CLUSTER_SIZES)):
            f[f"c{j}"] = str(c[j]) if c else "-"
        for d in (-1, 1):
            k = i + d
            if 0 <= k < len(ids):
                f[f"{d}:c1"] = str(ids[k][1]) if ids[k] else "-"
    return feats


def train_sentences(conll: str, sentences_per_doc: int = 8, dev_fraction: float = 0.1) -> list:
    """``(tokens, tags)`` of the CoNLL file's training part: its sentences before the first dev document,
    as ``data.build.load_sources`` splits the file (the trainer's own split); types mapped as the trainer
    maps them."""
    import argparse

    from data.build import load_sources
    from data.readers import TAG_MAPS, guess_format, read_conll_sentences

    docs = load_sources(argparse.Namespace(conll=[conll], test_conll=None, news=None, conll_format="auto",
                                           sentences_per_doc=sentences_per_doc, dev_fraction=dev_fraction,
                                           no_reserved_test=True))[0]
    sents = read_conll_sentences(conll, TAG_MAPS[guess_format(conll)])
    return sents[: docs["dev"][0].first_sentence] if docs["dev"] else sents


def build(conll: str, news, max_words: int = 4_000_000, c1: float = 0.1, c2: float = 0.1,
          max_iterations: int = 100, min_count: int = MIN_COUNT, sentences_per_doc: int = 8,
          dev_fraction: float = 0.1, clusters: dict[str, list[int]] | None = None, progress: bool = True) -> dict:
    """Fit the CRF tagger (:func:`tagger_features`) on the CoNLL training part, tag the news sentences,
    count: the :data:`GAZETTEER_FILE` content (``settings`` and ``words``: word -> code)."""
    import sklearn_crfsuite
    from tqdm.auto import tqdm

    def sentence_features(tokens):
        return tagger_features(tokens, clusters)

    t0 = time.time()
    train = train_sentences(conll, sentences_per_doc, dev_fraction)
    if not train:
        raise ValueError(f"{conll}: no training sentences")
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=c1, c2=c2, max_iterations=max_iterations,
                               all_possible_transitions=True)
    print(f"gazetteer: fitting the CRF on {len(train)} sentences", file=sys.stderr, flush=True)
    crf.fit([sentence_features(t) for t, _ in train], [g for _, g in train])
    fit_s = time.time() - t0

    def tagged() -> Iterator[tuple[list[str], list[str]]]:
        bar = tqdm(total=max_words, unit="word", desc="gazetteer: tagging news", disable=not progress,
                   file=sys.stderr)
        chunk: list[list[str]] = []
        for ws in news_sentences(news, max_words):
            chunk.append(ws)
            if len(chunk) == 2000:
                yield from zip(chunk, crf.predict([sentence_features(s) for s in chunk]))
                bar.update(sum(map(len, chunk)))
                chunk = []
        if chunk:
            yield from zip(chunk, crf.predict([sentence_features(s) for s in chunk]))
            bar.update(sum(map(len, chunk)))
        bar.close()

    total, by_type = count_tags(tagged())
    if not total:
        raise ValueError(f"{news}: no news sentences")
    words = codes(total, by_type, min_count)
    settings = {"conll": str(conll), "train_sentences": len(train), "news_words": int(sum(total.values())),
                "word_types": len(total), "coded_words": len(words), "min_count": min_count,
                "bands": [list(b) for b in BANDS], "clusters": bool(clusters), "c1": c1, "c2": c2, "max_iterations": max_iterations,
                "fit_s": round(fit_s, 1), "wall_s": round(time.time() - t0, 1)}
    return {"settings": settings, "words": words}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.gazetteer", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conll", required=True, help="labelled CoNLL file (ANERcorp train); its dev part is left out")
    ap.add_argument("--news", nargs="+", required=True, help="SaudiNewsNet zips or folders (reserved days left out)")
    ap.add_argument("--vectors", help="word vectors (python -m train.embeddings OUT/vectors.kv): their k-means "
                    "clusters join the tagger's features (needs gensim)")
    ap.add_argument("--words", type=int, default=4_000_000, help="news words to tag (about)")
    ap.add_argument("--min-count", type=int, default=MIN_COUNT, help="occurrences a word needs for a code")
    ap.add_argument("--max-iterations", type=int, default=100, help="CRF L-BFGS iterations")
    ap.add_argument("--dev-fraction", type=float, default=0.1, help="last fraction of documents left out (dev)")
    ap.add_argument("--sentences-per-doc", type=int, default=8, help="sentences per document, as the builder")
    ap.add_argument("--out", required=True, help="folder for gazetteer.json")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    out = Path(args.out) / GAZETTEER_FILE
    if out.exists():
        print(f"gazetteer: {out} exists, nothing to do", file=sys.stderr)
        return 0
    for p in [args.conll, *args.news, *([args.vectors] if args.vectors else [])]:
        if not Path(p).exists():
            print(f"error: {p} does not exist", file=sys.stderr)
            return 2
    if args.words < 1 or args.min_count < 1:
        print("error: --words and --min-count must be at least 1", file=sys.stderr)
        return 2
    clusters = None
    if args.vectors:
        from gensim.models import KeyedVectors

        from train.embeddings import word_clusters

        clusters = word_clusters(KeyedVectors.load(args.vectors), list(CLUSTER_SIZES))
    try:
        data = build(args.conll, args.news, args.words, max_iterations=args.max_iterations,
                     min_count=args.min_count, sentences_per_doc=args.sentences_per_doc,
                     dev_fraction=args.dev_fraction, clusters=clusters, progress=not args.quiet)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    tmp.replace(out)
    s = data["settings"]
    print(f"gazetteer: {s['coded_words']} of {s['word_types']} word types coded from {s['news_words']} news words "
          f"({s['wall_s']:.0f} s): {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
