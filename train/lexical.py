"""Fit a joint model's lexical tag scores (``model.lexical_tags``) before training.

The scores are a linear model over the hashed lexical features (``data.features.lexical_keys`` of a
word and its neighbours): one score per feature and tag, summed over a word's features, i.e. the unary
part of a linear-chain CRF. They are fitted here as a softmax classifier over the labelled words of
the training pages (Adam, with a squared-score penalty that keeps rare features from memorising the
training words, as a CRF's L2 does), written into the model with the fitted tag biases as the NER
head's bias, and then frozen: the encoder learns what the lexicon alone gets wrong.

Measured on ANERcorp dev (last 10% of train) on 2 CPU cores: this linear model alone reaches 0.59-0.61
entity micro-F1 in about a minute, where the joint model trained on the same features reached 0.52-0.53.

``fit_lexical_crf`` (``training.lexical_tags_fit: crf``) fits the same table as the state weights of a
linear-chain CRF instead (sklearn-crfsuite's L-BFGS with L1 + L2, as the CRF baseline), over the runs of
labelled words on each line, and writes its transitions into the model's CRF head (``model.use_crf``).
On the same ANERcorp dev and the same hashed features: 63.1 entity micro-F1 (a CRF without L1 60.8, our
softmax fit 58-60, our own Adam-fitted CRF 61.5): sequence training and L1's sparsity over the hashed
features are what the softmax fit lacked.

A fit on the training words tags them almost perfectly (the NER loss was 0.017 per word at step 0), so
the encoder had little left to learn from them. With ``training.lexical_tags_folds: K`` the training
words get out-of-fold scores instead (:func:`page_folds`, :func:`set_fold_priors`), as in stacking: the
encoder learns what the lexicon gets wrong on words it has not memorised, which is what dev and
inference see (the mean of the K fits). Measured: +0.5 / +1.9 ANERcorp dev in a NER-only A/B (K = 3, two
seeds), but -4.8 on the restored test in the full recipe (precision 79.1 -> 69.0): at inference the mean
of the fits gives words seen in training their full-strength scores, on top of an encoder that learnt to
make up for weaker ones. So the recipe keeps one fit.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from data.features import IGNORE


def labelled_words(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Lexical bucket ids ``(n, k)`` and tag ids ``(n,)`` of every labelled word of the dataset's pages."""
    xs, ys = [], []
    for i in range(len(dataset)):
        f = dataset[i]
        if "lex_ids" not in f:
            raise ValueError("the model has lexical tag scores but the pages have no lexical features")
        y = np.asarray(f["ner_labels"])
        keep = y != IGNORE
        if keep.any():
            xs.append(np.asarray(f["lex_ids"])[keep])
            ys.append(y[keep])
    if not xs:
        return torch.zeros((0, 0), dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.concatenate(xs).astype(np.int64)), torch.from_numpy(np.concatenate(ys).astype(np.int64))


