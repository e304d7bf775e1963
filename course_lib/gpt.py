"""Chapter 7: a decoder-only Transformer (GPT), with the options of today's models.

Shape legend: B batch, T positions read in this call, T_past positions already in the
cache, Tk = T_past + T keys, D model size (``num_hiddens``), H query heads, Hkv
key/value heads (``num_kv_heads``), Dh the size of one head (``head_size``), F the
feed-forward network's hidden size (``ffn_num_hiddens``), V vocabulary size, L
``max_len``.

A decoder-only model is chapter 5's decoder without cross-attention: one stack of
causal self-attention blocks, trained to predict every next token. ``GPT(config)`` maps
token ids (B, T) to logits (B, T, V). Each block is pre-norm (as GPT-2 and Llama)::

    X = X + dropout(attention(norm1(X)))      # causal self-attention
    X = X + dropout(ffn(norm2(X)))

and a final ``norm`` follows the last block. :class:`GPTConfig` chooses, one option at
a time, between GPT-2's choices and Llama's:

* ``positions``: ``"learned"`` (a trained vector per position, GPT-2),
  ``"sinusoidal"`` (chapter 4's fixed encoding) or ``"rotary"`` (queries and keys of
  every head rotated by :func:`course_lib.positional_encoding.apply_rotary`, Llama);
* ``num_kv_heads``: H (multi-head attention), a divisor of H (grouped-query attention,
  Ainslie et al. 2023) or 1 (multi-query attention, Shazeer 2019): key/value heads are
  shared by groups of H / Hkv query heads, which makes the key/value cache H / Hkv
  times smaller;
* ``norm``: ``"layernorm"`` or ``"rmsnorm"`` (:class:`RMSNorm`, Zhang and Sennrich
  2019: no centring, no bias);
* ``ffn``: ``"gelu"`` (exact), ``"gelu_tanh"`` (GPT-2's tanh approximation) or
  ``"swiglu"`` (Shazeer 2020; Llama): ``dense2(silu(gate(X)) * dense1(X))``;
* ``bias`` (every linear layer and LayerNorm), ``tie_weights`` (the output layer's
  weight *is* the embedding matrix), ``dropout``, and ``window`` (sliding-window
  attention: each query sees itself and the ``window - 1`` positions before it).

The attention of every block goes through the library's attention function after the
projections (see :mod:`course_lib.gpt_attention`), with the teaching path
(``impl="manual"``, weights kept for plots) or PyTorch's fused kernel (``"sdpa"``):
same parameters, same results.

**Cache.** ``net(tokens, cache)`` with a cache from :meth:`GPT.make_cache` reads the
positions after those already in the cache and appends theirs: one token at a time it
gives the logits of one pass over the whole sequence (up to float rounding; tested). With ``window`` the cache
rolls: it keeps only the last ``window - 1`` positions, a memory that does not grow.

**Initialization** (GPT-2's, Radford et al. 2019): every weight matrix and embedding
N(0, 0.02²), biases zero, norms one; the projections that write into the residual
stream (``W_o`` and ``dense2``) N(0, (0.02 / sqrt(2 * num_blks))²), so that the
residual stream's variance does not grow with depth. A fresh model's loss is then
close to ln V (every logit is a small dot product).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib._checks import (
    check_bool,
    check_index_range,
    check_int,
    check_number,
    check_probability,
    describe,
    is_int,
)
from course_lib.attention_scoring import IMPLEMENTATIONS
from course_lib.gpt_attention import CausalSelfAttention, group_key_value_heads
from course_lib.gpt_cache import SlidingWindowCache, cache_memory_bytes, kv_cache_bytes
from course_lib.gpt_generate import generate  # noqa: F401  (re-exported: course_lib.gpt.generate)
from course_lib.kv_cache import KVCache
from course_lib.positional_encoding import sinusoidal_encoding

POSITIONS = ("learned", "sinusoidal", "rotary")
NORMS = ("layernorm", "rmsnorm")
FFNS = ("gelu", "gelu_tanh", "swiglu")


@dataclass(frozen=True)
class GPTConfig:
    """The sizes and options of a :class:`GPT` (frozen: build a new one with ``dataclasses.replace``).

    ``vocab_size`` V, ``max_len`` L (the most positions the model reads, cache
    included), ``num_hiddens`` D, ``num_heads`` H, ``num_blks`` (blocks),
    ``ffn_num_hiddens`` F; ``num_kv_heads`` (None: H, multi-head) must divide H;
    ``head_size`` (None: D / H, which H must then divide). See the module's docstring
    for the options; ``eps`` is the norms' epsilon (GPT-2 1e-5, Llama 1e-5 or 1e-6),
    ``rotary_base`` the base of the rotary frequencies, ``impl`` the attention path a
    new model starts with.
    """

    vocab_size: int
    max_len: int = 256
    num_hiddens: int = 64
    num_heads: int = 4
    num_blks: int = 2
    ffn_num_hiddens: int = 256
    num_kv_heads: int | None = None
    head_size: int | None = None
    positions: str = "learned"
    norm: str = "layernorm"
    ffn: str = "gelu"
    bias: bool = True
    tie_weights: bool = True
    dropout: float = 0.0
    window: int | None = None
    eps: float = 1e-5
    rotary_base: float = 10000.0
    impl: str = "manual"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "num_hiddens", "num_heads", "num_blks", "ffn_num_hiddens"):
            check_int(name, getattr(self, name))
        for name, options in (("positions", POSITIONS), ("norm", NORMS), ("ffn", FFNS), ("impl", IMPLEMENTATIONS)):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}, got {getattr(self, name)!r}")
        check_bool("bias", self.bias)
        check_bool("tie_weights", self.tie_weights)
        check_probability("dropout", self.dropout)
        check_number("eps", self.eps, positive=True)
        check_number("rotary_base", self.rotary_base, positive=True)
        if self.head_size is None and self.num_hiddens % self.num_heads:
            raise ValueError(f"num_heads must divide num_hiddens (each head gets num_hiddens / num_heads features) "
                             f"unless head_size is given; got num_hiddens={self.num_hiddens}, "
                             f"num_heads={self.num_heads}")
        if self.head_size is not None:
            check_int("head_size", self.head_size)
        kv = self.num_kv_heads
        if kv is not None and (not is_int(kv) or kv < 1 or self.num_heads % kv):
            divisors = [h for h in range(1, self.num_heads + 1) if self.num_heads % h == 0]
            raise ValueError(f"num_kv_heads must divide num_heads={self.num_heads} (each key/value head serves a group "
                             f"of query heads): one of {divisors}, or None for num_heads; got {kv!r}")
        if self.positions == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary positions rotate feature pairs, so head_size must be even, got {self.head_dim}")
        if self.positions == "sinusoidal" and self.num_hiddens % 2:
            raise ValueError(f"the sinusoidal encoding fills sin/cos pairs, so num_hiddens must be even, "
                             f"got {self.num_hiddens}")
        if self.window is not None:
            check_int("window", self.window)

    @property
    def head_dim(self) -> int:
        """Dh, the size of one head: ``head_size``, or D / H."""
        return self.head_size if self.head_size is not None else self.num_hiddens // self.num_heads

    @property
    def kv_heads(self) -> int:
        """Hkv, the number of key/value heads (H when ``num_kv_heads`` is None)."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads


