"""Chapter 6: the BERT model (Devlin et al., 2019) and its fine-tuning heads.

Shape legend: B batch, T positions, D model size (``num_hiddens``), F the feed-forward
network's hidden size, H heads, V vocabulary size, P prediction positions per sequence
(masked language modeling), C classes or tags, L ``max_len`` (learned positions).

**Input.** One text or a pair: ``<cls> a ... <sep> b ... <sep>`` with segment 0 for
``<cls>``, the first text and its ``<sep>``, segment 1 for the second text and its
``<sep>`` (``course_lib.bert_data.get_tokens_and_segments``). The input embedding is the
sum of a token, a segment and a learned position embedding.

**Model**, with d2l 1.0.3's names and constructor arguments, so that a d2l ``BERTModel``
state dict loads into ours with ``strict=True`` (and the reverse) and gives the same
outputs:

* :class:`BERTEncoder`: embeddings + ``num_blks`` encoder blocks of chapter 5
  (``course_lib.transformer.TransformerEncoderBlock``, with biases in the attention
  projections), named ``blks.0``, ``blks.1``, ...: (B, T) -> (B, T, D);
* :class:`MaskLM`: an MLP on the encodings at the prediction positions -> (B, P, V);
* :class:`NextSentencePred`: a linear layer -> (B, 2) (class 1: the true next sentence);
* :class:`BERTModel`: the encoder, ``hidden`` (linear + tanh on ``<cls>``, the
  "pooler"), ``mlm`` and ``nsp``; forward gives ``(encoded_X, mlm_Y_hat, nsp_Y_hat)``.

Options for the original BERT (defaults keep d2l's model): ``activation="gelu"`` (FFN
and MLM head), ``eps=1e-12`` (every LayerNorm), ``embedding_norm=True`` (LayerNorm, then
dropout, on the summed embeddings), ``tie_weights=True`` (the MLM output layer's weight
*is* the token embedding matrix; it keeps its own bias), ``num_segments``.
:data:`BERT_CONFIGS` has the Base and Large sizes; :func:`bert_parameter_count` the
number of parameters in closed form.

**Two attention paths**, as in chapter 5: ``model.impl = "manual"`` (teaching path,
``model.attention_weights`` holds every block's (B, H, T, T) weights after a call) or
``"sdpa"`` (PyTorch's fused kernel). Same parameters, same results.

**Fine-tuning.** :class:`BERTClassifier` (one label per text or pair, from ``<cls>``) and
:class:`BERTTagger` (one label per token) start from a copy of a pretrained model's
encoder (``copy=False`` shares it instead, as d2l does); their batches come from
``course_lib.bert_data`` (``encode_inputs``, ``encode_tagging``).

**The rest of chapter 6**, each in a module of its own, and every name importable from
here as before: the pretraining data and the batch builders (``course_lib.bert_data``),
the pretraining losses (``course_lib.bert_losses``), checkpoints
(``course_lib.bert_checkpoint``) and the bridges to Hugging Face ``transformers``
(``course_lib.hf_bridge``; these two are loaded on first use, so that importing this
module neither imports ``transformers`` nor runs in a circle).

**Inputs** are checked at every public boundary, with an error that names the argument:
token ids in [0, vocab_size), segment ids in [0, num_segments), prediction positions in
[0, T) (values on the CPU only, see ``course_lib.masking``).
"""

from __future__ import annotations

from copy import deepcopy

import torch
from torch import Tensor, nn

from course_lib._checks import check_features, check_index_range, check_number, is_integer_tensor, refuse_untied_state_dict
from course_lib.bert_data import (  # noqa: F401  (re-exported: the pretraining data, the batch builders)
    IGNORE_INDEX, BERTPretrainingDataset, MLMData, NSPPair, encode_inputs, encode_tagging, get_tokens_and_segments,
    load_pretraining_data, mask_tokens, nsp_pairs, special_token_ids, trim_pair, wikitext2_dataset,
    wikitext2_documents, wikitext2_vocab,
)
from course_lib.bert_losses import masked_lm_loss, pretraining_loss  # noqa: F401  (re-exported)
from course_lib.transformer import (
    ACTIVATIONS,
    TransformerEncoderBlock,
    _check_activation,
    _check_bool,
    _check_int,
    _check_tokens,
    _linear,
    _SwitchesImpl,
)

