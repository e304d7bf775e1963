"""Multi-head attention: teaching vs fused path, d2l 1.0.3's class, torch.nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import (
    MultiHeadAttention,
    causal_mask,
    local_attention,
    local_window_mask,
    merge_heads,
    split_heads,
    transpose_output,
    transpose_qkv,
)

SHAPES = [(1, 1, 1, 4, 1), (2, 3, 5, 8, 2), (3, 6, 6, 16, 4), (2, 7, 9, 12, 3)]  # B, Tq, Tk, D, H
MASKINGS = ["none", "padding", "per_query", "causal", "local", "padding+causal", "2d"]


def inputs(B, Tq, Tk, D, seed=0, requires_grad=False, sizes=None):
    g = torch.Generator().manual_seed(seed)
    dq, dk, dv = sizes or (D, D, D)
    ts = [torch.randn(B, Tq, dq, generator=g), torch.randn(B, Tk, dk, generator=g), torch.randn(B, Tk, dv, generator=g)]
    return [t.requires_grad_(requires_grad) for t in ts]


def masking_args(masking, B, Tq, Tk, allow_zero=True):
    """(valid_lens, attn_mask, full boolean mask (B, Tq, Tk)) for a masking case."""
    g = torch.Generator().manual_seed(3)
    low = 0 if allow_zero else 1
    vl, mask = None, None
    if "padding" in masking:
        vl = torch.randint(low, Tk + 1, (B,), generator=g)
    if masking == "per_query":
        vl = torch.randint(low, Tk + 1, (B, Tq), generator=g)
    if "causal" in masking:
        mask = causal_mask(Tq, Tk)
    if masking == "local":
        mask = local_window_mask(Tq, Tk, 1)
    if masking == "2d":
        mask = torch.rand(B, Tq, Tk, generator=g) > 0.4
        mask[..., 0] = True  # every query keeps one key (nn.MultiheadAttention gives NaN for empty rows)
    full = torch.ones(B, Tq, Tk, dtype=torch.bool)
    if vl is not None:
        lens = vl if vl.dim() == 2 else vl.unsqueeze(1).expand(B, Tq)
        full &= torch.arange(Tk).view(1, 1, -1) < lens.unsqueeze(-1)
    if mask is not None:
        full &= mask
    return vl, mask, full


def test_head_reshapes_are_inverse_and_put_head_h_of_sequence_b_at_row_b_times_h():
    X = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    heads = split_heads(X, 4)  # (2, 4, 3, 2)
    assert heads.shape == (2, 4, 3, 2)
    torch.testing.assert_close(heads[1, 2], X[1, :, 4:6])  # head 2 = feature columns 4, 5
    torch.testing.assert_close(merge_heads(heads), X)
    batched = transpose_qkv(X, 4)  # (8, 3, 2)
    torch.testing.assert_close(batched[1 * 4 + 2], X[1, :, 4:6])
    torch.testing.assert_close(transpose_output(batched, 4), X)


def test_two_head_worked_example_of_the_chapter():
    """The syllabus's query (1, 1, 0, 1): head 1 gets (1, 1), head 2 gets (0, 1)."""
    q = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])
    heads = split_heads(q, 2)
    torch.testing.assert_close(heads[0, 0, 0], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(heads[0, 1, 0], torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", MASKINGS)
def test_teaching_and_fused_paths_agree_outputs_and_gradients(shape, masking):
    B, Tq, Tk, D, H = shape
    if "causal" in masking and Tk < Tq:
        pytest.skip("causal needs Tk >= Tq")
    vl, mask, _ = masking_args(masking, B, Tq, Tk)
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, dropout=0.3, query_size=D, key_size=D, value_size=D).eval()
    results = {}
    for impl in ("manual", "sdpa"):
        mha.impl = impl
        mha.zero_grad()
        q, k, v = inputs(B, Tq, Tk, D, requires_grad=True)
        out = mha(q, k, v, vl, attn_mask=mask)
        assert out.shape == (B, Tq, D)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[impl] = [out, q.grad, k.grad, v.grad] + [p.grad.clone() for p in mha.parameters()]
    for a, b in zip(results["manual"], results["sdpa"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", ["none", "padding", "per_query"])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_d2l_with_state_dict_loaded_strictly(d2l, shape, masking, bias):
    B, Tq, Tk, D, H = shape
    vl, _, _ = masking_args(masking, B, Tq, Tk, allow_zero=False)
    q, k, v = inputs(B, Tq, Tk, D, sizes=(D + 1, D + 2, D + 3))  # different input sizes, as d2l allows
    theirs = d2l.MultiHeadAttention(D, H, 0.0, bias=bias).eval()
    theirs(q, k, v, vl)  # materialize d2l's lazy layers
    for impl in ("manual", "sdpa"):
        ours = MultiHeadAttention(D, H, 0.0, bias=bias, impl=impl).eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)  # our lazy layers take d2l's shapes
        expected = theirs(q, k, v, None if vl is None else vl.clone())
        torch.testing.assert_close(ours(q, k, v, vl), expected)
        if impl == "manual":  # d2l keeps (B * H, Tq, Tk); ours exposes (B, H, Tq, Tk)
            torch.testing.assert_close(ours.attention_weights.reshape(B * H, Tq, Tk), theirs.attention.attention_weights)
    back = d2l.MultiHeadAttention(D, H, 0.0, bias=bias).eval()
    back.load_state_dict(ours.state_dict(), strict=True)  # and the other way round
    torch.testing.assert_close(back(q, k, v, vl), theirs(q, k, v, vl))


def to_torch(ours: MultiHeadAttention, bias: bool) -> nn.MultiheadAttention:
    """torch.nn.MultiheadAttention (batch first) holding a copy of our weights."""
    D, H = ours.num_hiddens, ours.num_heads
    theirs = nn.MultiheadAttention(D, H, bias=bias, batch_first=True).eval()
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
        if bias:
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.bias.copy_(ours.W_o.bias)
    return theirs


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", MASKINGS)
@pytest.mark.parametrize("bias", [False, True])
def test_matches_torch_multihead_attention_with_copied_weights(shape, masking, bias):
    B, Tq, Tk, D, H = shape
    if "causal" in masking and Tk < Tq:
        pytest.skip("causal needs Tk >= Tq")
    vl, mask, full = masking_args(masking, B, Tq, Tk, allow_zero=False)
    torch.manual_seed(1)
    ours = MultiHeadAttention(D, H, 0.0, bias=bias, query_size=D, key_size=D, value_size=D).eval()
    theirs = to_torch(ours, bias)
    # PyTorch's convention is the opposite of ours: True means "may NOT attend"; per-head masks are (B * H, Tq, Tk).
    q, k, v = inputs(B, Tq, Tk, D)
    expected, expected_weights = theirs(
        q, k, v, attn_mask=(~full).repeat_interleave(H, dim=0), need_weights=True, average_attn_weights=False
    )
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        torch.testing.assert_close(ours(q, k, v, vl, attn_mask=mask), expected, atol=1e-5, rtol=1e-5)
    ours.impl = "manual"
    ours(q, k, v, vl, attn_mask=mask)
    torch.testing.assert_close(ours.attention_weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_self_attention_with_key_padding_mask_matches_torch():
    """Self-attention on a padded batch: valid_lens is torch's key_padding_mask, inverted."""
    torch.manual_seed(2)
    B, T, D, H = 3, 5, 8, 2
    ours = MultiHeadAttention(D, H, 0.0, query_size=D, key_size=D, value_size=D).eval()
    theirs = to_torch(ours, bias=False)
    X = torch.randn(B, T, D)
    vl = torch.tensor([5, 2, 3])
    padding = torch.arange(T).unsqueeze(0) >= vl.unsqueeze(1)  # (B, T): True = padding
    expected, _ = theirs(X, X, X, key_padding_mask=padding)
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        torch.testing.assert_close(ours(X, X, X, vl), expected, atol=1e-5, rtol=1e-5)


def test_fully_masked_query_gives_bias_only_output_on_both_paths():
    ours = MultiHeadAttention(4, 2, 0.0, bias=True, query_size=4, key_size=4, value_size=4).eval()
    q, k, v = inputs(2, 3, 4, 4)
    vl = torch.tensor([0, 4])
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        out = ours(q, k, v, vl)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0], ours.W_o.bias.expand(3, 4))  # zero heads, then W_o's bias


def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, 0.5, query_size=8, key_size=8, value_size=8)
    q, k, v = inputs(2, 6, 6, 8)
    for impl in ("manual", "sdpa"):
        mha.impl = impl
        mha.train()
        assert not torch.allclose(mha(q, k, v), mha(q, k, v))
        mha.eval()
        torch.testing.assert_close(mha(q, k, v), mha(q, k, v))


