"""Tiled attention (the online softmax) against PyTorch's scaled_dot_product_attention, and its memory."""

from __future__ import annotations

import math
import tracemalloc

import pytest
import torch
import torch.nn.functional as F

from course_lib.benchmark import peak_memory
from course_lib.efficient_attention import attention_peak_memory, full_attention, tiled_attention

SHAPES = [  # B, H, Tq, Tk, D, Dv
    (1, 1, 1, 1, 1, 1),
    (2, 3, 7, 7, 4, 4),
    (2, 2, 5, 13, 8, 3),
    (1, 2, 13, 5, 8, 6),
    (2, 1, 33, 40, 16, 16),
    (1, 1, 100, 37, 5, 7),
]
BLOCKS = [1, 3, 7, 64, 200]
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def qkv(B, H, Tq, Tk, D, Dv, seed, dtype=torch.float64, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(B, H, Tq, D, generator=g, dtype=torch.float64) * spread
    K = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64) * spread
    V = torch.randn(B, H, Tk, Dv, generator=g, dtype=torch.float64)
    return Q.to(dtype), K.to(dtype), V.to(dtype)


def top_left_reference(Q, K, V, causal):
    """SDPA with the mask written out: query i sees keys j <= i (top-left aligned)."""
    Tq, Tk = Q.shape[-2], K.shape[-2]
    mask = torch.ones(Tq, Tk, dtype=torch.bool).tril() if causal else None
    return F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_equals_sdpa_for_every_block_size(shape, causal, dtype):
    for seed in (0, 1, 2):
        Q, K, V = qkv(*shape, seed, dtype)
        copies = [t.clone() for t in (Q, K, V)]
        expected = F.scaled_dot_product_attention(Q, K, V, is_causal=causal)
        for block_size in BLOCKS:
            got = tiled_attention(Q, K, V, block_size=block_size, causal=causal)
            assert got.dtype == dtype and got.shape == expected.shape
            torch.testing.assert_close(got, expected, **TOL[dtype],
                                       msg=lambda m: f"{shape}, block {block_size}, causal {causal}, seed {seed}: {m}")
        for before, after in zip(copies, (Q, K, V)):
            assert torch.equal(before, after), "tiled_attention changed its inputs"


def test_sdpa_causal_mask_is_top_left_aligned():
    """The oracle's convention, checked rather than assumed: for Tq != Tk, is_causal=True is
    ones(Tq, Tk).tril() (query i sees keys 0..i), not the bottom-right alignment of a
    key/value cache (query i sees keys 0..i + Tk - Tq)."""
    for Tq, Tk in [(3, 8), (8, 3), (5, 6)]:
        Q, K, V = qkv(1, 2, Tq, Tk, 4, 4, seed=Tq)
        ours = F.scaled_dot_product_attention(Q, K, V, is_causal=True)
        torch.testing.assert_close(ours, top_left_reference(Q, K, V, True))
        bottom_right = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq)
        other = F.scaled_dot_product_attention(Q, K, V, attn_mask=bottom_right)
        assert not torch.allclose(ours, other), "the two alignments should differ for Tq != Tk"
        torch.testing.assert_close(tiled_attention(Q, K, V, block_size=2, causal=True), ours)


