"""Tiled attention with the online softmax, and what it does to memory (chapter 7).

Shapes: B batch, H heads, Tq queries, Tk keys, D query/key size, Dv value size,
``b`` the block size.

Attention softmax(Q K^T / sqrt(D)) V is usually computed by building the whole
(Tq, Tk) matrix of scores, so its memory grows as Tq * Tk. But each output row is a
weighted average, and a weighted average can be accumulated one block of keys at a
time if one keeps, for every query, three running quantities (the online softmax,
Milakov and Gimelshein 2018):

* ``m``, the largest score seen so far (subtracted before ``exp``, so nothing overflows);
* ``l``, the sum of ``exp(score - m)`` over the keys seen so far;
* ``acc``, the sum of ``exp(score - m) * value`` over the keys seen so far.

When a new block raises the maximum from ``m`` to ``m_new``, the old sums were computed
relative to ``m``; multiplying them by ``exp(m - m_new)`` puts them relative to
``m_new``, after which the new block's terms are simply added. After the last block,
``acc / l`` is exactly the softmax-weighted average. Only a (b, b) block of scores
exists at any time, so the memory for the scores is b * b per (batch, head) instead of
Tq * Tk. This is the idea of FlashAttention (Dao et al. 2022), whose speed comes from
keeping the blocks in a GPU's fast on-chip memory; written in plain PyTorch, as here, it
is a lesson in memory, not a faster kernel (see ``benchmarks/tiled.py``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from course_lib._checks import check_bool, check_int, describe

__all__ = ["tiled_attention", "full_attention", "attention_peak_memory"]


def _check_qkv(Q: object, K: object, V: object) -> None:
    for name, t in (("Q", Q), ("K", K), ("V", V)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor of shape (B, H, T, size), got {describe(t)}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have 4 axes (B, H, T, size), got shape {tuple(t.shape)}")
    if not (Q.dtype == K.dtype == V.dtype):
        raise ValueError(f"Q, K and V must have one dtype, got {Q.dtype}, {K.dtype} and {V.dtype}")
    if not (Q.device == K.device == V.device):
        raise ValueError(f"Q, K and V must be on one device, got {Q.device}, {K.device} and {V.device}")
    if Q.shape[:2] != K.shape[:2] or K.shape[:2] != V.shape[:2]:
        raise ValueError(
            "Q, K and V must have the same batch and head axes (B, H); got shapes "
            f"{tuple(Q.shape)}, {tuple(K.shape)} and {tuple(V.shape)}"
        )
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"Q and K need the same size D (last axis), got {Q.shape[-1]} and {K.shape[-1]}")
    if K.shape[-2] != V.shape[-2]:
        raise ValueError(f"K and V need the same number of keys Tk, got {K.shape[-2]} and {V.shape[-2]}")
    if K.shape[-2] == 0:
        raise ValueError(f"attention needs at least one key, got K of shape {tuple(K.shape)}")


def tiled_attention(Q: Tensor, K: Tensor, V: Tensor, *, block_size: int = 64, causal: bool = False) -> Tensor:
    """softmax(Q K^T / sqrt(D)) V computed block by block, never building the (Tq, Tk) scores.

    Args:
        Q (B, H, Tq, D), K (B, H, Tk, D), V (B, H, Tk, Dv): one floating dtype and device.
        block_size: queries and keys are processed ``block_size`` at a time (any int
            >= 1; it need not divide Tq or Tk).
        causal: query i may attend to keys 0..i only. For Tq != Tk the mask is aligned
            at the top-left corner, as ``torch.nn.functional.scaled_dot_product_attention``
            with ``is_causal=True`` aligns it (``ones(Tq, Tk).tril()``): key 0 is visible
            to every query, so no row is ever fully masked.

    Returns:
        (B, H, Tq, Dv), equal (up to rounding) to ``scaled_dot_product_attention(Q, K, V,
        is_causal=causal)``.

    The forward pass holds one (B, H, b, b) block of scores at a time. Autograd works
    through it, but it keeps every block for the backward pass (FlashAttention instead
    recomputes them); the memory saving is that of the forward pass, e.g. in inference.
    """
    _check_qkv(Q, K, V)
    b = check_int("block_size", block_size, minimum=1)
    check_bool("causal", causal)
    B, H, Tq, D = Q.shape
    Tk, Dv = K.shape[-2], V.shape[-1]
    scale = 1.0 / math.sqrt(D)
    out = Q.new_empty(B, H, Tq, Dv)  # (B, H, Tq, Dv), filled one block of queries at a time
    for q0 in range(0, Tq, b):
        q1 = min(q0 + b, Tq)
        Qb = Q[:, :, q0:q1] * scale  # (B, H, bq, D), the scale applied once per block
        m = Q.new_full((B, H, q1 - q0, 1), -math.inf)  # running maximum of the scores
        l = Q.new_zeros((B, H, q1 - q0, 1))  # running sum of exp(score - m)
        acc = Q.new_zeros((B, H, q1 - q0, Dv))  # running sum of exp(score - m) * value
        # With the causal mask, query q1 - 1 sees keys up to q1 - 1: later blocks are all masked.
        k_end = min(Tk, q1) if causal else Tk
        for k0 in range(0, k_end, b):
            k1 = min(k0 + b, k_end)
            S = Qb @ K[:, :, k0:k1].transpose(-1, -2)  # (B, H, bq, D) @ (B, H, D, bk) -> (B, H, bq, bk)
            if causal and k1 - 1 > q0:  # this block reaches past the diagonal of some query
                rows = torch.arange(q0, q1, device=Q.device).unsqueeze(1)  # (bq, 1)
                cols = torch.arange(k0, k1, device=Q.device).unsqueeze(0)  # (1, bk)
                S = S.masked_fill(cols > rows, -math.inf)  # (B, H, bq, bk)
            # The first block holds key 0, which every query sees, so m_new is finite
            # from the first block on and exp(m - m_new) is never exp(-inf + inf).
            m_new = torch.maximum(m, S.amax(dim=-1, keepdim=True))  # (B, H, bq, 1)
            P = torch.exp(S - m_new)  # (B, H, bq, bk); masked scores give exp(-inf) = 0
            alpha = torch.exp(m - m_new)  # (B, H, bq, 1): rescales the old sums to m_new
            l = alpha * l + P.sum(dim=-1, keepdim=True)  # (B, H, bq, 1)
            acc = alpha * acc + P @ V[:, :, k0:k1]  # (B, H, bq, bk) @ (B, H, bk, Dv) -> (B, H, bq, Dv)
            m = m_new
        out[:, :, q0:q1] = acc / l  # (B, H, bq, Dv)
    return out


def full_attention(Q: Tensor, K: Tensor, V: Tensor, *, causal: bool = False) -> Tensor:
    """The teaching path written out: the whole (B, H, Tq, Tk) score matrix, softmax, times V.

    Same arguments, mask alignment and result as :func:`tiled_attention`; it is here as
    the memory baseline (its scores and weights grow as Tq * Tk).
    """
    _check_qkv(Q, K, V)
    check_bool("causal", causal)
    Tq, Tk, D = Q.shape[-2], K.shape[-2], Q.shape[-1]
    scores = Q @ K.transpose(-1, -2) / math.sqrt(D)  # (B, H, Tq, D) @ (B, H, D, Tk) -> (B, H, Tq, Tk)
    if causal:
        visible = torch.ones(Tq, Tk, dtype=torch.bool, device=Q.device).tril()  # (Tq, Tk), top-left aligned
        scores = scores.masked_fill(~visible, -math.inf)
    return torch.softmax(scores, dim=-1) @ V  # (B, H, Tq, Tk) @ (B, H, Tk, Dv) -> (B, H, Tq, Dv)


def attention_peak_memory(
    T: int,
    D: int = 64,
    *,
    batch: int = 1,
    heads: int = 1,
    block_size: int = 64,
    causal: bool = False,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, int]:
    """Peak bytes allocated by one forward pass of attention over T queries and T keys, on the CPU.

    Returns ``{"tiled": ..., "full": ..., "scores": ...}``: the peak of
    :func:`tiled_attention` and of :func:`full_attention` above what was allocated
    before the call (the inputs Q, K, V are made beforehand and not counted; the output
    is), and, for reference, the bytes of one (batch, heads, T, T) score matrix.

    How it is measured: ``course_lib.benchmark.peak_memory``, which on the CPU runs the
    call under ``torch.profiler`` with ``profile_memory=True``. The profiler records
    every allocation and free made by PyTorch's CPU allocator, and the peak of their
    running sum is the largest amount held at once. (Python's ``tracemalloc`` would
    not do: it sees only memory allocated through Python's allocator, and a tensor's
    storage is allocated by PyTorch's C++ allocator, so a 4 MB tensor shows up there as
    a few hundred bytes of Python objects.) Runs under ``torch.no_grad()``, since with
    autograd both paths keep what the backward pass needs.
    """
    from course_lib.benchmark import peak_memory

    T = check_int("T", T, minimum=1)
    D = check_int("D", D, minimum=1)
    batch = check_int("batch", batch, minimum=1)
    heads = check_int("heads", heads, minimum=1)
    check_int("block_size", block_size, minimum=1)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    g = torch.Generator().manual_seed(seed)
    Q, K, V = (torch.randn(batch, heads, T, D, generator=g, dtype=dtype) for _ in range(3))
    with torch.no_grad():
        tiled = peak_memory(lambda: tiled_attention(Q, K, V, block_size=block_size, causal=causal))
        full = peak_memory(lambda: full_attention(Q, K, V, causal=causal))
    scores = batch * heads * T * T * torch.finfo(dtype).bits // 8
    return {"tiled": tiled, "full": full, "scores": scores}