def _crf_runs(dataset, ids_key: str, labels_key: str, line_key: str | None, what: str, pages=None):
    """Runs of consecutive labelled units of each page (cut also where ``line_key`` changes), as crfsuite
    items of their hashed feature rows and tag ids as strings; identical runs (a document seen in several
    training pages) kept once. ``pages``: a boolean mask of the dataset's pages to read (default all)."""
    seen, out = set(), []
    for i in range(len(dataset)):
        if pages is not None and not pages[i]:
            continue
        f = dataset[i]
        if ids_key not in f:
            raise ValueError(f"the model has {what} tag scores but the pages have no {what} features")
        y = np.asarray(f[labels_key])
        lab = y != IGNORE
        if not lab.any():
            continue
        ids = np.asarray(f[ids_key])
        new = ~lab | np.r_[True, ~lab[:-1]]
        if line_key is not None:
            line = np.asarray(f[line_key])
            new |= np.r_[True, line[1:] != line[:-1]]
        bounds = list(np.flatnonzero(new)) + [len(y)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            key = (ids[a:b].tobytes(), y[a:b].tobytes())
            if lab[a] and key not in seen:
                seen.add(key)
                out.append((_items(ids[a:b]), [str(int(t)) for t in y[a:b]]))
    return out


def labelled_runs(dataset, pages=None) -> list[tuple[list[dict], list[str]]]:
    """Runs of consecutive labelled words on one line of a page, as crfsuite items: each word's lexical
    bucket ids (``{"b<id>": count}``, the padding bucket dropped) and its tag id as a string. Identical
    runs (a document seen in several training pages) are kept once. ``pages``: a mask of pages to read."""
    return _crf_runs(dataset, "lex_ids", "ner_labels", "word_line", "lexical", pages)


def _items(rows: np.ndarray) -> list[dict]:
    """crfsuite items of hashed feature rows: ``{"b<id>": count}``, the padding bucket dropped."""
    xs = []
    for row in rows:
        item: dict[str, float] = {}
        for v in row[row > 0].tolist():
            item[f"b{v}"] = item.get(f"b{v}", 0.0) + 1.0
        xs.append(item)
    return xs


def crfsuite_fit(runs: list[tuple[list[dict], list[str]]], n_rows: int, n_tags: int, c1: float = 0.1,
                 c2: float = 0.1, max_iterations: int = 150, desc: str = "CRF", quiet: bool = False) -> dict:
    """A linear-chain CRF over hashed features (sklearn-crfsuite's L-BFGS with L1 ``c1`` and L2 ``c2``),
    as tensors: ``weight`` ``(n_rows, n_tags)`` per feature row and tag, ``bias`` per tag (a feature
    every item has), ``transitions`` ``[from, to]``. Deterministic."""
    try:
        import pycrfsuite  # installed with sklearn-crfsuite
    except ImportError as err:
        raise ImportError("a CRF fit needs sklearn-crfsuite (pip install 'arabic-page-tagger[baselines]')") from err
    import tempfile
    from pathlib import Path

    t0 = time.time()
    bar = tqdm(total=max_iterations, desc=f"{desc} (L-BFGS iterations)", disable=quiet, file=sys.stderr)
    iterations = [0]

    class Trainer(pycrfsuite.Trainer):  # crfsuite's log events: a progress bar instead of its prints
        def on_iteration(self, log, info):
            iterations[0] += 1
            bar.update(1)

    for name in ("on_start", "on_featgen_progress", "on_featgen_end", "on_prepared", "on_optimization_end",
                 "on_end"):
        setattr(Trainer, name, lambda self, *a: None)
    Trainer.on_prepare_error = lambda self, log: print(log, end="", file=sys.stderr)
    trainer = Trainer(verbose=True)
    for xs, ys in runs:
        trainer.append([{"bias": 1.0, **x} for x in xs], ys)
    trainer.set_params({"c1": c1, "c2": c2, "max_iterations": max_iterations,
                        "feature.possible_transitions": True})
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "fit.crfsuite")
        trainer.train(path)
        bar.close()
        tagger = pycrfsuite.Tagger()
        tagger.open(path)
        info = tagger.info()
        tagger.close()
    weight = torch.zeros(n_rows, n_tags)
    bias = torch.zeros(n_tags)
    for (attr, label), w in info.state_features.items():
        if attr == "bias":
            bias[int(label)] = w
        else:
            weight[int(attr[1:]), int(label)] = w
    transitions = torch.zeros(n_tags, n_tags)
    for (a, b), w in info.transitions.items():
        transitions[int(a), int(b)] = w
    return {"weight": weight, "bias": bias, "transitions": transitions, "features": len(info.state_features),
            "iterations": iterations[0], "seconds": round(time.time() - t0, 1)}


def _fit_into(table, bias, chain, runs, unit: str, desc: str, c1: float, c2: float, max_iterations: int,
              quiet: bool) -> dict:
    """Fit a CRF on ``runs`` and copy it into a score table (padding row 0 left at zero), a head's bias
    and a CRF's transitions (start and end at zero: crfsuite has none), then freeze the table."""
    if not runs:
        table.weight.requires_grad_(False)
        return {unit: 0, "runs": 0}
    fit = crfsuite_fit(runs, *table.weight.shape, c1=c1, c2=c2, max_iterations=max_iterations, desc=desc,
                       quiet=quiet)
    _copy_fit(table, bias, chain, fit["weight"], fit["bias"], fit["transitions"])
    return {unit: sum(len(y) for _, y in runs), "runs": len(runs),
            **{k: fit[k] for k in ("features", "iterations", "seconds")}}


def _copy_fit(table, bias, chain, weight, tag_bias, transitions) -> None:
    """A CRF's weights into a score table (padding row 0 left at zero), a head's bias and a CRF's
    transitions (start and end at zero: crfsuite has none); the table is then frozen."""
    with torch.no_grad():
        table.weight.copy_(weight.to(table.weight))
        table.weight[0].zero_()
        bias.copy_(tag_bias.to(bias))
        if chain is not None:
            chain.transitions.copy_(transitions.to(chain.transitions))
            chain.start.zero_()
            chain.end.zero_()
    table.weight.requires_grad_(False)


