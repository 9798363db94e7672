"""Property tests on hostile pages: the data layer, and the real Tagger on a tiny trained model.

Hypothesis profiles: ``ci`` (default, a few hundred cases in all, well under a minute) and ``stress``
(``HYPOTHESIS_PROFILE=stress pytest tests/test_fuzz.py``: many more). Each test asks for a share of
the profile's ``max_examples``.
"""
from __future__ import annotations

import json
import os
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.schema import Page
from data.text import lines, normalize, words
from fuzz_pages import blank_text, check_record, nonblank_lines, page_text, raw_text, tile, token

_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("stress", max_examples=2000, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def share(fraction: float, at_least: int = 1) -> settings:
    return settings(PROFILE, max_examples=max(at_least, int(PROFILE.max_examples * fraction)))


any_text = st.one_of(raw_text, st.text(max_size=300))


# ---------------------------------------------------------------------------------------------
# Data layer


@share(1.0)
@given(any_text)
def test_words_cover_every_non_space_character_once(text):
    spans = words(text).tolist()
    owner = [None] * len(text)
    prev_end = 0
    for k, (a, b) in enumerate(spans):
        assert prev_end <= a < b <= len(text), (a, b)
        prev_end = b
        for i in range(a, b):
            assert not text[i].isspace(), f"word {text[a:b]!r} holds a space"
            owner[i] = k
    for i, ch in enumerate(text):
        assert ch.isspace() or owner[i] is not None, f"{ch!r} at {i} is in no word"
    # Two touching letters/digits (not P*, S*, Cf) are never cut apart.
    cat = [unicodedata.category(c) for c in text]
    for i in range(len(text) - 1):
        if owner[i] is not None and owner[i + 1] is not None:
            if cat[i][0] not in "PS" and cat[i] != "Cf" and cat[i + 1][0] not in "PS" and cat[i + 1] != "Cf":
                assert owner[i] == owner[i + 1], f"{text[i:i + 2]!r} split at {i}"
    # Words with a mark at an edge are one mark (plus format characters that touch it).
    for a, b in spans:
        core = [c for c in text[a:b] if unicodedata.category(c) != "Cf"]
        if core and (unicodedata.category(core[0])[0] in "PS" or unicodedata.category(core[-1])[0] in "PS"):
            assert len(core) == 1, f"word {text[a:b]!r} has a mark at its edge and more than one character"


@share(1.0)
@given(any_text)
def test_lines_split_on_newline_only(text):
    assert [tuple(x) for x in lines(text).tolist()] == nonblank_lines(text)


@share(0.5)
@given(st.one_of(token, st.text(max_size=20)))
def test_normalize_never_crashes_and_drops_marks(word):
    out = normalize(word)
    assert isinstance(out, str)
    assert not any(unicodedata.category(c) == "Cf" for c in out), repr(out)
    assert "\u0640" not in out and not any("\u064b" <= c <= "\u065f" for c in out), repr(out)


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["id", "text", "meta", "x"]), inner,
                                                                max_size=4),
    max_leaves=12)
raw_line = st.one_of(
    st.binary(max_size=200),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.builds(lambda i, t: json.dumps({"id": i, "text": t}).encode(), json_value, json_value),
    st.integers(1, 200_000).map(lambda n: b'{"id": 1, "text": ' + b"[" * n),
)


@share(1.0)
@given(raw_line)
def test_parse_line_never_raises(raw):
    """Any input line becomes a page or an error record that names the line; nothing escapes."""
    from data.schema import ErrorRecord, parse_line

    rec = parse_line(raw, 3, set())
    assert isinstance(rec, (Page, ErrorRecord))
    if isinstance(rec, ErrorRecord):
        assert rec.error.startswith("line 3: ") and rec.line == 3
    else:
        assert isinstance(rec.text, str) and rec.text.strip()
        assert rec.id is None or (isinstance(rec.id, (str, int)) and not isinstance(rec.id, bool))


# ---------------------------------------------------------------------------------------------
# The Tagger on hostile pages


