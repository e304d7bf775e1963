"""The one attention function after the projections: both paths against independent oracles,
grouped-query and multi-query attention, the causal offset, the rotation hook and the cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.attention import attention, attention_mask, merge_heads, split_heads
from course_lib.kv_cache import BlockCache, KVCache

# B, Tq, Tk, H, Hkv, Dh: one head, grouped-query, multi-query (Hkv = 1), ordinary multi-head
SIZES = [(1, 1, 1, 1, 1, 1), (2, 3, 5, 4, 2, 2), (3, 6, 6, 4, 1, 4), (2, 7, 9, 6, 3, 3), (2, 4, 4, 8, 8, 2)]
MASKINGS = ["none", "padding", "per_query", "causal", "causal_offset", "mask", "padding+causal"]


def projections(B, Tq, Tk, H, Hkv, Dh, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Tq, H * Dh, generator=g, dtype=dtype)
    k = torch.randn(B, Tk, Hkv * Dh, generator=g, dtype=dtype)
    v = torch.randn(B, Tk, Hkv * (Dh + 1), generator=g, dtype=dtype)  # value heads of another size
    return q, k, v


def masking_kwargs(masking, B, Tq, Tk, seed):
    """(kwargs for attention, the full boolean mask (B, Tq, Tk) they mean), built independently."""
    g = torch.Generator().manual_seed(seed + 100)
    kwargs, full = {}, torch.ones(B, Tq, Tk, dtype=torch.bool)
    i, j = torch.arange(Tq).view(-1, 1), torch.arange(Tk).view(1, -1)
    if "padding" in masking:
        kwargs["valid_lens"] = lens = torch.randint(0, Tk + 1, (B,), generator=g)
        full &= j.unsqueeze(0) < lens.view(B, 1, 1)
    if masking == "per_query":
        kwargs["valid_lens"] = lens = torch.randint(0, Tk + 1, (B, Tq), generator=g)
        full &= j.unsqueeze(0) < lens.unsqueeze(-1)
    if "causal" in masking:
        kwargs["causal"] = True
        offset = Tk - Tq
        if masking == "causal_offset":
            offset = int(torch.randint(0, Tk - Tq + 1, (), generator=g))
            kwargs["offset"] = offset
        full &= j <= i + offset
    if masking == "mask":
        kwargs["attn_mask"] = m = torch.rand(B, Tq, Tk, generator=g) > 0.4
        full &= m
    return kwargs, full


def reference(q, k, v, H, Hkv, full):
    """Closed-form attention, one head at a time, query head h reading key/value head h // (H / Hkv)."""
    B, Tq, _ = q.shape
    Dh, G = q.shape[-1] // H, H // Hkv
    Dv = v.shape[-1] // Hkv
    outs, weights = [], []
    for h in range(H):
        qh = q[..., h * Dh : (h + 1) * Dh]
        kh = k[..., (h // G) * Dh : (h // G + 1) * Dh]
        vh = v[..., (h // G) * Dv : (h // G + 1) * Dv]
        scores = (qh @ kh.transpose(1, 2) / math.sqrt(Dh)).masked_fill(~full, -math.inf)
        w = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row with no key: zeros
        outs.append(w @ vh)
        weights.append(w)
    return torch.cat(outs, dim=-1), torch.stack(weights, dim=1)  # (B, Tq, H * Dv), (B, H, Tq, Tk)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("masking", MASKINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_both_paths_equal_the_closed_form_per_head_and_leave_inputs_unchanged(size, masking, seed):
    B, Tq, Tk, H, Hkv, Dh = size
    q, k, v = projections(*size, seed)
    kwargs, full = masking_kwargs(masking, B, Tq, Tk, seed)
    expected, expected_w = reference(q, k, v, H, Hkv, full)
    copies = [t.clone() for t in (q, k, v)]
    for impl in ("manual", "sdpa"):
        out, w = attention(q, k, v, H, num_kv_heads=Hkv, impl=impl, **kwargs)
        torch.testing.assert_close(out, expected)
        if impl == "manual":
            assert w.shape == (B, H, Tq, Tk)
            torch.testing.assert_close(w, expected_w)
        else:
            assert w is None
    for before, after in zip(copies, (q, k, v)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("size", [s for s in SIZES if s[4] < s[3]])
@pytest.mark.parametrize("masking", ["none", "padding", "causal", "mask"])
def test_grouped_query_attention_equals_repeated_heads_and_pytorchs_enable_gqa(size, masking):
    B, Tq, Tk, H, Hkv, Dh = size
    q, k, _ = projections(*size, seed=5)
    v = torch.randn(B, Tk, Hkv * Dh, dtype=torch.float64)
    kwargs, full = masking_kwargs(masking, B, Tq, Tk, seed=5)
    full[..., 0] |= ~full.any(-1)  # every query keeps a key: PyTorch's kernel gives NaN for a row with none
    if masking == "padding":
        kwargs = {"attn_mask": full}
    G = H // Hkv
    # Oracle 1: every query head gets an explicit copy of its key/value head, then ordinary multi-head attention.
    k_rep = merge_heads(split_heads(k, Hkv).repeat_interleave(G, dim=1))
    v_rep = merge_heads(split_heads(v, Hkv).repeat_interleave(G, dim=1))
    # Oracle 2: PyTorch's own grouped-query support.
    mask4 = full.unsqueeze(1)  # (B, 1, Tq, Tk)
    theirs = F.scaled_dot_product_attention(split_heads(q, H), split_heads(k, Hkv), split_heads(v, Hkv),
                                            attn_mask=mask4, enable_gqa=True)
    for impl in ("manual", "sdpa"):
        ours, _ = attention(q, k, v, H, num_kv_heads=Hkv, impl=impl, **kwargs)
        repeated, _ = attention(q, k_rep, v_rep, H, impl=impl, **kwargs)
        torch.testing.assert_close(ours, repeated)
        torch.testing.assert_close(ours, merge_heads(theirs))


def test_paths_agree_in_gradients_with_grouped_heads_and_dropout_off():
    q, k, v = (t.float().requires_grad_() for t in projections(2, 5, 5, 4, 2, 3, seed=7))
    grads = {}
    for impl in ("manual", "sdpa"):
        out, _ = attention(q, k, v, 4, num_kv_heads=2, impl=impl, causal=True, valid_lens=torch.tensor([5, 3]))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads[impl] = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
    for a, b in zip(grads["manual"], grads["sdpa"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("Tq, Tk", [(1, 1), (1, 6), (3, 6), (6, 6)])
def test_causal_offset_makes_the_queries_the_last_positions_of_a_full_causal_pass(Tq, Tk):
    q, k, v = projections(2, Tk, Tk, 4, 2, 3, seed=Tq)
    for impl in ("manual", "sdpa"):
        full, _ = attention(q, k, v, 4, num_kv_heads=2, causal=True, impl=impl)  # every position a query
        last, _ = attention(q[:, Tk - Tq :], k, v, 4, num_kv_heads=2, causal=True, impl=impl)
        torch.testing.assert_close(last, full[:, Tk - Tq :])
        for offset in range(Tk - Tq + 1):  # an explicit offset: queries at offset .. offset + Tq - 1
            part, _ = attention(q[:, offset : offset + Tq], k, v, 4, num_kv_heads=2, causal=True, offset=offset,
                                impl=impl)
            torch.testing.assert_close(part, full[:, offset : offset + Tq])


def test_attention_mask_is_none_when_nothing_is_hidden_and_causal_otherwise():
    assert attention_mask(2, 1, 5, causal=True) is None  # one query after four cached keys sees them all
    assert attention_mask(2, 3, 3) is None
    torch.testing.assert_close(attention_mask(2, 3, 5, causal=True, offset=1),
                               torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool))


def rotary(x, positions, base=10.0):
    """A rotation of our own: feature pairs (2m, 2m + 1) turned by the angle position * base^(-2m / Dh)."""
    Dh = x.shape[-1]
    freqs = base ** (-torch.arange(0, Dh, 2, dtype=x.dtype) / Dh)  # (Dh / 2,)
    angle = positions.to(x.dtype).view(-1, 1) * freqs  # (T, Dh / 2)
    cos, sin = angle.cos(), angle.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def test_rotation_hook_sees_per_head_tensors_and_absolute_positions():
    q, k, v = projections(2, 3, 5, 4, 2, 4, seed=1)
    calls = []

    def spy(x, positions):
        calls.append((tuple(x.shape), positions.tolist()))
        return rotary(x, positions)

    out, _ = attention(q, k, v, 4, num_kv_heads=2, causal=True, rotate=spy)
    assert calls == [((2, 4, 3, 4), [2, 3, 4]), ((2, 2, 5, 4), [0, 1, 2, 3, 4])]  # queries are the last 3
    # The same as rotating by hand, then attending without the hook.
    qr = merge_heads(rotary(split_heads(q, 4), torch.arange(2, 5)))
    kr = merge_heads(rotary(split_heads(k, 2), torch.arange(5)))
    for impl in ("manual", "sdpa"):
        by_hand, _ = attention(qr, kr, v, 4, num_kv_heads=2, causal=True, impl=impl)
        torch.testing.assert_close(out, by_hand)


@pytest.mark.parametrize("shift", [1, 7, 100])
def test_rotary_positions_through_the_hook_depend_only_on_relative_positions(shift):
    q, k, v = projections(2, 6, 6, 4, 1, 4, seed=shift)
    out, _ = attention(q, k, v, 4, num_kv_heads=1, causal=True, rotate=rotary)
    shifted, _ = attention(q, k, v, 4, num_kv_heads=1, causal=True, rotate=lambda x, p: rotary(x, p + shift))
    torch.testing.assert_close(shifted, out)
    plain, _ = attention(q, k, v, 4, num_kv_heads=1, causal=True)
    assert (plain - out).abs().amax() > 1e-3  # the hook does change the result


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("chunks", [[1] * 6, [2, 3, 1], [6]])
@pytest.mark.parametrize("rotate", [None, rotary])
def test_cached_attention_in_chunks_equals_one_causal_pass(impl, chunks, rotate):
    B, T, H, Hkv, Dh = 2, 6, 4, 2, 4
    q, k, v = projections(B, T, T, H, Hkv, Dh, seed=len(chunks))
    full, _ = attention(q, k, v, H, num_kv_heads=Hkv, causal=True, rotate=rotate, impl=impl)
    cache, pieces, start = KVCache(2), [], 0
    for n in chunks:
        before = cache.copy()
        piece, _ = attention(q[:, start : start + n], k[:, start : start + n], v[:, start : start + n], H,
                             num_kv_heads=Hkv, causal=True, rotate=rotate, cache=cache, layer=1, impl=impl)
        pieces.append(piece)
        assert cache.get_seq_length(1) == start + n and cache[0] is None
        assert before.get_seq_length(1) == start  # a copy is not changed by the update of the original
        start += n
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    kept = cache[1].keys  # the cache holds keys as they are attended to: rotated once, at their own positions
    expected = k if rotate is None else merge_heads(rotary(split_heads(k, Hkv), torch.arange(T)))
    torch.testing.assert_close(kept, expected)
    torch.testing.assert_close(cache[1].values, v)


def test_cache_update_returns_everything_so_far_and_the_number_before():
    cache = KVCache(1)
    k1, v1, k2, v2 = torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 2, 4), torch.randn(2, 2, 5)
    keys, values, past = cache.update(k1, v1, 0)
    assert past == 0 and keys is k1 and values is v1
    snapshot = cache.copy()
    keys, values, past = cache.update(k2, v2, 0)
    assert past == 3 and cache.get_seq_length(0) == 5
    torch.testing.assert_close(keys, torch.cat([k1, k2], 1))
    torch.testing.assert_close(values, torch.cat([v1, v2], 1))
    assert snapshot[0].keys is k1 and snapshot.get_seq_length(0) == 3  # untouched
    cache.set_source(0, k1, v1)
    assert cache.source(0) == (k1, v1) and snapshot.source(0) is None
    assert cache[0].keys is keys  # the self-attention entry is kept


def test_cache_from_entries_copies_the_list_and_counts_positions():
    entry = BlockCache(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    entries = [None, entry]
    cache = KVCache.from_entries(entries)
    assert list(cache) == entries and len(cache) == 2
    assert cache.get_seq_length(0) == 0 and cache.get_seq_length(1) == 4
    cache.update(torch.ones(1, 1, 2), torch.ones(1, 1, 2), 1)
    assert entries[1] is entry and cache[1] is not entry  # the given list and its entry are as they were


@pytest.mark.parametrize("call, message", [
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=3), "num_kv_heads must be a positive int dividing"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=0), "num_kv_heads must be a positive int dividing"),
    (lambda q, k, v: attention(q, k, v, 3), "num_heads must divide the queries' size"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=4), r"keys need 4 \* 2 = 8 features"),
    (lambda q, k, v: attention(q, k[:, :2], v[:, :2], 4, num_kv_heads=2, causal=True), "causal attention"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=2, causal=True, offset=-1), "offset must be an int >= 0"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=2, impl="fast"), "impl must be one of"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=2, cache=KVCache(1), offset=0), "with a cache"),
    (lambda q, k, v: attention(q, k, v, 4, num_kv_heads=2, cache=KVCache(1), layer=1), r"layer must be an int in"),
    (lambda q, k, v: attention(q.long(), k, v, 4, num_kv_heads=2), "queries must be a floating-point tensor"),
])
def test_bad_arguments_get_a_clear_value_error(call, message):
    q, k, v = projections(2, 3, 3, 4, 2, 2, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match=message):
        call(q, k, v)
