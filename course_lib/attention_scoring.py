"""Chapter 2: attention scoring functions.

Shape legend: B batch, Tq queries, Tk keys, D query/key size (the book's d), Dv value
size (d_v), Da the hidden size of additive attention (d_a); Dq, Dk the sizes of queries
and keys where they differ (d_q, d_k).

Two scoring functions, each turning queries and keys into scores (B, Tq, Tk) that a
masked softmax turns into weights, which then average the values:

* scaled dot product (equation 2.4, matrix form 2.5): ``a(q, k) = q . k / sqrt(D)``;
* additive (equation 2.3): ``a(q, k) = w_v . tanh(W_q q + W_k k)``, written, as in the
  book, for one query and one key as column vectors. ``W_q`` here is the (Da, Dq)
  matrix that the ``nn.Linear`` layer ``W_q`` keeps in its ``weight``; applied to a
  batch whose rows are queries, the layer computes ``queries @ W_q.weight.T``, which is
  the book's row form ``Q W_Q`` with ``W_Q = W_q^T``.

Dot-product attention has two implementations with the same parameters (none) and
the same results, chosen explicitly by ``impl``:

* ``"manual"``, the teaching path: the matrix products of the chapter, written out;
  the attention weights are kept for plotting;
* ``"sdpa"``, the fast path: ``torch.nn.functional.scaled_dot_product_attention``,
  PyTorch's fused kernel, which never stores the (B, Tq, Tk) weights. Asking it for
  the weights raises an error that says to use ``impl="manual"``. Query rows whose
  keys are all masked are set to zero after the kernel (see
  :func:`fused_dot_product_attention`), so both paths agree there on every backend.

Constructor arguments and parameter names follow d2l 1.0.3's classes of the same
names, so their state dicts load into ours with ``strict=True`` and give the same
outputs.

**What masked keys may hold.** Anything: a key that no query may attend to (padding
beyond ``valid_lens``, or a key whose column of ``attn_mask`` is all False) takes no
part at all, even if its key or value vector holds inf or NaN; its rows are set to zero
before the products, on both paths, because its weight of exactly zero would otherwise
meet the inf (0 x inf = NaN). (On the CPU this is done only when a tensor holds a
non-finite value, found by one sum; the result is the same.) A key that some query may
attend to must be finite.

**Inputs accepted.** Queries, keys and values are 3-D floating-point tensors of one
dtype, with the same batch size B >= 0 and at least one key (Tk >= 1); Tq may be 0.
Bad shapes, dtypes, lengths and masks raise a ``ValueError`` that names the argument.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import autocasting, check_features, check_int, check_probability, host_checks_allowed
from course_lib.masking import combine_masks, masked_softmax

IMPLEMENTATIONS = ("manual", "sdpa")


def _check_impl(impl: str) -> str:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    return impl


def _check_qkv(queries: Tensor, keys: Tensor, values: Tensor, same_size: bool) -> None:
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(t, Tensor) or t.dim() != 3:
            raise ValueError(f"{name} must be a 3-D tensor (B, T, size), got {getattr(t, 'shape', type(t).__name__)}")
        if not t.dtype.is_floating_point:
            raise ValueError(f"{name} must have a floating-point dtype, got {t.dtype}")
    if not (queries.dtype == keys.dtype == values.dtype) and not autocasting(queries):
        raise ValueError(f"queries, keys and values need one dtype, got {queries.dtype}, {keys.dtype} and {values.dtype}")
    if not (queries.shape[0] == keys.shape[0] == values.shape[0]):
        raise ValueError(
            f"batch sizes differ: queries {queries.shape[0]}, keys {keys.shape[0]}, values {values.shape[0]}"
        )
    if keys.shape[1] != values.shape[1]:
        raise ValueError(f"keys and values need the same number of positions Tk, got {keys.shape[1]} and {values.shape[1]}")
    if keys.shape[1] == 0:
        raise ValueError(f"attention needs at least one key (Tk >= 1), got keys of shape {tuple(keys.shape)}")
    if same_size and queries.shape[2] != keys.shape[2]:
        raise ValueError(
            f"dot-product attention needs queries and keys of the same size D, got {queries.shape[2]} and "
            f"{keys.shape[2]} (additive attention allows different sizes)"
        )


def hide_masked_keys(mask: Tensor | None, *tensors: Tensor) -> list[Tensor]:
    """``tensors`` (..., Tk, size) with the rows of keys that no query may attend to set to zero.

    ``mask`` is boolean, broadcastable to (..., Tq, Tk), True = may attend. Such a key
    gets a weight of exactly zero, but 0 x inf is NaN: zeroing its rows first makes
    whatever it holds irrelevant, in the output and in the gradients. When every entry
    of a tensor is finite, zeroing changes nothing, so on the CPU (outside
    ``torch.compile``) a tensor whose sum is finite is returned as it is: one cheap
    reduction instead of a copy and its backward. Elsewhere the rows are always zeroed
    (no host sync).
    """
    if mask is None:
        return list(tensors)
    hidden = None
    out: list[Tensor] = []
    for t in tensors:
        same = next((o for o, u in zip(out, tensors) if u is t), None)  # self-attention: keys is values
        if same is not None:
            out.append(same)
            continue
        if host_checks_allowed(t):  # a sum is finite only if every entry is (inf and NaN propagate)
            low_precision = t.dtype in (torch.float16, torch.bfloat16)  # sum in float32: no overflow to inf
            if math.isfinite(t.detach().sum(dtype=torch.float32 if low_precision else None).item()):
                out.append(t)
                continue
        if hidden is None:
            seen = mask.any(dim=-2) if mask.dim() >= 2 else mask  # (..., Tk): some query may attend to it
            hidden = ~seen.unsqueeze(-1)  # (..., Tk, 1)
        out.append(t.masked_fill(hidden, 0.0))
    return out


def fused_dot_product_attention(
    queries: Tensor, keys: Tensor, values: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    enable_gqa: bool = False,
) -> Tensor:
    """PyTorch's fused ``scaled_dot_product_attention``, with fully masked query rows set to zero.

    Args: queries (..., Tq, D), keys (..., Tk, D), values (..., Tk, Dv); ``attn_mask``
    boolean, broadcastable to (..., Tq, Tk), True = may attend. Returns (..., Tq, Dv).
    ``enable_gqa``: keys and values (B, Hkv, Tk, .) with fewer heads than the queries
    (B, H, Tq, D), each shared by H / Hkv consecutive query heads (PyTorch's argument).

    A query that may attend to no key has no meaningful softmax. The course's
    convention is an output of zero there; recent PyTorch kernels on the CPU return
    that, but some CUDA kernels (the memory-efficient one, in some versions) have
    returned NaN. The zeroing below makes the convention hold on every backend; it
    needs no host synchronisation (one ``any`` and one ``masked_fill`` on the device).

    This is the bare kernel: keys and values that no query may attend to must be
    finite here (see :func:`hide_masked_keys`, which :func:`dot_product_attention` and
    ``MultiHeadAttention`` apply first).
    """
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask, dropout_p=dropout_p,
                                         enable_gqa=enable_gqa)
    if attn_mask is not None:
        attends_to_none = ~attn_mask.any(dim=-1, keepdim=True)  # (..., Tq or 1, 1)
        out = out.masked_fill(attends_to_none, 0.0)  # (..., Tq, Dv)
    return out


def dot_product_attention(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    valid_lens: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    impl: str = "manual",
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention, softmax(Q K^T / sqrt(D)) V with masking.

    Args:
        queries (B, Tq, D), keys (B, Tk, D), values (B, Tk, Dv).
        valid_lens: None, (B,) or (B, Tq): keys at positions >= valid_len are ignored.
        attn_mask: boolean, broadcastable to (B, Tq, Tk), True = may attend.
        dropout_p: dropout on the attention weights (use 0.0 in evaluation).
        impl: "manual" (teaching path) or "sdpa" (PyTorch's fused kernel).

    Returns:
        ``(output, weights)``: output (B, Tq, Dv); weights (B, Tq, Tk) for
        ``impl="manual"``, None for ``impl="sdpa"``. A query whose keys are all
        masked gets weights of zero and an output of zero on both paths. Keys that no
        query may attend to may hold anything, even inf (see the module's docstring).
    """
    _check_impl(impl)
    _check_qkv(queries, keys, values, same_size=True)
    check_probability("dropout_p", dropout_p)
    scores_shape = torch.Size((queries.shape[0], queries.shape[1], keys.shape[1]))
    mask = combine_masks(scores_shape, valid_lens, attn_mask)  # (B, Tq, Tk) bool or None
    keys, values = hide_masked_keys(mask, keys, values)  # (B, Tk, D), (B, Tk, Dv)
    if impl == "sdpa":  # fully masked rows are zero, as on the teaching path, on any backend
        return fused_dot_product_attention(queries, keys, values, mask, dropout_p), None
    d = queries.shape[-1]
    scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(d)  # (B, Tq, Tk)
    weights = masked_softmax(scores, attn_mask=mask)  # (B, Tq, Tk)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return torch.bmm(dropped, values), weights  # (B, Tq, Dv)


class _KeepsWeights(nn.Module):
    """Keeps the attention weights of the last forward call, for plotting."""

    impl: str = "manual"
    _attention_weights: Tensor | None = None

    @property
    def attention_weights(self) -> Tensor:
        """Attention weights (B, Tq, Tk) of the last forward call (teaching path only)."""
        if self.impl != "manual":
            raise RuntimeError(
                f"impl={self.impl!r} calls PyTorch's fused kernel, which never forms the attention weights; "
                "use impl='manual' (same parameters, same outputs) to get them"
            )
        if self._attention_weights is None:
            raise RuntimeError("no attention weights yet: call the module first")
        return self._attention_weights


class DotProductAttention(_KeepsWeights):
    """Scaled dot-product attention (equation 2.5); no parameters.

    ``DotProductAttention(dropout, impl="manual")``; forward
    ``(queries (B, Tq, D), keys (B, Tk, D), values (B, Tk, Dv), valid_lens=None,
    attn_mask=None) -> (B, Tq, Dv)``. Same constructor argument as d2l's class.

    The dropout probability is kept as the float ``dropout_p`` and applied by
    :func:`dot_product_attention` in training mode only (``module.train()``); there is
    no ``nn.Dropout`` submodule, which has no state, so state dicts still match d2l's.
    """

    def __init__(self, dropout: float, impl: str = "manual") -> None:
        super().__init__()
        self.dropout_p = check_probability("dropout", dropout)
        self.impl = _check_impl(impl)

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        valid_lens: Tensor | None = None,
        attn_mask: Tensor | None = None,
    ) -> Tensor:
        p = self.dropout_p if self.training else 0.0
        out, weights = dot_product_attention(queries, keys, values, valid_lens, attn_mask, p, self.impl)
        self._attention_weights = None if weights is None else weights.detach()
        return out


