"""Static word vectors in minutes, to give a small model the lexicon that MLM cannot teach it on
two CPU cores: ``python -m train.embeddings --news DIR --conll FILE --out DIR``.

word2vec (gensim, CBOW) runs over the model's view of the words (``data.text.normalize``) of the
news articles (SaudiNewsNet, reserved evaluation days excluded) and any CoNLL training text. The
vectors initialise the rows of the hashed lexical table that the words and their stems fall into
(see ``data.features.lexical_keys``), so known names start close to their neighbours in news text.
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from data.features import lexical_bucket, lexical_keys
from data.text import normalize, words


def sentences(news: list[str], conll: list[str], max_articles: int | None = None) -> Iterator[list[str]]:
    from data.readers import paragraphs, read_conll_sentences, read_news

    for path in conll:
        for sent in read_conll_sentences(path):
            toks = sent[0] if isinstance(sent, tuple) else [t for t, _ in sent]
            yield [n for n in (normalize(t) for t in toks) if n]
    for path in news:
        for k, art in enumerate(read_news(path)):
            if max_articles and k >= max_articles:
                break
            for para in [art["title"], *paragraphs(art["content"])]:
                ws = [normalize(para[s:e]) for s, e in words(para).tolist()]
                ws = [w for w in ws if w]
                if ws:
                    yield ws


def train_vectors(news: list[str], conll: list[str], dim: int = 64, epochs: int = 3,
                  min_count: int = 3, workers: int = 2, max_articles: int | None = None):
    """A gensim KeyedVectors trained on the sentences above."""
    from gensim.models import Word2Vec

    corpus = list(sentences(news, conll, max_articles))
    n_words = sum(len(s) for s in corpus)
    print(f"embeddings: {len(corpus)} sentences, {n_words} words", file=sys.stderr)
    t0 = time.time()
    w2v = Word2Vec(corpus, vector_size=dim, window=5, min_count=min_count, workers=workers,
                   epochs=epochs, sg=0, seed=13)
    print(f"embeddings: {len(w2v.wv)} words in {time.time() - t0:.0f} s", file=sys.stderr)
    return w2v.wv


def init_lexical_table(table: np.ndarray, kv, radius: int = 0, max_words: int = 300_000) -> int:
    """Write word vectors into the lexical buckets of each word (``w:``) and of its stem (``s:``),
    at every neighbour offset of the lexical window.

    Rows that several words share get their mean. The table is ``(buckets, dim)``; vectors are
    scaled to the table's own init scale so training starts in the same regime. Returns the number
    of rows set."""
    buckets, dim = table.shape
    if kv.vector_size != dim:
        raise ValueError(f"vectors have {kv.vector_size} dims but the lexical table has {dim}")
    sums = np.zeros_like(table, dtype=np.float64)
    counts = np.zeros(buckets, dtype=np.int64)
    vocab = kv.index_to_key[:max_words]
    for pos in (0, 1):  # the word and its stem
        hashes = np.asarray([zlib.crc32(lexical_keys(w)[pos].encode("utf-8")) for w in vocab], dtype=np.int64)
        vecs = np.asarray(kv.vectors[: len(vocab)], dtype=np.float64)
        for d in range(-radius, radius + 1):
            b = lexical_bucket(hashes, d, buckets)
            np.add.at(sums, b, vecs)
            np.add.at(counts, b, 1)
    rows = counts > 0
    vec = sums[rows] / counts[rows, None]
    scale = float(np.std(table)) / max(float(np.std(vec)), 1e-8)
    table[rows] = (vec * scale).astype(table.dtype)
    table[0] = 0  # padding
    return int(rows.sum())


def _kmeans_pp(x, k: int, gen):
    """k-means++ seeds over unit vectors: each next centre drawn with probability ~ (1 - cos)^2 to the
    nearest centre so far."""
    import torch

    first = int(torch.randint(len(x), (1,), generator=gen))
    idx = [first]
    nearest = (1 - x @ x[first]).clamp(min=0)
    for _ in range(k - 1):
        w = nearest.pow(2)
        nxt = int(torch.multinomial(w, 1, generator=gen)) if float(w.sum()) > 0 else \
            int(torch.randint(len(x), (1,), generator=gen))
        idx.append(nxt)
        nearest = torch.minimum(nearest, (1 - x @ x[nxt]).clamp(min=0))
    return x[idx].clone()


def word_clusters(kv, sizes: list[int], max_words: int = 300_000, iterations: int = 10,
                  seed: int = 0) -> dict[str, list[int]]:
    """Each word's cluster at each granularity (spherical k-means over the normalised vectors, as in
    Brown-cluster features for NER): ``{word: [id at sizes[0], id at sizes[1], ...]}``. Clusters carry
    what 8.8M words of news say about a word to words that the labelled data never shows. Deterministic."""
    import torch

    words = kv.index_to_key[:max_words]
    x = torch.from_numpy(np.asarray(kv.vectors[: len(words)], dtype=np.float32))
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-8)
    gen = torch.Generator().manual_seed(seed)
    ids = []
    for k in sizes:
        k = min(int(k), len(words))
        centres = _kmeans_pp(x, k, gen)
        for _ in range(iterations):
            assign = torch.cat([(x[i:i + 65536] @ centres.T).argmax(1) for i in range(0, len(x), 65536)])
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=k)
            keep = counts > 0
            centres[keep] = sums[keep] / sums[keep].norm(dim=1, keepdim=True).clamp(min=1e-8)
        ids.append(assign.tolist())
    return {w: [c[i] for c in ids] for i, w in enumerate(words)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--news", action="append", default=[], help="SaudiNewsNet zip/json file or folder (repeatable)")
    ap.add_argument("--conll", action="append", default=[], help="CoNLL 'token tag' training file (repeatable)")
    ap.add_argument("--dim", type=int, default=64, help="vector size; must equal the model's lexical_dim")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--max-articles", type=int, default=None, help="cap per news file (for quick runs)")
    ap.add_argument("--out", required=True, help="output folder (vectors.kv)")
    args = ap.parse_args(argv)
    for p in args.news + args.conll:
        if not Path(p).exists():
            print(f"error: data path {p!r} does not exist", file=sys.stderr)
            return 2
    out = Path(args.out)
    if (out / "vectors.kv").exists():
        print(f"embeddings: {out / 'vectors.kv'} exists, nothing to do", file=sys.stderr)
        return 0
    kv = train_vectors(args.news, args.conll, dim=args.dim, epochs=args.epochs, min_count=args.min_count,
                       max_articles=args.max_articles)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    kv.save(str(tmp / "vectors.kv"))
    if out.exists():
        for f in tmp.iterdir():
            f.replace(out / f.name)
        tmp.rmdir()
    else:
        tmp.replace(out)
    print(f"embeddings: wrote {out / 'vectors.kv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
