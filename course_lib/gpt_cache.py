"""Chapter 7: key/value caches for the decoder-only model, the full one and the rolling one.

Shape legend: B batch, Hkv key/value heads, T new positions, T_past cached positions,
Dh head size, W ``window``.

A cache keeps, for every block (``layer``), the keys and values (B, Hkv, T_past, Dh) of
the positions already read, *after* the rotation of rotary positions: a key is rotated
once, by its own absolute position, and never again. ``update(keys, values, layer)``
appends the new positions' keys and values and returns those to attend to;
``num_positions`` counts the positions read so far, the position of the next token.
The model calls ``advance(T)`` once per call, after its last block.

:class:`SlidingWindowCache` is the rolling cache of sliding-window attention (Longformer,
Mistral): a query sees itself and the W - 1 positions before it, so the cache never
needs to keep more than the last W - 1 positions. Its memory stays fixed however long
the text grows, while ``num_positions`` keeps counting the absolute positions (rotary
angles and the window mask need them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib._checks import check_int, describe


class KVCache:
    """Keys and values of every block for the positions read so far; grows by T per call."""

    def __init__(self) -> None:
        self.keys: list[Tensor | None] = []
        self.values: list[Tensor | None] = []
        self.num_positions = 0  #: positions read so far (the absolute position of the next token)

    def _check(self, keys: Tensor, values: Tensor, layer: int) -> None:
        check_int("layer", layer, minimum=0)
        for name, t in (("keys", keys), ("values", values)):
            if not isinstance(t, Tensor) or t.dim() != 4:
                raise ValueError(f"cache.update expects {name} of shape (B, Hkv, T, Dh), got {describe(t)}")
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        past = self.keys[layer]
        if past is not None and (past.shape[:2] != keys.shape[:2] or past.shape[-1] != keys.shape[-1]):
            raise ValueError(f"layer {layer} caches keys of shape (B, Hkv, ., Dh) = "
                             f"{(past.shape[0], past.shape[1], '.', past.shape[3])}, got new keys {tuple(keys.shape)}")

    def stored(self, layer: int) -> int:
        """How many positions layer ``layer`` keeps (0 before its first update)."""
        return 0 if layer >= len(self.keys) or self.keys[layer] is None else self.keys[layer].shape[2]

    def update(self, keys: Tensor, values: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        """Append the new (B, Hkv, T, Dh) keys and values of block ``layer``; return all (B, Hkv, T_past + T, Dh)."""
        self._check(keys, values, layer)
        if self.keys[layer] is not None:
            keys = torch.cat([self.keys[layer], keys], dim=2)  # (B, Hkv, T_past + T, Dh)
            values = torch.cat([self.values[layer], values], dim=2)
        self.keys[layer], self.values[layer] = keys, values
        return keys, values

    def advance(self, num_new: int) -> None:
        """Count ``num_new`` more positions read (the model calls this once per call)."""
        self.num_positions += check_int("num_new", num_new, minimum=0)

    def memory_bytes(self) -> int:
        """Bytes held by the cached keys and values, all blocks together."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


class SlidingWindowCache(KVCache):
    """A rolling cache for sliding-window attention: keeps the last ``window - 1`` positions of each block.

    ``update`` returns the kept positions and the new ones (all that a new query may
    see), then keeps only the last ``window - 1``: with one token per call the cache
    never holds more than W - 1 positions, whatever ``num_positions`` is.
    """

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = check_int("window", window)

    def update(self, keys: Tensor, values: Tensor, layer: int) -> tuple[Tensor, Tensor]:
        keys, values = super().update(keys, values, layer)  # (B, Hkv, T_kept + T, Dh)
        keep = self.window - 1
        start = max(keys.shape[2] - keep, 0)
        self.keys[layer], self.values[layer] = keys[:, :, start:], values[:, :, start:]  # (B, Hkv, <= W - 1, Dh)
        return keys, values
