"""Chapter 7: causal self-attention of the decoder-only model, with grouped key/value heads and rotary positions.

Shape legend: B batch, T positions read in this call, Tk keys (cached and new), D model
size, H query heads, Hkv key/value heads, G = H / Hkv query heads per key/value head,
Dh head size.

The order of the steps matters with a cache and rotary positions::

    project  q = X W_q (B, T, H Dh),  k = X W_k, v = X W_v (B, T, Hkv Dh)
    split    (B, H, T, Dh) and (B, Hkv, T, Dh)
    rotate   q and k by their absolute positions (rotary positions only)
    cache    k, v = cache.update(k, v, layer): the cached keys are already rotated
    attend   causal (and windowed) attention, each key/value head shared by G query heads
    merge    (B, T, H Dh) -> W_o -> (B, T, D)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_lib.attention_scoring import _check_impl, fused_dot_product_attention
from course_lib.masking import masked_softmax
from course_lib.positional_encoding import apply_rotary


def _split(X: Tensor, heads: int) -> Tensor:
    B, T, _ = X.shape
    return X.reshape(B, T, heads, -1).transpose(1, 2)  # (B, T, heads, Dh) -> (B, heads, T, Dh)


class CausalSelfAttention(nn.Module):
    """Causal self-attention with H query heads and Hkv key/value heads: (B, T, D) -> (B, T, D).

    ``W_q`` (D -> H Dh), ``W_k`` and ``W_v`` (D -> Hkv Dh), ``W_o`` (H Dh -> D).
    ``impl`` is ``"manual"`` (weights kept in ``attention_weights``, (B, H, T, Tk)) or
    ``"sdpa"``.
    """

    def __init__(self, config) -> None:
        super().__init__()
        D, H, Hkv, Dh, bias = config.num_hiddens, config.num_heads, config.kv_heads, config.head_dim, config.bias
        self.num_heads, self.num_kv_heads, self.head_size = H, Hkv, Dh
        self.positions, self.rotary_base, self.window = config.positions, config.rotary_base, config.window
        self.dropout_p = config.dropout
        self.impl = _check_impl(config.impl)
        self.W_q = nn.Linear(D, H * Dh, bias=bias)
        self.W_k = nn.Linear(D, Hkv * Dh, bias=bias)
        self.W_v = nn.Linear(D, Hkv * Dh, bias=bias)
        self.W_o = nn.Linear(H * Dh, D, bias=bias)
        self._weights: Tensor | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name == "impl":
            _check_impl(value)  # type: ignore[arg-type]
        super().__setattr__(name, value)

    @property
    def attention_weights(self) -> Tensor:
        """Weights (B, H, T, Tk) of the last call; teaching path only."""
        if self.impl != "manual":
            raise RuntimeError(f"impl={self.impl!r} calls PyTorch's fused kernel, which never forms the attention "
                               "weights; set impl='manual' (same parameters, same outputs) to get them")
        if self._weights is None:
            raise RuntimeError("no attention weights yet: call the model first")
        return self._weights

    def forward(self, X: Tensor, positions: Tensor, cache=None, layer: int = 0) -> Tensor:
        B, T, _ = X.shape
        q = _split(self.W_q(X), self.num_heads)  # (B, H, T, Dh)
        k = _split(self.W_k(X), self.num_kv_heads)  # (B, Hkv, T, Dh)
        v = _split(self.W_v(X), self.num_kv_heads)  # (B, Hkv, T, Dh)
        if self.positions == "rotary":  # rotate before caching: a cached key keeps its own position's angle
            q, k = apply_rotary(q, positions, self.rotary_base), apply_rotary(k, positions, self.rotary_base)
        if cache is not None:
            k, v = cache.update(k, v, layer)  # (B, Hkv, Tk, Dh): the cached positions, then the new ones
        Tk, last = k.shape[2], positions[-1]
        key_positions = torch.arange(last - Tk + 1, last + 1, device=X.device)  # (Tk,): keys are contiguous
        offset = positions.unsqueeze(1) - key_positions.unsqueeze(0)  # (T, Tk): how far back each key is
        mask = offset >= 0  # (T, Tk): causal, True = may attend
        if self.window is not None:
            mask = mask & (offset < self.window)  # the key is one of the last `window` positions
        G = self.num_heads // self.num_kv_heads
        k, v = k.repeat_interleave(G, dim=1), v.repeat_interleave(G, dim=1)  # (B, H, Tk, Dh): head h uses kv head h // G
        p = self.dropout_p if self.training else 0.0
        if self.impl == "sdpa":
            out = fused_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, T, Dh)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)  # (B, H, T, Tk)
            weights = masked_softmax(scores.reshape(B * self.num_heads, T, Tk), attn_mask=mask)  # (B * H, T, Tk)
            weights = weights.reshape(B, self.num_heads, T, Tk)
            self._weights = weights.detach()
            out = nn.functional.dropout(weights, p) @ v  # (B, H, T, Dh)
        return self.W_o(out.transpose(1, 2).reshape(B, T, -1))  # (B, T, H, Dh) -> (B, T, H Dh) -> (B, T, D)