#: Sizes of the two models of Devlin et al. (2019), with the options of the original
#: BERT (GELU, LayerNorm eps 1e-12 and after the embeddings, tied MLM output layer).
#: ``BERTModel(**BERT_CONFIGS["base"])``: about 110 million parameters; "large": 336 million.
BERT_CONFIGS: dict[str, dict[str, object]] = {
    name: dict(vocab_size=30522, num_hiddens=D, ffn_num_hiddens=4 * D, num_heads=H, num_blks=layers, dropout=0.1,
               max_len=512, num_segments=2, activation="gelu", eps=1e-12, embedding_norm=True, tie_weights=True)
    for name, D, H, layers in (("base", 768, 12, 12), ("large", 1024, 16, 24))
}


def _check_segments(segments: Tensor | None, tokens: Tensor, num_segments: int) -> Tensor:
    if segments is None:
        return torch.zeros_like(tokens)
    if not is_integer_tensor(segments):
        raise ValueError(f"segments must be integer segment ids (0 for the first text, 1 for the second), got "
                         f"{type(segments).__name__} {getattr(segments, 'dtype', '')}")
    if segments.shape != tokens.shape:
        raise ValueError(f"segments must have the tokens' shape {tuple(tokens.shape)}, got {tuple(segments.shape)}")
    check_index_range(segments, num_segments, "segments", f"(num_segments={num_segments})")
    return segments


class BERTEncoder(_SwitchesImpl):
    """BERT's encoder: token ids (B, T) and segment ids (B, T) -> representations (B, T, D).

    ``BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
    max_len=1000)`` as in d2l 1.0.3: ``token_embedding`` (V, D), ``segment_embedding``
    (``num_segments``, D), a learned ``pos_embedding`` (1, L, D), and the blocks
    ``blks.0``, ``blks.1``, ... Forward ``(tokens, segments=None, valid_lens=None)``:
    segments default to 0 everywhere; keys beyond ``valid_lens`` (padding) get no
    attention. The embeddings are not scaled by sqrt(D) (unlike chapter 5's encoder).

    Keyword options (see the module's docstring): ``num_segments``, ``activation``,
    ``eps``, ``embedding_norm`` (adds ``embedding_norm``, a LayerNorm, and dropout after
    the summed embeddings), ``impl``.
    """

    def __init__(
        self,
        vocab_size: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float,
        max_len: int = 1000,
        *,
        num_segments: int = 2,
        activation: str = "relu",
        eps: float = 1e-5,
        embedding_norm: bool = False,
        impl: str = "manual",
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("num_hiddens", num_hiddens), ("num_blks", num_blks),
                            ("max_len", max_len), ("num_segments", num_segments)):
            _check_int(name, value)
        _check_activation(activation)
        _check_bool("embedding_norm", embedding_norm)
        check_number("eps", eps, positive=True)  # 0 or less: a constant row becomes 0 / 0 = NaN
        self.max_len, self.num_segments = max_len, num_segments
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(num_segments, num_hiddens)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(str(i), TransformerEncoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout, use_bias=True, impl=impl,
                activation=activation, eps=eps))
        self.pos_embedding = nn.Parameter(torch.randn(1, max_len, num_hiddens))  # one learned vector per position
        if embedding_norm:
            self.embedding_norm = nn.LayerNorm(num_hiddens, eps=eps)
            self.embedding_dropout = nn.Dropout(dropout)

    def embed(self, tokens: Tensor, segments: Tensor | None = None) -> Tensor:
        """The input representation: token + segment + position embeddings, (B, T) -> (B, T, D)."""
        _check_tokens(tokens, "BERTEncoder", self.token_embedding.num_embeddings)
        T = tokens.shape[1]
        if T > self.max_len:
            raise ValueError(f"{T} positions exceed max_len={self.max_len} learned position embeddings")
        segments = _check_segments(segments, tokens, self.num_segments)
        X = self.token_embedding(tokens) + self.segment_embedding(segments) + self.pos_embedding[:, :T]
        if hasattr(self, "embedding_norm"):
            X = self.embedding_dropout(self.embedding_norm(X))
        return X  # (B, T, D)

    def forward(self, tokens: Tensor, segments: Tensor | None = None, valid_lens: Tensor | None = None) -> Tensor:
        X = self.embed(tokens, segments)
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X  # (B, T, D)

    @property
    def attention_weights(self) -> list[Tensor]:
        """Self-attention weights of the last call, one (B, H, T, T) tensor per block (teaching path)."""
        return [blk.attention.attention_weights for blk in self.blks]


