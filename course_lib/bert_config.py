"""Chapter 6: BERT's configuration, the paper's two sizes, and the parameter count in closed form.

:class:`BERTConfig` is one frozen, checked description of a ``BERTModel``: its
constructor's arguments (``BERTModel.from_config(config)`` builds it, and
``model.config`` holds them as a dict, for checkpoints). :data:`BERT_BASE` and
:data:`BERT_LARGE` are the sizes of Devlin et al. (2019), with the original BERT's
options; :data:`BERT_CONFIGS` holds them as plain dicts, ``BERTModel(**BERT_CONFIGS["base"])``.
:func:`bert_parameter_count` counts a model's parameters from its configuration alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass

from course_lib._checks import check_number, check_probability
from course_lib.attention import check_heads
from course_lib.attention_scoring import _check_impl
from course_lib.transformer_encoder import _check_activation, _check_bool, _check_int


@dataclass(frozen=True)
class BERTConfig:
    """The arguments of ``BERTModel``, checked when the config is made; frozen (``config.replace(...)``).

    ``BERTConfig(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout,
    max_len=1000, *, num_segments=2, activation="relu", eps=1e-5, embedding_norm=False,
    tie_weights=False, impl="manual")``; the defaults are d2l's model (see
    ``course_lib.bert`` for the options). ``impl`` chooses the attention path, which a
    model can change at any time: :meth:`kwargs` (and so ``model.config``) leaves it out.
    """

    vocab_size: int
    num_hiddens: int
    ffn_num_hiddens: int
    num_heads: int
    num_blks: int
    dropout: float
    max_len: int = 1000
    _: KW_ONLY
    num_segments: int = 2
    activation: str = "relu"
    eps: float = 1e-5
    embedding_norm: bool = False
    tie_weights: bool = False
    impl: str = "manual"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "num_hiddens", "ffn_num_hiddens", "num_blks", "max_len", "num_segments"):
            _check_int(name, getattr(self, name))
        check_heads(self.num_hiddens, self.num_heads)
        check_probability("dropout", self.dropout)
        _check_activation(self.activation)
        check_number("eps", self.eps, positive=True)
        for name in ("embedding_norm", "tie_weights"):
            _check_bool(name, getattr(self, name))
        _check_impl(self.impl)

    def replace(self, **changes: object) -> "BERTConfig":
        """A copy with ``changes`` (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    def kwargs(self) -> dict[str, object]:
        """The model's arguments as a dict, without ``impl``: ``BERTModel(**config.kwargs())``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "impl"}


def _original(vocab_size: int, D: int, H: int, layers: int) -> BERTConfig:
    """Devlin et al. (2019): F = 4D, dropout 0.1, 512 positions, GELU, eps 1e-12, embedding LayerNorm, tied MLM."""
    return BERTConfig(vocab_size, D, 4 * D, H, layers, 0.1, 512, activation="gelu", eps=1e-12, embedding_norm=True,
                      tie_weights=True)


#: BERT-Base of Devlin et al. (2019) (30,522 WordPiece tokens): about 110 million parameters.
BERT_BASE = _original(30522, 768, 12, 12)
#: BERT-Large: about 336 million parameters.
BERT_LARGE = _original(30522, 1024, 16, 24)

#: The two sizes as plain dicts: ``BERTModel(**BERT_CONFIGS["base"])``.
BERT_CONFIGS: dict[str, dict[str, object]] = {"base": BERT_BASE.kwargs(), "large": BERT_LARGE.kwargs()}

_POSITIONAL = ("vocab_size", "num_hiddens", "ffn_num_hiddens", "num_heads", "num_blks", "dropout", "max_len")


def bert_parameter_count(*args: object, heads: bool = True, **kwargs: object) -> int:
    """Number of parameters of ``BERTModel`` with this configuration, in closed form.

    ``bert_parameter_count(config)`` with a :class:`BERTConfig`, or with ``BERTModel``'s
    arguments (``bert_parameter_count(**BERT_CONFIGS["base"])``); as they do not change
    the count, ``num_heads`` (default 1), ``num_blks`` (default 12) and ``dropout``
    (default 0.0) may be left out. Any other name is refused, as ``BERTModel`` refuses it.

    With V, D, F, L, S = vocab_size, num_hiddens, ffn_num_hiddens, max_len, num_segments:

    * embeddings: (V + S + L) D, plus 2D for ``embedding_norm``;
    * each block: attention 4 (D^2 + D), FFN 2 D F + F + D, two LayerNorms 4D;
    * ``heads`` (pretraining heads): ``hidden`` D^2 + D, ``mlm`` D^2 + D + 2D + V
      (+ V D unless ``tie_weights``), ``nsp`` 2D + 2.

    Without ``heads`` the count is the encoder's alone.
    """
    _check_bool("heads", heads)
    if len(args) == 1 and not kwargs and isinstance(args[0], BERTConfig):
        c = args[0]
    else:
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"bert_parameter_count takes at most {len(_POSITIONAL)} positional arguments "
                            f"({', '.join(_POSITIONAL)}), got {len(args)}")
        given = dict(zip(_POSITIONAL, args))
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise TypeError(f"bert_parameter_count got {twice} both by position and by name")
        c = BERTConfig(**{"num_heads": 1, "num_blks": 12, "dropout": 0.0, **given, **kwargs})  # type: ignore[arg-type]
    V, D, Fh, L, S = c.vocab_size, c.num_hiddens, c.ffn_num_hiddens, c.max_len, c.num_segments
    embeddings = (V + S + L) * D + (2 * D if c.embedding_norm else 0)
    block = 4 * (D * D + D) + (2 * D * Fh + Fh + D) + 4 * D
    total = embeddings + c.num_blks * block
    if heads:
        total += (D * D + D) + (D * D + D + 2 * D + V + (0 if c.tie_weights else V * D)) + (2 * D + 2)
    return total


__all__ = ["BERTConfig", "BERT_BASE", "BERT_CONFIGS", "BERT_LARGE", "bert_parameter_count"]
