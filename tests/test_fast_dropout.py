"""Fast CPU dropout: the same law as torch's dropout, reproducible under torch.manual_seed, exact
gradients, and no change at all in eval mode (the Tagger's outputs)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModel, BertConfig

from model.fast_dropout import FastDropout, enable_fast_dropout, fast_dropout, sdpa_fast_dropout


def test_mask_law_and_scale():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = fast_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005  # expectation kept


def test_reproducible_from_torch_seed_and_different_between_calls():
    x = torch.randn(64, 64)
    torch.manual_seed(3)
    a, b = fast_dropout(x, 0.3), fast_dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.3), a)
    assert not torch.equal(a, b)


def test_gradient_is_mask_times_scale():
    torch.manual_seed(1)
    x = torch.randn(50, 40, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.backward(torch.ones_like(y))
    kept = (y != 0)
    assert torch.allclose(x.grad, kept.float() / 0.75)
    assert torch.autograd.gradcheck(lambda t: FastDropout(0.0)(t), torch.randn(3, 4, dtype=torch.double, requires_grad=True))


def test_eval_and_p0_are_identity():
    x = torch.randn(10, 10)
    d = FastDropout(0.5).eval()
    assert torch.equal(d(x), x)
    assert torch.equal(fast_dropout(x, 0.0), x)


def _bert(dropout: float):
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    return AutoModel.from_config(cfg, attn_implementation="sdpa")


def test_encoder_eval_outputs_unchanged_and_training_masks_attention():
    model = _bert(0.2)
    ids = torch.randint(5, 100, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state
    n = enable_fast_dropout(model)
    assert n == 2 * 3 + 1 + 1  # three per layer (attention p, attention output, FFN), embeddings, attention function
    assert not any(type(m) is nn.Dropout for m in model.modules())
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    model.train()
    calls = []
    orig = torch.from_numpy
    try:
        torch.from_numpy = lambda a: (calls.append(a.shape), orig(a))[1]
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    finally:
        torch.from_numpy = orig
    assert (3, 4, 17, 17) in calls  # attention probabilities dropped by our mask
    out.sum().backward()
    assert model.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_attention_without_dropout_equals_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = nn.Module().train()
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    add_mask = torch.zeros(2, 1, 9, 9)
    add_mask[1, ..., 6:] = torch.finfo(torch.float32).min
    ours, _ = sdpa_fast_dropout(module, q, k, v, add_mask, dropout=0.0)
    ref, _ = sdpa_attention_forward(module, q, k, v, add_mask, dropout=0.0, is_causal=False)
    torch.testing.assert_close(ours, ref)
    # with dropout, our math path; at p -> 0 it must agree with SDPA as well
    torch.manual_seed(0)
    tiny_p, _ = sdpa_fast_dropout(module, q, k, v, add_mask, dropout=1e-9)
    torch.testing.assert_close(tiny_p, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_attention_dropout_keeps_expectation(p):
    module = nn.Module().train()
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 64, 8), torch.randn(1, 1, 64, 8)
    v = torch.ones(1, 1, 64, 8)  # rows of the probability matrix sum to 1, so each output is ~1 on average
    outs = torch.stack([sdpa_fast_dropout(module, q, k, v, None, dropout=p)[0] for _ in range(200)])
    assert abs(outs.mean().item() - 1.0) < 0.02