class AdditiveAttention(_KeepsWeights):
    """Additive attention (equation 2.3): scores w_v . tanh(W_q q + W_k k) (column form).

    ``AdditiveAttention(num_hiddens, dropout)`` as in d2l: ``W_q`` and ``W_k`` (to
    ``num_hiddens``, no bias) are lazy linear layers that learn their input sizes on the
    first call; pass ``query_size`` and ``key_size`` to create them right away. ``w_v``
    (``num_hiddens`` to 1, no bias) always knows its input size, so it is an ordinary
    linear layer. Queries and keys may have different sizes. Dropout is applied to the
    attention weights in training mode. Forward
    ``(queries (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), valid_lens=None,
    attn_mask=None) -> (B, Tq, Dv)``; the hidden size Da is ``num_hiddens``. Only a
    teaching path exists: the fused kernel
    computes dot-product scores only.
    """

    def __init__(
        self, num_hiddens: int, dropout: float, query_size: int | None = None, key_size: int | None = None
    ) -> None:
        super().__init__()
        check_int("num_hiddens", num_hiddens)
        check_probability("dropout", dropout)
        for name, size in (("query_size", query_size), ("key_size", key_size)):
            if size is not None:
                check_int(name, size)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False) if query_size else nn.LazyLinear(num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False) if key_size else nn.LazyLinear(num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        values: Tensor,
        valid_lens: Tensor | None = None,
        attn_mask: Tensor | None = None,
        *,
        projected_keys: Tensor | None = None,
    ) -> Tensor:
        """``projected_keys``: ``W_k(keys)`` (B, Tk, Da), computed once by a caller that
        queries the same keys many times (chapter 3's decoder: once per target step), so
        that it is not computed again here; ``keys`` is then used for its shape only."""
        _check_qkv(queries, keys, values, same_size=False)
        check_features(self.W_q, queries, "queries")
        check_features(self.W_k, keys, "keys")
        if projected_keys is not None and (
            projected_keys.shape[:2] != keys.shape[:2] or projected_keys.shape[-1] != self.w_v.in_features
        ):
            raise ValueError(f"projected_keys must be W_k(keys) of shape {(*keys.shape[:2], self.w_v.in_features)}, "
                             f"got {tuple(projected_keys.shape)}")
        mask = combine_masks(torch.Size((queries.shape[0], queries.shape[1], keys.shape[1])), valid_lens, attn_mask)
        extra = [] if projected_keys is None else [projected_keys]
        keys, values, *extra = hide_masked_keys(mask, keys, values, *extra)  # keys no query may see: zero
        q = self.W_q(queries)  # (B, Tq, Da)
        k = self.W_k(keys) if projected_keys is None else extra[0]  # (B, Tk, Da)
        features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (B, Tq, 1, Da) + (B, 1, Tk, Da) -> (B, Tq, Tk, Da)
        scores = self.w_v(features).squeeze(-1)  # (B, Tq, Tk)
        weights = masked_softmax(scores, attn_mask=mask)  # (B, Tq, Tk)
        self._attention_weights = weights.detach()
        return torch.bmm(self.dropout(weights), values)  # (B, Tq, Dv)
