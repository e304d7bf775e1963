"""Chapter 2: masks and the masked softmax.

Shape legend: B batch, Tq queries, Tk keys.

One convention inside the course: a mask is a boolean tensor whose ``True`` entries
mean "this query may attend to this key", as in
``torch.nn.functional.scaled_dot_product_attention``. The teaching API also accepts
d2l's ``valid_lens``: one length per sequence ``(B,)`` or one per query ``(B, Tq)``; the
first ``valid_len`` keys are real, the rest are padding.

Masked scores are replaced by the dtype's most negative number, never by a magic
constant such as -1e6 (which is not even representable in float16). A row in which
every key is masked has no meaningful softmax; on purpose, its weights are all zero
(so its attention output is zero), the same as PyTorch's fused kernel returns.

Inputs are checked cheaply: types, dtypes and shapes always; the values of
``valid_lens`` (whole numbers between 0 and the number of keys) only for CPU tensors
outside ``torch.compile``, because reading them back from a GPU would stall every
forward call (see :func:`host_checks_allowed`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib._checks import check_int, host_checks_allowed  # noqa: F401  (host_checks_allowed: re-exported)


def _check_valid_lens(valid_lens: Tensor, batch: int, num_queries: int, num_keys: int) -> Tensor:
    """Validate valid_lens and return it as (B, Tq).

    Type, dtype and shape are always checked. The values (whole numbers in
    [0, num_keys]) are checked only on the CPU and outside ``torch.compile`` (see
    :func:`host_checks_allowed`); on a GPU, out-of-range lengths simply clip (a length
    above num_keys keeps every key, a negative one masks them all).
    """
    if not isinstance(valid_lens, Tensor):
        raise ValueError(f"valid_lens must be a tensor or None, got {type(valid_lens).__name__}")
    if valid_lens.dtype == torch.bool or valid_lens.dtype.is_complex:
        raise ValueError(f"valid_lens must hold whole numbers, got dtype {valid_lens.dtype}")
    if valid_lens.dim() == 1:
        if valid_lens.shape[0] != batch:
            raise ValueError(f"valid_lens of shape (B,) must have B = {batch} entries, got {tuple(valid_lens.shape)}")
        valid_lens = valid_lens.unsqueeze(1).expand(batch, num_queries)  # (B, Tq)
    elif valid_lens.dim() == 2:
        if tuple(valid_lens.shape) != (batch, num_queries):
            raise ValueError(
                f"valid_lens of shape (B, Tq) must be {(batch, num_queries)}, got {tuple(valid_lens.shape)}"
            )
    else:
        raise ValueError(f"valid_lens must be (B,) or (B, Tq), got shape {tuple(valid_lens.shape)}")
    if valid_lens.numel() and host_checks_allowed(valid_lens):
        if valid_lens.dtype.is_floating_point and not bool((valid_lens == valid_lens.round()).all()):
            raise ValueError(f"valid_lens must hold whole numbers, got dtype {valid_lens.dtype}")
        if bool((valid_lens < 0).any()) or bool((valid_lens > num_keys).any()):
            raise ValueError(
                f"valid_lens must lie in [0, {num_keys}] (the number of keys); "
                f"got values from {int(valid_lens.min())} to {int(valid_lens.max())}"
            )
    return valid_lens


def _length_mask(valid_lens: Tensor, batch: int, num_queries: int, num_keys: int, per_query: bool) -> Tensor:
    """Validated boolean mask from valid lengths: True for the first valid_len keys.

    (B, Tq, Tk) if ``per_query``; with per-sequence lengths (B,) and ``per_query=False``
    it is (B, 1, Tk), which broadcasts over the queries and costs Tq times less.
    """
    lens = _check_valid_lens(valid_lens, batch, num_queries, num_keys)  # (B, Tq)
    if valid_lens.dim() == 1 and not per_query:  # the same for every query
        lens = lens[:, :1]  # (B, 1)
    positions = torch.arange(num_keys, device=lens.device)  # (Tk,)
    return positions.view(1, 1, -1) < lens.unsqueeze(-1)  # (B, Tq or 1, Tk)


def padding_mask(valid_lens: Tensor, num_queries: int, num_keys: int) -> Tensor:
    """Boolean mask (B, Tq, Tk) from valid lengths (B,) or (B, Tq): True for the first valid_len keys.

    ``num_queries`` and ``num_keys`` are ints >= 0; the lengths must lie in [0, num_keys].
    """
    check_int("num_queries", num_queries, minimum=0)
    check_int("num_keys", num_keys, minimum=0)
    batch = valid_lens.shape[0] if isinstance(valid_lens, Tensor) and valid_lens.dim() > 0 else -1
    return _length_mask(valid_lens, batch, num_queries, num_keys, per_query=True)  # (B, Tq, Tk)


def causal_mask(
    num_queries: int,
    num_keys: int | None = None,
    device: torch.device | str | None = None,
    *,
    offset: int | None = None,
) -> Tensor:
    """Boolean mask (Tq, Tk): query i may attend to keys 0..i (and no later ones).

    With more keys than queries (``num_keys > num_queries``, e.g. cached earlier keys),
    the queries are the *last* ``num_queries`` positions: query i sees keys up to
    ``i + num_keys - num_queries``. ``offset`` (an int >= 0) places them elsewhere:
    query i sees keys 0 .. i + offset.
    """
    check_int("num_queries", num_queries, minimum=0)
    num_keys = num_queries if num_keys is None else check_int("num_keys", num_keys, minimum=0)
    if offset is None:
        if num_queries < 0 or num_keys < num_queries:
            raise ValueError(f"causal_mask needs 0 <= num_queries <= num_keys, got {num_queries} and {num_keys}")
        offset = num_keys - num_queries
    check_int("offset", offset, minimum=0)
    i = torch.arange(num_queries, device=device).unsqueeze(1)  # (Tq, 1)
    j = torch.arange(num_keys, device=device).unsqueeze(0)  # (1, Tk)
    return j <= i + offset  # (Tq, Tk)


def local_window_mask(num_queries: int, num_keys: int, window: int, device: torch.device | str | None = None) -> Tensor:
    """Boolean mask (Tq, Tk): query i may attend to keys j with |i - j| <= window (ints >= 0)."""
    check_int("num_queries", num_queries, minimum=0)
    check_int("num_keys", num_keys, minimum=0)
    check_int("window", window, minimum=0)
    i = torch.arange(num_queries, device=device).unsqueeze(1)  # (Tq, 1)
    j = torch.arange(num_keys, device=device).unsqueeze(0)  # (1, Tk)
    return (i - j).abs() <= window  # (Tq, Tk)


def combine_masks(scores_shape: torch.Size, valid_lens: Tensor | None, attn_mask: Tensor | None) -> Tensor | None:
    """The boolean mask allowed by both valid_lens and attn_mask, broadcastable to (B, Tq, Tk).

    None if neither is given. With per-sequence lengths and no attn_mask it has shape
    (B, 1, Tk), which costs Tq times less to build than the full (B, Tq, Tk).
    """
    batch, num_queries, num_keys = scores_shape[0], scores_shape[-2], scores_shape[-1]
    mask = None
    if valid_lens is not None:
        mask = _length_mask(valid_lens, batch, num_queries, num_keys, per_query=False)  # (B, Tq or 1, Tk)
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise ValueError(f"attn_mask must be a boolean tensor or None, got {type(attn_mask).__name__}")
        if attn_mask.dtype != torch.bool:
            raise ValueError(f"attn_mask must be boolean (True = may attend), got dtype {attn_mask.dtype}")
        try:
            torch.broadcast_shapes(attn_mask.shape, (batch, num_queries, num_keys))
        except RuntimeError:
            raise ValueError(
                f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to (B, Tq, Tk) = "
                f"{(batch, num_queries, num_keys)}"
            ) from None
        mask = attn_mask if mask is None else mask & attn_mask
    return mask


def masked_softmax(X: Tensor, valid_lens: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis of scores X (B, Tq, Tk), ignoring masked keys.

    Args:
        X: attention scores (B, Tq, Tk).
        valid_lens: None, (B,) one length per sequence, or (B, Tq) one per query
            (d2l's semantics). Keys at positions >= valid_len get weight zero.
        attn_mask: optional boolean mask broadcastable to (B, Tq, Tk), True = may
            attend; combined with valid_lens.

    Returns weights (B, Tq, Tk): non-negative, each row summing to one, except rows in
    which every key is masked, which are all zeros. X is not modified. Masked scores may
    hold anything, even inf or NaN: they are replaced before the softmax.
    """
    if not isinstance(X, Tensor) or X.dim() != 3 or not X.dtype.is_floating_point:
        raise ValueError(f"masked_softmax expects scores of shape (B, Tq, Tk) and a floating-point dtype, got "
                         f"{getattr(X, 'shape', X)!r} {getattr(X, 'dtype', '')}")
    mask = combine_masks(X.shape, valid_lens, attn_mask)
    if mask is None:
        return torch.softmax(X, dim=-1)
    filled = X.masked_fill(~mask, torch.finfo(X.dtype).min)  # (B, Tq, Tk); a copy, X untouched
    weights = torch.softmax(filled, dim=-1)
    # Masked keys get exactly zero; so does every key of a fully masked row, whose
    # softmax over equal fill values would otherwise be uniform.
    return weights.masked_fill(~mask, 0.0)
