"""Chapter 5: the Transformer (Vaswani et al., 2017), encoder, decoder and the whole model.

Shape legend: B batch, T positions (Ts source, Tt target; Tq queries, Tk keys), D model
size (``num_hiddens``), F the feed-forward network's hidden size (``ffn_num_hiddens``),
H heads, V vocabulary size, L ``max_len`` of the positional encoding.

Building blocks, with d2l 1.0.3's constructor arguments and parameter names, so that a
d2l state dict loads into ours with ``strict=True`` (and the reverse) and gives the same
outputs:

* :class:`PositionWiseFFN`: two linear layers with a ReLU between them, applied to every
  position on its own: (B, T, D) -> (B, T, D);
* :class:`AddNorm`: residual connection and layer normalization, ``ln(dropout(Y) + X)``;
* :class:`TransformerEncoderBlock`: self-attention, then the FFN, each followed by AddNorm;
* :class:`TransformerEncoder`: scaled embedding + positional encoding + ``num_blks`` blocks;
* :class:`TransformerDecoderBlock`: causal self-attention, cross-attention over the
  encoder outputs, then the FFN, each followed by AddNorm;
* :class:`TransformerDecoder`: scaled embedding + positional encoding + blocks + a linear
  output layer giving logits over the vocabulary.

The decoder differs from d2l's on purpose: it is causal in every mode (d2l's masks
future tokens only in training mode), and its key/value cache gives, one token at a
time, exactly the logits of one pass over the whole target, with the positional
encoding of the t-th token P[t] (d2l's gives every single-token step position 0).

**Decoder state and cache.** ``init_state(enc_outputs, enc_valid_lens)`` returns
``[enc_outputs (B, Ts, D), enc_valid_lens (B,) or None, cache]``, d2l's layout; ``cache``
is a list with one entry per block, None before the first call. After a call, block i's
entry ``cache[i]`` is a :class:`BlockCache` ``(keys, values, src_keys, src_values)``:
``keys`` = X W_k and ``values`` = X W_v (B, T_past, D) of its self-attention for every
target position seen so far, and the cross-attention's keys and values of the source
(B, Ts, D), projected at the first call and reused after. d2l keeps in ``state[2][i]``
the block's *inputs* X (B, T_past, D) and projects all of them, and the whole source,
again at every step; keeping the projections does that work once. The number of cached
positions is the position of the next token. The decoder never changes the state it
is given: ``forward`` returns a new list (the tensors are shared), so a beam search may
continue several hypotheses from the same state.

**Pre-norm.** ``norm_first=True`` moves each LayerNorm to the input of its sublayer,
``X + dropout(sublayer(ln(X)))`` (as ``torch.nn.TransformerEncoderLayer(norm_first=True)``),
and adds a final LayerNorm ``norm`` after the last block. The default, post-norm, is the
paper's and d2l's, and has d2l's state dict (no ``norm``).

**Initialization.** ``TransformerEncoder``, ``TransformerDecoder`` and so
``build_transformer`` initialize their parameters with :func:`init_transformer_weights`,
the Annotated Transformer's choice: every weight matrix, the embeddings included,
Xavier-uniform (Glorot and Bengio, 2010), with standard deviation sqrt(2 / (fan_in +
fan_out)); biases and LayerNorms keep PyTorch's defaults. (The paper does not say how
it initializes.) An embedding's entries then have spread sqrt(2 / (V + D)), and
multiplied by sqrt(D) (the paper's section 3.4), sqrt(2D / (V + D)), below sqrt(2): 0.56
for the course corpus (V = 347, D = 64), the scale of the positional encoding's entries
(which lie in [-1, 1]); an output layer tied to the embedding scores every word with a
dot product of that same spread, so an untrained model starts close to the loss ln V of a
uniform guess, tied or not. PyTorch's own default for ``nn.Embedding``, N(0, 1), would
give the scaled entries a spread of sqrt(D), 8 at D = 64, which drowns the positional
encoding, and a tied output layer scores of spread sqrt(D): an untrained model that is
confidently wrong. With a very large vocabulary the scaled embedding is smaller than the
positional encoding (0.17 at V = 37,000, D = 512), which the Annotated Transformer's
models train with. The blocks on their own keep PyTorch's defaults (BERT, chapter 6,
builds its own stack from them). ``scale_embedding=False`` leaves out the sqrt(D) factor.

**Two attention paths.** ``impl="manual"`` (teaching path) keeps every head's weights
for plots (``attention_weights``); ``impl="sdpa"`` uses PyTorch's fused kernel. Same
parameters, same results. Every block, encoder and decoder has an ``impl`` property that
sets the path of all its attention layers: for a whole model,
``model.encoder.impl = model.decoder.impl = "sdpa"``.

**Matching PyTorch.** ``torch.nn.TransformerEncoderLayer`` and ``TransformerDecoderLayer``
(ReLU, ``batch_first=True``) compute the same function as our blocks with
``use_bias=True`` (their attention projections have biases; d2l's default
``use_bias=False`` has none) and LayerNorm eps 1e-5 (the default of both), in eval mode:
PyTorch's layers also apply dropout inside the FFN, after the ReLU, which ours (and
d2l's) do not. ``torch.nn.Transformer`` also adds a final LayerNorm to both stacks even
when ``norm_first=False``; ours only with ``norm_first=True``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from course_lib._checks import (
    check_features,
    check_index_range,
    check_number,
    check_probability,
    refuse_untied_state_dict,
)
from course_lib.attention_scoring import IMPLEMENTATIONS
from course_lib.masking import combine_masks
from course_lib.multihead_attention import MultiHeadAttention
from course_lib.positional_encoding import PositionalEncoding

#: Table 3 of Vaswani et al. (2017): sizes of the base and big models (dropout: the big
#: model's English-German value; 0.1 for English-French). For English-German the paper
#: shares one vocabulary of about 37,000 byte-pair tokens between the languages, and one
#: embedding matrix between the encoder, the decoder and the output layer.
VASWANI_2017: dict[str, dict[str, int | float]] = {
    "base": dict(num_hiddens=512, ffn_num_hiddens=2048, num_heads=8, num_blks=6, dropout=0.1),
    "big": dict(num_hiddens=1024, ffn_num_hiddens=4096, num_heads=16, num_blks=6, dropout=0.3),
}


def _check_int(name: str, value: object, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_tokens(X: Tensor, who: str, vocab_size: int | None = None) -> None:
    """Token ids (B, T) of an integer dtype; with ``vocab_size``, in [0, vocab_size) (checked on the CPU only)."""
    if not isinstance(X, Tensor) or X.dim() != 2 or X.dtype.is_floating_point or X.dtype.is_complex or X.dtype == torch.bool:
        raise ValueError(f"{who} expects token indices of shape (B, T) with an integer dtype, got "
                         f"{getattr(X, 'shape', type(X).__name__)} {getattr(X, 'dtype', '')}")
    if vocab_size is not None:
        check_index_range(X, vocab_size, f"{who}: token ids", f"for a vocabulary of {vocab_size} tokens")


#: Activations of the feed-forward network: the paper's ReLU, and BERT's (exact) GELU.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}


def _check_activation(activation: object) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    return activation  # type: ignore[return-value]


def _linear(in_features: int | None, out_features: int, bias: bool = True) -> nn.Module:
    return nn.Linear(in_features, out_features, bias=bias) if in_features else nn.LazyLinear(out_features, bias=bias)


class PositionWiseFFN(nn.Module):
    """Position-wise feed-forward network: ``dense2(relu(dense1(X)))``, (B, T, Din) -> (B, T, Dout).

    ``PositionWiseFFN(ffn_num_hiddens, ffn_num_outputs)`` as in d2l 1.0.3: ``dense1``
    (Din -> F) learns its input size on the first call (a lazy layer) unless
    ``ffn_num_inputs`` is given; ``dense2`` (F -> Dout) knows its input size. The same
    weights act on every position, so it is also a 1 x 1 convolution over the sequence.

    ``activation="gelu"`` (exact, erf-based GELU, as BERT uses) replaces the ReLU; the
    activation has no parameters, so the state dict is the same. The module is kept
    under its own name (``relu`` or ``gelu``).
    """

    def __init__(
        self, ffn_num_hiddens: int, ffn_num_outputs: int, ffn_num_inputs: int | None = None, activation: str = "relu"
    ) -> None:
        super().__init__()
        _check_int("ffn_num_hiddens", ffn_num_hiddens)
        _check_int("ffn_num_outputs", ffn_num_outputs)
        self.dense1 = _linear(ffn_num_inputs, ffn_num_hiddens)
        self.activation = _check_activation(activation)
        setattr(self, activation, ACTIVATIONS[activation]())  # self.relu (d2l's name) or self.gelu
        self.dense2 = nn.Linear(ffn_num_hiddens, ffn_num_outputs)

    def forward(self, X: Tensor) -> Tensor:
        check_features(self.dense1, X, "X")
        act = getattr(self, self.activation)
        return self.dense2(act(self.dense1(X)))  # (B, T, Din) -> (B, T, F) -> (B, T, Dout)


class AddNorm(nn.Module):
    """Residual connection then layer normalization: ``ln(dropout(Y) + X)``, (B, T, D) -> (B, T, D).

    ``AddNorm(norm_shape, dropout)`` as in d2l 1.0.3; X is the sublayer's input, Y its
    output. ``eps`` is LayerNorm's (1e-5, PyTorch's default everywhere). In a pre-norm
    block the same ``ln`` normalizes the sublayer's input instead (see ``_sublayer``).
    """

    def __init__(self, norm_shape: int | list[int] | tuple[int, ...], dropout: float, eps: float = 1e-5) -> None:
        super().__init__()
        check_probability("dropout", dropout)
        check_number("eps", eps, positive=True)  # 0 or less: a constant row becomes 0 / 0 = NaN
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(norm_shape, eps=eps)

    def forward(self, X: Tensor, Y: Tensor) -> Tensor:
        if not isinstance(X, Tensor) or not isinstance(Y, Tensor) or X.shape != Y.shape:
            raise ValueError(f"AddNorm needs the sublayer's input X and output Y of one shape, got "
                             f"{tuple(getattr(X, 'shape', ()))} and {tuple(getattr(Y, 'shape', ()))} (no broadcasting)")
        return self.ln(self.dropout(Y) + X)


def _sublayer(addnorm: AddNorm, X: Tensor, sublayer, norm_first: bool) -> Tensor:
    """One residual sublayer: post-norm ``ln(X + dropout(f(X)))`` or pre-norm ``X + dropout(f(ln(X)))``."""
    if norm_first:
        return X + addnorm.dropout(sublayer(addnorm.ln(X)))
    return addnorm(X, sublayer(X))


class _SwitchesImpl(nn.Module):
    """``impl`` of every MultiHeadAttention inside, read and set in one place."""

    @property
    def impl(self) -> str:
        """``"manual"`` or ``"sdpa"``: the attention path of every MultiHeadAttention inside."""
        impls = {m.impl for m in self.modules() if isinstance(m, MultiHeadAttention)}
        return impls.pop() if len(impls) == 1 else "mixed"

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {value!r}")
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.impl = value


def _attention(num_hiddens: int, num_heads: int, dropout: float, use_bias: bool, impl: str) -> MultiHeadAttention:
    # Inside a block every input has size D, so the projections are created right away (no lazy layers).
    return MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias, impl, num_hiddens, num_hiddens, num_hiddens)


class TransformerEncoderBlock(_SwitchesImpl):
    """Encoder block: self-attention and the FFN, each in a residual AddNorm: (B, T, D) -> (B, T, D).

    ``TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout,
    use_bias=False)`` as in d2l 1.0.3 (``use_bias`` is for the attention projections;
    the FFN always has biases). Forward ``(X (B, T, D), valid_lens (B,) or None)``:
    keys beyond a sequence's valid length (padding) get no attention.
    ``norm_first=True`` makes it a pre-norm block. ``activation`` (``"relu"`` or
    ``"gelu"``) is the FFN's, ``eps`` the LayerNorms' (BERT: GELU and 1e-12).
    """

    def __init__(
        self,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        dropout: float,
        use_bias: bool = False,
        norm_first: bool = False,
        impl: str = "manual",
        activation: str = "relu",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        _check_bool("norm_first", norm_first)
        self.norm_first = norm_first
        self.attention = _attention(num_hiddens, num_heads, dropout, use_bias, impl)
        self.addnorm1 = AddNorm(num_hiddens, dropout, eps)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens, num_hiddens, activation)
        self.addnorm2 = AddNorm(num_hiddens, dropout, eps)

    def forward(self, X: Tensor, valid_lens: Tensor | None = None) -> Tensor:
        _check_hidden(X, self.attention.num_hiddens, "X")
        Y = _sublayer(self.addnorm1, X, lambda h: self.attention(h, h, h, valid_lens), self.norm_first)
        return _sublayer(self.addnorm2, Y, self.ffn, self.norm_first)  # (B, T, D)


class TransformerEncoder(_SwitchesImpl):
    """Transformer encoder: token indices (B, T) -> representations (B, T, D).

    ``TransformerEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks,
    dropout, use_bias=False)`` as in d2l 1.0.3: ``embedding`` (multiplied by sqrt(D), as
    in the paper), ``pos_encoding``, and the blocks ``blks.block0``, ``blks.block1``, ...
    Forward ``(X (B, T), valid_lens (B,) or None)``: token ids in [0, vocab_size) (values
    checked on the CPU), lengths in [0, T]. Parameters are initialized with
    :func:`init_transformer_weights` (see the module's docstring for why).

    Options: ``norm_first`` (pre-norm blocks and a final LayerNorm ``norm``), ``impl``,
    ``max_len`` of the positional encoding, ``embedding``, an existing
    ``nn.Embedding(vocab_size, num_hiddens)`` to share (e.g. with a decoder; it is not
    initialized again), and ``scale_embedding`` (False: no sqrt(D) factor).
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
        impl: str = "manual",
        max_len: int = 1000,
        embedding: nn.Embedding | None = None,
        scale_embedding: bool = True,
    ) -> None:
        super().__init__()
        _check_int("vocab_size", vocab_size)
        _check_int("num_blks", num_blks)
        _check_bool("norm_first", norm_first)
        _check_bool("scale_embedding", scale_embedding)
        self.num_hiddens, self.norm_first, self.scale_embedding = num_hiddens, norm_first, scale_embedding
        self.embedding = _embedding(embedding, vocab_size, num_hiddens)
        self.pos_encoding = PositionalEncoding(num_hiddens, dropout, max_len)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(f"block{i}", TransformerEncoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias, norm_first, impl))
        if norm_first:  # a pre-norm stack ends unnormalized: normalize its output once
            self.norm = nn.LayerNorm(num_hiddens)
        init_transformer_weights(self, skip=() if embedding is None else (embedding,))

    def forward(self, X: Tensor, valid_lens: Tensor | None = None, *args) -> Tensor:
        _check_tokens(X, "TransformerEncoder", self.embedding.num_embeddings)
        scale = math.sqrt(self.num_hiddens) if self.scale_embedding else 1.0
        X = self.pos_encoding(self.embedding(X) * scale)  # (B, T, D)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return self.norm(X) if self.norm_first else X  # (B, T, D)

    @property
    def attention_weights(self) -> list[Tensor]:
        """Self-attention weights of the last call, one (B, H, T, T) tensor per block (teaching path)."""
        return [blk.attention.attention_weights for blk in self.blks]


