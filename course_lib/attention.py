"""Chapters 4 to 7: multi-head attention after the projections, written once.

Shape legend: B batch, Tq queries, Tk keys (and values), H query heads (``num_heads``),
Hkv key/value heads (``num_kv_heads``, a divisor of H), G = H / Hkv query heads per
key/value head, Dh the size of one head, Dv the size of one value head.

Every attention layer of the course (``MultiHeadAttention`` of chapter 4, the
Transformer's encoder and decoder blocks of chapter 5, with or without a key/value
cache, BERT's encoder of chapter 6 and the decoder-only models of chapter 7) first
projects its inputs with ``W_q``, ``W_k`` and ``W_v``, then does the same thing with the
projections, which :func:`attention` does:

1. **split** the projections into heads: queries (B, Tq, H * Dh) -> (B, H, Tq, Dh),
   keys and values (B, Tk, Hkv * Dh) -> (B, Hkv, Tk, Dh);
2. **rotate** (optional, for rotary positions): ``rotate(x, positions)`` turns the
   per-head queries and the *new* keys, given their absolute positions;
3. **cache** (optional): ``cache.update(keys, values, layer)`` appends the new keys and
   values to those of earlier calls and returns all of them;
4. **mask**: padding (``valid_lens``), any boolean ``attn_mask`` and the causal part, in
   one boolean mask, True = may attend;
5. **attend** on one of two paths with the same results: ``impl="manual"``, the
   teaching path, moves the heads into the batch axis, (B * H, T, Dh), and runs
   chapter 2's :func:`~course_lib.attention_scoring.dot_product_attention`, keeping the
   weights (B, H, Tq, Tk); ``impl="sdpa"`` calls PyTorch's fused kernel, which never
   forms them;
6. **merge** the heads back: (B, H, Tq, Dv) -> (B, Tq, H * Dv), ready for ``W_o``.

**Why rotate comes before the cache.** A rotary position code turns the query and the
key of position t by an angle that depends on t only, so a key can be turned once, when
it is made, and kept turned: the cache holds rotated keys, and each call rotates only
its new keys (at positions ``start .. start + T - 1``, ``start`` being the number of
positions the cache has seen) and its queries. Rotating after the cache would turn the
old keys again at every call. Hence the order project -> split -> rotate ->
cache.update -> attend; the values are never rotated.

**Grouped-query and multi-query attention.** With Hkv < H key/value heads (Ainslie et
al., 2023; Hkv = 1 is multi-query attention, Shazeer, 2019), query head h uses
key/value head ``h // G``, as ``torch.repeat_interleave(keys, G, dim=1)`` would pair
them. The teaching path makes that repetition explicit; the fused path lets the kernel
share the heads (``enable_gqa``) without copying them.

**Causal attention and its offset.** ``causal=True`` lets query i (counted from 0 in
this call) attend to key j only if ``j <= i + offset``: ``offset`` is the number of key
positions before the first query (the cached ones). By default the queries are the last
Tq of the Tk positions, ``offset = Tk - Tq``; with a cache it is the number of cached
positions that ``cache.update`` returns.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib._checks import check_int, check_probability, describe, is_int
from course_lib.attention_scoring import _check_impl, dot_product_attention, fused_dot_product_attention
from course_lib.masking import causal_mask, combine_masks

#: ``rotate(x (B, heads, T, Dh), positions (T,) int64) -> (B, heads, T, Dh)``: a position code
#: applied to the per-head queries and keys (e.g. rotary positions), never to the values.
Rotation = Callable[[Tensor, Tensor], Tensor]


class Cache(Protocol):
    """What :func:`attention` needs of a key/value cache (see ``course_lib.kv_cache.KVCache``)."""

    def get_seq_length(self, layer: int = 0) -> int: ...

    def update(self, keys: Tensor, values: Tensor, layer: int) -> tuple[Tensor, Tensor, int]: ...


def check_heads(num_hiddens: int, num_heads: int, what: str = "num_hiddens") -> None:
    """``num_heads`` must be a positive int dividing the positive int ``num_hiddens``."""
    if not is_int(num_hiddens) or not is_int(num_heads) or num_hiddens <= 0 or num_heads <= 0:
        raise ValueError(f"{what} and num_heads must be positive ints, got {num_hiddens!r} and {num_heads!r}")
    if num_hiddens % num_heads:
        divisors = [h for h in range(1, num_hiddens + 1) if num_hiddens % h == 0]
        raise ValueError(
            f"num_heads must divide {what} (each head gets {what} / num_heads features), "
            f"got {what}={num_hiddens} and num_heads={num_heads}; head counts that work: {divisors}"
        )


def check_kv_heads(num_heads: int, num_kv_heads: int | None) -> int:
    """Number of key/value heads: ``num_heads`` if None, else a positive divisor of ``num_heads``."""
    if num_kv_heads is None:
        return num_heads
    if not is_int(num_kv_heads) or num_kv_heads <= 0 or num_heads % num_kv_heads:
        divisors = [h for h in range(1, num_heads + 1) if num_heads % h == 0]
        raise ValueError(
            f"num_kv_heads must be a positive int dividing num_heads={num_heads} (each key/value head serves "
            f"num_heads / num_kv_heads query heads), got {num_kv_heads!r}; values that work: {divisors}"
        )
    return int(num_kv_heads)


def split_heads(X: Tensor, num_heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, Dh): feature block j (columns j*Dh .. (j+1)*Dh - 1) becomes head j.

    j counts from 0 here; the book calls this head j + 1. A view, no copy.
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        raise ValueError(f"split_heads expects a tensor (B, T, D), got {describe(X)}")
    check_heads(X.shape[-1], num_heads)
    B, T, D = X.shape
    return X.reshape(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, T, H, Dh) -> (B, H, T, Dh)


def merge_heads(X: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H * Dh): the inverse of :func:`split_heads` (concatenate the heads)."""
    if not isinstance(X, Tensor) or X.dim() != 4:
        raise ValueError(f"merge_heads expects a tensor (B, H, T, Dh), got {describe(X)}")
    B, H, T, Dh = X.shape
    return X.transpose(1, 2).reshape(B, T, H * Dh)  # (B, T, H, Dh) -> (B, T, D)


