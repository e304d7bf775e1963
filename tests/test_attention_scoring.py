"""Scoring functions: d2l 1.0.3's classes and PyTorch's fused kernel as oracles."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import AdditiveAttention, DotProductAttention, causal_mask, dot_product_attention, local_window_mask

SHAPES = [(1, 1, 1, 4, 4), (2, 3, 5, 8, 6), (3, 7, 7, 16, 16), (2, 12, 9, 32, 5)]  # B, Tq, Tk, D, Dv


def qkv(B, Tq, Tk, D, Dv, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    ts = [torch.randn(B, Tq, D, generator=g), torch.randn(B, Tk, D, generator=g), torch.randn(B, Tk, Dv, generator=g)]
    return [t.requires_grad_(requires_grad) for t in ts]


def lengths(B, Tq, Tk, per_query, seed=1, allow_zero=False):
    g = torch.Generator().manual_seed(seed)
    low = 0 if allow_zero else 1
    shape = (B, Tq) if per_query else (B,)
    return torch.randint(low, Tk + 1, shape, generator=g)


def sdpa_reference(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("per_query", [False, True])
def test_dot_product_matches_d2l(d2l, shape, per_query):
    B, Tq, Tk, D, Dv = shape
    q, k, v = qkv(*shape)
    vl = lengths(B, Tq, Tk, per_query)
    ours, theirs = DotProductAttention(0.0).eval(), d2l.DotProductAttention(0.0).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)  # no parameters on either side
    theirs.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(ours(q, k, v, vl), theirs(q, k, v, vl.clone()))
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights)
    torch.testing.assert_close(ours(q, k, v), theirs(q, k, v))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masking", ["none", "padding", "per_query", "causal", "local", "padding+causal"])
def test_teaching_and_fused_paths_agree_with_pytorch_outputs_and_gradients(shape, masking):
    B, Tq, Tk, D, Dv = shape
    vl, mask = None, None
    if "padding" in masking:
        vl = lengths(B, Tq, Tk, per_query=False, allow_zero=True)
    if masking == "per_query":
        vl = lengths(B, Tq, Tk, per_query=True, allow_zero=True)
    if "causal" in masking:
        mask = causal_mask(Tq, Tk) if Tk >= Tq else None
    if masking == "local":
        mask = local_window_mask(Tq, Tk, 2)
    results = {}
    for impl in ("manual", "sdpa", "reference"):
        q, k, v = qkv(*shape, requires_grad=True)
        if impl == "reference":  # PyTorch's own kernel with the mask built by hand
            full = torch.ones(B, Tq, Tk, dtype=torch.bool)
            if vl is not None:
                lens = vl if vl.dim() == 2 else vl.unsqueeze(1).expand(B, Tq)
                full &= torch.arange(Tk).view(1, 1, -1) < lens.unsqueeze(-1)
            if mask is not None:
                full &= mask
            out = sdpa_reference(q, k, v, full)
        else:
            out = DotProductAttention(0.0, impl=impl).eval()(q, k, v, vl, attn_mask=mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[impl] = (out, q.grad, k.grad, v.grad)
    for impl in ("manual", "sdpa"):
        for a, b in zip(results[impl], results["reference"]):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_fully_masked_query_gives_zero_on_both_paths():
    q, k, v = qkv(2, 3, 4, 8, 5)
    vl = torch.tensor([0, 2])
    for impl in ("manual", "sdpa"):
        out = DotProductAttention(0.0, impl=impl)(q, k, v, vl)
        assert out[0].eq(0).all() and torch.isfinite(out).all()


def test_scaled_scores_closed_form():
    q, k, v = qkv(1, 2, 3, 4, 3)
    out, w = dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(out, expected @ v)


def test_fast_path_refuses_to_invent_weights():
    attn = DotProductAttention(0.0, impl="sdpa")
    attn(*qkv(1, 2, 3, 4, 4))
    with pytest.raises(RuntimeError, match="use impl='manual'"):
        attn.attention_weights
    with pytest.raises(RuntimeError, match="call the module first"):
        DotProductAttention(0.0).attention_weights


def test_dropout_only_in_training_and_on_the_weights():
    torch.manual_seed(0)
    q, k, v = qkv(2, 4, 6, 8, 8)
    attn = DotProductAttention(0.5)
    attn.eval()
    torch.testing.assert_close(attn(q, k, v), DotProductAttention(0.0)(q, k, v))
    attn.train()
    assert not torch.allclose(attn(q, k, v), DotProductAttention(0.0)(q, k, v))
    torch.testing.assert_close(attn.attention_weights.sum(-1), torch.ones(2, 4))  # stored before dropout


@pytest.mark.parametrize("per_query", [False, True])
def test_additive_attention_state_dicts_load_both_ways_with_d2l(d2l, per_query):
    torch.manual_seed(0)
    q = torch.randn(2, 3, 20)
    k, v = torch.randn(2, 6, 7), torch.randn(2, 6, 4)
    vl = lengths(2, 3, 6, per_query)
    theirs = d2l.AdditiveAttention(num_hiddens=8, dropout=0.1).eval()
    theirs(q, k, v, vl.clone())  # materialize d2l's lazy layers
    ours = AdditiveAttention(num_hiddens=8, dropout=0.1).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    torch.testing.assert_close(ours(q, k, v, vl), theirs(q, k, v, vl.clone()))
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights)
    eager = AdditiveAttention(8, 0.1, query_size=20, key_size=7).eval()
    eager.load_state_dict(theirs.state_dict(), strict=True)
    torch.testing.assert_close(eager(q, k, v, vl), theirs(q, k, v, vl.clone()))
    back = d2l.AdditiveAttention(num_hiddens=8, dropout=0.1).eval()
    back(q, k, v, vl.clone())
    back.load_state_dict(eager.state_dict(), strict=True)
    torch.testing.assert_close(back(q, k, v, vl.clone()), eager(q, k, v, vl))
    assert sorted(eager.state_dict()) == ["W_k.weight", "W_q.weight", "w_v.weight"]


def test_additive_attention_closed_form():
    torch.manual_seed(1)
    attn = AdditiveAttention(5, 0.0, query_size=3, key_size=2)
    q, k, v = torch.randn(1, 2, 3), torch.randn(1, 4, 2), torch.randn(1, 4, 6)
    out = attn(q, k, v)
    scores = torch.empty(2, 4)
    for i in range(2):
        for j in range(4):
            hidden = torch.tanh(attn.W_q.weight @ q[0, i] + attn.W_k.weight @ k[0, j])
            scores[i, j] = attn.w_v.weight[0] @ hidden
    torch.testing.assert_close(out[0], torch.softmax(scores, -1) @ v[0])


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(2, 3, 4), torch.zeros(2, 5, 6), torch.zeros(2, 5, 6)), "same size D, got 4 and 6"),
        ((torch.zeros(2, 3, 4), torch.zeros(3, 5, 4), torch.zeros(3, 5, 6)), "batch sizes differ"),
        ((torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 4, 6)), "same number of positions Tk"),
        ((torch.zeros(3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 6)), r"queries must be a 3-D tensor"),
    ],
)
def test_shape_errors(args, message):
    with pytest.raises(ValueError, match=message):
        DotProductAttention(0.0)(*args)


def test_valid_lens_out_of_range_and_bad_impl():
    with pytest.raises(ValueError, match=r"valid_lens must lie in \[0, 5\]"):
        DotProductAttention(0.0, impl="sdpa")(*qkv(2, 3, 5, 4, 4), torch.tensor([2, 9]))
    with pytest.raises(ValueError, match=r"impl must be one of \('manual', 'sdpa'\)"):
        DotProductAttention(0.0, impl="flash")
    with pytest.raises(ValueError, match="num_hiddens must be an int >= 1"):
        AdditiveAttention(0, 0.1)


# --- review fixes -------------------------------------------------------------------


def nan_for_fully_masked_rows(monkeypatch):
    """Make the fused kernel behave like CUDA's memory-efficient one did: NaN where a query sees no key."""
    real = F.scaled_dot_product_attention

    def kernel(q, k, v, attn_mask=None, dropout_p=0.0, **kwargs):
        out = real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, **kwargs)
        if attn_mask is not None:
            out = out.masked_fill(~attn_mask.any(-1, keepdim=True), math.nan)
        return out

    monkeypatch.setattr(F, "scaled_dot_product_attention", kernel)


