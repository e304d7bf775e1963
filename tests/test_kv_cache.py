"""The key/value cache: its explicit update, copies that stay apart, and the Transformer decoder's use of it
(one state continued by several hypotheses, as a beam search does)."""

from __future__ import annotations

import torch

from course_lib.kv_cache import BlockCache, KVCache
from course_lib.transformer import TransformerDecoder

B, TS, V, D, F, H = 3, 7, 11, 8, 16, 2


def test_cache_update_returns_everything_so_far_and_the_number_before():
    cache = KVCache(1)
    k1, v1, k2, v2 = torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.randn(2, 2, 4), torch.randn(2, 2, 5)
    keys, values, past = cache.update(k1, v1, 0)
    assert past == 0 and keys is k1 and values is v1
    snapshot = cache.copy()
    keys, values, past = cache.update(k2, v2, 0)
    assert past == 3 and cache.get_seq_length(0) == 5
    torch.testing.assert_close(keys, torch.cat([k1, k2], 1))
    torch.testing.assert_close(values, torch.cat([v1, v2], 1))
    assert snapshot[0].keys is k1 and snapshot.get_seq_length(0) == 3  # untouched
    cache.set_source(0, k1, v1)
    assert cache.source(0) == (k1, v1) and snapshot.source(0) is None
    assert cache[0].keys is keys  # the self-attention entry is kept


def test_cache_from_entries_copies_the_list_and_counts_positions():
    entry = BlockCache(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), torch.zeros(1, 3, 2), torch.zeros(1, 3, 2))
    entries = [None, entry]
    cache = KVCache.from_entries(entries)
    assert list(cache) == entries and len(cache) == 2
    assert cache.get_seq_length(0) == 0 and cache.get_seq_length(1) == 4
    cache.update(torch.ones(1, 1, 2), torch.ones(1, 1, 2), 1)
    assert entries[1] is entry and cache[1] is not entry  # the given list and its entry are as they were


class KeepLast(KVCache):
    """A rolling cache of our own, kept to the last ``window`` positions: what a subclass must be able to do."""

    window = 2

    def update(self, keys, values, layer):
        keys, values, past = super().update(keys, values, layer)
        entry = self[layer]
        w = self.window
        self._entries[layer] = entry._replace(keys=entry.keys[:, -w:], values=entry.values[:, -w:])
        return keys, values, past


def test_a_rolling_subclass_keeps_fewer_keys_but_counts_every_position_and_copies_as_itself():
    cache = KeepLast(1)
    for step in range(4):
        keys, _, past = cache.update(torch.full((1, 1, 2), float(step)), torch.zeros(1, 1, 2), 0)
        assert past == min(step, 2) and keys.shape[1] == past + 1
    assert cache.get_seq_length(0) == 4 and cache[0].keys.shape[1] == 2
    assert isinstance(cache.copy(), KeepLast) and cache.copy().get_seq_length(0) == 4


def test_decoder_keeps_a_kvcache_in_d2ls_state_layout_and_several_hypotheses_continue_from_one_state():
    torch.manual_seed(0)
    dec = TransformerDecoder(V, D, F, H, 2, 0.0).eval()
    memory, valid = torch.randn(B, TS, D), torch.tensor([7, 3, 5])
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, V, (B, 3), generator=g)
    state = dec.init_state(memory, valid)
    assert state[2] == [None, None]  # d2l's layout before the first call
    _, state = dec(prefix, state)
    assert isinstance(state[2], KVCache) and len(state[2]) == 2 and TransformerDecoder.cache_length(state) == 3
    entries = list(state[2])
    kept = [(e.keys.clone(), e.values.clone()) for e in entries]
    continuations = [torch.randint(0, V, (B, 2), generator=g) for _ in range(3)]
    results = [dec(c, state) for c in continuations]  # every hypothesis from the same state
    for c, (logits, new_state) in zip(continuations, results):
        full, _ = dec(torch.cat([prefix, c], dim=1), dec.init_state(memory, valid))
        torch.testing.assert_close(logits, full[:, 3:], atol=1e-5, rtol=1e-5)
        assert TransformerDecoder.cache_length(new_state) == 5 and new_state[2] is not state[2]
    assert list(state[2]) == entries and TransformerDecoder.cache_length(state) == 3  # the shared state is untouched
    for e, (k, v) in zip(state[2], kept):
        assert torch.equal(e.keys, k) and torch.equal(e.values, v)
