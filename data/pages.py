"""Page synthesis: a real article body surrounded by the furniture of a news site, with gold sections
(and gold entities where the material is labelled).

The unit of material is an :class:`Article`. Its ``annotate`` field says which of its text has
complete entity gold: ``"none"`` (raw news: section labels only), ``"body"`` (a CoNLL document:
``entity_regions`` = the body lines) or ``"all"`` (the project's own sample, labelled everywhere).
Furniture lines from labelled slots (names, places, agencies) carry their entities, which count only
on ``"all"`` pages; elsewhere furniture is never annotated, so it is never trained as ``O``.
"""
from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter

from data.augment import AUGMENTED_KINDS, arabic_digits, augmented_wording, nonce_pool, nonce_wording
from data.schema import Page, Span
from data.templates import (AGENCIES, CATEGORIES, DATE_FORMATS, HIJRI_MONTHS, LEVANT_MONTHS, MONTHS, PERSONS,
                            PLACES, SITES, TIME_FORMATS, WEEKDAYS, Template, templates, wordings)
from data.text import words


@dataclass
class Article:
    """Material for a page body or for teasers/related items. Entity offsets are per line."""

    id: str
    title: str
    paragraphs: list[str]
    para_entities: list[list[Span]] | None = None  # None: paragraphs not annotated
    title_entities: list[Span] | None = None
    para_labels: list[str] | None = None  # a paragraph's section where it is not body (a wire dateline)
    author: str = ""
    annotate: str = "none"  # "none" | "body" | "all"
    meta: dict = field(default_factory=dict)


@dataclass
class Piece:
    """One line of a page; ``ents`` is None when the line's entities are unknown."""

    text: str
    ents: list[Span] | None = None


@dataclass
class Block:
    label: str
    lines: list[Piece]
    main_body: bool = False


# ------------------------------------------------------------------------------------------------
# Slots and formats

def fill(fmt: str, slots: dict[str, Piece]) -> list[Piece]:
    """Format ``fmt`` ("{person} - {place}", "\\n" starts a new line) with labelled slot pieces.
    A slot's entities are kept only if they still lie on whole words of the filled line; otherwise
    the line's entities become unknown (never a wrong ``O``)."""
    out = []
    for part in fmt.split("\n"):
        text, ents, known, pos = "", [], True, 0
        for m in re.finditer(r"\{(\w+)\}", part):
            text += part[pos:m.start()]
            piece = slots[m.group(1)]
            if piece.ents is None:
                known = False
            else:
                ents += [Span(e.label, e.start + len(text), e.end + len(text)) for e in piece.ents]
            text += piece.text
            pos = m.end()
        text += part[pos:]
        if known and not _aligned(text, ents):
            known = False
        out.append(Piece(text, ents if known else None))
    return out


def _aligned(text: str, ents: list[Span]) -> bool:
    w = words(text)
    starts, ends = set(w[:, 0].tolist()), set(w[:, 1].tolist())
    return all(e.start in starts and e.end in ends for e in ents)


def _labelled(text: str, label: str | None) -> Piece:
    return Piece(text, [Span(label, 0, len(text))] if label else [])


def _plain(text: str) -> Piece:
    """Fixed furniture wording: it names nothing, so its entity list is empty (known)."""
    return Piece(text, [])


_PERSIAN = str.maketrans({"ك": "ک", "ي": "ی", "ى": "ی"})
_EASTERN = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