@pytest.mark.parametrize("per_query", [False, True])
def test_fused_path_zeroes_fully_masked_rows_whatever_the_kernel_returns(monkeypatch, per_query):
    nan_for_fully_masked_rows(monkeypatch)
    q, k, v = qkv(2, 3, 4, 8, 5)
    vl = torch.tensor([[0, 2, 0], [4, 0, 1]]) if per_query else torch.tensor([0, 2])
    out = DotProductAttention(0.0, impl="sdpa")(q, k, v, vl)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, DotProductAttention(0.0, impl="manual")(q, k, v, vl))
    none = vl == 0 if per_query else (vl == 0).unsqueeze(1).expand(2, 3)
    assert out[none].eq(0).all() and not out[~none].eq(0).all()


def test_multihead_fused_path_zeroes_fully_masked_rows(monkeypatch):
    from course_lib import MultiHeadAttention

    nan_for_fully_masked_rows(monkeypatch)
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2, 0.0, query_size=8, key_size=8, value_size=8).eval()
    x = torch.randn(2, 3, 8)
    vl = torch.tensor([0, 2])
    mha.impl = "sdpa"
    fused = mha(x, x, x, vl)
    mha.impl = "manual"
    torch.testing.assert_close(fused, mha(x, x, x, vl))
    torch.testing.assert_close(fused[0], mha.W_o(torch.zeros(3, 8)))  # zero context, then W_o