def fit_lexical_crf(model, dataset, c1: float = 0.1, c2: float = 0.1, max_iterations: int = 150,
                    quiet: bool = False, folds: np.ndarray | None = None) -> dict:
    """Fit ``model.lexical_tag_scores`` as the state weights of a linear-chain CRF over the dataset's
    runs of labelled words (:func:`crfsuite_fit`), its bias as the NER head's bias and its transitions
    into ``model.crf`` when the model has one (``model.use_crf``). Then freeze the scores.

    ``folds`` (one fold id per page of the dataset, :func:`page_folds`; two folds or more): one CRF per
    fold, fitted on the other folds' pages, so that every training word can be given scores from a fit
    that never saw it (``fold_weight``, ``(K, rows, tags)``: :func:`set_fold_priors`); the model keeps
    the mean of the K fits (their weights, biases and transitions), the scores that dev and inference use.
    Without folds, training words get the scores of a fit on themselves, which already tags them almost
    perfectly (training loss 0.017 per word at step 0 on ANERcorp). (The module docstring has what folds
    measured: not a gain in the full recipe.)"""
    table, bias, chain = model.lexical_tag_scores, model.ner_head.bias, getattr(model, "crf", None)
    if folds is None:
        return _fit_into(table, bias, chain, labelled_runs(dataset), "words", "lexical CRF", c1, c2,
                         max_iterations, quiet)
    return _fit_folds(table, bias, chain, lambda keep: labelled_runs(dataset, keep), folds, "words", "lexical CRF",
                      c1, c2, max_iterations, quiet)


def _fit_folds(table, bias, chain, runs_of, folds: np.ndarray, unit: str, desc: str, c1: float, c2: float,
               max_iterations: int, quiet: bool, full: bool = False) -> dict:
    """One CRF per fold, fitted on the runs of the other folds' pages (``runs_of(mask of pages)``); the
    result holds their weights as ``fold_weight`` ``(K, rows, tags)``, for :func:`set_fold_priors`. The
    model gets the mean of the K fits (weights, biases, transitions), or with ``full`` one more fit, on
    every page."""
    ks = np.unique(folds)
    if len(ks) < 2 or not np.array_equal(ks, np.arange(len(ks))):
        raise ValueError(f"the {len(folds)} training pages fill folds {ks.tolist()}: every fold needs pages "
                         "(use fewer folds or more pages)")
    fits, units, runs = [], 0, 0
    for k in ks.tolist():
        part = runs_of(folds != k)
        if not part:
            raise ValueError(f"{desc} folds: no labelled {unit} outside fold {k}; use fewer folds")
        fits.append(crfsuite_fit(part, *table.weight.shape, c1=c1, c2=c2, max_iterations=max_iterations,
                                 desc=f"{desc}, fold {k + 1}/{len(ks)}", quiet=quiet))
        runs += len(part)
        units += sum(len(y) for _, y in part)
    fold_weight = torch.stack([f["weight"] for f in fits])
    fold_weight[:, 0].zero_()  # the padding bucket scores nothing
    seconds = sum(f["seconds"] for f in fits)
    if full:
        whole = _fit_into(table, bias, chain, runs_of(np.ones(len(folds), dtype=bool)), unit, f"{desc}, all pages",
                          c1, c2, max_iterations, quiet)
        return {**whole, "folds": len(ks), "fold_weight": fold_weight, "seconds": round(seconds + whole["seconds"], 1)}
    mean = lambda key: torch.stack([f[key] for f in fits]).mean(0)  # noqa: E731
    _copy_fit(table, bias, chain, fold_weight.mean(0), mean("bias"), mean("transitions"))
    return {unit: units, "runs": runs, "folds": len(ks), "fold_weight": fold_weight,
            "features": sum(f["features"] for f in fits), "seconds": round(seconds, 1)}


def page_folds(pages, k: int) -> np.ndarray:
    """A fold id (0 .. k-1) per page: a stable hash of the material it was made from (``meta["material"]``,
    which pages made from the same CoNLL sentences share, :meth:`data.readers.ConllDocument.material`)
    or, without one, of its id. So a sentence never has scores from a fit that saw it in another page."""
    import zlib

    return np.array([zlib.crc32(str((p.meta or {}).get("material", p.id)).encode("utf-8")) % k for p in pages],
                    dtype=np.int64)


def set_fold_priors(dataset, folds: np.ndarray, fold_weight: torch.Tensor, ids_key: str = "lex_ids",
                    prior_key: str = "lex_prior") -> None:
    """Give each training page's words their out-of-fold lexical tag scores (``lex_prior``, ``(words,
    tags)`` float32: the summed rows of the fit that left the page's fold out), which the model adds in
    place of its own table (``JointModel.ner_logits``). Pages shared by the mix are set once. With
    ``ids_key="line_ids", prior_key="line_prior"`` the same for the lines' section scores (the line CRF's
    folds, ``JointModel.section_logits``)."""
    w = fold_weight.numpy()
    for i in range(len(dataset)):
        f = dataset[i]
        ids = np.asarray(f[ids_key])
        f[prior_key] = w[int(folds[i])][ids].sum(1, dtype=np.float32)


