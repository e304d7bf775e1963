"""Chapter 5: the Transformer's building blocks and its encoder (Vaswani et al., 2017).

Shape legend: B batch, T positions, D model size (``num_hiddens``), F the feed-forward
network's hidden size (``ffn_num_hiddens``), H heads, V vocabulary size, L ``max_len`` of
the positional encoding.

With d2l 1.0.3's constructor arguments and parameter names, so that a d2l state dict
loads into ours with ``strict=True`` (and the reverse) and gives the same outputs:

* :class:`PositionWiseFFN`: two linear layers with a ReLU between them, applied to every
  position on its own: (B, T, D) -> (B, T, D);
* :class:`AddNorm`: residual connection and layer normalization, ``ln(dropout(Y) + X)``;
* :class:`TransformerEncoderBlock`: self-attention, then the FFN, each followed by AddNorm;
* :class:`TransformerEncoder`: scaled embedding + positional encoding + ``num_blks`` blocks.

The decoder (``course_lib.transformer_decoder``) and BERT (chapter 6) reuse these
pieces; ``course_lib.transformer`` puts encoder and decoder together.

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

import torch
from torch import Tensor, nn

from course_lib._checks import check_features, check_index_range, check_number, check_probability
from course_lib.attention_scoring import IMPLEMENTATIONS
from course_lib.multihead_attention import MultiHeadAttention
from course_lib.positional_encoding import PositionalEncoding


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

    @classmethod
    def from_config(cls, config, embedding: nn.Embedding | None = None) -> "TransformerEncoder":
        """The encoder that a :class:`course_lib.transformer.TransformerConfig` describes (its source vocabulary)."""
        c = config
        return cls(c.src_vocab_size, c.num_hiddens, c.ffn_num_hiddens, c.num_heads, c.num_blks, c.dropout,
                   use_bias=c.use_bias, norm_first=c.norm_first, impl=c.impl, max_len=c.max_len,
                   embedding=embedding, scale_embedding=c.scale_embedding)

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
