"""Chapters 5 and 7: the key/value cache of a decoder that writes one token at a time.

Shape legend: B batch, T_past positions already decoded, T new positions, Dk = Hkv * Dh
and Dv the sizes of the projected keys and values (all heads, before the split), Ts
source positions.

When a decoder writes token t, the keys and values of the earlier positions are those
it computed at the earlier steps (a causal model never changes its past), so each layer
keeps them and computes only the new ones: ``cache.update(keys, values, layer)``
appends the new keys and values of one layer and returns what attention should use,
every key and value so far, with the number of positions before the new ones (the
causal offset). Hugging Face's caches have the same ``update(keys, values, layer)``.

:class:`KVCache` is a sequence with one :class:`BlockCache` entry per layer (None before
the layer's first call), which is what the Transformer decoder keeps in its state,
``[enc_outputs, enc_valid_lens, cache]`` (d2l's layout). An encoder-decoder layer also
keeps the projected source keys and values of its cross-attention, computed at the first
call (:meth:`KVCache.set_source`, :meth:`KVCache.source`).

**A cache is never changed behind anyone's back.** ``update`` replaces an entry by a new
one (``torch.cat`` makes new tensors; no tensor is written in place), and the decoder
works on :meth:`KVCache.copy` of the cache it is given. So a beam search can continue
several hypotheses from one state: each gets its own entries, and the state it started
from stays as it was. Copying costs one short list; the tensors are shared until a
layer appends to them.

**Absolute positions.** ``get_seq_length(layer)`` counts every position the layer has
seen: the position of the next token, for positional encodings and rotary positions.
It is kept apart from the length of the stored keys so that a subclass may keep fewer of
them: a rolling (sliding-window) cache overrides :meth:`KVCache.update` to keep the last
W positions, returns those with the new ones, and its offset is then the number of kept
positions, while ``get_seq_length`` goes on counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from course_lib._checks import check_int, describe


class BlockCache(NamedTuple):
    """What layer i keeps between calls, ``cache[i]`` (all (B, ., D), before the split into heads)."""

    keys: Tensor | None  #: (B, T_past, Dk) self-attention keys X W_k of every position so far
    values: Tensor | None  #: (B, T_past, Dv) self-attention values X W_v
    src_keys: Tensor | None = None  #: (B, Ts, Dk) cross-attention keys enc_outputs W_k, projected once per source
    src_values: Tensor | None = None  #: (B, Ts, Dv) cross-attention values enc_outputs W_v


class KVCache(Sequence):
    """Key/value cache of a stack of ``num_layers`` attention layers, one :class:`BlockCache` per layer.

    ``KVCache(num_layers)`` is empty; ``KVCache.from_entries(entries)`` copies a list of
    entries (None or :class:`BlockCache`, e.g. d2l's ``[None] * num_blks``) or another
    cache. ``len(cache)``, ``cache[i]`` and iteration give the entries.
    """

    def __init__(self, num_layers: int) -> None:
        check_int("num_layers", num_layers, minimum=0)
        self._entries: list[BlockCache | None] = [None] * num_layers
        self._lengths: list[int] = [0] * num_layers  # positions seen by each layer

    @classmethod
    def from_entries(cls, entries: Sequence) -> "KVCache":
        """A new cache holding ``entries`` (None or BlockCache per layer); the tensors are shared, not copied."""
        if isinstance(entries, KVCache):
            return entries.copy()
        if not isinstance(entries, (list, tuple)):
            raise ValueError(f"a cache is a list with one entry (None or BlockCache) per layer, got {describe(entries)}")
        cache = cls(len(entries))
        for i, entry in enumerate(entries):
            if entry is not None and not isinstance(entry, BlockCache):
                raise ValueError(f"cache entry {i} must be None or a BlockCache, got {describe(entry)}")
            cache._entries[i] = entry
            cache._lengths[i] = 0 if entry is None or entry.keys is None else entry.keys.shape[1]
        return cache

    def copy(self) -> "KVCache":
        """A new cache with the same entries: updating one leaves the other as it was."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._entries, new._lengths = list(self._entries), list(self._lengths)
        return new

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, layer):  # type: ignore[override]
        return self._entries[layer]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self)}, positions={self._lengths})"

    def _check_layer(self, layer: int) -> int:
        return check_int("layer", layer, minimum=0, maximum=len(self) - 1)

    def get_seq_length(self, layer: int = 0) -> int:
        """Positions that layer ``layer`` has seen so far: the position of the next token (0 when empty)."""
        return self._lengths[self._check_layer(layer)] if len(self) else 0

    def update(self, keys: Tensor, values: Tensor, layer: int) -> tuple[Tensor, Tensor, int]:
        """Append the new keys (B, T, Dk) and values (B, T, Dv) of ``layer``.

        Returns ``(keys (B, T_past + T, Dk), values (B, T_past + T, Dv), T_past)``: every
        key and value to attend to, and how many of them come before the new ones.
        """
        self._check_layer(layer)
        for name, t in (("keys", keys), ("values", values)):
            if not isinstance(t, Tensor) or t.dim() != 3:
                raise ValueError(f"cache.update expects {name} (B, T, size), got {describe(t)}")
        if keys.shape[:2] != values.shape[:2]:
            raise ValueError(f"keys and values need the same (B, T), got {tuple(keys.shape)} and {tuple(values.shape)}")
        entry = self._entries[layer] or BlockCache(None, None)
        past = 0
        if entry.keys is not None:
            if entry.keys.shape[0] != keys.shape[0] or entry.keys.shape[2] != keys.shape[2] \
                    or entry.values.shape[2] != values.shape[2]:
                raise ValueError(f"layer {layer}'s cache holds keys {tuple(entry.keys.shape)} and values "
                                 f"{tuple(entry.values.shape)}; new keys {tuple(keys.shape)} and values "
                                 f"{tuple(values.shape)} do not extend them (same batch and sizes needed)")
            past = entry.keys.shape[1]
            keys, values = torch.cat([entry.keys, keys], dim=1), torch.cat([entry.values, values], dim=1)
        self._entries[layer] = entry._replace(keys=keys, values=values)
        self._lengths[layer] += keys.shape[1] - past
        return keys, values, past

    def source(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """The cross-attention keys and values (B, Ts, .) kept for ``layer``, or None before its first call."""
        entry = self._entries[self._check_layer(layer)]
        return None if entry is None or entry.src_keys is None else (entry.src_keys, entry.src_values)

    def set_source(self, layer: int, keys: Tensor, values: Tensor) -> None:
        """Keep the cross-attention keys and values (B, Ts, .) of ``layer`` for later calls."""
        entry = self._entries[self._check_layer(layer)] or BlockCache(None, None)
        self._entries[layer] = entry._replace(src_keys=keys, src_values=values)


__all__ = ["BlockCache", "KVCache"]
