"""Chapter 5: the Transformer (Vaswani et al., 2017): its configuration and the whole model.

Shape legend: B batch, Ts source and Tt target positions, D model size
(``num_hiddens``), V vocabulary size.

The model is assembled from three modules, one idea each:

* ``course_lib.transformer_encoder``: the position-wise FFN, AddNorm, the encoder block
  and the encoder (with the initialization, pre-norm and the comparison with PyTorch's
  layers explained in its docstring);
* ``course_lib.transformer_decoder``: the causal decoder block and the decoder, whose
  state keeps a key/value cache (``course_lib.kv_cache``);
* this module: :class:`TransformerConfig`, one frozen description of a model (sizes and
  options), the paper's sizes (:data:`TRANSFORMER_BASE`, :data:`TRANSFORMER_BIG`, and
  as dicts :data:`VASWANI_2017`), :func:`build_transformer` and :func:`count_parameters`.

Every name of those modules is importable from here too, as before the split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass

from torch import nn

from course_lib._checks import check_probability, refuse_untied_state_dict
from course_lib.attention import check_heads
from course_lib.attention_scoring import _check_impl
# Re-exported: the public names of the encoder and decoder modules were importable from
# here before the split (bert_data.py still imports three helpers from here).
from course_lib.kv_cache import BlockCache, KVCache  # noqa: F401
from course_lib.transformer_decoder import TransformerDecoder, TransformerDecoderBlock
from course_lib.transformer_encoder import ACTIVATIONS, AddNorm, PositionWiseFFN  # noqa: F401
from course_lib.transformer_encoder import TransformerEncoder, TransformerEncoderBlock  # noqa: F401
from course_lib.transformer_encoder import init_transformer_weights  # noqa: F401
from course_lib.transformer_encoder import _check_bool, _check_int, _check_tokens  # noqa: F401


@dataclass(frozen=True)
class TransformerConfig:
    """The sizes and options of an encoder-decoder Transformer; :func:`build_transformer` builds it.

    ``TransformerConfig(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens,
    num_heads, num_blks, dropout, *, use_bias=False, norm_first=False,
    tie_weights=False, shared_embedding=False, impl="manual", max_len=1000,
    scale_embedding=True)``: the arguments of ``build_transformer``, checked when the
    config is made. Frozen: ``config.replace(dropout=0.0)`` makes a changed copy.
    ``shared_embedding`` needs ``src_vocab_size == tgt_vocab_size``.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    num_hiddens: int
    ffn_num_hiddens: int
    num_heads: int
    num_blks: int
    dropout: float
    _: KW_ONLY
    use_bias: bool = False
    norm_first: bool = False
    tie_weights: bool = False
    shared_embedding: bool = False
    impl: str = "manual"
    max_len: int = 1000
    scale_embedding: bool = True

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size", "num_hiddens", "ffn_num_hiddens", "num_blks", "max_len"):
            _check_int(name, getattr(self, name))
        check_heads(self.num_hiddens, self.num_heads)
        check_probability("dropout", self.dropout)
        for name in ("use_bias", "norm_first", "tie_weights", "shared_embedding", "scale_embedding"):
            _check_bool(name, getattr(self, name))
        _check_impl(self.impl)
        if self.shared_embedding and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"shared_embedding needs one vocabulary for source and target, got sizes "
                             f"{self.src_vocab_size} and {self.tgt_vocab_size}")

    def replace(self, **changes: object) -> "TransformerConfig":
        """A copy with ``changes`` (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    def sizes(self) -> dict[str, int | float]:
        """The five sizes of the paper's Table 3: ``num_hiddens``, ``ffn_num_hiddens``, ``num_heads``,
        ``num_blks``, ``dropout``."""
        return {name: getattr(self, name) for name in ("num_hiddens", "ffn_num_hiddens", "num_heads", "num_blks",
                                                        "dropout")}


#: Table 3 of Vaswani et al. (2017): the base and big models, as configs (dropout: the big
#: model's English-German value; 0.1 for English-French). For English-German the paper
#: shares one vocabulary of about 37,000 byte-pair tokens between the languages, and one
#: embedding matrix between the encoder, the decoder and the output layer.
TRANSFORMER_BASE = TransformerConfig(37000, 37000, 512, 2048, 8, 6, 0.1, tie_weights=True, shared_embedding=True)
TRANSFORMER_BIG = TRANSFORMER_BASE.replace(num_hiddens=1024, ffn_num_hiddens=4096, num_heads=16, dropout=0.3)

#: The same sizes as plain dicts, ``build_transformer(V, V, **VASWANI_2017["base"])``.
VASWANI_2017: dict[str, dict[str, int | float]] = {"base": TRANSFORMER_BASE.sizes(), "big": TRANSFORMER_BIG.sizes()}


def build_transformer(*args: object, **kwargs: object):
    """An encoder-decoder Transformer: ``course_lib.seq2seq.EncoderDecoder(encoder, decoder)``.

    ``build_transformer(config)`` with a :class:`TransformerConfig`, or
    ``build_transformer(src_vocab_size, tgt_vocab_size, num_hiddens, ffn_num_hiddens,
    num_heads, num_blks, dropout, *, use_bias=False, norm_first=False,
    tie_weights=False, shared_embedding=False, impl="manual", max_len=1000,
    scale_embedding=True)``, the config's arguments.

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

    if len(args) == 1 and not kwargs and isinstance(args[0], TransformerConfig):
        config = args[0]
    else:
        config = TransformerConfig(*args, **kwargs)  # type: ignore[arg-type]
    encoder = TransformerEncoder.from_config(config)
    decoder = TransformerDecoder.from_config(config, embedding=encoder.embedding if config.shared_embedding else None)
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
    "KVCache",
    "PositionWiseFFN",
    "TRANSFORMER_BASE",
    "TRANSFORMER_BIG",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "VASWANI_2017",
    "build_transformer",
    "count_parameters",
    "init_transformer_weights",
]
