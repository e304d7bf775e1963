"""Chapter 6: BERT (Devlin et al., 2019), pretraining data, the model, fine-tuning heads.

Shape legend: B batch, T positions, D model size (``num_hiddens``), F the feed-forward
network's hidden size, H heads, V vocabulary size, P prediction positions per sequence
(masked language modeling), C classes or tags, L ``max_len`` (learned positions).

**Input.** One text or a pair: ``<cls> a ... <sep> b ... <sep>`` with segment 0 for
``<cls>``, the first text and its ``<sep>``, segment 1 for the second text and its
``<sep>`` (:func:`get_tokens_and_segments`). The input embedding is the sum of a token,
a segment and a learned position embedding.

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
number of parameters in closed form; :func:`from_huggingface` turns a Hugging Face
``BertForPreTraining`` or ``BertModel`` into our ``BERTModel``.

**Two attention paths**, as in chapter 5: ``model.impl = "manual"`` (teaching path,
``model.attention_weights`` holds every block's (B, H, T, T) weights after a call) or
``"sdpa"`` (PyTorch's fused kernel). Same parameters, same results.

**Pretraining data.** :func:`nsp_pairs` draws next-sentence pairs from documents (50 %
the true next sentence, 50 % a random sentence of another document), leaving out the
pairs longer than ``max_len`` or, with ``trim=True``, trimming them (:func:`trim_pair`:
the longer text loses its last token until the pair fits); :func:`mask_tokens`
chooses 15 % of the ordinary tokens to predict and replaces 80 % of those by ``<mask>``,
10 % by a random token and leaves 10 % unchanged; :class:`BERTPretrainingDataset` (or
:func:`load_pretraining_data`) puts both together into d2l-style batches
``(tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels, nsp_labels)``.
:func:`masked_lm_loss` averages the cross-entropy over the real prediction positions
only (d2l 1.0.3's ``_get_batch_loss_bert`` multiplies its weights with a loss that is
already averaged over every slot, so they cancel out: it returns the plain mean over all
B P slots, padded ones included; d2l issue #2582; a label of -100, Hugging Face's "no
target", does not count either). :func:`pretraining_loss` adds the next-sentence loss.

**Fine-tuning.** :class:`BERTClassifier` (one label per text or pair, from ``<cls>``) and
:class:`BERTTagger` (one label per token) start from a copy of a pretrained model's
encoder (``copy=False`` shares it instead, as d2l does); :func:`encode_inputs` and
:func:`encode_tagging` build their batches.

**Hugging Face.** :func:`from_huggingface` and :func:`to_huggingface` move weights
between our ``BERTModel`` and ``transformers``' BERT classes, both ways.

**Checkpoints.** :func:`save_pretrained` writes a model with its configuration and its
vocabulary in one file, atomically; :func:`load_pretrained` gives back ``(model, vocab)``.
``python -m course_lib.pretrain_bert --save`` writes such a file.

**Inputs** are checked at every public boundary, with an error that names the argument:
token ids in [0, vocab_size), segment ids in [0, num_segments), prediction positions in
[0, T) (values on the CPU only, see ``course_lib.masking``); texts as lists of tokens,
never a str; vocabularies that hold the reserved tokens used (``<cls>``, ``<sep>``,
``<mask>``, ``<pad>``), which would otherwise silently become ``<unk>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from course_lib._checks import (
    atomic_write,
    check_bool,
    check_device,
    host_checks_allowed,
    check_features,
    check_index_range,
    check_lengths,
    check_number,
    check_probability,
    check_tokens_not_text,
    check_vocab_has,
    is_integer_tensor,
    refuse_untied_state_dict,
)
from course_lib.text import CLS, MASK, PAD, RESERVED, SEP, UNK, Vocab
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

IGNORE_INDEX = -100  #: label of positions without a target (F.cross_entropy's default ignore_index)


def get_tokens_and_segments(tokens_a: Sequence[str], tokens_b: Sequence[str] | None = None) -> tuple[list[str], list[int]]:
    """BERT's input for one text or a pair: ``<cls> a <sep> [b <sep>]`` and its segment ids.

    Segment 0 covers ``<cls>``, ``tokens_a`` and the first ``<sep>``; segment 1 covers
    ``tokens_b`` and the last ``<sep>``. The texts are lists of tokens (a str is refused).
    """
    check_tokens_not_text("tokens_a", tokens_a)
    check_tokens_not_text("tokens_b", tokens_b)
    tokens, segments = [CLS, *tokens_a, SEP], [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += [*tokens_b, SEP]
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def trim_pair(tokens_a: Sequence[str], tokens_b: Sequence[str] | None, max_len: int) -> tuple[list[str], list[str] | None]:
    """Copies of the texts, trimmed so that BERT's input (``<cls>``, ``<sep>`` tokens included) has at most ``max_len`` tokens.

    The rule of the original BERT and of chapter 6: while the input is too long, the
    longer text loses its last token (``tokens_b`` when both are equally long). This
    keeps as much of both texts as possible, and the start of each. ``max_len`` must
    leave room for one token of each text: at least 5 for a pair, 3 for one text.
    """
    check_tokens_not_text("tokens_a", tokens_a)
    check_tokens_not_text("tokens_b", tokens_b)
    a, b = list(tokens_a), None if tokens_b is None else list(tokens_b)
    _check_int("max_len", max_len, minimum=3 if b is None else 5)
    room = max_len - (2 if b is None else 3)  # what <cls> and the <sep> tokens leave
    while len(a) + (0 if b is None else len(b)) > room:
        if b is not None and len(b) >= len(a):
            b.pop()
        else:
            a.pop()
    return a, b


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


# ------------------------------------------------------------------------------ pretraining data


class NSPPair(NamedTuple):
    """One next-sentence example and where its sentences come from."""

    tokens_a: list[str]
    tokens_b: list[str]
    is_next: bool  #: True: b is the sentence after a in a's document
    a: tuple[int, int]  #: (document, sentence) of a
    b: tuple[int, int]  #: (document, sentence) of b


def _check_documents(documents: object) -> None:
    check_tokens_not_text("documents", documents)
    for d, doc in enumerate(documents):  # type: ignore[attr-defined]
        if isinstance(doc, str):
            raise TypeError(f"documents must be lists of sentences, each a list of tokens; document {d} is a str")
        for i, sentence in enumerate(doc):
            check_tokens_not_text(f"sentence {i} of document {d}", sentence)


def nsp_pairs(
    documents: Sequence[Sequence[Sequence[str]]],
    generator: torch.Generator | None = None,
    max_len: int | None = None,
    trim: bool = False,
) -> list[NSPPair]:
    """Next-sentence pairs from documents (each a list of token lists).

    Every sentence that has a next one in its document starts one pair; with probability
    1/2 the second sentence is that next one (``is_next``), otherwise a sentence drawn
    uniformly from a document drawn uniformly among the *other* documents. Pairs whose
    BERT input (``<cls>``, both sentences, two ``<sep>``) is longer than ``max_len`` are
    left out, or with ``trim=True`` trimmed to fit (:func:`trim_pair`, the original BERT's
    rule: dropping them would bias the data towards short sentences). Deterministic
    given ``generator``. Needs at least 2 documents, one of them with 2 sentences or more.
    """
    _check_documents(documents)
    if len(documents) < 2:
        raise ValueError(f"next-sentence pairs need at least 2 documents, got {len(documents)}")
    if all(len(doc) < 2 for doc in documents):
        raise ValueError(f"next-sentence pairs need documents of 2 or more sentences (a sentence and the next one), "
                         f"but all {len(documents)} documents have fewer")
    if max_len is not None:
        _check_int("max_len", max_len, minimum=5 if trim else 1)
    _check_bool("trim", trim)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    starts = [(d, i) for d, doc in enumerate(documents) for i in range(len(doc) - 1)]
    n = len(starts)
    coins = torch.rand(n, generator=g).tolist()  # < 0.5: the true next sentence
    other_docs = torch.randint(0, len(documents) - 1, (n,), generator=g).tolist()  # skips a's own document
    other_sents = torch.rand(n, generator=g).tolist()  # uniform in [0, 1): a sentence of that document
    pairs = []
    for (d, i), coin, od, u in zip(starts, coins, other_docs, other_sents):
        if coin < 0.5:
            b = (d, i + 1)
        else:
            od = od + (od >= d)  # 0 .. n_docs - 2 mapped onto the documents other than d
            b = (od, min(int(u * len(documents[od])), len(documents[od]) - 1))
        tokens_a, tokens_b = list(documents[d][i]), list(documents[b[0]][b[1]])
        if max_len is not None and len(tokens_a) + len(tokens_b) + 3 > max_len:
            if not trim:
                continue
            tokens_a, tokens_b = trim_pair(tokens_a, tokens_b, max_len)
        pairs.append(NSPPair(tokens_a, tokens_b, coin < 0.5, (d, i), b))
    return pairs


class MLMData(NamedTuple):
    """Inputs and targets of masked language modeling for N sequences."""

    tokens: Tensor  #: (N, T) the input, with the chosen positions replaced
    pred_positions: Tensor  #: (N, P) chosen positions in increasing order, padded with 0
    mlm_weights: Tensor  #: (N, P) float, 1 for a real prediction, 0 for padding
    mlm_labels: Tensor  #: (N, P) the original tokens at the chosen positions, padded with 0


def special_token_ids(vocab: Vocab) -> list[int]:
    """Ids never chosen for prediction nor drawn as random replacements: the reserved tokens but ``<unk>``."""
    check_vocab_has(vocab, (), "special_token_ids")
    return [vocab.token_to_idx[t] for t in RESERVED if t != UNK and t in vocab.token_to_idx]


def mask_tokens(
    tokens: Tensor,
    valid_lens: Tensor,
    vocab: Vocab,
    generator: torch.Generator | None = None,
    ratio: float = 0.15,
    num_preds: int | None = None,
) -> MLMData:
    """Choose and corrupt the positions to predict in padded sequences ``tokens`` (N, T).

    Candidates are the positions before ``valid_lens`` whose token is not special
    (``<cls>``, ``<sep>``, ``<pad>`` and the other reserved tokens but ``<unk>``). A
    sequence with n candidates gets k = floor(ratio n + u) predictions (u uniform in
    [0, 1): so k is ratio n on average, never off by more than one), at least one and
    at most n, at positions drawn uniformly without replacement. Of the chosen tokens,
    80 % become ``<mask>``, 10 % an ordinary token drawn uniformly (never a reserved
    one; it may happen to be the original) and 10 % stay unchanged. ``num_preds``, the
    width P of the outputs, defaults to the largest k. Deterministic given
    ``generator``; vectorized (a few milliseconds for thousands of sequences).

    ``tokens`` are ids of ``vocab`` (which must hold ``<mask>``), ``valid_lens`` (N,)
    lengths in [0, T], ``num_preds`` None or an int >= 1.
    """
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio!r}")
    check_vocab_has(vocab, (MASK,), "mask_tokens")
    _check_tokens(tokens, "mask_tokens", len(vocab))
    N, T = tokens.shape
    if not isinstance(valid_lens, Tensor) or valid_lens.numel() != N or valid_lens.dtype.is_floating_point:
        raise ValueError(f"valid_lens must be an integer tensor of N = {N} lengths, got "
                         f"{getattr(valid_lens, 'shape', valid_lens)!r} {getattr(valid_lens, 'dtype', '')}")
    check_lengths(valid_lens.reshape(-1), 0, T, "valid_lens", f"T = {T} positions")
    if num_preds is not None:
        _check_int("num_preds", num_preds)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    special = torch.tensor(special_token_ids(vocab), dtype=tokens.dtype)
    in_range = torch.arange(T).unsqueeze(0) < valid_lens.reshape(-1, 1).to(torch.long)  # (N, T)
    candidate = in_range & ~torch.isin(tokens, special)  # (N, T)
    n = candidate.sum(dim=1)  # (N,)
    k = torch.floor(ratio * n + torch.rand(N, generator=g)).to(torch.long).clamp(min=1)
    k = torch.minimum(k, n)  # (N,)
    # A random order of the candidates: uniform scores, non-candidates last.
    scores = torch.where(candidate, torch.rand(N, T, generator=g), torch.full((N, T), 2.0))
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank[i, t]: place of position t in sequence i's order
    chosen = rank < k.unsqueeze(1)  # (N, T): the first k candidates
    k_max = int(k.max()) if N else 0
    P = max(1, k_max) if num_preds is None else num_preds
    if k_max > P:
        raise ValueError(f"num_preds={P} is smaller than the {k_max} predictions of some sequence")
    # The chosen positions in increasing order: chosen ones first (stable sort of ~chosen).
    positions = (~chosen).to(torch.int8).argsort(dim=1, stable=True)[:, :P]  # (N, P)
    weights = (torch.arange(P).unsqueeze(0) < k.unsqueeze(1)).to(torch.float32)  # (N, P)
    positions = torch.where(weights > 0, positions, torch.zeros_like(positions))
    labels = torch.where(weights > 0, tokens.gather(1, positions), torch.zeros_like(positions))
    # 80 / 10 / 10: <mask>, a random ordinary token, unchanged.
    u = torch.rand(N, P, generator=g)
    every_id = torch.arange(len(vocab), dtype=tokens.dtype)
    ordinary = every_id[~torch.isin(every_id, special)]  # (V - reserved,) in increasing order
    if len(ordinary) == 0:
        raise ValueError(f"the vocabulary has no ordinary token to draw random replacements from: {vocab.idx_to_token}")
    random_tokens = ordinary[torch.randint(0, len(ordinary), (N, P), generator=g)]
    replacement = torch.where(u < 0.8, torch.full_like(labels, vocab[MASK]), torch.where(u < 0.9, random_tokens, labels))
    corrupted = tokens.clone()
    real = weights > 0
    rows = torch.arange(N).unsqueeze(1).expand(N, P)
    corrupted[rows[real], positions[real]] = replacement[real]
    return MLMData(corrupted, positions, weights, labels)


def _pad(rows: Sequence[Sequence[int]], width: int, value: int) -> Tensor:
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


class BERTPretrainingDataset(Dataset):
    """Masked-language-model and next-sentence examples from documents, d2l-style.

    ``BERTPretrainingDataset(documents, vocab, max_len=64, seed=0)``: ``documents`` is a
    list of documents, each a list of sentences, each a list of tokens. Pairs come from
    :func:`nsp_pairs`, masking from :func:`mask_tokens`, both drawn once, from one
    ``torch.Generator`` seeded with ``seed`` (the same dataset on every process). Item i
    is d2l's 7-tuple ``(tokens (L,), segments (L,), valid_len (), pred_positions (P,),
    mlm_weights (P,), mlm_labels (P,), nsp_label ())``, padded to ``max_len`` = L;
    ``loader`` trims each batch to its longest sequence. ``pairs`` keeps each example's
    sentences and where they come from. :meth:`from_corpus` reads the course corpus.

    Pairs longer than ``max_len`` are left out, or with ``trim_pairs=True`` trimmed to fit
    (:func:`trim_pair`). ``vocab`` must hold ``<pad>``, ``<cls>``, ``<sep>`` and ``<mask>``
    (a :class:`course_lib.text.Vocab` built with its default reserved tokens does).
    For new pairs and a new masking at every pass over the data (RoBERTa's dynamic
    masking, as chapter 6 trains), build the data set again with another ``seed``.
    """

    def __init__(self, documents: Sequence[Sequence[Sequence[str]]], vocab: Vocab, max_len: int = 64, seed: int = 0,
                 ratio: float = 0.15, trim_pairs: bool = False) -> None:
        _check_int("max_len", max_len, minimum=5 if trim_pairs else 4)
        _check_int("seed", seed, minimum=0)
        check_vocab_has(vocab, (PAD, CLS, SEP, MASK), "BERTPretrainingDataset")
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.max_len = vocab, max_len
        self.pairs = nsp_pairs(documents, g, max_len, trim=trim_pairs)
        if not self.pairs:
            raise ValueError(f"no sentence pair fits max_len={max_len} (every pair of sentences is longer, <cls> and "
                             "two <sep> included); raise max_len or pass trim_pairs=True")
        cls_, sep = vocab[CLS], vocab[SEP]
        ids, segs = [], []
        for p in self.pairs:
            a, b = vocab[p.tokens_a], vocab[p.tokens_b]
            ids.append([cls_, *a, sep, *b, sep])
            segs.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
        self.valid_lens = torch.tensor([len(r) for r in ids], dtype=torch.long)
        self.segments = _pad(segs, max_len, 0)
        original = _pad(ids, max_len, vocab[PAD])
        mlm = mask_tokens(original, self.valid_lens, vocab, g, ratio)
        self.tokens, self.pred_positions, self.mlm_weights, self.mlm_labels = mlm
        self.nsp_labels = torch.tensor([p.is_next for p in self.pairs], dtype=torch.long)

    @classmethod
    def from_corpus(cls, corpus, split: str = "train", max_len: int = 64, seed: int = 0,
                    trim_pairs: bool = False) -> BERTPretrainingDataset:
        """Pairs from the documents of a split of ``course_lib.corpus.load_corpus()``, its English vocabulary."""
        documents = [[s.en for s in doc] for doc in corpus.documents(split)]
        return cls(documents, corpus.src_vocab, max_len, seed, trim_pairs=trim_pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        return (self.tokens[i], self.segments[i], self.valid_lens[i], self.pred_positions[i], self.mlm_weights[i],
                self.mlm_labels[i], self.nsp_labels[i])

    def batch(self, indices: Sequence[int] | Tensor, trim: bool = True) -> tuple[Tensor, ...]:
        """The examples ``indices`` as one batch of 7 tensors, trimmed to the longest sequence and prediction count."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.dim() != 1:
            raise ValueError(f"indices must be a list of example indices, got shape {tuple(idx.shape)}")
        check_index_range(idx, len(self), "indices", f"(a data set of {len(self)} examples)")
        out = [t[idx] for t in (self.tokens, self.segments, self.valid_lens, self.pred_positions, self.mlm_weights,
                                self.mlm_labels, self.nsp_labels)]
        if trim and len(idx):
            T, P = int(out[2].max()), max(1, int(out[4].sum(dim=1).max()))
            out[0], out[1] = out[0][:, :T], out[1][:, :T]
            out[3], out[4], out[5] = out[3][:, :P], out[4][:, :P], out[5][:, :P]
        return tuple(out)

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
               trim: bool = True) -> DataLoader:
        """Batches of :meth:`batch` (shuffling seeded by ``seed``)."""
        _check_int("batch_size", batch_size)
        for name, value in (("shuffle", shuffle), ("drop_last", drop_last), ("trim", trim)):
            check_bool(name, value)
        return DataLoader(range(len(self)), batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          generator=torch.Generator().manual_seed(seed),
                          collate_fn=lambda indices: self.batch(indices, trim))