@pytest.mark.parametrize("num_hiddens,num_heads", [(10, 3), (12, 5), (8, 0), (8, 16)])
def test_head_count_that_does_not_divide_the_model_size_is_a_clear_error(num_hiddens, num_heads):
    with pytest.raises(ValueError, match="num_heads must divide num_hiddens|positive"):
        MultiHeadAttention(num_hiddens, num_heads, 0.0)
    if num_heads > 0:
        with pytest.raises(ValueError, match="must divide"):
            split_heads(torch.zeros(1, 2, num_hiddens), num_heads)


def test_other_errors_say_what_was_expected():
    mha = MultiHeadAttention(8, 2, 0.0, query_size=8, key_size=8, value_size=8)
    with pytest.raises(ValueError, match="3-D"):
        mha(torch.zeros(2, 8), torch.zeros(2, 3, 8), torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match="same number of positions"):
        mha(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8), torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match=r"valid_lens must lie in \[0, 3\]"):
        mha(torch.zeros(2, 3, 8), torch.zeros(2, 3, 8), torch.zeros(2, 3, 8), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="impl must be one of"):
        mha.impl = "flash"
    with pytest.raises(ValueError, match="impl must be one of"):
        MultiHeadAttention(8, 2, 0.0, impl="fast")
    mha.impl = "sdpa"
    mha(torch.zeros(1, 2, 8), torch.zeros(1, 2, 8), torch.zeros(1, 2, 8))
    with pytest.raises(RuntimeError, match="impl='manual'"):
        mha.attention_weights


