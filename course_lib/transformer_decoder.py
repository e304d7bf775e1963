"""Chapter 5: the Transformer's decoder, causal in every mode, with a key/value cache.

Shape legend: B batch, Ts source and Tt target positions, T_past cached target
positions, D model size (``num_hiddens``), V vocabulary size.

* :class:`TransformerDecoderBlock`: causal self-attention, cross-attention over the
  encoder outputs, then the FFN, each followed by AddNorm;
* :class:`TransformerDecoder`: scaled embedding + positional encoding + blocks + a linear
  output layer giving logits over the vocabulary.

Both have d2l 1.0.3's constructor arguments and parameter names (state dicts load both
ways). The decoder differs from d2l's on purpose: it is causal in every mode (d2l's
masks future tokens only in training mode), and its key/value cache gives, one token at
a time, exactly the logits of one pass over the whole target, with the positional
encoding of the t-th token P[t] (d2l's gives every single-token step position 0).

**Decoder state and cache.** ``init_state(enc_outputs, enc_valid_lens)`` returns
``[enc_outputs (B, Ts, D), enc_valid_lens (B,) or None, cache]``, d2l's layout; before
the first call ``cache`` is d2l's list ``[None] * num_blks``, after it a
:class:`~course_lib.kv_cache.KVCache`, a sequence with one entry per block. Block i's
entry ``cache[i]`` is a :class:`~course_lib.kv_cache.BlockCache` ``(keys, values,
src_keys, src_values)``: ``keys`` = X W_k and ``values`` = X W_v (B, T_past, D) of its
self-attention for every target position seen so far (``cache.update`` appends the new
ones and returns all of them), and the cross-attention's keys and values of the source
(B, Ts, D), projected at the first call and reused after. d2l keeps in ``state[2][i]``
the block's *inputs* X (B, T_past, D) and projects all of them, and the whole source,
again at every step; keeping the projections does that work once. The number of cached
positions is the position of the next token. The decoder never changes the state it
is given: ``forward`` works on a copy of the cache and returns a new list (the tensors
are shared), so a beam search may continue several hypotheses from the same state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_lib._checks import refuse_untied_state_dict
from course_lib.kv_cache import BlockCache, KVCache  # noqa: F401  (BlockCache: the type of an entry)
from course_lib.masking import combine_masks
from course_lib.positional_encoding import PositionalEncoding
from course_lib.transformer_encoder import (
    AddNorm,
    PositionWiseFFN,
    _attention,
    _check_bool,
    _check_hidden,
    _check_int,
    _check_tokens,
    _embedding,
    _sublayer,
    _SwitchesImpl,
    init_transformer_weights,
)


def _check_batch(X: Tensor, enc_outputs: Tensor, cache: KVCache) -> None:
    """The state must have been built for X's batch: the same number of sequences."""
    B = X.shape[0]
    sizes = {"the encoder outputs in the state (init_state)": enc_outputs.shape[0]}
    first = next((c for c in cache if c is not None and c.keys is not None), None)
    if first is not None:
        sizes["the state's cache"] = first.keys.shape[0]
    for what, size in sizes.items():
        if size != B:
            raise ValueError(f"the decoder state was built for a batch of {size} sequences ({what}), but the target "
                             f"holds {B}: build the state with init_state from the same batch of sources")


def _check_state(state: object, num_blks: int | None) -> tuple[Tensor, Tensor | None, KVCache]:
    """Unpack ``[enc_outputs, enc_valid_lens, cache]``; the cache is returned as a new KVCache (a copy)."""
    if state is None:
        raise ValueError("the decoder needs a state: call decoder.init_state(enc_outputs, enc_valid_lens) first")
    if not isinstance(state, (list, tuple)) or len(state) != 3 or not isinstance(state[2], (list, tuple, KVCache)) \
            or (num_blks is not None and len(state[2]) != num_blks):
        raise ValueError(
            "decoder state must be [enc_outputs, enc_valid_lens, cache] with one cache entry per block"
            f"{'' if num_blks is None else f' ({num_blks})'}, as returned by init_state; got {type(state).__name__}"
        )
    enc_outputs, enc_valid_lens, cache = state
    return enc_outputs, enc_valid_lens, KVCache.from_entries(cache)