def save_folds(path, folds: int, fold_weight: torch.Tensor) -> None:
    """The fold fits, for a resumed run to rebuild the same priors (L1 leaves them sparse)."""
    torch.save({"folds": folds, "fold_weight": fold_weight.to_sparse()}, path)


def load_folds(path, folds: int, shape: tuple[int, int], what: str = "lexical") -> torch.Tensor:
    """The fold fits saved by :func:`save_folds`; a ValueError naming the file when they do not fit."""
    try:
        saved = torch.load(path, weights_only=True)
        weight = saved["fold_weight"].to_dense()
        ok = saved["folds"] == folds and tuple(weight.shape) == (folds, *shape)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same error for the user
        raise ValueError(f"{path}: not a readable {what} fold file ({err})") from None
    if not ok:
        raise ValueError(f"{path}: holds {saved['folds']} folds of shape {tuple(weight.shape)[1:]}, but this run "
                         f"has {folds} folds of {shape}")
    return weight


def labelled_pages(dataset, pages=None) -> list[tuple[list[dict], list[str]]]:
    """Each page's runs of consecutive lines with a section label, as crfsuite items of their hashed
    line features (``line_ids``) and section tag ids as strings; identical runs kept once. ``pages``: a
    mask of pages to read."""
    return _crf_runs(dataset, "line_ids", "section_labels", None, "line", pages)


def fit_line_crf(model, dataset, c1: float = 0.1, c2: float = 0.1, max_iterations: int = 150,
                 quiet: bool = False, folds: np.ndarray | None = None) -> dict:
    """Fit ``model.line_tag_scores`` (``model.line_tags``) as the state weights of a linear-chain CRF
    over each page's section-labelled lines, its bias as the section head's bias and its transitions
    into ``model.section_chain`` when the model has one (``model.section_crf``). Then freeze them.

    ``folds`` (``training.line_tags_folds``): one fit per fold, on the other folds' pages, as
    :func:`fit_lexical_crf` does; training pages then get their lines' scores from the fit that never
    saw them (:func:`set_fold_priors` with ``line_ids`` / ``line_prior``), and the model one more fit, on
    every page, for dev and inference (not the mean of the fold fits: in the line CRF probe a fit on half
    the pages lost 2.1 section macro-F1 on held-out-template pages). A fit on its own training pages tags
    them perfectly (line CRF probe: 100.0 section macro-F1 on its own pages, 96.4 on other pages of the
    same templates), so the section layer above it has no errors to learn to correct."""
    table, bias, chain = model.line_tag_scores, model.section_head.bias, getattr(model, "section_chain", None)
    if folds is None:
        return _fit_into(table, bias, chain, labelled_pages(dataset), "lines", "line CRF", c1, c2,
                         max_iterations, quiet)
    return _fit_folds(table, bias, chain, lambda keep: labelled_pages(dataset, keep), folds, "lines", "line CRF",
                      c1, c2, max_iterations, quiet, full=True)


def fit_lexical_tags(model, dataset, epochs: int = 4, lr: float = 0.01, penalty: float = 1e-3,
                     batch_size: int = 256, seed: int = 0, quiet: bool = False) -> dict:
    """Fit ``model.lexical_tag_scores`` (and the NER head's bias) on the dataset's labelled words,
    then freeze the scores. Returns the per-epoch mean loss. Deterministic for a given ``seed``."""
    table = model.lexical_tag_scores
    x, y = labelled_words(dataset)
    n_tags = table.weight.shape[1]
    if not len(y):
        table.weight.requires_grad_(False)
        return {"words": 0, "losses": []}
    t0 = time.time()
    weight = torch.zeros_like(table.weight, device="cpu", dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(n_tags, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="lexical tag scores", disable=quiet, file=sys.stderr)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            scores = torch.nn.functional.embedding_bag(x[idx], weight, mode="sum", padding_idx=0)
            loss = (torch.nn.functional.cross_entropy(scores + bias, y[idx])
                    + penalty * scores.pow(2).sum(-1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            bar.update(1)
        losses.append(total / len(y))
    bar.close()
    with torch.no_grad():
        table.weight.copy_(weight.detach().to(table.weight))
        table.weight[0].zero_()  # the padding bucket scores nothing
        model.ner_head.bias.copy_(bias.detach().to(model.ner_head.bias))
    table.weight.requires_grad_(False)
    return {"words": int(len(y)), "losses": [round(v, 4) for v in losses], "seconds": round(time.time() - t0, 1)}