def gather_positions(X: Tensor, positions: Tensor) -> Tensor:
    """Rows of X (B, T, D) at ``positions`` (B, P) of each sequence: (B, P, D).

    ``positions`` holds integers in [0, T) (a negative one is refused, not read from the
    end; values are checked on the CPU only).
    """
    if not isinstance(X, Tensor) or X.dim() != 3:
        raise ValueError(f"X must be a tensor (B, T, D), got {getattr(X, 'shape', type(X).__name__)}")
    if not is_integer_tensor(positions) or positions.dim() != 2 or positions.shape[0] != X.shape[0]:
        raise ValueError(f"positions must be an integer tensor (B, P) with B={X.shape[0]}, got "
                         f"{getattr(positions, 'shape', type(positions).__name__)} {getattr(positions, 'dtype', '')}")
    check_index_range(positions, X.shape[1], "prediction positions", f"(T = {X.shape[1]} positions)")
    rows = torch.arange(X.shape[0], device=X.device).unsqueeze(1)  # (B, 1), broadcast against (B, P)
    return X[rows, positions.to(X.device)]


class MaskLM(nn.Module):
    """Masked language model head: encodings (B, T, D) and positions (B, P) -> logits (B, P, V).

    ``MaskLM(vocab_size, num_hiddens)`` as in d2l 1.0.3: ``mlp`` = linear (D -> D),
    activation, LayerNorm, linear (D -> V). The first linear layer learns its input size
    on the first call (a lazy layer) unless ``num_inputs`` is given.
    """

    def __init__(
        self, vocab_size: int, num_hiddens: int, num_inputs: int | None = None, *, activation: str = "relu",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[_check_activation(activation)]
        check_number("eps", eps, positive=True)
        self.mlp = nn.Sequential(_linear(num_inputs, num_hiddens), act(), nn.LayerNorm(num_hiddens, eps=eps),
                                 nn.Linear(num_hiddens, vocab_size))

    def forward(self, X: Tensor, pred_positions: Tensor) -> Tensor:
        gathered = gather_positions(X, pred_positions)  # (B, P, D)
        check_features(self.mlp[0], gathered, "X")
        return self.mlp(gathered)  # (B, P, D) -> (B, P, V)


class NextSentencePred(nn.Module):
    """Next sentence prediction head: (B, D) -> logits (B, 2); class 1 = the true next sentence.

    ``NextSentencePred()`` as in d2l 1.0.3: ``output`` learns its input size on the first
    call unless ``num_inputs`` is given.
    """

    def __init__(self, num_inputs: int | None = None) -> None:
        super().__init__()
        self.output = _linear(num_inputs, 2)

    def forward(self, X: Tensor) -> Tensor:
        if not isinstance(X, Tensor) or X.dim() != 2:
            raise ValueError(f"NextSentencePred expects one vector per sequence, (B, D), got "
                             f"{getattr(X, 'shape', type(X).__name__)} (for an encoder's (B, T, D), take X[:, 0])")
        check_features(self.output, X, "X")
        return self.output(X)


class BERTModel(_SwitchesImpl):
    """BERT: the encoder and the two pretraining heads.

    ``BERTModel(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
    max_len=1000)`` as in d2l 1.0.3: ``encoder``, ``hidden`` (linear D -> D and tanh on
    the ``<cls>`` encoding), ``mlm`` and ``nsp``. Forward ``(tokens (B, T), segments (B, T)
    or None, valid_lens (B,) or None, pred_positions (B, P) or None)`` returns
    ``(encoded_X (B, T, D), mlm_Y_hat (B, P, V) or None, nsp_Y_hat (B, 2))``.

    Keyword options (defaults: d2l's model): ``num_segments``, ``activation``, ``eps``,
    ``embedding_norm``, ``tie_weights``, ``impl``; see the module's docstring. Every layer
    knows its input size (no lazy layers), so the model can be built on the meta device
    to count its parameters. ``config`` holds the constructor's arguments:
    ``BERTModel(**model.config)`` builds the same model. A model with ``tie_weights=True``
    refuses a state dict whose two tied matrices differ (loading it would silently keep
    one of them). :func:`save_pretrained` and :func:`load_pretrained` keep a model with
    its configuration and vocabulary in one file.

    Inputs: token ids (B, T) in [0, vocab_size), T <= max_len; segment ids in
    [0, num_segments); prediction positions in [0, T). Values are checked on the CPU
    (see ``course_lib.masking``); shapes and dtypes everywhere.
    """

    def __init__(
        self,
        vocab_size: int,
        num_hiddens: int,
        ffn_num_hiddens: int,
        num_heads: int,
        num_blks: int,
        dropout: float,
        max_len: int = 1000,
        *,
        num_segments: int = 2,
        activation: str = "relu",
        eps: float = 1e-5,
        embedding_norm: bool = False,
        tie_weights: bool = False,
        impl: str = "manual",
    ) -> None:
        super().__init__()
        _check_bool("tie_weights", tie_weights)
        self.config = dict(vocab_size=vocab_size, num_hiddens=num_hiddens, ffn_num_hiddens=ffn_num_hiddens,
                           num_heads=num_heads, num_blks=num_blks, dropout=dropout, max_len=max_len,
                           num_segments=num_segments, activation=activation, eps=eps,
                           embedding_norm=embedding_norm, tie_weights=tie_weights)
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len,
                                   num_segments=num_segments, activation=activation, eps=eps,
                                   embedding_norm=embedding_norm, impl=impl)
        self.hidden = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.Tanh())
        self.mlm = MaskLM(vocab_size, num_hiddens, num_hiddens, activation=activation, eps=eps)
        self.nsp = NextSentencePred(num_hiddens)
        if tie_weights:  # one (V, D) matrix embeds token v (row v) and scores it
            self.mlm.mlp[3].weight = self.encoder.token_embedding.weight
        self.register_load_state_dict_pre_hook(refuse_untied_state_dict)  # a tied model refuses untied weights

    @property
    def tie_weights(self) -> bool:
        """Whether the MLM output layer's weight is the token embedding matrix."""
        return self.mlm.mlp[3].weight is self.encoder.token_embedding.weight

    def forward(
        self,
        tokens: Tensor,
        segments: Tensor | None = None,
        valid_lens: Tensor | None = None,
        pred_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        encoded_X = self.encoder(tokens, segments, valid_lens)  # (B, T, D)
        mlm_Y_hat = None if pred_positions is None else self.mlm(encoded_X, pred_positions)  # (B, P, V)
        nsp_Y_hat = self.nsp(self.hidden(encoded_X[:, 0]))  # from <cls>, position 0: (B, 2)
        return encoded_X, mlm_Y_hat, nsp_Y_hat

    @property
    def attention_weights(self) -> list[Tensor]:
        """Self-attention weights of the last call, one (B, H, T, T) tensor per block (teaching path)."""
        return self.encoder.attention_weights


def bert_parameter_count(
    vocab_size: int,
    num_hiddens: int,
    ffn_num_hiddens: int,
    num_heads: int | None = None,
    num_blks: int = 12,
    dropout: float | None = None,
    max_len: int = 1000,
    *,
    num_segments: int = 2,
    embedding_norm: bool = False,
    tie_weights: bool = False,
    heads: bool = True,
    **ignored: object,
) -> int:
    """Number of parameters of ``BERTModel`` with these arguments, in closed form.

    With V, D, F, L, S = vocab_size, num_hiddens, ffn_num_hiddens, max_len, num_segments:

    * embeddings: (V + S + L) D, plus 2D for ``embedding_norm``;
    * each block: attention 4 (D^2 + D), FFN 2 D F + F + D, two LayerNorms 4D;
    * ``heads`` (pretraining heads): ``hidden`` D^2 + D, ``mlm`` D^2 + D + 2D + V
      (+ V D unless ``tie_weights``), ``nsp`` 2D + 2.

    The number of heads does not change the count (nor do ``dropout``, ``activation``,
    ``eps`` or ``impl``, accepted so that ``bert_parameter_count(**BERT_CONFIGS["base"])``
    works). Without ``heads`` the count is the encoder's alone.
    """
    for name, value in (("vocab_size", vocab_size), ("num_hiddens", num_hiddens), ("ffn_num_hiddens", ffn_num_hiddens),
                        ("num_blks", num_blks), ("max_len", max_len), ("num_segments", num_segments)):
        _check_int(name, value)
    V, D, Fh, L, S = vocab_size, num_hiddens, ffn_num_hiddens, max_len, num_segments
    embeddings = (V + S + L) * D + (2 * D if embedding_norm else 0)
    block = 4 * (D * D + D) + (2 * D * Fh + Fh + D) + 4 * D
    total = embeddings + num_blks * block
    if heads:
        total += (D * D + D) + (D * D + D + 2 * D + V + (0 if tie_weights else V * D)) + (2 * D + 2)
    return total


# ----------------------------------------------------------------------------------- fine-tuning



def _check_bert(bert: object, who: str, parts: tuple[str, ...]) -> None:
    if not isinstance(bert, nn.Module) or not all(isinstance(getattr(bert, p, None), nn.Module) for p in parts):
        raise TypeError(f"{who} expects a pretrained BERTModel (with {' and '.join('.' + p for p in parts)}), got "
                        f"{type(bert).__name__}")


def _unpack_inputs(tokens, segments, valid_lens):
    if isinstance(tokens, (tuple, list)):  # d2l's classifiers take one tuple (tokens, segments, valid_lens)
        tokens, segments, valid_lens = (*tokens, None, None)[:3]
    return tokens, segments, valid_lens


class BERTClassifier(nn.Module):
    """One label per text or pair, from the ``<cls>`` encoding: (B, T) -> logits (B, C).

    ``BERTClassifier(bert, num_classes)`` starts from the pretrained model's ``encoder``
    and ``hidden`` (the pooler) and adds a new ``output`` layer. Forward ``(tokens,
    segments=None, valid_lens=None)``, or d2l's single tuple ``((tokens, segments,
    valid_lens))``.

    ``copy=True`` (the default) gives the classifier its own copies of the encoder and
    the pooler, so fine-tuning it leaves ``bert`` as it was (one model can start several
    fine-tunings). ``copy=False`` shares them, as d2l's classifier does: training the
    classifier then trains ``bert`` too, and saves the memory of a second encoder.
    """

    def __init__(self, bert: BERTModel, num_classes: int, dropout: float = 0.0, *, copy: bool = True) -> None:
        super().__init__()
        _check_int("num_classes", num_classes)
        _check_bool("copy", copy)
        _check_bert(bert, "BERTClassifier", ("encoder", "hidden"))
        self.encoder, self.hidden = deepcopy((bert.encoder, bert.hidden)) if copy else (bert.encoder, bert.hidden)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(bert.encoder.token_embedding.embedding_dim, num_classes)

    def forward(self, tokens, segments: Tensor | None = None, valid_lens: Tensor | None = None) -> Tensor:
        tokens, segments, valid_lens = _unpack_inputs(tokens, segments, valid_lens)
        encoded_X = self.encoder(tokens, segments, valid_lens)
        return self.output(self.dropout(self.hidden(encoded_X[:, 0])))  # (B, C)


class BERTTagger(nn.Module):
    """One label per token (e.g. part of speech): (B, T) -> logits (B, T, C).

    ``BERTTagger(bert, num_tags)`` starts from the pretrained model's ``encoder`` and
    adds a linear ``output`` layer applied at every position. Train with
    ``F.cross_entropy(logits.reshape(-1, C), tags.reshape(-1))``, the tags of
    :func:`encode_tagging` (-100 where there is nothing to predict).

    ``copy=True`` (the default) gives the tagger its own copy of the encoder, so
    fine-tuning it leaves ``bert`` as it was. ``copy=False`` shares the encoder (as
    :class:`BERTClassifier` with ``copy=False`` and d2l's classifier do): training the
    tagger then trains ``bert`` too.
    """

    def __init__(self, bert: BERTModel, num_tags: int, dropout: float = 0.0, *, copy: bool = True) -> None:
        super().__init__()
        _check_int("num_tags", num_tags)
        _check_bool("copy", copy)
        _check_bert(bert, "BERTTagger", ("encoder",))
        self.encoder = deepcopy(bert.encoder) if copy else bert.encoder
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(bert.encoder.token_embedding.embedding_dim, num_tags)

    def forward(self, tokens, segments: Tensor | None = None, valid_lens: Tensor | None = None) -> Tensor:
        tokens, segments, valid_lens = _unpack_inputs(tokens, segments, valid_lens)
        return self.output(self.dropout(self.encoder(tokens, segments, valid_lens)))  # (B, T, C)



# ------------------------------------------------------------------------- later modules

#: Names of modules that import this one (they need ``BERTModel``), loaded on first use.
_LATER = {
    "CHECKPOINT_FORMAT": "course_lib.bert_checkpoint",
    "load_pretrained": "course_lib.bert_checkpoint",
    "save_pretrained": "course_lib.bert_checkpoint",
    "HF_HEADS": "course_lib.hf_bridge",
    "from_huggingface": "course_lib.hf_bridge",
    "to_huggingface": "course_lib.hf_bridge",
}


def __getattr__(name: str):
    if name in _LATER:
        from importlib import import_module

        return getattr(import_module(_LATER[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LATER))


__all__ = [
    "BERT_CONFIGS", "CHECKPOINT_FORMAT", "BERTClassifier", "BERTEncoder", "BERTModel", "BERTPretrainingDataset",
    "BERTTagger", "IGNORE_INDEX", "MLMData", "MaskLM", "NSPPair", "NextSentencePred", "bert_parameter_count",
    "encode_inputs", "encode_tagging", "from_huggingface", "gather_positions", "get_tokens_and_segments",
    "load_pretrained", "load_pretraining_data", "mask_tokens", "masked_lm_loss", "nsp_pairs", "pretraining_loss",
    "save_pretrained", "special_token_ids", "to_huggingface", "trim_pair", "wikitext2_dataset",
    "wikitext2_documents", "wikitext2_vocab",
]