def _check_hidden(X: object, num_hiddens: int, name: str) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3 or X.shape[-1] != num_hiddens or not X.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor (B, T, {num_hiddens}), got "
                         f"{getattr(X, 'shape', type(X).__name__)} {getattr(X, 'dtype', '')}")


def _check_batch(X: Tensor, enc_outputs: Tensor, cache: list) -> None:
    """The state must have been built for X's batch: the same number of sequences."""
    B = X.shape[0]
    sizes = {"the encoder outputs in the state (init_state)": enc_outputs.shape[0]}
    first = next((c for c in cache if c is not None), None)
    if first is not None:
        sizes["the state's cache"] = first.keys.shape[0]
    for what, size in sizes.items():
        if size != B:
            raise ValueError(f"the decoder state was built for a batch of {size} sequences ({what}), but the target "
                             f"holds {B}: build the state with init_state from the same batch of sources")


def _embedding(embedding: nn.Embedding | None, vocab_size: int, num_hiddens: int) -> nn.Embedding:
    if embedding is None:
        return nn.Embedding(vocab_size, num_hiddens)
    if not isinstance(embedding, nn.Embedding) or tuple(embedding.weight.shape) != (vocab_size, num_hiddens):
        raise ValueError(f"embedding to share must be an nn.Embedding({vocab_size}, {num_hiddens}), got {embedding!r}")
    return embedding