class TransformerDecoderBlock(_SwitchesImpl):
    """Decoder block ``i``: causal self-attention, cross-attention, FFN, each in an AddNorm.

    ``TransformerDecoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, i)``
    with d2l's parameter names (``attention1``, ``addnorm1``, ``attention2``,
    ``addnorm2``, ``ffn``, ``addnorm3``). ``i`` is the block's index in the decoder: its
    entry in the state's cache.

    Forward ``(X (B, Tt, D), state) -> (Y (B, Tt, D), new_state)`` with ``state =
    [enc_outputs (B, Ts, D), enc_valid_lens (B,) or None, cache]`` (see the module's
    docstring). X holds the Tt positions after the T_past cached ones; each attends to
    the cached positions and to itself and the earlier new ones, never to later ones,
    in training and in evaluation alike. The given state is not modified.
    """

    def __init__(
        self,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        dropout: float,
        i: int,
        use_bias: bool = False,
        norm_first: bool = False,
        impl: str = "manual",
    ) -> None:
        super().__init__()
        _check_int("i", i, minimum=0)
        _check_bool("norm_first", norm_first)
        self.i, self.norm_first = i, norm_first
        self.attention1 = _attention(num_hiddens, num_heads, dropout, use_bias, impl)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.attention2 = _attention(num_hiddens, num_heads, dropout, use_bias, impl)
        self.addnorm2 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens)
        self.addnorm3 = AddNorm(num_hiddens, dropout)

    def forward(self, X: Tensor, state: list) -> tuple[Tensor, list]:
        enc_outputs, enc_valid_lens, cache = _check_state(state, None)
        if self.i >= len(cache):
            raise ValueError(f"block {self.i} has no entry in a cache of {len(cache)} blocks")
        _check_hidden(X, self.attention1.num_hiddens, "X")
        _check_batch(X, enc_outputs, cache)
        a1, a2, i = self.attention1, self.attention2, self.i
        source = cache.source(i)
        if source is None:  # the source's keys and values for cross-attention: projected once, reused at every step
            source = a2.W_k(enc_outputs), a2.W_v(enc_outputs)  # (B, Ts, D) each
            cache.set_source(i, *source)

        def self_attention(h: Tensor) -> Tensor:  # h (B, Tt, D): the new positions, after the cached ones
            return a1.W_o(a1.attend(a1.W_q(h), a1.W_k(h), a1.W_v(h), causal=True, cache=cache, layer=i))  # (B, Tt, D)

        def cross_attention(h: Tensor) -> Tensor:  # queries from the target, keys and values from the source
            return a2.W_o(a2.attend(a2.W_q(h), *source, valid_lens=enc_valid_lens))  # (B, Tt, D)

        Y = _sublayer(self.addnorm1, X, self_attention, self.norm_first)
        Z = _sublayer(self.addnorm2, Y, cross_attention, self.norm_first)
        return _sublayer(self.addnorm3, Z, self.ffn, self.norm_first), [enc_outputs, enc_valid_lens, cache]