def wikitext2_documents(paragraphs: Sequence[Sequence[str]]) -> list[list[list[str]]]:
    """Paragraphs of sentence strings (``course_lib.datasets.load_wikitext2``) as documents of token lists."""
    check_tokens_not_text("paragraphs", paragraphs)
    for i, paragraph in enumerate(paragraphs):
        if isinstance(paragraph, str) or any(not isinstance(s, str) for s in paragraph):
            raise TypeError(f"paragraphs must be lists of sentence strings (as load_wikitext2 returns); paragraph {i} "
                            f"is {paragraph!r:.60}")
    return [[sentence.split() for sentence in paragraph] for paragraph in paragraphs]


def wikitext2_vocab(documents: Sequence[Sequence[Sequence[str]]]) -> Vocab:
    """The vocabulary of WikiText-2's pretraining data: the tokens seen at least 5 times."""
    return Vocab((t for doc in documents for s in doc for t in s), min_freq=5)


def wikitext2_dataset(split: str = "train", max_len: int = 64, seed: int = 0, folder=None,
                      trim_pairs: bool = False) -> BERTPretrainingDataset:
    """WikiText-2's pretraining examples, with a vocabulary of the tokens seen at least 5 times.

    The text comes through ``course_lib.datasets.load_wikitext2``: downloaded once, verified
    by its hash and cached in ``folder``. Each paragraph of two or more sentences is a document.
    ``split``: "train", "valid" or "test" (checked before anything is downloaded).
    """
    from course_lib.datasets import load_wikitext2

    documents = wikitext2_documents(load_wikitext2(split, folder))
    return BERTPretrainingDataset(documents, wikitext2_vocab(documents), max_len, seed, trim_pairs=trim_pairs)