@pytest.fixture(scope="module", params=["plain", "lexical + line features and topic keys + line tags + section CRF"])
def tagger(request, tiny_model_dir, tmp_path_factory):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from infer.tagger import Tagger
    from model import JointModel

    folder = tiny_model_dir
    if request.param != "plain":  # the same model with the optional feature tables and CRF (random init)
        base = AutoModel.from_pretrained(tiny_model_dir)
        cfg = type(base.config).from_dict({**base.config.to_dict(), "line_buckets": 1024, "line_feature_dim": 8,
                                           "section_crf": True, "lexical_buckets": 4096, "lexical_window": 1,
                                           "lexical_tags": True, "line_topic": True, "line_tags": True})
        torch.manual_seed(0)
        model = JointModel(cfg)
        model.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("line_rnn")},
                              strict=False)
        with torch.no_grad():
            model.lexical_tag_scores.weight.normal_(std=0.5)  # as if fitted: the scores reach the output
            model.line_tag_scores.weight.normal_(std=0.5)
        folder = tmp_path_factory.mktemp("line_features_model")
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    # One intra-op thread: on a shared 2-core machine torch's spinning worker threads make each tiny
    # op ~20x slower than doing it alone.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tagger = Tagger.from_pretrained(folder, device="cpu", batch_tokens=4096, block_size=8)
    assert (getattr(tagger.model, "section_chain", None) is not None) == (request.param != "plain")
    assert tagger.encoder.line_topic == (request.param != "plain")  # hostile pages through the topic keys too
    yield tagger
    torch.set_num_threads(threads)


@share(1.0)
@given(pages=st.lists(page_text, min_size=1, max_size=6))
def test_tagger_keeps_the_contract_on_hostile_pages(tagger, pages):
    recs = list(tagger.tag([Page(id=i, text=t) for i, t in enumerate(pages)]))
    assert len(recs) == len(pages)
    for i, (text, rec) in enumerate(zip(pages, recs)):
        check_record(text, i, rec, tagger.entity_types)


@settings(PROFILE, max_examples=2)
@given(fragments=st.lists(page_text, min_size=1, max_size=8))
def test_tagger_on_a_1mb_page(tagger, fragments):
    text = tile(fragments, 1_000_000)
    (rec,) = tagger.tag([Page(id="big", text=text)])
    check_record(text, "big", rec, tagger.entity_types)
    assert len(rec["sections"]) >= 1


def test_tagger_on_lone_surrogates_and_odd_unicode(tagger):
    """Valid JSON may carry lone surrogates ("\\ud800"); the page is tagged like any other."""
    texts = ["\ud800", "خبر \udfff عاجل\n\ud83d", "\U0010ffff\uffff\ufffe \x00\x01", "\ufeff\u200f\n\u061c"]
    recs = list(tagger.tag([Page(id=i, text=t) for i, t in enumerate(texts)]))
    for i, (text, rec) in enumerate(zip(texts, recs)):
        check_record(text, i, rec, tagger.entity_types)


@settings(PROFILE, max_examples=max(2, PROFILE.max_examples // 25))
@given(items=st.lists(st.tuples(st.booleans(), page_text, blank_text), min_size=1, max_size=12))
def test_cli_job_gives_one_line_per_record_and_errors_for_blank_pages(tagger, tmp_path_factory, items):
    """Blank pages go through the CLI's job (not the Tagger): one error record each, in place."""
    from infer.jobs import Job

    tmp = tmp_path_factory.mktemp("job")
    src, out = tmp / "in.jsonl", tmp / "out.jsonl"
    texts = [blank if is_blank else text for is_blank, text, blank in items]
    src.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(texts)),
                   encoding="utf-8")
    Job(tagger=tagger, input=str(src), output=out, block_size=4, progress=False).run()
    got = [json.loads(x) for x in out.read_bytes().decode("utf-8").split("\n") if x]
    assert len(got) == len(texts)
    for i, (t, rec) in enumerate(zip(texts, got)):
        if t.strip():
            check_record(t, f"p{i}", rec, tagger.entity_types)
        else:
            assert rec["id"] == f"p{i}" and rec["line"] == i + 1, rec
            assert "text" in rec["error"] and f"line {i + 1}" in rec["error"], rec