class Furniture:
    """Draws the furniture of one page: wordings from one half (train or held-out), labelled slots."""

    def __init__(self, rng: random.Random, which: str, augment: float = 0.0, nonce: float = 0.0,
                 pool: tuple[str, ...] = ()):
        if (augment or nonce) and which != "train":
            raise ValueError("augment, nonce: made-up wordings are for the train half only")
        self.rng, self.which, self.augment, self.nonce, self.pool = rng, which, augment, nonce, pool
        self.used: list[str] = []  # the wording formats this page used (recorded in meta)
        self.nonce_used = False  # whether a wording got words of the pool (which may be names)

    def wording(self, kind: str) -> str:
        if self.augment and kind in AUGMENTED_KINDS and self.rng.random() < self.augment:
            w = augmented_wording(kind, self.rng)
        else:
            w = self.rng.choice(wordings(kind, self.which))
        if self.nonce and kind in AUGMENTED_KINDS and kind != "bullet" and self.rng.random() < self.nonce:
            made = nonce_wording(kind, w, self.pool, self.rng)
            self.nonce_used |= made != w
            w = made
        self.used.append(w)
        return w

    def date(self) -> Piece:
        r = self.rng
        day = dt.date(2014, 1, 1) + dt.timedelta(days=r.randrange(1100))
        fmt = r.choice(DATE_FORMATS)
        s = fmt.format(d=day.day, dd=f"{day.day:02d}", mm=f"{day.month:02d}", y=day.year, month=MONTHS[day.month - 1],
                       levant=LEVANT_MONTHS[day.month - 1], weekday=WEEKDAYS[day.weekday()],
                       hmonth=r.choice(HIJRI_MONTHS), hy=r.randrange(1435, 1438), d2=day.day, n=r.randrange(2, 12))
        return _plain(s.translate(_EASTERN) if r.random() < 0.15 else s)

    def time(self) -> Piece:
        h = self.rng.randrange(1, 13)
        return _plain(self.rng.choice(TIME_FORMATS).format(h=h, hh=f"{h:02d}", mi=f"{self.rng.randrange(60):02d}"))

    def slots(self, author: str = "") -> dict[str, Piece]:
        r = self.rng
        if author and r.random() < 0.7:
            person = Piece(author, None)  # a real byline: which names it holds is unknown
        else:
            person = _labelled(*r.choice(PERSONS))
        return {"person": person, "place": _labelled(*r.choice(PLACES)), "agency": _labelled(*r.choice(AGENCIES)),
                "date": self.date(), "time": self.time()}

    def boilerplate(self, kind: str) -> list[Piece]:
        r = self.rng
        fmt = self.wording(kind)
        year, site, n = r.randrange(2014, 2025), r.choice(SITES), r.randrange(0, 40)
        text = fmt.format(year=year, year2=year + 1, site=site, n=n, n_ar=arabic_digits(n),
                          cat=r.choice(CATEGORIES), sub=r.choice(CATEGORIES))
        return [_plain(t) for t in text.split("\n")]


# ------------------------------------------------------------------------------------------------
# Parts

def _title_piece(a: Article) -> Piece:
    return Piece(a.title, a.title_entities)


def _body_blocks(a: Article, other: list[Article], f: Furniture, t: Template) -> list[Block]:
    """Body paragraphs, possibly interrupted by inline read-also lines (body goes on after them)."""
    ents = a.para_entities or [None] * len(a.paragraphs)
    paras = [Piece(p, e) for p, e in zip(a.paragraphs, ents)]
    cuts = []
    if len(paras) >= 3 and other and f.rng.random() < t.inline:
        cuts = sorted(f.rng.sample(range(1, len(paras)), k=min(len(paras) - 1, f.rng.choice((1, 1, 2)))))
    labels = a.para_labels or ["body"] * len(paras)
    blocks, prev = [], 0
    for c in cuts + [len(paras)]:
        blocks += _runs(paras[prev:c], labels[prev:c])
        if c < len(paras):
            teaser = f.rng.choice(other)
            prefix = f.wording("inline_prefix")
            blocks.append(Block("read_also", fill(prefix.replace("{", "{{").replace("}", "}}") + "{t}",
                                                  {"t": _title_piece(teaser)})))
        prev = c
    return blocks


def _runs(paras: list[Piece], labels: list[str]) -> list[Block]:
    """Body paragraphs as blocks of one label each: a run of body, or a byline or end line of the
    article's own text (``Article.para_labels``)."""
    return [Block(lab, [p for p, _ in run], main_body=lab == "body")
            for lab, run in groupby(zip(paras, labels), key=itemgetter(1))]


def _read_also(other: list[Article], f: Furniture, t: Template) -> Block:
    r = f.rng
    teaser = r.choice(other)
    lines = [_plain(f.wording("read_also_header"))] if r.random() < t.header else []
    lines.append(_title_piece(teaser))
    k = r.randint(*t.teaser_paragraphs)
    pents = teaser.para_entities or [None] * len(teaser.paragraphs)
    lines += [Piece(p, e) for p, e in list(zip(teaser.paragraphs, pents))[:k]]
    return Block("read_also", lines)


def _related(other: list[Article], f: Furniture, t: Template) -> Block:
    r = f.rng
    bullet = f.wording("bullet")
    lines = [_plain(f.wording("related_header"))] if r.random() < t.header else []
    for n, item in enumerate(r.sample(other, k=min(len(other), r.randint(3, 10))), 1):
        b = bullet.format(n=n, n_ar=arabic_digits(n))
        lines += fill(t.indent + (b + " " if b else "") + "{t}", {"t": _title_piece(item)})
    return Block("related", lines)