@pytest.mark.parametrize("causal", [False, True])
def test_equals_an_explicit_mask_and_the_full_path(causal):
    for seed, (Tq, Tk) in enumerate([(6, 11), (11, 6), (9, 9)]):
        Q, K, V = qkv(2, 2, Tq, Tk, 6, 5, seed)
        expected = top_left_reference(Q, K, V, causal)
        torch.testing.assert_close(tiled_attention(Q, K, V, block_size=4, causal=causal), expected)
        torch.testing.assert_close(full_attention(Q, K, V, causal=causal), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_scores_do_not_overflow(dtype):
    """Scores of several hundred: exp would overflow without the running maximum."""
    for seed in (0, 1):
        Q, K, V = qkv(1, 2, 20, 30, 8, 4, seed, dtype, spread=12.0)
        expected = F.scaled_dot_product_attention(Q.double(), K.double(), V.double())
        assert (Q.double() @ K.double().transpose(-1, -2) / math.sqrt(8)).abs().max() > 200
        for causal in (False, True):
            expected = F.scaled_dot_product_attention(Q.double(), K.double(), V.double(), is_causal=causal)
            got = tiled_attention(Q, K, V, block_size=3, causal=causal)
            assert torch.isfinite(got).all()
            # the scores are ~1e2, so float32's relative rounding of them moves the weights by ~1e-4
            torch.testing.assert_close(got.double(), expected, **(TOL[dtype] if dtype == torch.float64
                                                                    else dict(rtol=1e-3, atol=1e-3)))


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_equal_sdpa(causal):
    for seed, (Tq, Tk, b) in enumerate([(5, 5, 2), (4, 9, 3), (9, 4, 1)]):
        ours = [t.requires_grad_() for t in qkv(2, 2, Tq, Tk, 4, 3, seed)]
        theirs = [t.detach().clone().requires_grad_() for t in ours]
        grad = torch.randn(2, 2, Tq, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        tiled_attention(*ours, block_size=b, causal=causal).backward(grad)
        F.scaled_dot_product_attention(*theirs, is_causal=causal).backward(grad)
        for a, e in zip(ours, theirs):
            torch.testing.assert_close(a.grad, e.grad)


def test_no_queries_gives_an_empty_output():
    Q, K, V = qkv(2, 3, 0, 5, 4, 6, 0)
    assert tiled_attention(Q, K, V).shape == (2, 3, 0, 6)


BAD = [
    ("Q not a tensor", lambda Q, K, V: tiled_attention(Q.tolist(), K, V), "Q must be a floating-point tensor"),
    ("integer V", lambda Q, K, V: tiled_attention(Q, K, V.long()), "V must be a floating-point tensor"),
    ("3 axes", lambda Q, K, V: tiled_attention(Q[0], K[0], V[0]), "Q must have 4 axes (B, H, T, size), got shape (3, 4, 8)"),
    ("mixed dtypes", lambda Q, K, V: tiled_attention(Q.float(), K, V), "one dtype"),
    ("heads differ", lambda Q, K, V: tiled_attention(Q, K[:, :2], V[:, :2]), "same batch and head axes"),
    ("D differs", lambda Q, K, V: tiled_attention(Q, K[..., :3], V), "same size D"),
    ("Tk differs", lambda Q, K, V: tiled_attention(Q, K, V[:, :, :4]), "same number of keys"),
    ("no keys", lambda Q, K, V: tiled_attention(Q, K[:, :, :0], V[:, :, :0]), "at least one key"),
    ("block 0", lambda Q, K, V: tiled_attention(Q, K, V, block_size=0), "block_size must be an int >= 1, got 0"),
    ("block float", lambda Q, K, V: tiled_attention(Q, K, V, block_size=2.0), "block_size must be an int >= 1"),
    ("block bool", lambda Q, K, V: tiled_attention(Q, K, V, block_size=True), "block_size must be an int >= 1"),
    ("causal 1", lambda Q, K, V: tiled_attention(Q, K, V, causal=1), "causal must be True or False"),
    ("full causal str", lambda Q, K, V: full_attention(Q, K, V, causal="yes"), "causal must be True or False"),
    ("peak T 0", lambda Q, K, V: attention_peak_memory(0), "T must be an int >= 1"),
    ("peak dtype", lambda Q, K, V: attention_peak_memory(8, dtype=torch.int64), "floating-point torch.dtype"),
]


@pytest.mark.parametrize("call, words", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_refused_clearly(call, words):
    Q, K, V = qkv(2, 3, 4, 6, 8, 5, 0)
    with pytest.raises(ValueError) as info:
        call(Q, K, V)
    assert words in str(info.value)


def test_the_profiler_sees_tensor_memory_and_tracemalloc_does_not():
    """Why attention_peak_memory uses the profiler: a 4 MB tensor, made and freed inside the call."""
    n = 1_000_000

    def make_and_drop():
        x = torch.ones(n)  # 4,000,000 bytes
        y = x * 2  # 4,000,000 more while both live
        return float(y[0])

    measured = peak_memory(make_and_drop)
    assert 8 * n <= measured < 8 * n + 1024, f"the profiler saw {measured} bytes, expected 8,000,000 (+ a scalar)"
    tracemalloc.start()
    try:
        make_and_drop()
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert python_peak < n, f"tracemalloc saw {python_peak} bytes: it does not see PyTorch's allocator"


def test_tiled_memory_grows_linearly_and_full_quadratically():
    """Doubling T: the full path's peak (the T x T scores and weights) grows about 4 times,
    the tiled path's (the output and one block) about 2 times. Read from the growth of the
    peak between successive doublings, which is 2 for a linear and 4 for a quadratic law."""
    Ts = [128, 256, 512, 1024]
    peaks = {T: attention_peak_memory(T, 32, heads=2, block_size=64) for T in Ts}
    for T in Ts:
        p = peaks[T]
        assert p["full"] >= p["scores"], f"T={T}: the full path must hold at least the scores, {p}"
        assert p["tiled"] < p["full"], f"T={T}: {p}"
    growth = {
        path: [(peaks[c][path] - peaks[b][path]) / (peaks[b][path] - peaks[a][path]) for a, b, c in zip(Ts, Ts[1:], Ts[2:])]
        for path in ("tiled", "full")
    }
    assert all(1.6 < r < 2.5 for r in growth["tiled"]), f"tiled peak should grow linearly in T: {growth}, {peaks}"
    assert all(3.5 < r < 4.5 for r in growth["full"]), f"full peak should grow quadratically in T: {growth}, {peaks}"
    # At T = 1024 the tiled pass holds less than a tenth of one score matrix.
    assert peaks[1024]["tiled"] < peaks[1024]["scores"] / 10, peaks[1024]