# The same guard with PyTorch's real kernels, unpatched: on the CPU always, and on CUDA
# (every fused backend that accepts a boolean mask) when a GPU is present. The patched
# tests above prove the guard works whatever a kernel returns; these prove that the
# kernels the course actually runs on give zeros for fully masked rows through it.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# (device, backend, dtype): the CPU with its default kernel; on CUDA, the default choice
# and every backend that takes a boolean mask (flash attention does not), in two dtypes
KERNELS = [("cpu", "default", torch.float32)] + [
    ("cuda", backend, dtype)
    for backend in ("default", "math", "efficient", "cudnn")
    for dtype in (torch.float32, torch.float16)
    if "cuda" in DEVICES
]


def _backend(name):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = {"math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION,
              "cudnn": SDPBackend.CUDNN_ATTENTION}
    return sdpa_kernel(chosen[name]) if name in chosen else contextlib.nullcontext()


@pytest.mark.parametrize("device, backend, dtype", KERNELS)
def test_fully_masked_rows_are_zero_with_the_real_kernels(device, backend, dtype):
    q, k, v = (t.to(device, dtype) for t in qkv(2, 3, 5, 16, 8))
    vl = torch.tensor([[0, 2, 0], [5, 0, 1]], device=device)   # queries with no key at all
    attention = DotProductAttention(0.0, impl="sdpa")
    try:
        with _backend(backend):
            fused = attention(q, k, v, vl)
    except RuntimeError as err:  # this backend does not take these inputs on this GPU
        pytest.skip(f"{backend} kernel unavailable here: {str(err).splitlines()[0]}")
    manual = DotProductAttention(0.0, impl="manual")(q.float(), k.float(), v.float(), vl)
    assert fused.device.type == device and torch.isfinite(fused).all()
    assert fused[vl == 0].eq(0).all() and not fused[vl > 0].eq(0).all()
    tol = 1e-5 if device == "cpu" else 1e-4 if dtype == torch.float32 else 1e-2   # half: ~3 digits
    torch.testing.assert_close(fused.float(), manual, atol=tol, rtol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_multihead_fully_masked_rows_with_the_real_kernel(device):
    from course_lib import MultiHeadAttention

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, 0.0, query_size=16, key_size=16, value_size=16).to(device).eval()
    x = torch.randn(2, 3, 16, device=device)
    vl = torch.tensor([0, 2], device=device)          # sequence 0: no valid key
    mha.impl = "sdpa"
    fused = mha(x, x, x, vl)
    mha.impl = "manual"
    assert torch.isfinite(fused).all()
    tol = 1e-5 if device == "cpu" else 1e-4
    torch.testing.assert_close(fused, mha(x, x, x, vl), atol=tol, rtol=tol)
    torch.testing.assert_close(fused[0], mha.W_o(torch.zeros(3, 16, device=device)))


def test_dropout_is_a_float_not_a_submodule(d2l):
    attn = DotProductAttention(0.25)
    assert attn.dropout_p == 0.25 and list(attn.children()) == []
    assert attn.state_dict().keys() == d2l.DotProductAttention(0.25).state_dict().keys()
    with pytest.raises(ValueError, match="dropout must be a probability"):
        DotProductAttention(1.5)