def _tags(a: Article, f: Furniture) -> Block:
    """Tag values are names from the article (labelled) or words of its title (not names)."""
    r = f.rng
    values: list[Piece] = []
    if a.para_entities:
        seen = {}
        for p, es in zip(a.paragraphs, a.para_entities):
            for e in es:
                seen.setdefault(p[e.start:e.end], e.label)
        values = [_labelled(s, lab) for s, lab in list(seen.items())[: r.randint(1, 4)]]
    title_words = []  # title words that are not part of a name (unknown when the title is unlabelled)
    for m in re.finditer(r"\S+", a.title):
        if len(m.group()) > 3 and m.group().isalpha():
            if a.title_entities is None:
                title_words.append(Piece(m.group(), None))
            elif not any(e.start < m.end() and m.start() < e.end for e in a.title_entities):
                title_words.append(_plain(m.group()))
    values += [w for w in r.sample(title_words, k=min(len(title_words), r.randint(0, 3)))]
    if not values:
        values = [_plain(r.choice(CATEGORIES))]
    header, sep = f.wording("tags_header"), f.wording("tag_separator")
    persian = r.random() < 0.25
    fmt = sep.join("{v%d}" % i for i in range(len(values)))
    slots = {f"v{i}": v for i, v in enumerate(values)}
    if sep == "\n" or r.random() < 0.2:
        lines = [_plain(header)] + fill(fmt, slots)
    else:
        lines = fill(header + " " + fmt, slots)
    if persian:
        lines = [Piece(p.text.translate(_PERSIAN), p.ents) for p in lines]
    return Block("tags", lines)


def _byline(a: Article, f: Furniture) -> Block:
    return Block("byline", fill(f.wording("byline"), f.slots(a.author)))


def _source(f: Furniture) -> Block:
    fmt = f.wording("source").replace("{}", "{agency}")
    return Block("source", fill(fmt, f.slots()))


# ------------------------------------------------------------------------------------------------
# Assembly

LAYOUT_PARTS = ("nav", "ad", "title", "byline", "share", "body", "source", "tags", "read_also", "related",
                "comments", "copyright")


def random_layout(template: Template, rng: random.Random) -> Template:
    """``template`` with its parts in a random order: title and body and 2 to 6 other parts, each
    distinct part drawn from every site's parts, and the template's spacing, indentation and
    header odds redrawn. No held-out template or wording is used. The order is free but for what every
    site's pages share: the title above the body, the menu (``nav``) at the top and the copyright line at
    the bottom (:func:`build_page`'s occasional swap of two neighbouring parts, in every split, may still
    exchange them with a neighbour). Layouts with the title under the article taught the section layer that
    a short line after the body may be the title; the probe and full-run figures behind this rule are in
    docs/metrics.md (fifteenth and sixteenth sessions)."""
    others = [p for p in LAYOUT_PARTS if p not in ("title", "body")]
    order = ["title", "body", *rng.sample(others, rng.randint(2, 6))]
    rng.shuffle(order)
    t, b = order.index("title"), order.index("body")
    if t > b:  # a headline sits above its article on every real page
        order[t], order[b] = order[b], order[t]
    for part, edge in (("nav", 0), ("copyright", len(order) - 1)):  # as do the menu and the copyright line
        if part in order:
            order.insert(edge, order.pop(order.index(part)))
    return Template(f"{template.name}+layout", tuple(order), blank=rng.choice((0.0, 0.3, 0.6, 1.0)), p_drop=0.0,
                    inline=template.inline, indent=rng.choice(("", "", " ", "  ")), header=rng.choice((0.6, 0.9, 1.0)),
                    teaser_paragraphs=template.teaser_paragraphs)