def attention_mask(
    batch: int,
    num_queries: int,
    num_keys: int,
    valid_lens: Tensor | None = None,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    offset: int | None = None,
    device: torch.device | str | None = None,
) -> Tensor | None:
    """The one boolean mask of an attention call, True = may attend; None if nothing is masked.

    Combines padding (``valid_lens`` (B,) or (B, Tq), in [0, Tk]), ``attn_mask``
    (boolean, broadcastable to (B, Tq, Tk)) and, with ``causal``, ``j <= i + offset``
    (``offset`` defaults to Tk - Tq). Shape: (Tq, Tk) for the causal part alone, else
    (B or 1, Tq or 1, Tk), broadcastable to (B, Tq, Tk); the causal part is left out
    when it hides nothing (one new query after its cache).
    """
    offset = num_keys - num_queries if offset is None else offset
    causal_part = None
    if causal and offset < num_keys - 1:  # otherwise every query sees every key
        causal_part = causal_mask(num_queries, num_keys, device=device, offset=offset)  # (Tq, Tk)
    if causal_part is not None and attn_mask is not None:
        causal_part = causal_part & attn_mask
    elif attn_mask is not None:
        causal_part = attn_mask
    return combine_masks(torch.Size((batch, num_queries, num_keys)), valid_lens, causal_part)


def _positions(start: int, length: int, device: torch.device) -> Tensor:
    return torch.arange(start, start + length, device=device)  # (T,) absolute positions


def attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    num_heads: int,
    *,
    num_kv_heads: int | None = None,
    valid_lens: Tensor | None = None,
    attn_mask: Tensor | None = None,
    causal: bool = False,
    offset: int | None = None,
    impl: str = "manual",
    dropout_p: float = 0.0,
    rotate: Rotation | None = None,
    cache: Cache | None = None,
    layer: int = 0,
) -> tuple[Tensor, Tensor | None]:
    """Multi-head scaled dot-product attention after the projections (see the module's docstring).

    Args:
        queries: projected queries (B, Tq, H * Dh).
        keys, values: projected keys (B, Tk, Hkv * Dh) and values (B, Tk, Hkv * Dv);
            with a ``cache``, only the new positions (Tk = Tq, self-attention).
        num_heads: H; ``num_kv_heads``: Hkv, a divisor of H (default H).
        valid_lens: None, (B,) or (B, Tq): keys at positions >= valid_len are padding.
        attn_mask: boolean, broadcastable to (B, Tq, Tk) (Tk counting cached keys),
            True = may attend; the same for every head.
        causal: query i may attend to key j only if ``j <= i + offset``.
        offset: key positions before the first query; default Tk - Tq (the queries
            are the last positions); with a cache, the number the cache returns.
        impl: ``"manual"`` (teaching path, returns the weights) or ``"sdpa"`` (fused).
        dropout_p: dropout on the attention weights (0.0 in evaluation).
        rotate: ``rotate(x (B, heads, T, Dh), positions (T,)) -> (B, heads, T, Dh)``,
            applied to the per-head queries and new keys before the cache and the
            scores. Without a cache the keys sit at positions 0 .. Tk - 1 and the
            queries at ``offset .. offset + Tq - 1``; with one, queries and new keys at
            ``start .. start + Tq - 1``, ``start = cache.get_seq_length(layer)``.
        cache, layer: ``cache.update(keys, values, layer)`` stores the new (rotated)
            keys and values (B, Tq, Hkv * Dh) and returns every one to attend to with the
            number of positions before the new ones, which becomes ``offset``.

    Returns ``(output (B, Tq, H * Dv), weights)``: weights (B, H, Tq, Tk) on the
    teaching path (not detached), None on the fused path. A query that may attend to no
    key gets zero weights and a zero output on both paths.
    """
    _check_impl(impl)
    check_probability("dropout_p", dropout_p)
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(t, Tensor) or t.dim() != 3 or not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor (B, T, heads * size), got {describe(t)}")
    H = num_heads
    check_heads(queries.shape[-1], H, "the queries' size")
    Hkv = check_kv_heads(H, num_kv_heads)
    Dh = queries.shape[-1] // H
    if keys.shape[-1] != Hkv * Dh or values.shape[-1] % Hkv:
        raise ValueError(
            f"with {H} query heads of size {Dh} and num_kv_heads={Hkv}, keys need {Hkv} * {Dh} = {Hkv * Dh} features "
            f"and values a multiple of {Hkv}; got keys {tuple(keys.shape)} and values {tuple(values.shape)}"
        )
    if not (queries.shape[0] == keys.shape[0] == values.shape[0]) or keys.shape[1] != values.shape[1]:
        raise ValueError(f"queries (B, Tq, .), keys and values (B, Tk, .) must share B, and keys and values Tk; got "
                         f"{tuple(queries.shape)}, {tuple(keys.shape)} and {tuple(values.shape)}")
    B, Tq = queries.shape[0], queries.shape[1]
    qh, kh = split_heads(queries, H), split_heads(keys, Hkv)  # (B, H, Tq, Dh), (B, Hkv, Tk_new, Dh)
    if cache is not None:
        check_int("layer", layer, minimum=0)
        if offset is not None or keys.shape[1] != Tq:
            raise ValueError("with a cache, give the new keys and values of the queries' own positions (Tk = Tq) "
                             f"and no offset (the cache gives it); got Tq={Tq}, Tk={keys.shape[1]}, offset={offset!r}")
        start = cache.get_seq_length(layer)
        if rotate is not None:  # rotate the new keys once, before they are kept
            pos = _positions(start, Tq, queries.device)
            qh, kh = rotate(qh, pos), rotate(kh, pos)
            keys = merge_heads(kh)  # (B, Tq, Hkv * Dh): the cache keeps the layout of the projections
        keys, values, offset = cache.update(keys, values, layer)  # (B, T_past + Tq, .), T_past
        kh = split_heads(keys, Hkv)  # (B, Hkv, Tk, Dh)
    Tk = keys.shape[1]
    if Tk == 0:
        raise ValueError(f"attention needs at least one key (Tk >= 1), got keys of shape {tuple(keys.shape)}")
    offset = max(Tk - Tq, 0) if offset is None else check_int("offset", offset, minimum=0)
    if causal and offset + Tq > Tk:
        raise ValueError(f"causal attention with offset {offset} needs at least offset + Tq = {offset + Tq} keys "
                         f"(the queries' own positions), got Tk={Tk}")
    if rotate is not None and cache is None:
        qh, kh = rotate(qh, _positions(offset, Tq, queries.device)), rotate(kh, _positions(0, Tk, queries.device))
    vh = split_heads(values, Hkv)  # (B, Hkv, Tk, Dv)
    hides_keys = causal and offset < Tk - 1  # the causal part hides something (not one query after its cache)
    if impl == "sdpa" and valid_lens is None and attn_mask is None and (not hides_keys or (offset == 0 and Tq == Tk)):
        # No mask, or the kernel's own causal masking (which aligns the first query with the first key).
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p, is_causal=hides_keys,
                                             enable_gqa=Hkv < H)  # (B, H, Tq, Dv)
        return merge_heads(out), None
    mask = attention_mask(B, Tq, Tk, valid_lens, attn_mask, causal, offset, queries.device)
    if mask is not None and mask.dim() == 3:
        mask = mask.expand(torch.broadcast_shapes(mask.shape, (B, 1, 1)))  # (B, Tq or 1, Tk)
    if impl == "sdpa":  # fully masked query rows give zeros on every backend
        out = fused_dot_product_attention(qh, kh, vh, None if mask is None else (
            mask.unsqueeze(1) if mask.dim() == 3 else mask), dropout_p=dropout_p, enable_gqa=Hkv < H)
        return merge_heads(out), None  # (B, H, Tq, Dv) -> (B, Tq, H * Dv)
    # Teaching path: every query head gets its own copy of its key/value head, then the
    # heads go into the batch axis, (B, H, T, .) -> (B * H, T, .), row b * H + h being
    # head h of sequence b, and chapter 2's attention runs on all of them at once.
    if Hkv < H:
        kh, vh = kh.repeat_interleave(H // Hkv, dim=1), vh.repeat_interleave(H // Hkv, dim=1)  # (B, H, Tk, .)
    if mask is not None and mask.dim() == 3:
        mask = mask.repeat_interleave(H, dim=0)  # (B * H, Tq or 1, Tk): the same mask for every head
    Dv = vh.shape[-1]
    out, weights = dot_product_attention(
        qh.reshape(B * H, Tq, Dh), kh.reshape(B * H, Tk, Dh), vh.reshape(B * H, Tk, Dv), attn_mask=mask,
        dropout_p=dropout_p,
    )  # (B * H, Tq, Dv), (B * H, Tq, Tk)
    return merge_heads(out.reshape(B, H, Tq, Dv)), weights.reshape(B, H, Tq, Tk)


__all__ = ["Cache", "Rotation", "attention", "attention_mask", "check_heads", "check_kv_heads", "merge_heads",
           "split_heads"]
