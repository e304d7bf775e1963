"""Chapter 7: the rolling key/value cache of sliding-window attention, and what a cache costs.

Shape legend: B batch, T new positions, Dk = Hkv * Dh and Dv the sizes of the projected
keys and values (all key/value heads, before the split), W ``window``.

Sliding-window attention (Longformer, Beltagy et al. 2020; Mistral, Jiang et al. 2023)
lets a query see itself and the W - 1 positions before it. A model that reads one token
at a time then never needs more than the last W - 1 keys and values of each layer:
:class:`SlidingWindowCache` is :class:`course_lib.kv_cache.KVCache` that forgets the
rest, so its memory stays fixed however long the text grows, while
``get_seq_length`` keeps counting the absolute positions (rotary angles and learned
positions need them). :func:`cache_memory_bytes` measures what a cache holds,
:func:`kv_cache_bytes` gives it in closed form.
"""

from __future__ import annotations

from torch import Tensor

from course_lib._checks import check_int, describe
from course_lib.kv_cache import KVCache


class SlidingWindowCache(KVCache):
    """A rolling cache: each layer keeps only its last ``window - 1`` positions.

    ``SlidingWindowCache(num_layers, window)``. ``update(keys, values, layer)`` returns,
    as :class:`~course_lib.kv_cache.KVCache` does, the kept positions followed by the
    new ones and the number of kept ones (the causal offset); then it keeps only the last
    ``window - 1`` of them. With one token per call a layer never holds more than W - 1
    positions. ``stored(layer)`` says how many it holds.
    """

    def __init__(self, num_layers: int, window: int) -> None:
        super().__init__(num_layers)
        self.window = check_int("window", window)

    def update(self, keys: Tensor, values: Tensor, layer: int) -> tuple[Tensor, Tensor, int]:
        keys, values, past = super().update(keys, values, layer)  # (B, T_kept + T, .), T_kept
        start = max(keys.shape[1] - (self.window - 1), 0)
        entry = self._entries[layer]
        self._entries[layer] = entry._replace(keys=keys[:, start:], values=values[:, start:])  # (B, <= W - 1, .)
        return keys, values, past

    def stored(self, layer: int) -> int:
        """How many positions layer ``layer`` keeps (at most W - 1)."""
        entry = self._entries[self._check_layer(layer)]
        return 0 if entry is None or entry.keys is None else entry.keys.shape[1]


def cache_memory_bytes(cache: KVCache) -> int:
    """Bytes held by the keys and values of a cache, all layers together.

    For a full cache after T positions this is 2 x layers x B x T x Hkv x Dh x bytes per
    number: grouped-query attention divides it by H / Hkv.
    """
    if not isinstance(cache, KVCache):
        raise ValueError(f"cache_memory_bytes expects a KVCache, got {describe(cache)}")
    total = 0
    for entry in cache:
        if entry is not None:
            for t in (entry.keys, entry.values, entry.src_keys, entry.src_values):
                if t is not None:
                    total += t.numel() * t.element_size()
    return total




def kv_cache_bytes(config, num_positions: int, batch_size: int = 1, bytes_per_number: int = 2) -> int:
    """Bytes a full key/value cache of ``GPT(config)`` holds after ``num_positions`` positions, in closed form.

    ``2 x num_blks x Hkv x Dh x bytes_per_number`` per position and sequence (keys and
    values, every block, every key/value head), times ``num_positions`` and
    ``batch_size``; ``bytes_per_number`` 2 for float16 or bfloat16, 4 for float32. With
    ``window``, the rolling cache keeps at most ``window - 1`` positions. Llama 2 7B in
    float16: 512 KiB per token, 2 GiB for a context of 4096.
    """
    from course_lib.gpt import GPTConfig

    if not isinstance(config, GPTConfig):
        raise ValueError(f"kv_cache_bytes expects a GPTConfig, got {describe(config)}")
    check_int("num_positions", num_positions, minimum=0)
    check_int("batch_size", batch_size, minimum=0)
    check_int("bytes_per_number", bytes_per_number)
    kept = num_positions if config.window is None else min(num_positions, config.window - 1)
    return 2 * config.num_blks * config.kv_heads * config.head_dim * bytes_per_number * kept * batch_size


__all__ = ["SlidingWindowCache", "cache_memory_bytes", "kv_cache_bytes"]