class RMSNorm(nn.Module):
    """Root-mean-square normalization (Zhang and Sennrich 2019): (..., D) -> (..., D).

    ``X / sqrt(mean(X²) + eps) * weight``, over the last axis: LayerNorm without
    subtracting the mean and without a bias. ``weight`` (D,) starts at one. Computed in
    float32 at least (a half-precision input is normalized in float32 and cast back, as
    Llama does); equal to ``torch.nn.RMSNorm(D, eps)``.
    """

    def __init__(self, num_hiddens: int, eps: float = 1e-6) -> None:
        super().__init__()
        check_int("num_hiddens", num_hiddens)
        self.eps = check_number("eps", eps, positive=True)
        self.weight = nn.Parameter(torch.ones(num_hiddens))

    def forward(self, X: Tensor) -> Tensor:
        D = self.weight.shape[0]
        if not isinstance(X, Tensor) or not X.dtype.is_floating_point or X.dim() < 1 or X.shape[-1] != D:
            raise ValueError(f"RMSNorm expects a floating-point tensor (..., {D}), got {describe(X)}")
        Y = X.float() if X.dtype in (torch.float16, torch.bfloat16) else X
        Y = Y * torch.rsqrt(Y.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)
        return self.weight * Y.to(X.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(config: GPTConfig) -> nn.Module:
    """The norm of a block (and the final one): LayerNorm (with a bias if ``config.bias``) or RMSNorm."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.num_hiddens, config.eps)
    return nn.LayerNorm(config.num_hiddens, eps=config.eps, bias=config.bias)


class GPTFFN(nn.Module):
    """The feed-forward network of a block: (B, T, D) -> (B, T, D).

    ``"gelu"`` / ``"gelu_tanh"``: ``dense2(gelu(dense1(X)))`` (D -> F -> D), chapter 5's
    position-wise FFN with a GELU. ``"swiglu"``: ``dense2(silu(gate(X)) * dense1(X))``,
    a gated unit with a third matrix (D -> F twice, F -> D); Llama's ``up_proj``,
    ``gate_proj`` and ``down_proj`` are ``dense1``, ``gate`` and ``dense2``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        D, Fh, bias = config.num_hiddens, config.ffn_num_hiddens, config.bias
        self.kind = config.ffn
        self.dense1 = nn.Linear(D, Fh, bias=bias)
        if self.kind == "swiglu":
            self.gate = nn.Linear(D, Fh, bias=bias)
        self.dense2 = nn.Linear(Fh, D, bias=bias)

    def forward(self, X: Tensor) -> Tensor:
        if self.kind == "swiglu":
            return self.dense2(F.silu(self.gate(X)) * self.dense1(X))  # (B, T, F) * (B, T, F) -> (B, T, D)
        approximate = "tanh" if self.kind == "gelu_tanh" else "none"
        return self.dense2(F.gelu(self.dense1(X), approximate=approximate))  # (B, T, F) -> (B, T, D)


class GPTBlock(nn.Module):
    """One pre-norm decoder block: ``X + attention(norm1(X))``, then ``+ ffn(norm2(X))``; (B, T, D) -> (B, T, D)."""

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.norm1 = make_norm(config)
        self.attention = CausalSelfAttention(config)
        self.norm2 = make_norm(config)
        self.ffn = GPTFFN(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, X: Tensor, cache: KVCache | None = None) -> Tensor:
        X = X + self.dropout(self.attention(self.norm1(X), cache, self.layer))  # (B, T, D)
        return X + self.dropout(self.ffn(self.norm2(X)))  # (B, T, D)


class GPT(nn.Module):
    """A decoder-only Transformer: token ids (B, T) -> logits (B, T, V).

    ``GPT(config)`` with a :class:`GPTConfig`. Parameters: ``embedding`` (V, D),
    ``pos_embedding`` (``"learned"`` only: (L, D)), ``blks.0`` ... (each ``norm1``,
    ``attention.W_q`` (D -> H Dh), ``W_k`` and ``W_v`` (D -> Hkv Dh), ``W_o`` (H Dh ->
    D), ``norm2``, ``ffn``), the final ``norm`` and ``dense`` (D -> V, no bias; with
    ``tie_weights`` its weight is the embedding matrix).

    ``forward(tokens (B, T), cache=None)``: token ids in [0, V) (values checked on the
    CPU); with a cache (:meth:`make_cache`) the tokens are the positions after those
    already cached, and the cache is updated in place, as Hugging Face's models do
    (``cache.copy()`` first to continue two texts from one prompt: the copy and the
    original then grow apart without touching each other). T_past + T must not exceed
    ``max_len``. ``impl`` (``"manual"`` or ``"sdpa"``) switches the attention path of
    every block; ``attention_weights`` gives each block's weights of the last call
    (teaching path).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        D = config.num_hiddens
        self.embedding = nn.Embedding(config.vocab_size, D)
        if config.positions == "learned":
            self.pos_embedding = nn.Embedding(config.max_len, D)
        elif config.positions == "sinusoidal":
            self.register_buffer("P", sinusoidal_encoding(config.max_len, D), persistent=False)  # (L, D)
        self.dropout = nn.Dropout(config.dropout)
        self.blks = nn.ModuleList(GPTBlock(config, i) for i in range(config.num_blks))
        self.norm = make_norm(config)
        self.dense = nn.Linear(D, config.vocab_size, bias=False)
        if config.tie_weights:  # one (V, D) matrix: row v embeds token v and scores token v
            self.dense.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialization (see the module's docstring); works on the meta device."""
        residual_std = 0.02 / math.sqrt(2 * self.config.num_blks)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() >= 2:
                    std = residual_std if name.endswith(("W_o.weight", "dense2.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)
                elif name.endswith("bias"):
                    nn.init.zeros_(p)
                else:
                    nn.init.ones_(p)

    @property
    def impl(self) -> str:
        """``"manual"`` or ``"sdpa"``: the attention path of every block."""
        impls = {blk.attention.impl for blk in self.blks}
        return impls.pop() if len(impls) == 1 else "mixed"

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {value!r}")
        for blk in self.blks:
            blk.attention.impl = value

    @property
    def attention_weights(self) -> list[Tensor]:
        """Each block's attention weights of the last call, (B, H, T, Tk); teaching path only."""
        return [blk.attention.attention_weights for blk in self.blks]

    def make_cache(self) -> KVCache:
        """An empty key/value cache for this model: rolling (:class:`SlidingWindowCache`) if ``window`` is set."""
        if self.config.window is not None:
            return SlidingWindowCache(self.config.num_blks, self.config.window)
        return KVCache(self.config.num_blks)

    def forward(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        cfg = self.config
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype.is_floating_point \
                or tokens.dtype.is_complex or tokens.dtype == torch.bool:
            raise ValueError(f"GPT expects token ids of shape (B, T) with an integer dtype, got {describe(tokens)}")
        check_index_range(tokens, cfg.vocab_size, "GPT: token ids", f"for a vocabulary of {cfg.vocab_size} tokens")
        if cache is not None and not isinstance(cache, KVCache):
            raise ValueError(f"cache must be None or a cache from make_cache(), got {type(cache).__name__}")
        if cache is not None and cfg.window is not None and not isinstance(cache, SlidingWindowCache):
            raise ValueError(f"a model with window={cfg.window} needs its rolling cache: use net.make_cache()")
        if cache is not None and len(cache) != cfg.num_blks:
            raise ValueError(f"the cache has {len(cache)} layers, the model {cfg.num_blks} blocks: "
                             "use net.make_cache()")
        start, T = (0 if cache is None else cache.get_seq_length(0)), tokens.shape[1]
        if start + T > cfg.max_len:
            raise ValueError(f"{start} cached + {T} new positions exceed the model's max_len={cfg.max_len} "
                             "(the longest context it can read)")
        positions = torch.arange(start, start + T, device=tokens.device)  # (T,): absolute positions
        X = self.embedding(tokens)  # (B, T, D)
        if cfg.positions == "learned":
            X = X + self.pos_embedding(positions)  # (B, T, D) + (T, D)
        elif cfg.positions == "sinusoidal":
            X = X + self.P[start : start + T].to(X.dtype)  # (B, T, D) + (T, D)
        X = self.dropout(X)
        for blk in self.blks:
            X = blk(X, cache)
        return self.dense(self.norm(X))  # (B, T, V)


def gpt_parameter_count(config: GPTConfig) -> int:
    """The number of parameters of ``GPT(config)``, in closed form (a shared tensor counted once).

    With D = ``num_hiddens``, Dh the head size, H and Hkv the head counts, F
    ``ffn_num_hiddens``, V, L, n = ``num_blks``, b = 1 with biases (0 without)::

        embedding       V D  (+ L D for learned positions)
        per block       attention  D (H + 2 Hkv) Dh + H Dh D  + b (H + 2 Hkv) Dh + b D
                        ffn        2 D F (3 D F for SwiGLU)   + b F (2 b F for SwiGLU) + b D
                        two norms  2 D  (+ 2 b D for LayerNorm with bias)
        final norm      D  (+ b D for LayerNorm)
        output layer    V D, unless tied to the embedding

    GPT-2 small (:data:`GPT2_SMALL`) has 124,439,808; Llama 2 7B
    (:data:`LLAMA2_7B`) 6,738,415,616. Tests check the formula against the classes
    built on the meta device.
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"gpt_parameter_count expects a GPTConfig, got {type(config).__name__}")
    D, Dh, H, Hkv, Ff = config.num_hiddens, config.head_dim, config.num_heads, config.kv_heads, config.ffn_num_hiddens
    V, L, b = config.vocab_size, config.max_len, int(config.bias)
    norm = D + (b * D if config.norm == "layernorm" else 0)
    attention = D * (H + 2 * Hkv) * Dh + H * Dh * D + b * ((H + 2 * Hkv) * Dh + D)
    mats = 3 if config.ffn == "swiglu" else 2
    ffn = mats * D * Ff + b * ((mats - 1) * Ff + D)
    total = V * D + (L * D if config.positions == "learned" else 0)
    total += config.num_blks * (attention + ffn + 2 * norm) + norm
    return total + (0 if config.tie_weights else V * D)


#: GPT-2 small (Radford et al. 2019): 12 blocks of 768, 12 heads, learned positions,
#: LayerNorm, GELU (tanh), biases, tied embeddings; 124,439,808 parameters.
GPT2_SMALL = GPTConfig(vocab_size=50257, max_len=1024, num_hiddens=768, num_heads=12, num_blks=12,
                       ffn_num_hiddens=3072, positions="learned", norm="layernorm", ffn="gelu_tanh",
                       bias=True, tie_weights=True, eps=1e-5, impl="sdpa")

#: Llama 2 7B (Touvron et al. 2023): 32 blocks of 4096, 32 heads (no grouping at this
#: size), rotary positions, RMSNorm, SwiGLU with F = 11008, no biases, an untied output
#: layer, a context of 4096; 6,738,415,616 parameters.
LLAMA2_7B = GPTConfig(vocab_size=32000, max_len=4096, num_hiddens=4096, num_heads=32, num_blks=32,
                      ffn_num_hiddens=11008, num_kv_heads=32, positions="rotary", norm="rmsnorm", ffn="swiglu",
                      bias=False, tie_weights=False, eps=1e-5, impl="sdpa")


def from_huggingface(model: nn.Module) -> GPT:
    """Our :class:`GPT` from a Hugging Face ``GPT2LMHeadModel`` or ``LlamaForCausalLM``, same logits.

    See :func:`course_lib.hf_bridge.gpt_from_huggingface` (and its Colab example);
    ``transformers`` is imported only when a model is converted.
    """
    from course_lib.hf_bridge import gpt_from_huggingface

    return gpt_from_huggingface(model)


__all__ = [
    "FFNS",
    "GPT",
    "GPT2_SMALL",
    "GPTBlock",
    "GPTConfig",
    "GPTFFN",
    "KVCache",
    "LLAMA2_7B",
    "NORMS",
    "POSITIONS",
    "RMSNorm",
    "SlidingWindowCache",
    "cache_memory_bytes",
    "from_huggingface",
    "generate",
    "gpt_parameter_count",
    "group_key_value_heads",
    "kv_cache_bytes",
    "make_norm",
]