class TransformerDecoder(_SwitchesImpl):
    """Transformer decoder: target tokens (B, Tt) and a state -> logits (B, Tt, V) and the new state.

    ``TransformerDecoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
    dropout)`` with d2l's parameter names (``embedding``, ``pos_encoding``,
    ``blks.block0`` ..., ``dense``). ``init_state(enc_outputs (B, Ts, D), enc_valid_lens
    (B,) or None)`` makes the state; ``forward(X, state)`` decodes X, the target
    positions after those already in the state's cache, so that

    * teacher forcing: ``decoder(tgt_in, decoder.init_state(...))`` in one call, and
    * generation: one token per call, passing back the returned state,

    give the same logits (the model is causal in every mode). The state given is not
    modified. See the module's docstring for the cache.

    Options: ``use_bias`` (attention projections), ``norm_first`` (pre-norm, with a final
    LayerNorm ``norm``), ``tie_weights`` (the output layer's weight *is* the embedding
    matrix, ``dense.weight is embedding.weight``; ``dense`` keeps its own bias),
    ``embedding`` (an existing ``nn.Embedding(vocab_size, num_hiddens)`` to share, e.g.
    the encoder's; it is not initialized again), ``impl``, ``max_len`` (the most target
    positions, cache included) and ``scale_embedding`` (False: no sqrt(D) factor).
    Parameters are initialized with :func:`init_transformer_weights`.

    Inputs: token ids (B, Tt) in [0, vocab_size) (values checked on the CPU), and a state
    built by ``init_state`` for a source batch of the same size B (both paths refuse
    another size). A tied decoder refuses an untied state dict.
    """

    def __init__(
        self,
        vocab_size: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
        tie_weights: bool = False,
        embedding: nn.Embedding | None = None,
        impl: str = "manual",
        max_len: int = 1000,
        scale_embedding: bool = True,
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size)
        _check_int("num_blks", num_blks)
        _check_bool("norm_first", norm_first)
        _check_bool("tie_weights", tie_weights)
        _check_bool("scale_embedding", scale_embedding)
        self.num_hiddens, self.num_blks, self.norm_first = num_hiddens, num_blks, norm_first
        self.scale_embedding = scale_embedding
        self.embedding = _embedding(embedding, vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(f"block{i}", TransformerDecoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout, i, use_bias, norm_first, impl))
        if norm_first:
            self.norm = nn.LayerNorm(num_hiddens)
        self.dense = nn.Linear(num_hiddens, vocab_size)
        if tie_weights:  # one (V, D) matrix: row v embeds token v and scores token v
            self.dense.weight = self.embedding.weight
        init_transformer_weights(self, skip=() if embedding is None else (embedding,))
        self.register_load_state_dict_pre_hook(refuse_untied_state_dict)  # a tied model refuses untied weights

    @classmethod
    def from_config(cls, config, embedding: nn.Embedding | None = None) -> "TransformerDecoder":
        """The decoder that a :class:`course_lib.transformer.TransformerConfig` describes (its target vocabulary)."""
        c = config
        return cls(c.tgt_vocab_size, c.num_hiddens, c.ffn_num_hiddens, c.num_heads, c.num_blks, c.dropout,
                   use_bias=c.use_bias, norm_first=c.norm_first, tie_weights=c.tie_weights, embedding=embedding,
                   impl=c.impl, max_len=c.max_len, scale_embedding=c.scale_embedding)

    @property
    def tie_weights(self) -> bool:
        """Whether the output layer's weight is the embedding matrix."""
        return self.dense.weight is self.embedding.weight

    def init_state(self, enc_outputs: Tensor, enc_valid_lens: Tensor | None = None, *args) -> list:
        """``[enc_outputs (B, Ts, D), enc_valid_lens (B,) or None, [None] * num_blks]``: nothing decoded yet.

        ``enc_valid_lens``: None or one length per source sequence, (B,), in [0, Ts].
        """
        if not isinstance(enc_outputs, Tensor) or enc_outputs.dim() != 3 or enc_outputs.shape[-1] != self.num_hiddens:
            raise ValueError(
                f"init_state expects the encoder's outputs (B, Ts, {self.num_hiddens}), got "
                f"{getattr(enc_outputs, 'shape', type(enc_outputs).__name__)} (an RNN encoder's (outputs, state) "
                "pair does not fit a Transformer decoder)"
            )
        if enc_valid_lens is not None:
            if not isinstance(enc_valid_lens, Tensor) or enc_valid_lens.dim() != 1 \
                    or enc_valid_lens.shape[0] != enc_outputs.shape[0]:
                raise ValueError(f"enc_valid_lens must be None or a tensor (B,) with B = {enc_outputs.shape[0]} "
                                 f"(the encoder outputs' batch), got {getattr(enc_valid_lens, 'shape', enc_valid_lens)!r}")
            combine_masks(torch.Size((enc_outputs.shape[0], 1, enc_outputs.shape[1])), enc_valid_lens, None)  # values
        return [enc_outputs, enc_valid_lens, [None] * self.num_blks]

    @staticmethod
    def cache_length(state: list) -> int:
        """Number of target positions already in the state's cache: the position of the next token."""
        return _check_state(state, None)[2].get_seq_length(0)

    def forward(self, X: Tensor, state: list) -> tuple[Tensor, list]:
        _check_tokens(X, "TransformerDecoder", self.embedding.num_embeddings)
        enc_outputs, _, cache = _check_state(state, self.num_blks)
        _check_batch(X, enc_outputs, cache)
        start, T, max_len = cache.get_seq_length(0), X.shape[1], self.pos_encoding.max_len
        if start + T > max_len:
            raise ValueError(
                f"{start} cached + {T} new target positions exceed the positional encoding's max_len={max_len}; "
                "build the decoder with a larger max_len"
            )
        P = self.pos_encoding.P[:, start : start + T]  # (1, T, D): positions start .. start + T - 1, not 0 .. T - 1
        scale = math.sqrt(self.num_hiddens) if self.scale_embedding else 1.0
        X = self.embedding(X) * scale + P.to(self.embedding.weight.dtype)
        X = self.pos_encoding.dropout(X)  # (B, T, D)
        for blk in self.blks:
            X, state = blk(X, state)
        if self.norm_first:
            X = self.norm(X)
        return self.dense(X), state  # (B, T, V)

    @property
    def attention_weights(self) -> list[list[Tensor]]:
        """Weights of the last call (teaching path), d2l's layout: ``[self_attention, cross_attention]``.

        ``attention_weights[0][i]`` is block i's self-attention (B, H, Tq, T_past + Tq),
        ``attention_weights[1][i]`` its cross-attention over the source (B, H, Tq, Ts).
        """
        return [[blk.attention1.attention_weights for blk in self.blks],
                [blk.attention2.attention_weights for blk in self.blks]]

    def step_alignment(self) -> Tensor | None:
        """Attention over the source at the last position of the last call, (B, Ts); None on the fused path.

        The last block's cross-attention weights averaged over its heads: the alignment
        that ``course_lib.decoding.greedy_decode`` collects, one row per output token,
        for the plots of chapter 3.
        """
        if self.blks[-1].attention2.impl != "manual":
            return None
        return self.blks[-1].attention2.attention_weights[:, :, -1].mean(dim=1)  # (B, H, Ts) -> (B, Ts)
