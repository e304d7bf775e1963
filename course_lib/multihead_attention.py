"""Chapter 4: multi-head (self-)attention and local-window attention.

Shape legend: B batch, Tq queries, Tk keys (and values), D model size (``num_hiddens``;
the book's d), H heads (``num_heads``), Dh = D / H the size of one head (d_h), W =
2 * window + 1 keys per query in local attention (``window`` is the book's ℓ).

Multi-head attention (equations 4.2 and 4.3 of the chapter): project queries, keys and
values with ``W_q``, ``W_k``, ``W_v`` (each D -> D), cut each projection into H heads of
size Dh, run scaled dot-product attention in every head independently, concatenate the
H outputs and mix them with ``W_o`` (D -> D). The layers are ``nn.Linear``, so
``W_q.weight`` holds the transpose of the book's row-form matrix: ``X @ W_q.weight.T`` is
the book's ``X W_Q``. Self-attention is the special case in which queries, keys and
values are the same sequence. Code indexes heads from 0; the book numbers them 1 to H,
so the code's head j is the book's head j + 1.

Everything after the projections (the head split, the masks, the two paths below, the
merge) is :func:`course_lib.attention.attention`, which the Transformer and BERT use too.
Two implementations with the same parameters and the same results, chosen by ``impl``:

* ``"manual"``, the teaching path: the heads are reshaped into the batch axis,
  (B, T, D) -> (B * H, T, Dh), so that one ordinary batched attention computes all heads
  at once (the chapter's "parallel implementation"); the weights are kept for plots;
* ``"sdpa"``, the fast path: the heads stay a separate axis (B, H, T, Dh) and PyTorch's
  fused kernel ``torch.nn.functional.scaled_dot_product_attention`` does the rest,
  never storing the (B, H, Tq, Tk) weights.

Constructor arguments and parameter names follow d2l 1.0.3's ``MultiHeadAttention``, so
its state dict loads into ours with ``strict=True`` (and the reverse) and gives the same
outputs; tests/test_multihead_attention.py also checks the results against
``torch.nn.MultiheadAttention`` with copied weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import check_bool, check_features, check_int, describe
from course_lib.attention import attention, attention_mask, check_heads, check_kv_heads, merge_heads, split_heads
from course_lib.attention_scoring import DotProductAttention, _check_impl, _check_qkv, hide_masked_keys


def transpose_qkv(X: Tensor, num_heads: int) -> Tensor:
    """(B, T, D) -> (B * H, T, Dh): the heads moved into the batch axis (d2l's name).

    Row ``b * H + j`` of the result is head j (counted from 0) of sequence b.
    """
    heads = split_heads(X, num_heads)  # (B, H, T, Dh)
    B, H, T, Dh = heads.shape
    return heads.reshape(B * H, T, Dh)  # (B * H, T, Dh)


def transpose_output(X: Tensor, num_heads: int) -> Tensor:
    """(B * H, T, Dh) -> (B, T, D): the inverse of :func:`transpose_qkv` (d2l's name)."""
    check_int("num_heads", num_heads)
    if not isinstance(X, Tensor) or X.dim() != 3 or X.shape[0] % num_heads:
        raise ValueError(f"transpose_output expects a tensor (B * {num_heads}, T, Dh), got {describe(X)}")
    return merge_heads(X.reshape(X.shape[0] // num_heads, num_heads, X.shape[1], X.shape[2]))  # (B, H, T, Dh) -> (B, T, D)


def _linear(in_features: int | None, out_features: int, bias: bool) -> nn.Module:
    return nn.Linear(in_features, out_features, bias=bias) if in_features else nn.LazyLinear(out_features, bias=bias)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (equations 4.2-4.3): H heads of scaled dot-product attention.

    Each head works on Dh = D / H features (``num_hiddens / num_heads``).

    ``MultiHeadAttention(num_hiddens, num_heads, dropout, bias=False)`` as in d2l 1.0.3:
    ``W_q``, ``W_k``, ``W_v`` and ``W_o`` map to ``num_hiddens`` features. As in d2l,
    the first three learn their input sizes on the first call (lazy layers) unless
    ``query_size``, ``key_size`` and ``value_size`` are given. ``num_heads`` must divide
    ``num_hiddens``. ``num_kv_heads`` (a divisor of ``num_heads``; default
    ``num_heads``) gives ``W_k`` and ``W_v`` fewer heads, ``num_kv_heads * D / H``
    outputs: grouped-query attention (multi-query with 1), see ``course_lib.attention``.

    Forward ``(queries (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), valid_lens=None,
    attn_mask=None) -> (B, Tq, D)``. ``valid_lens`` is None, (B,) or (B, Tq) as in
    chapter 2 (the same lengths for every head); ``attn_mask`` is boolean, broadcastable
    to (B, Tq, Tk), True = may attend (e.g. :func:`course_lib.causal_mask` or
    :func:`course_lib.local_window_mask`).

    ``impl="manual"`` keeps the weights of the last call in ``attention_weights``
    (B, H, Tq, Tk); ``impl="sdpa"`` uses PyTorch's fused kernel. Switch with
    ``module.impl = "sdpa"``: the parameters are the same.

    Inputs: floating-point tensors of the parameters' dtype, whose last axes match the
    projections' input sizes (given, or learned on the first call), at least one key.
    Keys that no query may attend to may hold anything, even inf: they are set to zero
    before the projections (see ``course_lib.attention_scoring``). In self-attention a
    padded position is also a query: its own output row (meaningless anyway) and the
    gradient of ``W_q`` still see what it holds, so pad with finite numbers.
    """

    def __init__(
        self,
        num_hiddens: int,
        num_heads: int,
        dropout: float,
        bias: bool = False,
        impl: str = "manual",
        query_size: int | None = None,
        key_size: int | None = None,
        value_size: int | None = None,
        *,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        check_heads(num_hiddens, num_heads)
        self.num_kv_heads = check_kv_heads(num_heads, num_kv_heads)
        check_bool("bias", bias)
        for name, size in (("query_size", query_size), ("key_size", key_size), ("value_size", value_size)):
            if size is not None:
                check_int(name, size)
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.impl = _check_impl(impl)
        self.attention = DotProductAttention(dropout)  # keeps the dropout and the teaching path's weights
        kv_hiddens = self.num_kv_heads * (num_hiddens // num_heads)
        self.W_q = _linear(query_size, num_hiddens, bias)
        self.W_k = _linear(key_size, kv_hiddens, bias)
        self.W_v = _linear(value_size, kv_hiddens, bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "impl":
            _check_impl(value)  # type: ignore[arg-type]
        super().__setattr__(name, value)

    @property
    def attention_weights(self) -> Tensor:
        """Weights (B, H, Tq, Tk) of the last forward call; teaching path only."""
        if self.impl != "manual":
            raise RuntimeError(
                f"impl={self.impl!r} calls PyTorch's fused kernel, which never forms the attention weights; "
                "set impl='manual' (same parameters, same outputs) to get them"
            )
        weights = self.attention.attention_weights  # (B * H, Tq, Tk)
        return weights.reshape(-1, self.num_heads, weights.shape[1], weights.shape[2])  # (B, H, Tq, Tk)

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        valid_lens: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        _check_qkv(queries, keys, values, same_size=False)
        for layer, X, name in ((self.W_q, queries, "queries"), (self.W_k, keys, "keys"), (self.W_v, values, "values")):
            check_features(layer, X, name)
        B, Tq, Tk = queries.shape[0], queries.shape[1], keys.shape[1]
        mask = attention_mask(B, Tq, Tk, valid_lens, attn_mask)  # (B or 1, Tq or 1, Tk) bool, or None
        keys, values = hide_masked_keys(mask, keys, values)  # keys no query may see: zero, whatever they held
        out = self.attend(self.W_q(queries), self.W_k(keys), self.W_v(values), attn_mask=mask)  # (B, Tq, D)
        return self.W_o(out)  # (B, Tq, D)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, **kwargs) -> Tensor:
        """:func:`course_lib.attention.attention` with this layer's heads, path and dropout: (B, Tq, D).

        ``q``, ``k``, ``v`` are projections (``W_q(queries)`` ...); ``kwargs`` are the
        function's (``valid_lens``, ``attn_mask``, ``causal``, ``rotate``, ``cache``, ...).
        On the teaching path the weights are kept for ``attention_weights``. Returns the
        merged heads, before ``W_o``.
        """
        p = self.attention.dropout_p if self.training else 0.0
        out, weights = attention(q, k, v, self.num_heads, num_kv_heads=self.num_kv_heads, impl=self.impl,
                                 dropout_p=p, **kwargs)
        if weights is not None:  # (B, H, Tq, Tk), kept as d2l keeps them: (B * H, Tq, Tk)
            B, H, Tq, Tk = weights.shape
            self.attention._attention_weights = weights.detach().reshape(B * H, Tq, Tk)
        return out


def local_attention(queries: Tensor, keys: Tensor, values: Tensor, window: int) -> Tensor:
    """Self-attention restricted to a window, computed in O(T * W) instead of O(T^2).

    Query i attends only to keys i - window .. i + window (those that exist), which is
    the same result as full dot-product attention with
    ``local_window_mask(T, T, window)``; but instead of computing all T x T scores and
    masking most of them, only the W = 2 * window + 1 scores per query are computed.

    Args: queries, keys (..., T, D) and values (..., T, Dv), with any leading axes
    (e.g. (B, T, D) or (B, H, T, Dh)) and the same T. Returns (..., T, Dv).
    """
    check_int("window", window, minimum=0)
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(t, Tensor) or not t.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating-point tensor (..., T, size), got {describe(t)}")
    if queries.dim() < 2 or queries.shape[:-1] != keys.shape[:-1] or keys.shape[:-1] != values.shape[:-1]:
        raise ValueError(
            "local_attention needs queries, keys and values of shapes (..., T, D), (..., T, D), (..., T, Dv) "
            f"with the same leading axes and T; got {tuple(queries.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}"
        )
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(f"queries and keys need the same size D, got {queries.shape[-1]} and {keys.shape[-1]}")
    T, D, W = queries.shape[-2], queries.shape[-1], 2 * window + 1

    def neighbours(X: Tensor) -> Tensor:  # (..., T, E) -> (..., T, W, E): row i holds positions i-window..i+window
        padded = F.pad(X, (0, 0, window, window))  # (..., T + 2 * window, E), zeros outside the sequence
        return padded.unfold(-2, W, 1).transpose(-1, -2)  # (..., T, E, W) -> (..., T, W, E), a view

    scores = (neighbours(keys) @ queries.unsqueeze(-1)).squeeze(-1) / math.sqrt(D)  # (..., T, W, D) @ (..., T, D, 1) -> (..., T, W)
    offsets = torch.arange(-window, window + 1, device=queries.device)  # (W,)
    position = torch.arange(T, device=queries.device).unsqueeze(1) + offsets  # (T, W): the key each slot holds
    exists = (position >= 0) & (position < T)  # (T, W): False for the zero padding
    weights = torch.softmax(scores.masked_fill(~exists, torch.finfo(scores.dtype).min), dim=-1)  # (..., T, W)
    return (weights.unsqueeze(-2) @ neighbours(values)).squeeze(-2)  # (..., T, 1, W) @ (..., T, W, Dv) -> (..., T, Dv)