def build_page(article: Article, other: list[Article], rng: random.Random, template: Template,
               which: str = "train", page_id: str | None = None, augment: float = 0.0, layouts: float = 0.0,
               nonce: float = 0.0, pool: tuple[str, ...] = ()) -> Page:
    """One page: ``article`` as the body, ``other`` articles (with titles) as teasers and related items.
    Teasers are drawn at random; with a large pool the body's own title almost never comes back.
    ``layouts``: the chance that the page's parts come in a random order (:func:`random_layout`);
    ``nonce``: the chance that a furniture wording gets words drawn from ``pool`` (``data.augment.nonce_wording``)."""
    f = Furniture(rng, which, augment, nonce, pool)
    if not other:
        other = [article]
    if layouts and rng.random() < layouts:
        template = random_layout(template, rng)
    order = [p for p in template.order if p in ("title", "body") or rng.random() >= template.p_drop]
    if rng.random() < 0.15 and len(order) > 3:  # an occasional swap of two neighbouring parts
        i = rng.randrange(len(order) - 1)
        order[i], order[i + 1] = order[i + 1], order[i]
    blocks: list[Block] = []
    for part in order:
        if part == "title":
            blocks.append(Block("title", [_title_piece(article)]))
        elif part == "body":
            blocks += _body_blocks(article, other, f, template)
        elif part == "byline":
            blocks.append(_byline(article, f))
        elif part == "source":
            blocks.append(_source(f))
        elif part == "tags":
            blocks.append(_tags(article, f))
        elif part == "read_also":
            blocks.append(_read_also(other, f, template))
        elif part == "related":
            blocks.append(_related(other, f, template))
        else:  # nav, share, ad, comments, copyright
            blocks.append(Block("boilerplate", f.boilerplate(part)))
    if f.nonce_used:  # drawn words may be names: no furniture line of this page is annotated as named-nothing
        blocks = [b if b.main_body else Block(b.label, [Piece(p.text, None) for p in b.lines]) for b in blocks]
    page = assemble(blocks, article.annotate, rng, template.blank, page_id or article.id)
    page.meta = {"body": article.id, "template": template.name, "wordings": which, "furniture": f.used,
                 **article.meta}
    return page


def assemble(blocks: list[Block], annotate: str, rng: random.Random, blank: float, page_id: str) -> Page:
    """Lay blocks out as text; sections are blocks, entities and regions come from annotated lines."""
    text: list[str] = []
    pos = 0
    sections, entities = [], []
    line_spans: list[tuple[int, int, bool]] = []  # (start, end, annotated) of every line
    for block in blocks:
        lines = [p for p in block.lines if p.text.strip()]
        if not lines:
            continue
        first = None
        for p in lines:
            if text:
                sep = "\n\n" if rng.random() < blank else "\n"
                text.append(sep)
                pos += len(sep)
            ok = p.ents is not None and (annotate == "all" or (annotate == "body" and block.main_body))
            if ok:
                entities += [Span(e.label, e.start + pos, e.end + pos) for e in p.ents]
            lead = len(p.text) - len(p.text.lstrip())
            line_spans.append((pos + lead, pos + len(p.text.rstrip()), ok))
            first = pos if first is None else first
            text.append(p.text)
            pos += len(p.text)
        sections.append(Span(block.label, first, pos))
    regions: list[tuple[int, int]] = []
    prev_ok = False
    for s, e, ok in line_spans:
        if ok and prev_ok:
            regions[-1] = (regions[-1][0], e)
        elif ok:
            regions.append((s, e))
        prev_ok = ok
    page = Page(id=page_id, text="".join(text), sections=sections)
    if regions:
        page.entities = entities
        if not all(ok for _, _, ok in line_spans):
            page.entity_regions = regions
    return page


def build_pages(bodies: list[Article], furniture: list[Article], rng: random.Random,
                which: str = "train", template_set: tuple[Template, ...] | None = None,
                id_prefix: str = "", augment: float = 0.0, layouts: float = 0.0, nonce: float = 0.0) -> list[Page]:
    """One validated page per body (the API that training calls to make pages on the fly).

    ``which`` selects the wording half ("train" or "held_out"); ``template_set`` defaults to the
    templates of that half. ``augment``: the share of furniture wordings made up by
    ``data.augment`` instead of drawn from the train half's lists (train half only); ``layouts``: the
    share of pages whose parts come in a random order (:func:`random_layout`; train half only); ``nonce``:
    the share of furniture wordings whose words are partly replaced by words of the furniture articles'
    titles (``data.augment.nonce_wording``; train half only)."""
    if layouts and which != "train":
        raise ValueError("layouts: random orders are for the train half only")
    tset = template_set or templates(which)
    furniture = [a for a in furniture if a.title]  # once, not per page: the pool can be 30,000 long
    pool = nonce_pool(tuple(a.title for a in furniture)) if nonce else ()
    out = []
    for k, a in enumerate(bodies):
        page = build_page(a, furniture, rng, rng.choice(tset), which, page_id=f"{id_prefix}{k}-{a.id}", augment=augment,
                          layouts=layouts, nonce=nonce, pool=pool)
        out.append(Page.from_dict(page.to_dict()))  # every page must pass the contract
    return out