def test_additive_w_v_is_an_ordinary_linear_layer():
    attn = AdditiveAttention(num_hiddens=8, dropout=0.0)  # W_q and W_k lazy: sizes not given
    assert type(attn.w_v) is torch.nn.Linear and attn.w_v.weight.shape == (1, 8)
    out = attn(torch.randn(2, 3, 5), torch.randn(2, 4, 6), torch.randn(2, 4, 7))
    assert out.shape == (2, 3, 7)


# --- what masked keys may hold -------------------------------------------------------------------


def spoil_hidden_keys(k, v, hidden, seed=0):
    """Copies of k and v whose hidden rows hold inf, -inf and NaN."""
    g = torch.Generator().manual_seed(seed)
    bad = torch.tensor([math.inf, -math.inf, math.nan])
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[hidden] = bad[torch.randint(0, 3, k2[hidden].shape, generator=g)]
    v2[hidden] = bad[torch.randint(0, 3, v2[hidden].shape, generator=g)]
    return k2.requires_grad_(k.requires_grad), v2.requires_grad_(v.requires_grad)


@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("how", ["valid_lens", "attn_mask"])
def test_keys_no_query_may_see_can_hold_inf_or_nan(shape, impl, how):
    """Padding (or a key masked for every query) takes no part: inf or NaN there changes neither the output
    nor the gradients of the queries and the visible keys and values (0 x inf would otherwise be NaN)."""
    B, Tq, Tk, D, Dv = shape
    q, k, v = qkv(*shape, requires_grad=True)
    lens = lengths(B, Tq, Tk, per_query=False, seed=Tk)
    hidden = torch.arange(Tk).unsqueeze(0) >= lens.unsqueeze(1)  # (B, Tk)
    hidden[0, :] = False
    hidden[0, -1] = Tk > 1  # a hidden key in every sequence but a one-key one
    kwargs = {"valid_lens": None, "attn_mask": (~hidden).unsqueeze(1).expand(B, Tq, Tk)} if how == "attn_mask" \
        else {"valid_lens": lens}
    if how == "valid_lens":
        hidden = torch.arange(Tk).unsqueeze(0) >= lens.unsqueeze(1)
    k2, v2 = spoil_hidden_keys(k, v, hidden)
    clean, _ = dot_product_attention(q, k, v, impl=impl, **kwargs)
    spoiled, _ = dot_product_attention(q, k2, v2, impl=impl, **kwargs)
    assert torch.isfinite(spoiled).all()
    torch.testing.assert_close(spoiled, clean)
    g_clean = torch.autograd.grad(clean.sum(), (q, k, v))
    g_spoiled = torch.autograd.grad(spoiled.sum(), (q, k2, v2))
    for a, b in zip(g_clean, g_spoiled):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a)
    assert (g_spoiled[1][hidden] == 0).all() and (g_spoiled[2][hidden] == 0).all()
    module = DotProductAttention(0.0, impl=impl)
    torch.testing.assert_close(module(q, k2, v2, **kwargs), clean)
    additive = AdditiveAttention(8, 0.0)
    torch.testing.assert_close(additive(q, k2, v2, **kwargs), additive(q, k, v, **kwargs))


def test_a_key_some_query_sees_must_be_finite():
    """The documented limit: a visible key with inf gives inf or NaN (the values are used)."""
    q, k, v = qkv(1, 2, 3, 4, 4)
    v = v.clone()
    v[0, 0] = math.inf
    assert not torch.isfinite(dot_product_attention(q, k, v)[0]).all()


def test_empty_batch_and_no_queries_are_valid_but_no_keys_is_refused():
    for impl in ("manual", "sdpa"):
        out, _ = dot_product_attention(*qkv(0, 3, 4, 8, 5), impl=impl)
        assert out.shape == (0, 3, 5)
        out, _ = dot_product_attention(*qkv(2, 0, 4, 8, 5), impl=impl)
        assert out.shape == (2, 0, 5)
        with pytest.raises(ValueError, match=r"at least one key \(Tk >= 1\)"):
            dot_product_attention(*qkv(2, 3, 0, 8, 5), impl=impl)