def load_pretraining_data(
    batch_size: int, max_len: int = 64, source: str = "corpus", split: str = "train", seed: int = 0,
    num_sentences: int = 8000, folder=None,
) -> tuple[DataLoader, Vocab]:
    """``(loader, vocab)`` like d2l's ``load_data_wiki``, from the course corpus or WikiText-2.

    ``source="corpus"``: ``load_corpus(num_sentences, seed)`` and its English vocabulary.
    ``source="wikitext2"``: WikiText-2 through ``course_lib.datasets`` (downloaded once,
    verified; ``folder`` is the cache), a vocabulary of the tokens seen at least 5 times.
    """
    if source == "corpus":
        from course_lib.corpus import load_corpus

        dataset = BERTPretrainingDataset.from_corpus(load_corpus(num_sentences, seed), split, max_len, seed)
    elif source == "wikitext2":
        dataset = wikitext2_dataset(split, max_len, seed, folder)
    else:
        raise ValueError(f"source must be 'corpus' or 'wikitext2', got {source!r}")
    return dataset.loader(batch_size, shuffle=split == "train", seed=seed), dataset.vocab


# --------------------------------------------------------------------------------------- losses


def masked_lm_loss(logits: Tensor, labels: Tensor, weights: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Cross-entropy of the masked language model over the real prediction positions only.

    ``logits`` (B, P, V) floating point, ``labels`` (B, P) integer, ``weights`` (B, P):
    1 (or any positive weight) for a real prediction, 0 for padding; None means 1
    everywhere. A label of ``IGNORE_INDEX`` (-100, Hugging Face's and PyTorch's "no
    target") also marks a slot without a prediction, whatever its weight. Padded slots
    are dropped before the cross-entropy is computed, so whatever their logits and labels
    hold (even inf or nan) they change neither the loss nor the gradient. The labels of
    the real slots must be in [0, V) and the weights finite and >= 0 (checked on the
    CPU). ``"mean"``: the weighted mean over the real slots (0 when there is none);
    ``"sum"``: the weighted sum (for a mean over several processes' batches).
    """
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.dtype.is_floating_point:
        raise ValueError(f"logits must be a floating-point tensor (B, P, V), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)} {getattr(logits, 'dtype', '')}")
    if weights is None and isinstance(labels, Tensor):
        weights = torch.ones(labels.shape, dtype=logits.dtype, device=logits.device)
    if not is_integer_tensor(labels) or labels.shape != logits.shape[:2] or not isinstance(weights, Tensor) \
            or weights.shape != labels.shape:
        raise ValueError(f"expected logits (B, P, V), integer labels and weights (B, P); got "
                         f"{tuple(logits.shape)}, {getattr(labels, 'shape', labels)!r} {getattr(labels, 'dtype', '')}, "
                         f"{getattr(weights, 'shape', weights)!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    weights = torch.where(labels == IGNORE_INDEX, torch.zeros_like(weights), weights)  # "no target": not counted
    if weights.numel() and host_checks_allowed(weights):
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"weights must be finite and >= 0 (1 for a real prediction, 0 for padding), got values "
                             f"from {weights.min().item()} to {weights.max().item()}")
        check_index_range(torch.where(weights > 0, labels, torch.zeros_like(labels)), logits.shape[-1], "labels",
                          f"at the real prediction slots, for a vocabulary of {logits.shape[-1]} tokens")
    keep = (weights > 0).reshape(-1)
    w = weights.reshape(-1)[keep].to(logits.dtype)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[keep], labels.reshape(-1)[keep], reduction="none")
    total = (ce * w).sum()
    return total if reduction == "sum" else total / w.sum().clamp(min=torch.finfo(w.dtype).tiny)


def pretraining_loss(net: nn.Module, tokens: Tensor, segments: Tensor, valid_lens: Tensor, pred_positions: Tensor,
                     mlm_weights: Tensor, mlm_labels: Tensor, nsp_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(mlm_loss, nsp_loss, mlm_loss + nsp_loss)`` of one batch, each a mean (see :func:`masked_lm_loss`).

    ``nsp_labels`` (B,) holds 0 or 1 (1: the true next sentence); checked on the CPU.
    """
    if not is_integer_tensor(nsp_labels) or nsp_labels.dim() != 1:
        raise ValueError(f"nsp_labels must be an integer tensor (B,) of 0 and 1, got "
                         f"{getattr(nsp_labels, 'shape', nsp_labels)!r} {getattr(nsp_labels, 'dtype', '')}")
    check_index_range(nsp_labels, 2, "nsp_labels", "(1: the true next sentence, 0: a random one)")
    _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens.reshape(-1), pred_positions)
    mlm_l = masked_lm_loss(mlm_Y_hat, mlm_labels, mlm_weights)
    nsp_l = F.cross_entropy(nsp_Y_hat, nsp_labels)
    return mlm_l, nsp_l, mlm_l + nsp_l


# ----------------------------------------------------------------------------------- fine-tuning


def encode_inputs(
    vocab: Vocab, texts_a: Sequence[Sequence[str]], texts_b: Sequence[Sequence[str]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of BERT inputs ``(tokens (B, T), segments (B, T), valid_lens (B,))`` for texts or pairs.

    ``texts_a`` (and ``texts_b``) are lists of texts, each a list of tokens (a str is refused).
    """
    check_vocab_has(vocab, (PAD, CLS, SEP), "encode_inputs")
    for name, texts in (("texts_a", texts_a), ("texts_b", texts_b)):
        check_tokens_not_text(name, texts)
        for i, text in enumerate(texts or ()):
            check_tokens_not_text(f"{name}[{i}]", text)
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise ValueError(f"{len(texts_a)} first texts but {len(texts_b)} second ones")
    seqs = [get_tokens_and_segments(list(a), None if texts_b is None else list(texts_b[i]))
            for i, a in enumerate(texts_a)]
    T = max((len(t) for t, _ in seqs), default=0)
    tokens = _pad([vocab[t] for t, _ in seqs], T, vocab[PAD])
    segments = _pad([s for _, s in seqs], T, 0)
    return tokens, segments, torch.tensor([len(t) for t, _ in seqs], dtype=torch.long)


def encode_tagging(
    vocab: Vocab, tag_vocab: Vocab, sentences: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(tokens, segments, valid_lens, tags)`` for token tagging: ``<cls> sentence <sep>``.

    ``tags`` (B, T) is aligned with the tokens: the tag of token t of a sentence at
    position t + 1; ``<cls>``, ``<sep>`` and padding get ``IGNORE_INDEX`` (-100), which
    ``F.cross_entropy`` skips.
    """
    for i, item in enumerate(sentences):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"encode_tagging expects (tokens, tags) pairs; item {i} is {item!r}")
        check_tokens_not_text(f"tokens of item {i}", item[0])
        check_tokens_not_text(f"tags of item {i}", item[1])
    for words, tags in sentences:
        if len(words) != len(tags):
            raise ValueError(f"{len(words)} tokens but {len(tags)} tags in {list(words)}")
    tokens, segments, valid_lens = encode_inputs(vocab, [w for w, _ in sentences])
    labels = torch.full_like(tokens, IGNORE_INDEX)
    for i, (_, tags) in enumerate(sentences):
        labels[i, 1 : 1 + len(tags)] = torch.as_tensor(tag_vocab[list(tags)], dtype=torch.long)
    return tokens, segments, valid_lens, labels


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


# ----------------------------------------------------------------------------- Hugging Face


def from_huggingface(model: nn.Module) -> BERTModel:
    """Our ``BERTModel`` with the weights of a Hugging Face ``transformers`` BERT.

    ``model``: a ``BertForPreTraining``, ``BertForMaskedLM``, ``BertModel`` (e.g.
    ``BertForPreTraining.from_pretrained("bert-base-uncased")``, where the internet is
    available). The result computes the same hidden states (``encoded_X`` =
    ``last_hidden_state``), MLM logits and NSP logits, with ``activation``, ``eps``,
    ``embedding_norm=True``, ``num_segments`` (token types) and ``tie_weights`` taken from
    the model's config. Parts the Hugging Face model lacks (a ``BertModel`` has no MLM
    or NSP head; one built with ``add_pooling_layer=False`` no pooler) keep their fresh
    initialization. Token ids are the Hugging Face tokenizer's, not a course ``Vocab``'s.
    ``attention_probs_dropout_prob`` becomes the attention dropout of every block.
    ``transformers`` is imported here only (the ``hf`` extra). A task model with a
    fine-tuned head of its own (``BertForSequenceClassification``, ...) is refused rather
    than converted without its head; pass its ``.bert`` to convert the encoder alone.
    """
    from transformers import PreTrainedModel

    bert = getattr(model, "bert", model)
    cfg = getattr(bert, "config", None)
    if not isinstance(bert, PreTrainedModel) or getattr(cfg, "model_type", None) != "bert" \
            or not hasattr(bert, "embeddings"):
        raise ValueError(f"expected a Hugging Face BERT model (BertModel, BertForPreTraining, ...), got {type(model).__name__}")
    if bert is not model:  # a task model: only the pretraining heads ("cls") have a place in ours
        heads = [name for name, child in model.named_children()
                 if name not in ("bert", "cls") and any(True for _ in child.parameters())]
        if heads:
            raise ValueError(
                f"{type(model).__name__} has a fine-tuned head ({', '.join(heads)}) that the course's BERTModel has no "
                "place for; from_huggingface converts BertModel, BertForPreTraining, BertForMaskedLM and "
                "BertForNextSentencePrediction. To convert the encoder alone, without that head, pass model.bert")
    act = cfg.hidden_act if isinstance(cfg.hidden_act, str) else ""
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act={cfg.hidden_act!r} is not supported (only {tuple(ACTIVATIONS)})")
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute" or getattr(cfg, "is_decoder", False):
        raise ValueError("only encoders with absolute position embeddings are supported")
    heads = getattr(model, "cls", None)
    predictions = getattr(heads, "predictions", None)
    emb = bert.embeddings
    tied = predictions is not None and predictions.decoder.weight is emb.word_embeddings.weight
    ours = BERTModel(
        cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_hidden_layers,
        cfg.hidden_dropout_prob, cfg.max_position_embeddings, num_segments=cfg.type_vocab_size, activation=act,
        eps=cfg.layer_norm_eps, embedding_norm=True, tie_weights=tied or predictions is None,
    )

    copy = _copy_weights
    ref = next(model.parameters())
    with torch.no_grad():
        enc = ours.encoder
        for ours_module, theirs_module in _encoder_pairs(enc, bert):
            copy(ours_module, theirs_module)
        enc.pos_embedding.copy_(emb.position_embeddings.weight.unsqueeze(0))
        for blk in enc.blks:
            blk.attention.attention.dropout_p = float(cfg.attention_probs_dropout_prob)
        if getattr(bert, "pooler", None) is not None:
            copy(ours.hidden[0], bert.pooler.dense)
        if predictions is not None:
            copy(ours.mlm.mlp[0], predictions.transform.dense)
            copy(ours.mlm.mlp[2], predictions.transform.LayerNorm)
            if not tied:
                ours.mlm.mlp[3].weight.copy_(predictions.decoder.weight)
            ours.mlm.mlp[3].bias.copy_(predictions.decoder.bias)  # tied models: the same tensor as predictions.bias
        if getattr(heads, "seq_relationship", None) is not None:
            copy(ours.nsp.output, heads.seq_relationship)
    return ours.to(device=ref.device, dtype=ref.dtype).train(model.training)


HF_HEADS = ("pretraining", "masked_lm")  #: what :func:`to_huggingface` can build


def _huggingface_config(model: BERTModel) -> dict[str, object]:
    """The ``transformers.BertConfig`` arguments of our model, or a ValueError naming what BERT lacks."""
    enc = model.encoder
    blks = list(enc.blks)
    if not hasattr(enc, "embedding_norm"):
        raise ValueError("embedding_norm=False: Hugging Face's BERT always applies a LayerNorm to the summed "
                         "embeddings; only a BERTModel built with embedding_norm=True (as BERT_CONFIGS) converts")
    if not blks:
        raise ValueError("num_blks=0: a Hugging Face BERT has at least one encoder layer")
    if any(blk.norm_first for blk in blks):
        raise ValueError("norm_first=True (pre-norm blocks): Hugging Face's BERT is post-norm")
    if any(getattr(blk.attention, w).bias is None for blk in blks for w in ("W_q", "W_k", "W_v", "W_o")):
        raise ValueError("use_bias=False (attention projections without biases): Hugging Face's BERT has them")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    if len({m.eps for m in norms}) > 1 or any(m.weight is None or m.bias is None for m in norms):
        raise ValueError(f"eps: Hugging Face's BERT has one layer_norm_eps and affine LayerNorms, got eps "
                         f"{sorted({m.eps for m in norms})}")
    acts = {blk.ffn.activation for blk in blks} | {type(model.mlm.mlp[1]).__name__.lower()}
    if len(acts) > 1:
        raise ValueError(f"activation: Hugging Face's BERT has one hidden_act, got {sorted(acts)}")
    hidden_p = {blk.addnorm1.dropout.p for blk in blks} | {blk.addnorm2.dropout.p for blk in blks} \
        | {enc.embedding_dropout.p}
    attention_p = {blk.attention.attention.dropout_p for blk in blks}
    if len(hidden_p) > 1 or len(attention_p) > 1:
        raise ValueError(f"dropout: Hugging Face's BERT has one hidden_dropout_prob and one "
                         f"attention_probs_dropout_prob, got {sorted(hidden_p)} and {sorted(attention_p)}")
    return dict(
        vocab_size=enc.token_embedding.num_embeddings, hidden_size=enc.token_embedding.embedding_dim,
        num_hidden_layers=len(blks), num_attention_heads=blks[0].attention.num_heads,
        intermediate_size=blks[0].ffn.dense1.out_features, hidden_act=blks[0].ffn.activation,
        hidden_dropout_prob=hidden_p.pop(), attention_probs_dropout_prob=attention_p.pop(),
        max_position_embeddings=enc.pos_embedding.shape[1], type_vocab_size=enc.segment_embedding.num_embeddings,
        layer_norm_eps=norms[0].eps, tie_word_embeddings=model.tie_weights, pad_token_id=0,
    )


def _copy_weights(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s weight (and bias, if ``dst`` has one) into ``dst``, in place."""
    dst.weight.copy_(src.weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def _encoder_pairs(enc: nn.Module, bert: nn.Module):
    """(ours, theirs): the modules of our ``BERTEncoder`` and of a Hugging Face ``BertModel``
    that hold the same weights, both directions of the bridge use it (the position
    embeddings, a parameter here and a module there, are copied by the callers)."""
    emb = bert.embeddings
    yield enc.token_embedding, emb.word_embeddings
    yield enc.segment_embedding, emb.token_type_embeddings
    yield enc.embedding_norm, emb.LayerNorm
    for blk, layer in zip(enc.blks, bert.encoder.layer):
        att = layer.attention
        yield blk.attention.W_q, att.self.query
        yield blk.attention.W_k, att.self.key
        yield blk.attention.W_v, att.self.value
        yield blk.attention.W_o, att.output.dense
        yield blk.addnorm1.ln, att.output.LayerNorm
        yield blk.ffn.dense1, layer.intermediate.dense
        yield blk.ffn.dense2, layer.output.dense
        yield blk.addnorm2.ln, layer.output.LayerNorm


def to_huggingface(model: BERTModel, head: str = "pretraining") -> nn.Module:
    """A Hugging Face ``transformers`` BERT with our ``BERTModel``'s weights: the reverse of :func:`from_huggingface`.

    ``head="pretraining"``: a ``BertForPreTraining`` (encoder, pooler, MLM and NSP heads);
    ``head="masked_lm"``: a ``BertForMaskedLM`` (encoder and MLM head; the model that
    ``transformers.pipeline("fill-mask", ...)`` takes). Given the same token ids,
    segments (``token_type_ids``) and padding (``attention_mask``, 1 on the first
    ``valid_lens`` positions), it computes the same hidden states, MLM logits and NSP
    logits as ``model``; ``from_huggingface`` of the result gives ``model`` back, weight
    for weight. It is on ``model``'s device and dtype, in its train/eval mode, and shares
    no tensor with it. Token ids stay the course vocabulary's: a Hugging Face tokenizer
    for it must map each token to the same id (the course ``Vocab`` puts ``<pad>`` at 0,
    Hugging Face's ``pad_token_id``).

    Only a model that Hugging Face's BERT can express converts; otherwise a
    ``ValueError`` names the option: ``embedding_norm=False`` (the default of the course's
    small BERT, as d2l's; build it with ``embedding_norm=True``), pre-norm blocks
    (``norm_first``), attention projections without biases (``use_bias=False``), or
    LayerNorm ``eps``, activations or dropout rates that differ between layers.
    ``transformers`` is imported here only (the ``hf`` extra).
    """
    if not isinstance(model, BERTModel):
        raise TypeError(f"expected a course_lib.bert.BERTModel, got {type(model).__name__}")
    if head not in HF_HEADS:
        raise ValueError(f"head must be one of {HF_HEADS}, got {head!r}")
    config = _huggingface_config(model)
    import transformers

    theirs = (transformers.BertForPreTraining if head == "pretraining" else transformers.BertForMaskedLM)(
        transformers.BertConfig(**config))
    bert, heads, enc = theirs.bert, theirs.cls, model.encoder

    copy = _copy_weights
    with torch.no_grad():
        for ours_module, theirs_module in _encoder_pairs(enc, bert):
            copy(theirs_module, ours_module)
        bert.embeddings.position_embeddings.weight.copy_(enc.pos_embedding[0])
        predictions = heads.predictions
        copy(predictions.transform.dense, model.mlm.mlp[0])
        copy(predictions.transform.LayerNorm, model.mlm.mlp[2])
        if not model.tie_weights:  # tied: the decoder's weight is the word embedding matrix, copied above
            predictions.decoder.weight.copy_(model.mlm.mlp[3].weight)
        predictions.decoder.bias.copy_(model.mlm.mlp[3].bias)
        if getattr(predictions, "bias", None) is not None and predictions.bias is not predictions.decoder.bias:
            predictions.bias.copy_(model.mlm.mlp[3].bias)
        if head == "pretraining":
            copy(bert.pooler.dense, model.hidden[0])
            copy(heads.seq_relationship, model.nsp.output)
    ref = next(model.parameters())
    return theirs.to(device=ref.device, dtype=ref.dtype).train(model.training)


# ------------------------------------------------------------------------------ checkpoints

#: The ``format`` entry of a checkpoint written by :func:`save_pretrained`.
CHECKPOINT_FORMAT = "course_lib.bert.BERTModel/1"


def save_pretrained(model: BERTModel, vocab: Vocab, path, extra: dict | None = None, overwrite: bool = False) -> None:
    """Write a complete, reloadable artifact: the weights, the model's configuration and its vocabulary.

    One file (``torch.save`` of plain tensors, numbers, strings and lists, which
    ``torch.load(..., weights_only=True)`` reads safely), written atomically: a temporary
    file next to ``path``, renamed when complete, so that an interrupted save never
    leaves a damaged file nor destroys an earlier one. ``extra`` (a dict of numbers,
    strings and lists, e.g. the training options) is stored alongside.
    :func:`load_pretrained` reads it back.

    An existing file at ``path`` (an earlier model, perhaps) is not replaced unless
    ``overwrite=True``: a ``FileExistsError`` that leaves it as it is.
    """
    check_bool("overwrite", overwrite)
    if not isinstance(model, BERTModel):
        raise TypeError(f"save_pretrained expects a BERTModel, got {type(model).__name__}")
    check_vocab_has(vocab, (), "save_pretrained")
    if len(vocab) != model.config["vocab_size"]:
        raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model's vocab_size is "
                         f"{model.config['vocab_size']}: save the vocabulary the model was trained with")
    payload = {"format": CHECKPOINT_FORMAT, "config": dict(model.config), "vocab": list(vocab.idx_to_token),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": dict(extra or {})}
    atomic_write(path, lambda tmp: torch.save(payload, tmp), overwrite=overwrite)


def load_pretrained(path, map_location: str | torch.device = "cpu") -> tuple[BERTModel, Vocab]:
    """``(model, vocab)`` from a file of :func:`save_pretrained` (e.g. ``pretrain_bert --save``).

    The model is rebuilt from the stored configuration, its weights loaded strictly, and
    returned in evaluation mode on ``map_location``; ``vocab`` is the vocabulary it was
    trained with. The file is read with ``weights_only=True`` (no code is run). A file
    that is not such a checkpoint, or is damaged, raises a ValueError that says so.
    """
    device = check_device("map_location", map_location)
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated file, another format, a pickle that needs code
        raise ValueError(f"{path} is not a readable course_lib BERT checkpoint (written by save_pretrained or "
                         f"pretrain_bert --save): {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        hint = " (a bare state dict: build the model yourself and call load_state_dict)" \
            if isinstance(payload, dict) and "format" not in payload else ""
        raise ValueError(f"{path} is not a course_lib BERT checkpoint: expected format {CHECKPOINT_FORMAT!r}, "
                         f"got {found!r}{hint}")
    config, tokens, state = payload.get("config"), payload.get("vocab"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(tokens, list) or not isinstance(state, dict):
        raise ValueError(f"{path} is a damaged checkpoint: its config, vocab or state_dict is missing")
    vocab = Vocab.from_tokens(tokens, f"the vocabulary stored in {path}")
    model = BERTModel(**config)
    model.load_state_dict(state)
    return model.to(device).eval(), vocab


__all__ = [
    "BERT_CONFIGS",
    "CHECKPOINT_FORMAT",
    "BERTClassifier",
    "BERTEncoder",
    "BERTModel",
    "BERTPretrainingDataset",
    "BERTTagger",
    "IGNORE_INDEX",
    "MLMData",
    "MaskLM",
    "NSPPair",
    "NextSentencePred",
    "bert_parameter_count",
    "encode_inputs",
    "encode_tagging",
    "from_huggingface",
    "gather_positions",
    "get_tokens_and_segments",
    "load_pretrained",
    "load_pretraining_data",
    "mask_tokens",
    "masked_lm_loss",
    "nsp_pairs",
    "pretraining_loss",
    "save_pretrained",
    "special_token_ids",
    "to_huggingface",
    "trim_pair",
    "wikitext2_dataset",
    "wikitext2_documents",
    "wikitext2_vocab",
]
