"""Chapter 7: the causal self-attention layer of the decoder-only model.

Shape legend: B batch, T positions read in this call, T_past earlier positions the
cache returns, Tk = T_past + T keys, D model size, H query heads, Hkv key/value heads,
Dh head size, W ``window``.

The layer holds the four projections and calls the library's one attention function,
:func:`course_lib.attention.attention`, which splits the heads, rotates queries and
keys (rotary positions, through its ``rotate`` hook, before the cache), updates the
cache, masks, attends on the teaching or the fused path, shares each key/value head
between H / Hkv query heads, and merges the heads. What is added here is the sliding
window: a query at position p may see keys at positions p - W + 1 .. p only, a boolean
mask given to the attention function together with ``causal=True``.
:func:`group_key_value_heads` turns a multi-head model into a grouped-query one by
averaging its key/value heads (Ainslie et al. 2023).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib.attention import attention
from course_lib.attention_scoring import ChoosesPath
from course_lib.kv_cache import KVCache
from course_lib.positional_encoding import apply_rotary


def window_mask(num_queries: int, num_keys: int, window: int, offset: int, device=None) -> Tensor:
    """Boolean (Tq, Tk), True = may attend: key j is one of the last ``window`` positions up to query i.

    The queries are at positions ``offset .. offset + Tq - 1`` of the keys (``offset``
    keys come before the first query), so query i and key j are ``i + offset - j``
    positions apart; the window keeps distances below ``window`` (the causal part, j
    after i, is the attention function's ``causal=True``).
    """
    i = torch.arange(num_queries, device=device).unsqueeze(1)  # (Tq, 1)
    j = torch.arange(num_keys, device=device).unsqueeze(0)  # (1, Tk)
    return i + offset - j < window  # (Tq, Tk)


class CausalSelfAttention(ChoosesPath):
    """Causal self-attention with H query heads and Hkv key/value heads: (B, T, D) -> (B, T, D).

    ``CausalSelfAttention(config)`` with a ``GPTConfig``: ``W_q`` (D -> H Dh), ``W_k``
    and ``W_v`` (D -> Hkv Dh), ``W_o`` (H Dh -> D). ``impl`` is ``"manual"`` (weights
    kept in ``attention_weights``, (B, H, T, Tk)) or ``"sdpa"``; same parameters.
    Forward ``(X (B, T, D), cache=None, layer=0)``: with a cache, X holds the positions
    after those the cache has seen, and the cache is updated.
    """

    def __init__(self, config) -> None:
        super().__init__()
        D, H, Hkv, Dh, bias = config.num_hiddens, config.num_heads, config.kv_heads, config.head_dim, config.bias
        self.num_heads, self.num_kv_heads, self.head_size = H, Hkv, Dh
        self.positions, self.rotary_base, self.window = config.positions, config.rotary_base, config.window
        self.dropout_p = config.dropout
        self.impl = config.impl  # checked when set (ChoosesPath)
        self.W_q = nn.Linear(D, H * Dh, bias=bias)
        self.W_k = nn.Linear(D, Hkv * Dh, bias=bias)
        self.W_v = nn.Linear(D, Hkv * Dh, bias=bias)
        self.W_o = nn.Linear(H * Dh, D, bias=bias)
        self._weights: Tensor | None = None

    @property
    def attention_weights(self) -> Tensor:
        """Weights (B, H, T, Tk) of the last call; teaching path only."""
        return self._weights_or_error(self._weights)

    def _rotate(self, X: Tensor, positions: Tensor) -> Tensor:  # (B, heads, T, Dh): the attention function's hook
        return apply_rotary(X, positions, self.rotary_base)

    def forward(self, X: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        T = X.shape[1]
        mask = None
        if self.window is not None:  # the keys are the T_past ones the cache returns, then the T new ones
            entry = None if cache is None else cache[layer]
            past = 0 if entry is None or entry.keys is None else entry.keys.shape[1]
            mask = window_mask(T, past + T, self.window, past, X.device)  # (T, Tk)
        out, weights = attention(
            self.W_q(X), self.W_k(X), self.W_v(X), self.num_heads,  # (B, T, H Dh), (B, T, Hkv Dh) twice
            num_kv_heads=self.num_kv_heads, attn_mask=mask, causal=True, impl=self.impl,
            dropout_p=self.dropout_p if self.training else 0.0,
            rotate=self._rotate if self.positions == "rotary" else None, cache=cache, layer=layer,
        )  # (B, T, H Dh), weights (B, H, T, Tk) or None
        self._weights = None if weights is None else weights.detach()
        return self.W_o(out)  # (B, T, D)


def group_key_value_heads(net, num_kv_heads: int):
    """A copy of a ``course_lib.gpt.GPT`` with ``num_kv_heads`` key/value heads, each the mean of its group.

    The conversion of Ainslie et al. (2023) from a multi-head checkpoint to grouped-query
    (or, with 1, multi-query) attention: the H key heads are cut into ``num_kv_heads``
    groups of G consecutive heads (query head h uses key/value head h // G, as in the
    attention function), and each group's W_k and W_v rows (and biases) are averaged
    into one head; every other weight is copied. The result is an approximation that
    the paper then fine-tunes briefly (about 5 % of the pretraining steps); it is exact
    when the heads of each group were equal. ``num_kv_heads`` must divide the model's
    current number of key/value heads. The given model is not changed.
    """
    import dataclasses

    from course_lib._checks import check_int

    config = net.config
    check_int("num_kv_heads", num_kv_heads)
    if config.kv_heads % num_kv_heads:
        raise ValueError(f"num_kv_heads must divide the model's {config.kv_heads} key/value heads (heads are "
                         f"averaged in groups), got {num_kv_heads}")
    new_config = dataclasses.replace(config, num_kv_heads=num_kv_heads)
    grouped = type(net)(new_config).to(next(net.parameters()).device)
    G, Dh = config.kv_heads // num_kv_heads, config.head_dim
    state = net.state_dict()
    for name in list(state):
        if name.endswith(("W_k.weight", "W_k.bias", "W_v.weight", "W_v.bias")):
            t = state[name]  # (Hkv Dh, D) or (Hkv Dh,)
            t = t.reshape(num_kv_heads, G, Dh, *t.shape[1:]).mean(dim=1)  # (Hkv', Dh, ...): the mean of each group
            state[name] = t.reshape(num_kv_heads * Dh, *t.shape[2:])
    grouped.load_state_dict(state)
    return grouped.train(net.training)