def init_transformer_weights(module: nn.Module, skip: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Xavier-uniform initialization of every weight matrix of ``module``, in place; returns it.

    The Annotated Transformer's initialization: each parameter with two or more
    dimensions (linear weights, embeddings) is drawn from U(-a, a) with a = sqrt(6 /
    (fan_in + fan_out)), standard deviation sqrt(2 / (fan_in + fan_out)); biases and
    LayerNorm parameters keep their defaults. A tied output layer shares its weight with
    the embedding and is drawn once. Parameters of the modules in ``skip`` (e.g. an
    embedding shared with another model, already initialized) are left as they are.
    Works on the meta device (nothing is drawn there).
    """
    skipped = {id(p) for m in skip for p in m.parameters()}
    with torch.no_grad():
        for p in module.parameters():  # each shared tensor once
            if p.dim() > 1 and id(p) not in skipped:
                nn.init.xavier_uniform_(p)
    return module


class BlockCache(NamedTuple):
    """What decoder block i keeps between calls, ``state[2][i]`` (all (B, ., D), before the split into heads)."""

    keys: Tensor  #: (B, T_past, D) self-attention keys X W_k of every target position so far
    values: Tensor  #: (B, T_past, D) self-attention values X W_v
    src_keys: Tensor  #: (B, Ts, D) cross-attention keys enc_outputs W_k, projected once per source
    src_values: Tensor  #: (B, Ts, D) cross-attention values enc_outputs W_v


def _check_state(state: object, num_blks: int | None) -> tuple[Tensor, Tensor | None, list]:
    """Unpack ``[enc_outputs, enc_valid_lens, cache]``; the cache is returned as a new list."""
    if state is None:
        raise ValueError("the decoder needs a state: call decoder.init_state(enc_outputs, enc_valid_lens) first")
    if not isinstance(state, (list, tuple)) or len(state) != 3 or not isinstance(state[2], (list, tuple)) \
            or (num_blks is not None and len(state[2]) != num_blks):
        raise ValueError(
            "decoder state must be [enc_outputs, enc_valid_lens, cache] with one cache entry per block"
            f"{'' if num_blks is None else f' ({num_blks})'}, as returned by init_state; got {type(state).__name__}"
        )
    enc_outputs, enc_valid_lens, cache = state
    return enc_outputs, enc_valid_lens, list(cache)


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
        past: BlockCache | None = cache[self.i]
        a1, a2 = self.attention1, self.attention2
        if past is None:  # the source's keys and values for cross-attention: projected once, reused at every step
            src_keys, src_values = a2.W_k(enc_outputs), a2.W_v(enc_outputs)  # (B, Ts, D) each
        else:
            src_keys, src_values = past.src_keys, past.src_values
        new_kv: list[tuple[Tensor, Tensor]] = []

        def self_attention(h: Tensor) -> Tensor:  # h (B, Tt, D): the new positions
            K, V = a1.W_k(h), a1.W_v(h)  # (B, Tt, D) each
            if past is not None:  # prepend the cached positions: (B, T_past + Tt, D)
                K, V = torch.cat([past.keys, K], dim=1), torch.cat([past.values, V], dim=1)
            new_kv.append((K, V))
            return a1.W_o(a1.attend(a1.W_q(h), K, V, causal=True))  # (B, Tt, D)

        def cross_attention(h: Tensor) -> Tensor:  # queries from the target, keys and values from the source
            return a2.W_o(a2.attend(a2.W_q(h), src_keys, src_values, valid_lens=enc_valid_lens))  # (B, Tt, D)

        Y = _sublayer(self.addnorm1, X, self_attention, self.norm_first)
        Z = _sublayer(self.addnorm2, Y, cross_attention, self.norm_first)
        cache[self.i] = BlockCache(*new_kv[0], src_keys, src_values)
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
        _check_state(state, None)
        first = state[2][0] if state[2] else None
        return 0 if first is None else first.keys.shape[1]

    def forward(self, X: Tensor, state: list) -> tuple[Tensor, list]:
        _check_tokens(X, "TransformerDecoder", self.embedding.num_embeddings)
        enc_outputs, _, cache = _check_state(state, self.num_blks)
        _check_batch(X, enc_outputs, cache)
        start, T, max_len = self.cache_length(state), X.shape[1], self.pos_encoding.max_len
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


def build_transformer(
    src_vocab_size: int,
    tgt_vocab_size: int,
    num_hiddens: int,
    ffn_num_hiddens: int,
    num_heads: int,
    num_blks: int,
    dropout: float,
    *,
    use_bias: bool = False,
    norm_first: bool = False,
    tie_weights: bool = False,
    shared_embedding: bool = False,
    impl: str = "manual",
    max_len: int = 1000,
    scale_embedding: bool = True,
):
    """An encoder-decoder Transformer: ``course_lib.seq2seq.EncoderDecoder(encoder, decoder)``.

    ``model(src (B, Ts), tgt_in (B, Tt), src_valid_len (B,)) -> logits (B, Tt, V)``;
    ``greedy_decode``, ``translate`` and ``beam_search`` of ``course_lib.decoding`` work
    with it (one token per decoder call, using the cache).
    ``tie_weights``: the decoder's output layer uses the target embedding matrix.
    ``shared_embedding``: one embedding for source and target (needs one shared
    vocabulary, ``src_vocab_size == tgt_vocab_size``), as in Vaswani et al. (2017), who
    also tie it to the output layer. ``scale_embedding=False``: the embeddings are not
    multiplied by sqrt(D). The parameters are initialized with
    :func:`init_transformer_weights` (the module's docstring says why): a fresh model's
    loss is close to ln V, tied or not. Build it on the meta device (``with
    torch.device("meta"):``) to count parameters without allocating them. A model with
    ``tie_weights`` or ``shared_embedding`` refuses a state dict that holds two different
    matrices for its one shared matrix (loading would silently keep only one).
    """
    from course_lib.seq2seq import EncoderDecoder  # the chapter 3 container

    _check_bool("shared_embedding", shared_embedding)
    if shared_embedding and src_vocab_size != tgt_vocab_size:
        raise ValueError(
            f"shared_embedding needs one vocabulary for source and target, got sizes {src_vocab_size} and {tgt_vocab_size}"
        )
    encoder = TransformerEncoder(src_vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
                                 use_bias, norm_first, impl, max_len, scale_embedding=scale_embedding)
    decoder = TransformerDecoder(tgt_vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
                                 use_bias, norm_first, tie_weights, encoder.embedding if shared_embedding else None,
                                 impl, max_len, scale_embedding=scale_embedding)
    model = EncoderDecoder(encoder, decoder)
    model.register_load_state_dict_pre_hook(refuse_untied_state_dict)  # shared or tied: refuse untied weights
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (scalars) of ``model``, each shared tensor counted once.

    Works on the meta device. Lazy layers have no size before their first call: run one
    forward pass first (or give their input sizes), else a ValueError.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_parameters expects a torch.nn.Module, got {type(model).__name__}")
    _check_bool("trainable_only", trainable_only)
    total = 0
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor once
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise ValueError(f"parameter {name!r} is not materialized yet (a lazy layer): run one forward pass first")
        if p.requires_grad or not trainable_only:
            total += p.numel()
    return total


__all__ = [
    "ACTIVATIONS",
    "AddNorm",
    "BlockCache",
    "PositionWiseFFN",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "VASWANI_2017",
    "build_transformer",
    "count_parameters",
    "init_transformer_weights",
]
