"""An optional linear-chain CRF over each page's word tags (``model.use_crf``).

Training: the negative log-likelihood of every run of consecutive labelled words of a line (words
outside ``entity_regions`` carry no label, so they cut a line into independent runs; an entity never
crosses a line, so the chain restarts at each line, as Viterbi does at inference). All runs of
a batch are padded into one grid and the forward algorithm steps along it once.
Decoding: Viterbi over a page's words, on the NER head's log-probabilities plus the transitions.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _check_section_labels(labels, key: str, allowed: list[str], what: str) -> list[str]:
    """``labels`` checked as a list of ``allowed`` section labels (duplicates dropped; ``None``: ``[]``); a
    ``ValueError`` that names ``key`` and the first bad label otherwise."""
    if labels is None:
        return []
    if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{key} must be a list of section labels, not {labels!r}")
    bad = [x for x in labels if x not in allowed]
    if bad:
        raise ValueError(f"{key}: {bad[0]!r} is not {what}; use some of {', '.join(allowed)}")
    return list(dict.fromkeys(labels))


def check_section_once(labels) -> list[str]:
    """The labels of ``section_once`` (a page has at most one section of each), checked: a list of
    known section labels, ``body`` excepted (an inline read-also line splits a body)."""
    from data.schema import SECTION_LABELS

    return _check_section_labels(labels, "section_once", [x for x in SECTION_LABELS if x != "body"],
                                 "a section label that a page has one of")


def check_section_required(labels) -> list[str]:
    """The labels of ``section_required`` (a page with lines has at least one section of each, e.g. ``body``:
    a news page has an article), checked: a list of known section labels."""
    from data.schema import SECTION_LABELS

    return _check_section_labels(labels, "section_required", list(SECTION_LABELS), "a section label")


def parse_section_labels(value: str | None) -> list[str] | None:
    """A command line's ``--section-once`` or ``--section-required``: ``title,byline`` -> a list, ``none`` ->
    ``[]`` (no rule), not given -> ``None`` (the model's own)."""
    if value is None:
        return None
    return [] if value.strip().lower() == "none" else [x.strip() for x in value.split(",") if x.strip()]


def check_outside_bias(value) -> float:
    """The NER outside bias as a float; ``ValueError`` when it is not a finite number."""
    try:
        b = float(value or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"outside_bias {value!r}: give a finite number") from None
    if not np.isfinite(b):
        raise ValueError(f"outside_bias {value!r}: give a finite number")
    return b


def check_section_bias(value) -> dict[str, float]:
    """Section label -> bias (finite numbers, known labels; ``None``: none); ``ValueError`` naming the
    bad label or value."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"section_bias {value!r}: give a mapping of section label to number")
    from data.schema import SECTION_LABELS

    known = set(SECTION_LABELS)
    out = {}
    for label, b in value.items():
        if label not in known:
            raise ValueError(f"section_bias: unknown section label {label!r}; known: {', '.join(sorted(known))}")
        try:
            out[label] = float(b)
        except (TypeError, ValueError):
            raise ValueError(f"section_bias[{label!r}] {b!r}: give a finite number") from None
        if not np.isfinite(out[label]):
            raise ValueError(f"section_bias[{label!r}] {b!r}: give a finite number")
    return out


def parse_section_bias(value: str | None) -> dict[str, float] | None:
    """``"title=-1.5,boilerplate=1"`` (the CLI's form) -> a dict; ``"none"`` -> {}; ``None`` -> None."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return {}
    out = {}
    for item in value.split(","):
        label, sep, b = item.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"section bias {item!r}: write LABEL=NUMBER, e.g. title=-1.5")
        try:
            out[label.strip()] = float(b)
        except ValueError:
            raise ValueError(f"section bias {item!r}: {b!r} is not a number") from None
    return check_section_bias(out)


class LinearChainCRF(nn.Module):
    def __init__(self, num_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def nll(self, emissions: torch.Tensor, labels: torch.Tensor, word_page: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per labelled word (0 when no word is labelled); a change of
        ``word_page`` (the joint model passes each word's line) starts a new chain."""
        labelled = labels != -100
        if not bool(labelled.any()):
            return emissions.sum() * 0.0
        new_run = labelled.clone()
        new_run[1:] &= ~(labelled[:-1] & (word_page[1:] == word_page[:-1]))
        run = torch.cumsum(new_run.long(), 0) - 1
        idx = torch.nonzero(labelled, as_tuple=True)[0]
        run, em, lab = run[idx], emissions[idx].float(), labels[idx]
        n_runs = int(run.max()) + 1
        lengths = torch.bincount(run, minlength=n_runs)
        starts = torch.cumsum(lengths, 0) - lengths
        pos = torch.arange(len(idx), device=em.device) - starts[run]
        width = int(lengths.max())
        T = em.shape[-1]
        grid = em.new_zeros(n_runs, width, T)
        grid[run, pos] = em
        tags = lab.new_zeros(n_runs, width)
        tags[run, pos] = lab
        mask = torch.zeros(n_runs, width, dtype=torch.bool, device=em.device)
        mask[run, pos] = True
        # score of the gold path
        gold = self.start[tags[:, 0]] + grid[:, 0].gather(1, tags[:, :1]).squeeze(1)
        trans = self.transitions[tags[:, :-1], tags[:, 1:]] + grid[:, 1:].gather(2, tags[:, 1:, None]).squeeze(2)
        gold = gold + (trans * mask[:, 1:]).sum(1)
        last = tags.gather(1, (lengths - 1)[:, None]).squeeze(1)
        gold = gold + self.end[last]
        # partition function
        alpha = self.start + grid[:, 0]
        for t in range(1, width):
            nxt = torch.logsumexp(alpha[:, :, None] + self.transitions[None] + grid[:, t, None, :], dim=1)
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        log_z = torch.logsumexp(alpha + self.end, dim=1)
        return (log_z - gold).sum() / len(idx)

    def viterbi(self, log_probs: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
        """Best tag sequence of each chain of words; a new ``groups`` value (a line, a page) starts a new
        chain. Chains are independent, so they are decoded side by side: the loop steps through the
        positions of the longest chain, each step over every chain still that long (chains sorted by
        length), not through the words one by one. The same path as one chain after another, tie for tie."""
        n, T = log_probs.shape
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        trans = self.transitions.detach().float().cpu().numpy()
        start = self.start.detach().float().cpu().numpy()
        end = self.end.detach().float().cpu().numpy()
        if groups is None:
            firsts = np.zeros(1, dtype=np.int64)
        else:
            groups = np.asarray(groups)
            firsts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
        lengths = np.diff(np.append(firsts, n))
        order = np.argsort(-lengths, kind="stable")
        firsts, lengths = firsts[order], lengths[order]
        L = int(lengths[0])
        shared = int(lengths[1]) if len(lengths) > 1 else 1  # past it, the longest chain goes on alone
        live = np.searchsorted(-lengths, -np.arange(shared), side="left")  # chains longer than t
        back = np.zeros((n, T), dtype=np.int64)  # best previous tag, for each word and tag
        score = start + log_probs[firsts]  # [chain, tag]
        for t in range(1, shared):
            k = int(live[t])
            at = firsts[:k] + t
            cand = score[:k, :, None] + trans  # [chain, previous tag, tag]
            back[at] = cand.argmax(1)
            score[:k] = cand.max(1) + log_probs[at]
        first, alone = int(firsts[0]), score[0]
        for t in range(first + max(1, shared), first + L):  # one chain: plain steps (a page with no newline)
            cand = alone[:, None] + trans
            back[t] = cand.argmax(0)
            alone = cand.max(0) + log_probs[t]
        score[0] = alone
        tag = (score + end).argmax(1)  # each chain's last tag
        out = np.empty(n, dtype=np.int64)
        last = int(tag[0])
        for t in range(first + L - 1, first + shared - 1, -1):
            out[t] = last
            last = int(back[t, last])
        tag[0] = last
        for t in range(shared - 1, -1, -1):
            k = int(live[t])
            at = firsts[:k] + t
            out[at] = tag[:k]
            if t:
                tag[:k] = back[at, tag[:k]]
        return out

    def viterbi_once(self, log_probs: np.ndarray, once: list[np.ndarray],
                     closed: list[tuple[int, int]] = (), required: list[np.ndarray] = ()) -> np.ndarray:
        """Best tag sequence in which the tags of each mask in ``once`` occur at most once in all, and
        where, for each ``(begin, inside)`` pair of ``closed``, ``inside`` comes only after ``begin`` or
        ``inside`` (never first, never after another tag: under lenient BIO decoding it would start a
        section of its own).

        The Tagger uses it for section labels that a page has one of (``config.section_once``: masks on
        ``B-x``, ``(B-x, I-x)`` closed): Viterbi over the tags times which of the masks are used up
        (``2 ** len(once)`` copies of the tags).

        ``required``: masks of which some tag must occur at least once (``config.section_required``, e.g.
        ``B-body``: a page has an article). Each adds a bit that its tags set and the end must have; the
        other masks' bits stay as they are (``2 ** (len(once) + len(required))`` copies)."""
        n, T = log_probs.shape
        if (not once and not closed and not required) or n == 0:
            return self.viterbi(log_probs)
        trans = self.transitions.detach().float().cpu().numpy().copy()
        start = self.start.detach().float().cpu().numpy().copy()
        end = self.end.detach().float().cpu().numpy()
        for b, i in closed:
            keep = trans[[b, i], i].copy()
            trans[:, i] = -np.inf
            trans[[b, i], i] = keep
            start[i] = -np.inf
        masks = list(once) + list(required)
        S = 1 << len(masks)
        inc = np.zeros(T, dtype=np.int64)  # the bits that each tag sets (uses up, for the once masks)
        for k, m in enumerate(masks):
            inc |= np.asarray(m, dtype=np.int64) << k
        once_bits = (1 << len(once)) - 1
        cols = np.arange(T)
        score = np.full((S, T), -np.inf)
        score[inc, cols] = start + log_probs[0]
        back = np.zeros((n, S, T), dtype=np.int64)  # best previous state, as c * T + tag
        c = np.arange(S)[:, None]
        ok = (c & inc[None] & once_bits) == 0  # [copy, tag]: a used-up once mask's tags cannot come again
        to, tags = (c | inc[None])[ok], np.broadcast_to(cols, (S, T))[ok]
        target = to * T + tags  # a required mask's tag leads copies with and without its bit to one copy
        for t in range(1, n):
            cand = score[:, :, None] + trans[None]  # [copy, previous tag, tag]
            best = cand.argmax(1)  # [copy, tag]
            val = np.take_along_axis(cand, best[:, None, :], 1)[:, 0][ok] + log_probs[t, tags]
            new = np.full(S * T, -np.inf)
            np.maximum.at(new, target, val)
            won = val == new[target]
            back[t].reshape(-1)[target[won]] = (c * T + best)[ok][won]
            score = new.reshape(S, T)
        final = score + end
        need = ((1 << len(masks)) - 1) ^ once_bits
        if need:  # only the copies that have every required bit; none can be reached: the best of all
            met = final[(np.arange(S) & need) == need]
            if np.isfinite(met).any():
                final = np.where(((np.arange(S) & need) == need)[:, None], final, -np.inf)
        flat = int(np.argmax(final.ravel()))
        out = np.empty(n, dtype=np.int64)
        for t in range(n - 1, -1, -1):
            out[t] = flat % T
            if t:
                flat = int(back[t, flat // T, flat % T])
        return out
