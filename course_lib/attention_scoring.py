"""Chapter 2: attention scoring functions.

Shape legend: B batch, Tq queries, Tk keys, D query/key size, Dv value size, Hd the
hidden size of additive attention.

Two scoring functions, each turning queries and keys into scores (B, Tq, Tk) that a
masked softmax turns into weights, which then average the values:

* scaled dot product (equation 2.4, matrix form 2.5): ``a(q, k) = q . k / sqrt(D)``;
* additive (equation 2.3): ``a(q, k) = w_v . tanh(W_q q + W_k k)``.

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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    if not (queries.shape[0] == keys.shape[0] == values.shape[0]):
        raise ValueError(
            f"batch sizes differ: queries {queries.shape[0]}, keys {keys.shape[0]}, values {values.shape[0]}"
        )
    if keys.shape[1] != values.shape[1]:
        raise ValueError(f"keys and values need the same number of positions Tk, got {keys.shape[1]} and {values.shape[1]}")
    if same_size and queries.shape[2] != keys.shape[2]:
        raise ValueError(
            f"dot-product attention needs queries and keys of the same size D, got {queries.shape[2]} and "
            f"{keys.shape[2]} (additive attention allows different sizes)"
        )


def fused_dot_product_attention(
    queries: Tensor, keys: Tensor, values: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0
) -> Tensor:
    """PyTorch's fused ``scaled_dot_product_attention``, with fully masked query rows set to zero.

    Args: queries (..., Tq, D), keys (..., Tk, D), values (..., Tk, Dv); ``attn_mask``
    boolean, broadcastable to (..., Tq, Tk), True = may attend. Returns (..., Tq, Dv).

    A query that may attend to no key has no meaningful softmax. The course's
    convention is an output of zero there; recent PyTorch kernels on the CPU return
    that, but some CUDA kernels (the memory-efficient one, in some versions) have
    returned NaN. The zeroing below makes the convention hold on every backend; it
    needs no host synchronisation (one ``any`` and one ``masked_fill`` on the device).
    """
    out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask, dropout_p=dropout_p)
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
        masked gets weights of zero and an output of zero on both paths.
    """
    _check_impl(impl)
    _check_qkv(queries, keys, values, same_size=True)
    scores_shape = torch.Size((queries.shape[0], queries.shape[1], keys.shape[1]))
    mask = combine_masks(scores_shape, valid_lens, attn_mask)  # (B, Tq, Tk) bool or None
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
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be a probability in [0, 1], got {dropout!r}")
        self.dropout_p = float(dropout)
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
    """Additive attention (equation 2.3): scores w_v . tanh(W_q q + W_k k).

    ``AdditiveAttention(num_hiddens, dropout)`` as in d2l: ``W_q`` and ``W_k`` (to
    ``num_hiddens``, no bias) are lazy linear layers that learn their input sizes on the
    first call; pass ``query_size`` and ``key_size`` to create them right away. ``w_v``
    (``num_hiddens`` to 1, no bias) always knows its input size, so it is an ordinary
    linear layer. Queries and keys may have different sizes. Dropout is applied to the
    attention weights in training mode. Forward
    ``(queries (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv), valid_lens=None,
    attn_mask=None) -> (B, Tq, Dv)``. Only a teaching path exists: the fused kernel
    computes dot-product scores only.
    """

    def __init__(
        self, num_hiddens: int, dropout: float, query_size: int | None = None, key_size: int | None = None
    ) -> None:
        super().__init__()
        if not isinstance(num_hiddens, int) or num_hiddens <= 0:
            raise ValueError(f"num_hiddens must be a positive int, got {num_hiddens!r}")
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
        """``projected_keys``: ``W_k(keys)`` (B, Tk, Hd), computed once by a caller that
        queries the same keys many times (chapter 3's decoder: once per target step), so
        that it is not computed again here; ``keys`` is then used for its shape only."""
        _check_qkv(queries, keys, values, same_size=False)
        q = self.W_q(queries)  # (B, Tq, Hd)
        if projected_keys is None:
            k = self.W_k(keys)  # (B, Tk, Hd)
        elif projected_keys.shape[:2] != keys.shape[:2] or projected_keys.shape[-1] != q.shape[-1]:
            raise ValueError(f"projected_keys must be W_k(keys) of shape {(*keys.shape[:2], q.shape[-1])}, "
                             f"got {tuple(projected_keys.shape)}")
        else:
            k = projected_keys
        features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))  # (B, Tq, 1, Hd) + (B, 1, Tk, Hd) -> (B, Tq, Tk, Hd)
        scores = self.w_v(features).squeeze(-1)  # (B, Tq, Tk)
        weights = masked_softmax(scores, valid_lens, attn_mask)  # (B, Tq, Tk)
        self._attention_weights = weights.detach()
        return torch.bmm(self.dropout(weights), values)  # (B, Tq, Dv)