@pytest.mark.parametrize("T,window", [(1, 0), (5, 0), (7, 2), (16, 3), (9, 20)])
@pytest.mark.parametrize("heads", [False, True])
def test_local_attention_equals_full_attention_with_a_window_mask(T, window, heads):
    g = torch.Generator().manual_seed(T + window)
    lead = (2, 3) if heads else (2,)
    q, k = torch.randn(*lead, T, 8, generator=g, requires_grad=True), torch.randn(*lead, T, 8, generator=g)
    v = torch.randn(*lead, T, 5, generator=g)
    mask = local_window_mask(T, T, window)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # the O(T^2) reference
    got = local_attention(q, k, v, window)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    (g1,) = torch.autograd.grad(got.sum(), q)
    (g2,) = torch.autograd.grad(expected.sum(), q)
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)


def test_local_attention_errors():
    x = torch.zeros(2, 4, 8)
    with pytest.raises(ValueError, match="window"):
        local_attention(x, x, x, -1)
    with pytest.raises(ValueError, match="same leading axes"):
        local_attention(x, torch.zeros(2, 5, 8), torch.zeros(2, 5, 8), 1)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_padded_keys_may_hold_inf_or_nan(impl):
    """Masked keys are zeroed before the projections: inf or NaN there changes neither the outputs of the real
    positions nor, in cross-attention, any gradient (without it, 0 x inf = NaN in the output and in W_k's and
    W_v's gradients). In self-attention a padded position is also a query, whose own row and W_q's gradient it
    still spoils: the documented limit."""
    g = torch.Generator().manual_seed(0)
    mha = MultiHeadAttention(8, 2, 0.0, bias=True, impl=impl, query_size=8, key_size=8, value_size=8)
    x = torch.randn(3, 6, 8, generator=g)
    lens = torch.tensor([6, 2, 4])
    real = torch.arange(6).unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
    spoiled = x.clone()
    spoiled[~real] = torch.tensor([math.inf, math.nan, -math.inf, 1.0]).repeat(2)  # every padded position
    for queries in ("self", "other"):
        q = torch.randn(3, 5, 8, generator=g) if queries == "other" else None
        grads = []
        for keys in (x, spoiled):
            mha.zero_grad()
            out = mha(keys if q is None else q, keys, keys, lens)
            rows = real if q is None else torch.ones(3, 5, dtype=torch.bool)  # a padded query's own row is noise
            out[rows].sum().backward()
            grads.append([p.grad.clone() for p in mha.parameters()])
            if keys is x:
                expected = out[rows].detach()
            else:
                torch.testing.assert_close(out[rows], expected)
        if queries == "other":
            for a, b in zip(*grads):
                assert torch.isfinite(b).all()
                torch.testing.assert_close(b, a)
