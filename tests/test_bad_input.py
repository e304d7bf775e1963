"""Bad input at every public boundary of course_lib: a clear error, never a silent wrong result.

A sweep over the public functions and classes, module by module, with the kinds of
mistakes a student or an instructor plausibly makes: a wrong dtype, rank or shape,
indices out of range, empty batches, zero or negative sizes, NaN or inf where it
matters, None where a tensor is needed, batch sizes that disagree between arguments,
bools where ints are expected, strings where token lists are expected, paths that
cannot be written and damaged files.

Each case must raise the expected exception type with a message that names the argument
and what was expected (the regular expression of the case); a test that called the
function and got a result would fail. The valid edge cases at the end must work and give
the right result. The behaviour fixed for the silently wrong cases is tested in the
modules' own test files too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import course_lib
from course_lib import (
    AdditiveAttention,
    AddNorm,
    DotProductAttention,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    NWKernelRegression,
    PositionalEncoding,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    build_transformer,
    causal_mask,
    count_parameters,
    dot_product_attention,
    local_attention,
    local_window_mask,
    masked_softmax,
    merge_heads,
    nadaraya_watson,
    padding_mask,
    relative_position_map,
    sinusoidal_encoding,
    split_heads,
    transpose_output,
    transpose_qkv,
)
from course_lib import bert as B_
from course_lib import corpus as C_
from course_lib import datasets as DS
from course_lib import decoding as D_
from course_lib import plotting as P_
from course_lib import seq2seq as S_
from course_lib import text as T_
from course_lib import training as TR
from course_lib.benchmark import peak_memory, time_fn
from course_lib.utils import set_seed, try_gpu

WORDS = "the cat saw a bat near the bank and the dog ate an apple".split()
VOCAB = T_.Vocab(WORDS)                       # 7 reserved tokens + 11 words
NV = len(VOCAB)
BARE = T_.Vocab(WORDS, reserved_tokens=["<pad>", "<unk>"])   # no <bos>, <eos>, <cls>, <sep>, <mask>
torch.manual_seed(0)


def ids(b=2, t=5, high=NV, dtype=torch.long):
    return torch.randint(0, high, (b, t), generator=torch.Generator().manual_seed(b * 10 + t)).to(dtype)


def qkv(b=2, tq=3, tk=4, d=8, dv=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(b, tq, d, generator=g).to(dtype), torch.randn(b, tk, d, generator=g).to(dtype),
            torch.randn(b, tk, dv, generator=g).to(dtype))


def with_value(t, index, value):
    t = t.clone()
    t[index] = value
    return t


# Small models, built once.
MHA = MultiHeadAttention(8, 2, 0.0, query_size=8, key_size=8, value_size=8)
LAZY_MHA = MultiHeadAttention(8, 2, 0.0)
LAZY_MHA(*qkv(d=6, dv=6))                       # learns input size 6
ADD = AdditiveAttention(8, 0.0)
ADD(*qkv(d=6))                                  # learns query and key size 6
FFN = PositionWiseFFN(16, 8)
FFN(torch.zeros(1, 2, 8))                       # learns 8 inputs
ENC_BLK = TransformerEncoderBlock(8, 16, 2, 0.0)
ENC = TransformerEncoder(NV, 8, 16, 2, 1, 0.0, max_len=12)
DEC = TransformerDecoder(NV, 8, 16, 2, 1, 0.0, max_len=12)
DEC_BLK = DEC.blks[0]
MODEL = build_transformer(NV, NV, 8, 16, 2, 1, 0.0, max_len=32)
STATE = DEC.init_state(torch.zeros(2, 4, 8), torch.tensor([4, 2]))
BERT = B_.BERTModel(NV, 8, 16, 2, 1, 0.0, max_len=12)
RNN_ENC = S_.Seq2SeqEncoder(NV, 4, 8, 1)
RNN_DEC = S_.Seq2SeqDecoder(NV, 4, 8, 1)
BAH_DEC = S_.Seq2SeqAttentionDecoder(NV, 4, 8, 1)
RNN_OUT = RNN_ENC(ids(2, 5))
DOCS = [[["the", "cat", "saw"], ["a", "bat"], ["the", "dog"]], [["an", "apple"], ["near", "the", "bank"]]]
CHECKPOINT_DIR = None


def bad_file(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


class Case:
    def __init__(self, name, fn, match, exc=ValueError):
        self.name, self.fn, self.match, self.exc = name, fn, match, exc


C = Case
CASES = [
    # ---------------------------------------------------------------- utils
    C("set_seed bool", lambda: set_seed(True), "set_seed expects an int"),
    C("set_seed negative", lambda: set_seed(-1), r"0 <= seed < 2\*\*32"),
    C("set_seed float", lambda: set_seed(1.5), "set_seed expects an int"),
    C("set_seed str", lambda: set_seed("0"), "set_seed expects an int"),
    C("try_gpu negative", lambda: try_gpu(-1), "GPU index >= 0"),
    C("try_gpu bool", lambda: try_gpu(True), "GPU index >= 0"),
    C("try_gpu str", lambda: try_gpu("0"), "GPU index >= 0"),
    # ---------------------------------------------------------------- masking
    C("masked_softmax 2-D", lambda: masked_softmax(torch.zeros(3, 4)), r"scores of shape \(B, Tq, Tk\)"),
    C("masked_softmax int scores", lambda: masked_softmax(torch.zeros(1, 3, 4, dtype=torch.long)),
      "floating-point dtype"),
    C("masked_softmax None", lambda: masked_softmax(None), r"scores of shape \(B, Tq, Tk\)"),
    C("masked_softmax lens too long", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.tensor([5, 1])),
      r"valid_lens must lie in \[0, 4\]"),
    C("masked_softmax negative lens", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.tensor([-1, 1])),
      r"valid_lens must lie in \[0, 4\]"),
    C("masked_softmax lens batch", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.tensor([1, 2, 3])),
      r"valid_lens of shape \(B,\) must have B = 2"),
    C("masked_softmax fractional lens", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.tensor([1.5, 2.0])),
      "whole numbers"),
    C("masked_softmax bool lens", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.tensor([True, False])),
      "whole numbers"),
    C("masked_softmax list lens", lambda: masked_softmax(torch.zeros(2, 3, 4), [1, 2]), "valid_lens must be a tensor"),
    C("masked_softmax 3-D lens", lambda: masked_softmax(torch.zeros(2, 3, 4), torch.ones(2, 3, 1)),
      r"valid_lens must be \(B,\) or \(B, Tq\)"),
    C("masked_softmax float mask", lambda: masked_softmax(torch.zeros(2, 3, 4), attn_mask=torch.ones(3, 4)),
      "attn_mask must be boolean"),
    C("masked_softmax mask shape", lambda: masked_softmax(torch.zeros(2, 3, 4), attn_mask=torch.ones(3, 5).bool()),
      "does not broadcast"),
    C("masked_softmax list mask", lambda: masked_softmax(torch.zeros(2, 3, 4), attn_mask=[[True]]),
      "attn_mask must be a boolean tensor"),
    C("padding_mask negative keys", lambda: padding_mask(torch.tensor([1]), 2, -1), "num_keys must be an int >= 0"),
    C("padding_mask float queries", lambda: padding_mask(torch.tensor([1]), 2.0, 3), "num_queries must be an int"),
    C("causal_mask more queries", lambda: causal_mask(4, 3), "num_queries <= num_keys"),
    C("causal_mask negative", lambda: causal_mask(-1), "num_queries must be an int >= 0"),
    C("causal_mask float", lambda: causal_mask(2.5), "num_queries must be an int >= 0"),
    C("causal_mask bool", lambda: causal_mask(True), "num_queries must be an int >= 0"),
    C("local_window_mask negative", lambda: local_window_mask(3, 3, -1), "window must be an int >= 0"),
    C("local_window_mask float", lambda: local_window_mask(3, 3, 1.5), "window must be an int >= 0"),
    C("local_window_mask negative keys", lambda: local_window_mask(3, -3, 1), "num_keys must be an int >= 0"),
    # ------------------------------------------------------- attention scoring
    C("dot 2-D queries", lambda: dot_product_attention(torch.zeros(3, 8), *qkv()[1:]), "queries must be a 3-D"),
    C("dot None keys", lambda: dot_product_attention(qkv()[0], None, qkv()[2]), "keys must be a 3-D"),
    C("dot int queries", lambda: dot_product_attention(*qkv(dtype=torch.long)), "floating-point dtype"),
    C("dot mixed dtypes", lambda: dot_product_attention(qkv()[0].double(), *qkv()[1:]), "need one dtype"),
    C("dot batch mismatch", lambda: dot_product_attention(qkv(b=3)[0], *qkv()[1:]), "batch sizes differ"),
    C("dot size mismatch", lambda: dot_product_attention(qkv(d=6)[0], *qkv()[1:]), "same size D"),
    C("dot key/value positions", lambda: dot_product_attention(qkv()[0], qkv()[1], qkv(tk=5)[2]),
      "same number of positions Tk"),
    C("dot zero keys manual", lambda: dot_product_attention(*qkv(tk=0)), r"at least one key \(Tk >= 1\)"),
    C("dot zero keys sdpa", lambda: dot_product_attention(*qkv(tk=0), impl="sdpa"), r"at least one key"),
    C("dot bad impl", lambda: dot_product_attention(*qkv(), impl="flash"), "impl must be one of"),
    C("dot dropout 1.5", lambda: dot_product_attention(*qkv(), dropout_p=1.5), r"dropout_p must be a probability"),
    C("dot dropout negative sdpa", lambda: dot_product_attention(*qkv(), dropout_p=-0.1, impl="sdpa"),
      r"dropout_p must be a probability"),
    C("dot lens too long", lambda: dot_product_attention(*qkv(), torch.tensor([5, 1])), r"valid_lens must lie in \[0, 4\]"),
    C("dot mask shape", lambda: dot_product_attention(*qkv(), attn_mask=torch.ones(3, 3).bool()), "does not broadcast"),
    C("DotProductAttention dropout str", lambda: DotProductAttention("0.1"), "dropout must be a probability"),
    C("DotProductAttention dropout 2", lambda: DotProductAttention(2.0), "dropout must be a probability"),
    C("DotProductAttention impl", lambda: DotProductAttention(0.0, impl="fast"), "impl must be one of"),
    C("DotProductAttention weights before call", lambda: DotProductAttention(0.0).attention_weights,
      "call the module first", RuntimeError),
    C("DotProductAttention weights on sdpa", lambda: DotProductAttention(0.0, impl="sdpa").attention_weights,
      "impl='manual'", RuntimeError),
    C("Additive num_hiddens 0", lambda: AdditiveAttention(0, 0.1), "num_hiddens must be an int >= 1"),
    C("Additive num_hiddens bool", lambda: AdditiveAttention(True, 0.1), "num_hiddens must be an int >= 1"),
    C("Additive dropout 1.5", lambda: AdditiveAttention(8, 1.5), "dropout must be a probability"),
    C("Additive query_size negative", lambda: AdditiveAttention(8, 0.0, query_size=-1), "query_size must be an int >= 1"),
    C("Additive lazy size changed", lambda: ADD(*qkv(d=8)), "queries must have 6 features"),
    C("Additive given size mismatch", lambda: AdditiveAttention(8, 0.0, query_size=5, key_size=8)(*qkv()),
      "queries must have 5 features"),
    C("Additive 2-D values", lambda: ADD(qkv(d=6)[0], qkv(d=6)[1], torch.zeros(4, 8)), "values must be a 3-D"),
    C("Additive lens batch", lambda: ADD(*qkv(d=6), torch.tensor([1, 2, 3])), r"must have B = 2"),
    # ------------------------------------------------------- multi-head attention
    C("split_heads 2-D", lambda: split_heads(torch.zeros(3, 8), 2), r"split_heads expects a tensor \(B, T, D\)"),
    C("split_heads non-divisor", lambda: split_heads(torch.zeros(1, 3, 8), 3), "num_heads must divide num_hiddens"),
    C("split_heads zero heads", lambda: split_heads(torch.zeros(1, 3, 8), 0), "positive ints"),
    C("split_heads bool heads", lambda: split_heads(torch.zeros(1, 3, 8), True), "positive ints"),
    C("split_heads list", lambda: split_heads([[1.0]], 1), "split_heads expects a tensor"),
    C("merge_heads 3-D", lambda: merge_heads(torch.zeros(2, 3, 4)), r"merge_heads expects a tensor \(B, H, T, Dh\)"),
    C("transpose_qkv non-divisor", lambda: transpose_qkv(torch.zeros(1, 3, 8), 3), "num_heads must divide"),
    C("transpose_output zero heads", lambda: transpose_output(torch.zeros(4, 3, 2), 0), "num_heads must be an int >= 1"),
    C("transpose_output bad batch", lambda: transpose_output(torch.zeros(5, 3, 2), 2), r"\(B \* 2, T, Dh\)"),
    C("MHA non-divisor", lambda: MultiHeadAttention(8, 3, 0.0), "num_heads must divide"),
    C("MHA zero hiddens", lambda: MultiHeadAttention(0, 1, 0.0), "positive ints"),
    C("MHA dropout 1.5", lambda: MultiHeadAttention(8, 2, 1.5), "dropout must be a probability"),
    C("MHA bias int", lambda: MultiHeadAttention(8, 2, 0.0, bias=1), "bias must be True or False"),
    C("MHA key_size 0", lambda: MultiHeadAttention(8, 2, 0.0, key_size=-2), "key_size must be an int >= 1"),
    C("MHA impl", lambda: MultiHeadAttention(8, 2, 0.0, impl="cuda"), "impl must be one of"),
    C("MHA impl set", lambda: setattr(MultiHeadAttention(8, 2, 0.0), "impl", "flash"), "impl must be one of"),
    C("MHA query size", lambda: MHA(*qkv(d=6, dv=8)), "queries must have 8 features"),
    C("MHA value size", lambda: MHA(*qkv(d=8, dv=5)), "values must have 8 features"),
    C("MHA lazy size changed", lambda: LAZY_MHA(*qkv(d=8, dv=8)), "queries must have 6 features"),
    C("MHA float64 input", lambda: MHA(*qkv(dtype=torch.float64)), "dtype torch.float64 but the layer's parameters"),
    C("MHA int input", lambda: MHA(*qkv(dtype=torch.long)), "floating-point dtype"),
    C("MHA zero keys", lambda: MHA(*qkv(tk=0)), r"at least one key"),
    C("MHA zero keys sdpa", lambda: MultiHeadAttention(8, 2, 0.0, impl="sdpa", query_size=8, key_size=8,
                                                      value_size=8)(*qkv(tk=0)), r"at least one key"),
    C("MHA lens too long", lambda: MHA(*qkv(), torch.tensor([9, 1])), r"valid_lens must lie in \[0, 4\]"),
    C("MHA batch mismatch", lambda: MHA(qkv(b=3)[0], *qkv()[1:]), "batch sizes differ"),
    C("MHA weights on sdpa", lambda: MultiHeadAttention(8, 2, 0.0, impl="sdpa").attention_weights, "impl='manual'",
      RuntimeError),
    C("local_attention negative window", lambda: local_attention(*qkv(tq=4), -1), "window must be an int >= 0"),
    C("local_attention bool window", lambda: local_attention(*qkv(tq=4), True), "window must be an int >= 0"),
    C("local_attention float window", lambda: local_attention(*qkv(tq=4), 1.0), "window must be an int >= 0"),
    C("local_attention T mismatch", lambda: local_attention(*qkv(tq=3, tk=4), 1), "same leading axes and T"),
    C("local_attention D mismatch", lambda: local_attention(qkv(tq=4, d=6)[0], *qkv(tq=4)[1:], 1), "same size D"),
    C("local_attention int", lambda: local_attention(*qkv(tq=4, dtype=torch.long), 1), "floating-point tensor"),
    C("local_attention None", lambda: local_attention(None, *qkv(tq=4)[1:], 1), "queries must be a floating-point"),
    # ------------------------------------------------------- positional encoding
    C("PositionalEncoding odd", lambda: PositionalEncoding(7, 0.1), "positive even int"),
    C("PositionalEncoding zero", lambda: PositionalEncoding(0, 0.1), "positive even int"),
    C("PositionalEncoding max_len 0", lambda: PositionalEncoding(8, 0.1, max_len=0), "max_len must be a positive int"),
    C("PositionalEncoding max_len bool", lambda: PositionalEncoding(8, 0.1, max_len=True), "max_len must be a positive"),
    C("PositionalEncoding max_len float", lambda: PositionalEncoding(8, 0.1, max_len=10.0), "max_len must be a positive"),
    C("PositionalEncoding dropout", lambda: PositionalEncoding(8, -0.5), "dropout must be a probability"),
    C("PositionalEncoding wrong D", lambda: PositionalEncoding(8, 0.0)(torch.zeros(1, 3, 6)), r"\(B, T, 8\)"),
    C("PositionalEncoding too long", lambda: PositionalEncoding(8, 0.0, 4)(torch.zeros(1, 5, 8)), "max_len=4"),
    C("PositionalEncoding token ids", lambda: PositionalEncoding(8, 0.0)(torch.zeros(1, 3, 8, dtype=torch.long)),
      "floating-point embeddings"),
    C("PositionalEncoding 2-D", lambda: PositionalEncoding(8, 0.0)(torch.zeros(3, 8)), r"\(B, T, 8\)"),
    C("Learned zero", lambda: LearnedPositionalEmbedding(0, 0.1), "num_hiddens must be a positive int"),
    C("Learned too long", lambda: LearnedPositionalEmbedding(5, 0.0, 3)(torch.zeros(1, 4, 5)), "max_len=3"),
    C("sinusoidal odd", lambda: sinusoidal_encoding(10, 5), "positive even int"),
    C("sinusoidal negative length", lambda: sinusoidal_encoding(-1, 4), "max_len must be a positive int"),
    C("relative map odd", lambda: relative_position_map(1, 5), "positive even int"),
    C("relative map float offset", lambda: relative_position_map(1.5, 4), "offset must be an int"),
    # ------------------------------------------------------- kernel regression
    C("NW 2-D queries", lambda: nadaraya_watson(torch.zeros(2, 2), torch.zeros(3), torch.zeros(3)),
      r"queries must be 1-D \(Q,\)"),
    C("NW list keys", lambda: nadaraya_watson(torch.zeros(2), [0.0, 1.0], torch.zeros(2)), "keys must be a torch.Tensor"),
    C("NW values mismatch", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(4)),
      r"values must be \(K,\) or \(K, Dv\)"),
    C("NW 3-D keys", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(2, 3, 1), torch.zeros(3)),
      r"keys must be \(K,\) or \(Q, K\)"),
    C("NW per-query keys rows", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3, 4), torch.zeros(3, 4)),
      "need Q = 2 rows"),
    C("NW no keys", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(0), torch.zeros(0)), "K = 0"),
    C("NW unknown kernel", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), "cosine"),
      "unknown kernel 'cosine'"),
    C("NW zero bandwidth", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), bandwidth=0.0),
      "bandwidth must be a single positive number"),
    C("NW nan bandwidth", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3),
                                                  bandwidth=float("nan")), "bandwidth must be a single positive"),
    C("NW str bandwidth", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), bandwidth="1"),
      "bandwidth must be a single positive number"),
    C("NW tensor bandwidth shape", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3),
                                                           bandwidth=torch.ones(2)), "single positive number"),
    C("NW negative tensor bandwidth", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3),
                                                              bandwidth=torch.tensor(-1.0)), "single positive number"),
    C("NW kernel shape", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3),
                                                 lambda u: u.sum(1)), "returned shape"),
    C("NW negative kernel", lambda: nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), lambda u: u - 1),
      "negative values"),
    C("NWKernelRegression boxcar", lambda: NWKernelRegression(kernel="boxcar"), "useful gradient"),
    C("NWKernelRegression zero", lambda: NWKernelRegression(0.0), "init_w must be positive"),
    C("NWKernelRegression str", lambda: NWKernelRegression("1"), "init_w must be positive"),
    C("NWKernelRegression forward", lambda: NWKernelRegression()(torch.zeros(2, 1), torch.zeros(3), torch.zeros(3)),
      "queries must be 1-D"),
    # ------------------------------------------------------- transformer
    C("FFN zero hiddens", lambda: PositionWiseFFN(0, 8), "ffn_num_hiddens must be an int >= 1"),
    C("FFN activation", lambda: PositionWiseFFN(8, 8, activation="tanh"), "activation must be one of"),
    C("FFN lazy size changed", lambda: FFN(torch.zeros(1, 2, 6)), "X must have 8 features"),
    C("FFN given size mismatch", lambda: PositionWiseFFN(16, 8, ffn_num_inputs=4)(torch.zeros(1, 2, 8)),
      "X must have 4 features"),
    C("AddNorm broadcast", lambda: AddNorm(8, 0.0)(torch.zeros(2, 3, 8), torch.zeros(2, 1, 8)), "one shape"),
    C("AddNorm dropout", lambda: AddNorm(8, 1.2), "dropout must be a probability"),
    C("encoder block X 2-D", lambda: ENC_BLK(torch.zeros(3, 8)), r"X must be a floating-point tensor \(B, T, 8\)"),
    C("encoder block wrong D", lambda: ENC_BLK(torch.zeros(1, 3, 6)), r"\(B, T, 8\)"),
    C("encoder block token ids", lambda: ENC_BLK(ids(1, 3)), "floating-point tensor"),
    C("encoder block lens", lambda: ENC_BLK(torch.zeros(2, 3, 8), torch.tensor([4, 1])), r"valid_lens must lie in \[0, 3\]"),
    C("encoder block heads", lambda: TransformerEncoderBlock(8, 16, 3, 0.0), "num_heads must divide"),
    C("encoder block norm_first int", lambda: TransformerEncoderBlock(8, 16, 2, 0.0, norm_first=1),
      "norm_first must be True or False"),
    C("encoder vocab 0", lambda: TransformerEncoder(0, 8, 16, 2, 1, 0.0), "vocab_size must be an int >= 1"),
    C("encoder num_blks 0", lambda: TransformerEncoder(5, 8, 16, 2, 0, 0.0), "num_blks must be an int >= 1"),
    C("encoder vocab bool", lambda: TransformerEncoder(True, 8, 16, 2, 1, 0.0), "vocab_size must be an int >= 1"),
    C("encoder odd hiddens", lambda: TransformerEncoder(5, 7, 16, 1, 1, 0.0), "positive even int"),
    C("encoder id too large", lambda: ENC(with_value(ids(2, 5), (1, 3), NV)),
      rf"token ids must be in \[0, {NV}\) for a vocabulary of {NV} tokens, got {NV} at batch 1, position 3"),
    C("encoder negative id", lambda: ENC(with_value(ids(2, 5), (0, 0), -1)), r"got -1 at batch 0, position 0"),
    C("encoder float ids", lambda: ENC(ids(2, 5, dtype=torch.float32)), "integer dtype"),
    C("encoder 1-D ids", lambda: ENC(torch.tensor([1, 2, 3])), r"shape \(B, T\)"),
    C("encoder too long", lambda: ENC(ids(1, 13)), "max_len=12"),
    C("encoder lens batch", lambda: ENC(ids(2, 5), torch.tensor([5, 5, 5])), "must have B = 2"),
    C("encoder lens too long", lambda: ENC(ids(2, 5), torch.tensor([6, 5])), r"valid_lens must lie in \[0, 5\]"),
    C("shared embedding wrong size", lambda: TransformerEncoder(5, 8, 16, 2, 1, 0.0, embedding=nn.Embedding(6, 8)),
      r"nn.Embedding\(5, 8\)"),
    C("decoder state None", lambda: DEC(ids(2, 1), None), "call decoder.init_state"),
    C("decoder state wrong", lambda: DEC(ids(2, 1), [torch.zeros(2, 4, 8)]), "decoder state must be"),
    C("decoder id too large", lambda: DEC(with_value(ids(2, 1), (1, 0), NV + 3), STATE),
      rf"token ids must be in \[0, {NV}\).*got {NV + 3} at batch 1, position 0"),
    C("decoder batch mismatch", lambda: DEC(ids(3, 1), STATE),
      "decoder state was built for a batch of 2 sequences.*target holds 3"),
    C("decoder batch mismatch sdpa", lambda: _sdpa(TransformerDecoder(NV, 8, 16, 2, 1, 0.0))(ids(3, 2), STATE),
      "built for a batch of 2 sequences.*holds 3"),
    C("decoder cache batch mismatch", lambda: DEC(ids(1, 1), [torch.zeros(1, 4, 8), None, DEC(ids(2, 1), STATE)[1][2]]),
      "batch of 2 sequences \\(the state's cache\\).*holds 1"),
    C("decoder too long", lambda: DEC(ids(2, 13), STATE), "max_len=12"),
    C("decoder block batch mismatch", lambda: DEC_BLK(torch.zeros(3, 1, 8), STATE), "built for a batch of 2"),
    C("decoder block wrong D", lambda: DEC_BLK(torch.zeros(2, 1, 6), STATE), r"\(B, T, 8\)"),
    C("init_state wrong D", lambda: DEC.init_state(torch.zeros(2, 4, 6)), r"encoder's outputs \(B, Ts, 8\)"),
    C("init_state RNN outputs", lambda: DEC.init_state(RNN_OUT), "encoder's outputs"),
    C("init_state lens batch", lambda: DEC.init_state(torch.zeros(2, 4, 8), torch.tensor([4, 4, 4])),
      r"enc_valid_lens must be None or a tensor \(B,\) with B = 2"),
    C("init_state lens too long", lambda: DEC.init_state(torch.zeros(2, 4, 8), torch.tensor([5, 4])),
      r"valid_lens must lie in \[0, 4\]"),
    C("init_state lens list", lambda: DEC.init_state(torch.zeros(2, 4, 8), [4, 4]), "enc_valid_lens must be None"),
    C("build shared sizes", lambda: build_transformer(5, 6, 8, 16, 2, 1, 0.0, shared_embedding=True),
      "shared_embedding needs one vocabulary"),
    C("build tie str", lambda: build_transformer(5, 6, 8, 16, 2, 1, 0.0, tie_weights="yes"),
      "tie_weights must be True or False"),
    C("build tgt id too large", lambda: MODEL(ids(2, 5), with_value(ids(2, 4), (0, 2), NV), torch.tensor([5, 3])),
      r"TransformerDecoder: token ids must be in \[0, " + str(NV)),
    C("build src/tgt batch", lambda: MODEL(ids(2, 5), ids(3, 4), torch.tensor([5, 3])), "built for a batch of 2"),
    C("count_parameters str", lambda: count_parameters("model"), "expects a torch.nn.Module", TypeError),
    C("count_parameters lazy", lambda: count_parameters(nn.LazyLinear(3)), "not materialized yet"),
    # ------------------------------------------------------- seq2seq
    C("rnn encoder vocab 0", lambda: S_.Seq2SeqEncoder(0, 4, 8, 1), "vocab_size must be an int >= 1"),
    C("rnn encoder layers 0", lambda: S_.Seq2SeqEncoder(5, 4, 8, 0), "num_layers must be an int >= 1"),
    C("rnn encoder odd bidirectional", lambda: S_.Seq2SeqEncoder(5, 4, 7, 1, bidirectional=True), "odd 7"),
    C("rnn encoder float ids", lambda: RNN_ENC(ids(2, 5, dtype=torch.float32)), "integer dtype"),
    C("rnn encoder id too large", lambda: RNN_ENC(with_value(ids(2, 5), (0, 4), NV)), rf"in \[0, {NV}\)"),
    C("rnn encoder 3-D", lambda: RNN_ENC(torch.zeros(2, 3, 4, dtype=torch.long)), r"shape \(B, T\)"),
    C("rnn encoder zero lens", lambda: RNN_ENC(ids(2, 5), torch.tensor([0, 5])), r"valid_lens must hold lengths in \[1, 5\]"),
    C("rnn encoder lens too long", lambda: RNN_ENC(ids(2, 5), torch.tensor([6, 5])), r"valid_lens must hold lengths in \[1, 5\]"),
    C("rnn encoder lens batch", lambda: RNN_ENC(ids(2, 5), torch.tensor([5])), r"valid_lens must be None or .*B = 2"),
    C("rnn decoder batch mismatch", lambda: RNN_DEC(ids(3, 2), RNN_DEC.init_state(RNN_OUT)),
      "built for a batch of 2 sequences.*holds 3"),
    C("rnn decoder id too large", lambda: RNN_DEC(with_value(ids(2, 2), (0, 0), NV), RNN_DEC.init_state(RNN_OUT)),
      rf"in \[0, {NV}\)"),
    C("bahdanau batch mismatch", lambda: BAH_DEC(ids(1, 2), BAH_DEC.init_state(RNN_OUT)),
      "built for a batch of 2 sequences.*holds 1"),
    C("bahdanau float ids", lambda: BAH_DEC(ids(2, 2, dtype=torch.float32), BAH_DEC.init_state(RNN_OUT)),
      "integer dtype"),
    # ------------------------------------------------------- training
    C("shift_right 1-D", lambda: TR.shift_right(torch.tensor([1, 2]), 1), r"tgt of shape \(B, T\)"),
    C("shift_right float", lambda: TR.shift_right(torch.zeros(2, 3), 1), "integer dtype"),
    C("shift_right bos str", lambda: TR.shift_right(ids(2, 3), "<bos>"), "bos must be an int"),
    C("ce label == V", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), with_value(ids(2, 3, high=5), (1, 1), 5),
                                                 torch.tensor([3, 3])),
      r"tgt must be in \[0, 5\) at the real positions, for a vocabulary of 5 tokens, got 5 at batch 1, position 1"),
    C("ce label -100", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), with_value(ids(2, 3, high=5), (0, 0), -100),
                                                 torch.tensor([3, 3])), r"got -100 at batch 0, position 0"),
    C("ce float targets", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), torch.zeros(2, 3), torch.tensor([3, 3])),
      "integer dtype"),
    C("ce shapes", lambda: TR.masked_ce_loss(torch.zeros(2, 4, 5), ids(2, 3, high=5), torch.tensor([3, 3])),
      r"do not match targets"),
    C("ce 2-D logits", lambda: TR.masked_ce_loss(torch.zeros(2, 5), ids(2, 3, high=5), torch.tensor([3, 3])),
      r"logits must be a floating-point tensor \(B, Tt, V\)"),
    C("ce lens too long", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), torch.tensor([4, 3])),
      r"tgt_valid_len must hold lengths in \[0, 3\] \(Tt = 3 target positions\), got 4 at index 0"),
    C("ce negative lens", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), torch.tensor([-1, 3])),
      r"tgt_valid_len must hold lengths in .*got -1"),
    C("ce lens shape", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), torch.tensor([3])),
      r"tgt_valid_len must be a tensor \(B,\) with B = 2"),
    C("ce smoothing 1", lambda: TR.masked_ce_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), torch.tensor([3, 3]), 1.0),
      r"label_smoothing must be in \[0, 1\)"),
    C("warmup 0", lambda: TR.warmup_schedule(0), "warmup_steps must be an int >= 1"),
    C("warmup str", lambda: TR.linear_warmup("10"), "warmup_steps must be an int >= 1"),
    C("warmup float", lambda: TR.linear_warmup(2.5), "warmup_steps must be an int >= 1"),
    # fit: checked before training, with a loader that would train
    C("fit epochs 0", lambda: _fit(num_epochs=0), "num_epochs must be an int >= 1"),
    C("fit epochs float", lambda: _fit(num_epochs=1.5), "num_epochs must be an int >= 1"),
    C("fit lr 0", lambda: _fit(lr=0.0), "lr must be a finite number > 0"),
    C("fit lr nan", lambda: _fit(lr=float("nan")), "lr must be a finite number > 0"),
    C("fit grad_clip 0", lambda: _fit(grad_clip=0), "grad_clip must be a finite number > 0"),
    C("fit grad_clip negative", lambda: _fit(grad_clip=-1.0), "grad_clip must be a finite number > 0"),
    C("fit seed negative", lambda: _fit(seed=-1), "seed must be an int >= 0"),
    C("fit patience without valid_fn", lambda: _fit(patience=2), "early stopping needs a valid_fn"),
    C("fit patience 0", lambda: _fit(patience=0, valid_fn=lambda m: 1.0), "patience an int >= 1"),
    C("fit time_budget 0", lambda: _fit(time_budget=0), "time_budget must be a finite number > 0"),
    C("fit schedule negative", lambda: _fit(schedule=lambda step: -1.0), r"schedule\(1\) must be a finite number >= 0"),
    C("fit schedule not callable", lambda: _fit(schedule=0.5), "schedule must be a function", TypeError),
    C("fit vocab without bos", lambda: _fit(tgt_vocab=BARE), "needs the tokens <bos>.*lacks <bos>"),
    C("fit empty loader", lambda: _fit(loader=[]), "loader has no batch"),
    C("fit 3-tuples", lambda: _fit(loader=[(ids(2, 3), torch.tensor([3, 3]), ids(2, 3))]),
      r"fit expects batches \(src, src_valid_len, tgt, tgt_valid_len\), got a tuple of 3 items"),
    C("fit model str", lambda: _fit(model="model"), "expects a torch.nn.Module", TypeError),
    C("fit device gpu", lambda: _fit(device="gpu"), "device must be a device such as 'cpu' or 'cuda', got 'gpu'"),
    C("fit device meta", lambda: _fit(device="meta"), "device='meta' holds no values"),
    C("fit loader int", lambda: _fit(loader=5), "loader must be a DataLoader", TypeError),
    C("fit nan score", lambda: _fit(valid_fn=lambda m: float("nan")), "valid_fn must return a finite number.*nan"),
    C("fit str score", lambda: _fit(valid_fn=lambda m: "good"), "valid_fn must return a finite number.*'good'"),
    C("fit restore_best int", lambda: _fit(restore_best=1), "restore_best must be True or False"),
    C("fit empty targets", lambda: _fit(loader=[(ids(2, 3), torch.tensor([3, 3]), ids(2, 3), torch.tensor([0, 0]))]),
      "targets hold no token"),
    # ------------------------------------------------------- decoding
    C("greedy max_steps 0", lambda: D_.greedy_decode(MODEL, ["the", "cat"], VOCAB, VOCAB, max_steps=0),
      "max_steps must be an int >= 1"),
    C("greedy max_steps -1", lambda: D_.greedy_decode(MODEL, ["the"], VOCAB, VOCAB, max_steps=-1),
      "max_steps must be an int >= 1"),
    C("greedy str sentence", lambda: D_.greedy_decode(MODEL, "the cat", VOCAB, VOCAB),
      "tokens must be a list of tokens.*split", TypeError),
    C("greedy vocab without eos", lambda: D_.greedy_decode(MODEL, ["the"], BARE, VOCAB), "lacks <eos>"),
    C("translate max_steps 0", lambda: D_.translate(MODEL, [["the"]], VOCAB, VOCAB, max_steps=0),
      "max_steps must be an int >= 1"),
    C("translate batch 0", lambda: D_.translate(MODEL, [["the"]], VOCAB, VOCAB, batch_size=0),
      "batch_size must be an int >= 1"),
    C("translate str sentences", lambda: D_.translate(MODEL, ["the cat", "a dog"], VOCAB, VOCAB),
      r"sentences\[0\] must be a list of tokens", TypeError),
    C("translate one str", lambda: D_.translate(MODEL, "the cat", VOCAB, VOCAB), "sentences must be a list", TypeError),
    C("translate tgt without bos", lambda: D_.translate(MODEL, [["the"]], VOCAB, BARE), "lacks <bos>, <eos>"),
    C("beam max_steps -1", lambda: D_.beam_search(MODEL, ["the"], VOCAB, VOCAB, max_steps=-1),
      "max_steps must be an int >= 1"),
    C("beam max_steps 0", lambda: D_.beam_search(MODEL, ["the"], VOCAB, VOCAB, max_steps=0),
      "max_steps must be an int >= 1"),
    C("beam size 0", lambda: D_.beam_search(MODEL, ["the"], VOCAB, VOCAB, beam_size=0), "beam_size must be an int >= 1"),
    C("beam larger than vocabulary", lambda: D_.beam_search(MODEL, ["the"], VOCAB, VOCAB, beam_size=NV + 1),
      rf"beam_size must be at most the target vocabulary's size, {NV}, got {NV + 1}"),
    C("beam alpha nan", lambda: D_.beam_search(MODEL, ["the"], VOCAB, VOCAB, alpha=float("nan")),
      "alpha must be a finite number"),
    C("beam str", lambda: D_.beam_search(MODEL, "the", VOCAB, VOCAB), "tokens must be a list of tokens", TypeError),
    C("bleu decode", lambda: D_.evaluate_bleu(MODEL, [], VOCAB, VOCAB, decode="sample"), "decode must be 'greedy'"),
    C("bleu token lists", lambda: D_.evaluate_bleu(MODEL, [["the", "cat"]], VOCAB, VOCAB),
      "expects course_lib.corpus Sentence objects", TypeError),
    C("length_buckets unsorted", lambda: D_.length_buckets([], (9, 6)), "edges must be increasing"),
    C("length_buckets zero", lambda: D_.length_buckets([], (0, 6)), "edges must be increasing positive"),
    # ------------------------------------------------------- text
    C("Vocab min_freq 0", lambda: T_.Vocab(WORDS, min_freq=0), "min_freq must be an int >= 1"),
    C("Vocab from a str", lambda: T_.Vocab("the cat sat"), "tokens must be a list of tokens", TypeError),
    C("Vocab reserved str", lambda: T_.Vocab(WORDS, reserved_tokens="<pad>"), "reserved_tokens must be a list",
      TypeError),
    C("Vocab int tokens", lambda: T_.Vocab([1, 2, 3]), "tokens must be str", TypeError),
    C("Vocab[int]", lambda: VOCAB[5], r"maps a token \(str\) or a list of tokens to ids, got int 5.*to_tokens",
      TypeError),
    C("Vocab[tensor]", lambda: VOCAB[torch.tensor([[1, 2], [3, 4]])], r"got Tensor.*to_tokens", TypeError),
    C("Vocab[None]", lambda: VOCAB[None], "got NoneType None", TypeError),
    C("Vocab[list of int]", lambda: VOCAB[[1, 2]], "got int 1", TypeError),
    C("to_tokens -1", lambda: VOCAB.to_tokens(-1), rf"token id must be in \[0, {NV}\).*got -1"),
    C("to_tokens len", lambda: VOCAB.to_tokens(NV), rf"token id must be in \[0, {NV}\).*got {NV}"),
    C("to_tokens list with -1", lambda: VOCAB.to_tokens([3, -1]), "got -1"),
    C("to_tokens float", lambda: VOCAB.to_tokens(1.5), "expects an int id", TypeError),
    C("to_tokens float tensor", lambda: VOCAB.to_tokens(torch.tensor([1.0, 2.0])), "integer ids", TypeError),
    C("to_tokens str", lambda: VOCAB.to_tokens("cat"), "expects an int id", TypeError),
    C("to_tokens 2-D out of range", lambda: VOCAB.to_tokens(torch.tensor([[1, 2], [3, NV]])), f"got {NV}"),
    C("Vocab.load missing key", lambda: T_.Vocab.load(bad_file(_tmp(), "v1.json", b'{"tokens": []}')),
      "not a saved Vocab"),
    C("Vocab.load damaged JSON", lambda: T_.Vocab.load(bad_file(_tmp(), "v2.json", b'{"idx_to_token": ["<unk>", ')),
      "not a saved Vocab"),
    C("Vocab.load binary", lambda: T_.Vocab.load(bad_file(_tmp(), "v3.json", bytes(range(256)))), "not a saved Vocab"),
    C("Vocab.load duplicates", lambda: T_.Vocab.load(bad_file(_tmp(), "v4.json",
                                                              b'{"idx_to_token": ["<unk>", "a", "a"]}')),
      "not a saved Vocab"),
    C("Vocab.load no unk", lambda: T_.Vocab.load(bad_file(_tmp(), "v5.json", b'{"idx_to_token": ["a"]}')),
      "not a saved Vocab"),
    C("Vocab.load numbers", lambda: T_.Vocab.load(bad_file(_tmp(), "v6.json", b'{"idx_to_token": ["<unk>", 3]}')),
      "not a saved Vocab"),
    C("Vocab.save into a file", lambda: VOCAB.save(bad_file(_tmp(), "afile", b"x") / "v.json"),
      "cannot write .*afile/v.json.*Not a directory", OSError),
    C("Vocab.save missing folder", lambda: VOCAB.save(_tmp() / "no" / "v.json"),
      "cannot write .*no/v.json.*No such file", OSError),
    C("Vocab.save onto a folder", lambda: VOCAB.save(_tmp()), "cannot write .*existing folder", OSError),
    C("save_pretrained missing folder", lambda: B_.save_pretrained(BERT, VOCAB, _tmp() / "no" / "m.pt"),
      "cannot write .*no/m.pt", OSError),
    C("pad_batch too long", lambda: T_.pad_batch([[1, 2, 3]], 0, num_steps=2), "does not fit num_steps=2"),
    C("pad_batch negative steps", lambda: T_.pad_batch([[1]], 0, num_steps=-1), "num_steps must be an int >= 0"),
    C("pad_batch str tokens", lambda: T_.pad_batch([["a", "b"]], 0), "sequences of int ids", TypeError),
    C("pad_batch str pad", lambda: T_.pad_batch([[1]], "<pad>"), "pad must be an int"),
    C("TranslationDataset strings", lambda: T_.TranslationDataset([("the cat", "le chat")], VOCAB, VOCAB),
      "source tokens of item 0 must be a list of tokens", TypeError),
    C("TranslationDataset triples", lambda: T_.TranslationDataset([(["a"], ["b"], ["c"])], VOCAB, VOCAB),
      r"expects \(source tokens, target tokens\) pairs"),
    C("TaggingDataset lengths", lambda: T_.TaggingDataset([(["a", "b"], ["X"])], VOCAB, VOCAB), "2 tokens but 1 tags"),
    C("TaggingDataset str", lambda: T_.TaggingDataset([("a b", ["X", "Y"])], VOCAB, VOCAB), "must be a list of tokens",
      TypeError),
    C("ClassificationDataset float label", lambda: T_.ClassificationDataset([(["a"], 2.7)], VOCAB),
      r"labels must be class indices \(ints >= 0\); item 0 has 2.7"),
    C("ClassificationDataset str label", lambda: T_.ClassificationDataset([(["a"], "3")], VOCAB), "class indices"),
    C("ClassificationDataset negative", lambda: T_.ClassificationDataset([(["a"], -1)], VOCAB), "class indices"),
    C("loader batch 0", lambda: T_.loader(T_.ClassificationDataset([(["a"], 0)], VOCAB), 0),
      "batch_size must be an int >= 1"),
    C("loader shuffle str", lambda: T_.loader(T_.ClassificationDataset([(["a"], 0)], VOCAB), 1, shuffle="no"),
      "shuffle must be True or False, got 'no'"),
    C("loader seed float", lambda: T_.loader(T_.ClassificationDataset([(["a"], 0)], VOCAB), 1, seed=0.5),
      "seed must be an int, got 0.5"),
    C("corpus loader shuffle str", lambda: _corpus().loader("train", 4, shuffle="no"),
      "shuffle must be True or False, got 'no'"),
    C("dataset loader shuffle int", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB).loader(2, shuffle=0),
      "shuffle must be True or False, got 0"),
    C("Vocab sentences and tokens mixed", lambda: T_.Vocab([["the", "cat"], "dog"]),
      "not a mix: item 1 is str 'dog'", TypeError),
    C("Vocab three levels", lambda: T_.Vocab([[["the"]]]), r"tokens must be str .*got list \['the'\]", TypeError),
    C("bleu lengths", lambda: T_.bleu([["a"]], [["a"], ["b"]]), "1 hypotheses but 2 references"),
    C("bleu no sentence", lambda: T_.bleu([], []), "BLEU needs at least one sentence"),
    C("evaluate_bleu no sentence", lambda: D_.evaluate_bleu(MODEL, [], VOCAB, VOCAB), "BLEU needs at least one sentence"),
    C("bleu strings", lambda: T_.bleu(["le chat"], ["le chat"]), r"hypotheses\[0\] must be a list of tokens", TypeError),
    # ------------------------------------------------------- corpus
    C("load_corpus 8", lambda: C_.load_corpus(8), "leaves the train.*split.*empty.*num_sentences >= 20"),
    C("load_corpus 0", lambda: C_.load_corpus(0), "num_sentences must be an int >= 1"),
    C("load_corpus str", lambda: C_.load_corpus("100"), "num_sentences must be an int >= 1"),
    C("load_corpus min_freq 0", lambda: C_.load_corpus(30, min_freq=0), "min_freq must be an int >= 1"),
    C("generate float", lambda: C_.generate_documents(2.5), "num_sentences must be an int >= 1"),
    C("split fractions", lambda: C_.split_sentences([], valid=0.6, test=0.5), "valid \\+ test must be below 1"),
    C("split fraction 1", lambda: C_.split_sentences([], valid=1.0), r"valid must be a fraction in \[0, 1\)"),
    C("probe unknown word", lambda: C_.probe_set([], "cat"), "not one of the ambiguous words"),
    C("corpus split name", lambda: _corpus().split("dev"), "unknown split 'dev'"),
    C("corpus loader batch 0", lambda: _corpus().loader("train", 0), "batch_size must be an int >= 1"),
    C("corpus probe_sets 0", lambda: _corpus().probe_sets(0), "per_sense must be an int >= 1"),
    # ------------------------------------------------------- datasets
    C("fetch unknown", lambda: DS.fetch("imagenet", _tmp()), "unknown dataset 'imagenet'; expected one of"),
    C("fetch timeout negative", lambda: DS.fetch("fra-eng", _tmp(), timeout=-1), "timeout must be a finite number > 0"),
    C("fetch timeout 0", lambda: DS.fetch("fra-eng", _tmp(), timeout=0), "timeout must be a finite number > 0"),
    C("fetch folder is a file", lambda: DS.fetch("fra-eng", bad_file(_tmp(), "notafolder", b"x")), "is a file"),
    C("fetch wrong hash placed by hand",
      lambda: DS.fetch("wikitext-2", _placed(), DS.Remote("wikitext-2-v1.zip", "0" * 40, ("http://127.0.0.1:9/x",))),
      "SHA-1 is [0-9a-f]{40}, expected 0{40}", DS.DownloadError),
    C("extract missing", lambda: DS.extract(_tmp() / "missing.zip", _tmp()), "is not a file"),
    C("extract not an archive", lambda: DS.extract(bad_file(_tmp(), "x.zip", b"not a zip"), _tmp()),
      "neither a zip nor a tar"),
    C("wikitext split", lambda: DS.load_wikitext2("dev", _tmp()),
      r"unknown WikiText-2 split 'dev'; expected one of \('train', 'valid', 'test'\)"),
    C("read wikitext split", lambda: DS.read_wikitext2(_tmp(), "validation"), "unknown WikiText-2 split"),
    C("read fra-eng missing", lambda: DS.read_fra_eng(_tmp()), "not found: extract fra-eng.zip"),
    C("read fra-eng max_pairs", lambda: DS.read_fra_eng(_tmp(), max_pairs=-1), "max_pairs must be None or an int >= 0"),
    # ------------------------------------------------------- BERT
    C("tokens_and_segments str", lambda: B_.get_tokens_and_segments("the cat"), "tokens_a must be a list of tokens",
      TypeError),
    C("tokens_and_segments str b", lambda: B_.get_tokens_and_segments(["a"], "b c"), "tokens_b must be a list",
      TypeError),
    C("trim_pair too short", lambda: B_.trim_pair(["a"], ["b"], 4), "max_len must be an int >= 5"),
    C("BERT vocab 0", lambda: B_.BERTModel(0, 8, 16, 2, 1, 0.0), "vocab_size must be an int >= 1"),
    C("BERT heads", lambda: B_.BERTModel(NV, 8, 16, 3, 1, 0.0), "num_heads must divide"),
    C("BERT eps negative", lambda: B_.BERTModel(NV, 8, 16, 2, 1, 0.0, eps=-1.0), "eps must be a finite number > 0"),
    C("BERT eps 0", lambda: B_.BERTModel(NV, 8, 16, 2, 1, 0.0, eps=0), "eps must be a finite number > 0, got 0"),
    C("MaskLM eps nan", lambda: B_.MaskLM(NV, 8, eps=float("nan")), "eps must be a finite number > 0"),
    C("AddNorm eps negative", lambda: AddNorm(8, 0.0, eps=-1e-5), "eps must be a finite number > 0"),
    C("encoder block eps str", lambda: TransformerEncoderBlock(8, 16, 2, 0.0, eps="1e-5"), "eps must be a finite number"),
    C("BERT activation", lambda: B_.BERTModel(NV, 8, 16, 2, 1, 0.0, activation="tanh"), "activation must be one of"),
    C("BERT tie str", lambda: B_.BERTModel(NV, 8, 16, 2, 1, 0.0, tie_weights="no"), "tie_weights must be True or False"),
    C("BERT segments 0", lambda: B_.BERTModel(NV, 8, 16, 2, 1, 0.0, num_segments=0), "num_segments must be an int >= 1"),
    C("BERT id too large", lambda: BERT(with_value(ids(2, 5), (1, 2), NV)),
      rf"BERTEncoder: token ids must be in \[0, {NV}\) for a vocabulary of {NV} tokens, got {NV} at batch 1, position 2"),
    C("BERT negative id", lambda: BERT(with_value(ids(2, 5), (0, 1), -5)), "got -5 at batch 0, position 1"),
    C("BERT float ids", lambda: BERT(ids(2, 5, dtype=torch.float32)), "integer dtype"),
    C("BERT too long", lambda: BERT(ids(1, 13)), "exceed max_len=12"),
    C("BERT float segments", lambda: BERT(ids(2, 5), torch.zeros(2, 5)), "segments must be integer segment ids"),
    C("BERT bool segments", lambda: BERT(ids(2, 5), torch.zeros(2, 5, dtype=torch.bool)), "integer segment ids"),
    C("BERT segment 2", lambda: BERT(ids(2, 5), with_value(torch.zeros(2, 5, dtype=torch.long), (1, 4), 2)),
      r"segments must be in \[0, 2\) \(num_segments=2\), got 2 at batch 1, position 4"),
    C("BERT negative segment", lambda: BERT(ids(2, 5), with_value(torch.zeros(2, 5, dtype=torch.long), (0, 0), -1)),
      "segments must be in"),
    C("BERT segments shape", lambda: BERT(ids(2, 5), torch.zeros(2, 4, dtype=torch.long)),
      r"segments must have the tokens' shape \(2, 5\)"),
    C("BERT lens batch", lambda: BERT(ids(2, 5), None, torch.tensor([5])), "must have B = 2"),
    C("BERT position = T", lambda: BERT(ids(2, 5), None, None, torch.tensor([[1, 5], [0, 2]])),
      r"prediction positions must be in \[0, 5\) \(T = 5 positions\), got 5 at batch 0, position 1"),
    C("BERT negative position", lambda: BERT(ids(2, 5), None, None, torch.tensor([[1, 2], [-1, 2]])),
      "got -1 at batch 1, position 0"),
    C("BERT float positions", lambda: BERT(ids(2, 5), None, None, torch.tensor([[1.0, 2.0], [0.0, 2.0]])),
      r"positions must be an integer tensor \(B, P\)"),
    C("BERT 1-D positions", lambda: BERT(ids(2, 5), None, None, torch.tensor([1, 2])), r"\(B, P\) with B=2"),
    C("BERT positions batch", lambda: BERT(ids(2, 5), None, None, torch.tensor([[1, 2]])), r"\(B, P\) with B=2"),
    C("MaskLM lazy size changed", lambda: _masklm()(torch.zeros(1, 4, 6), torch.tensor([[0, 1]])),
      "X must have 8 features"),
    C("NSP 3-D", lambda: B_.NextSentencePred(8)(torch.zeros(2, 3, 8)), r"one vector per sequence, \(B, D\)"),
    C("NSP size", lambda: B_.NextSentencePred(8)(torch.zeros(2, 6)), "X must have 8 features"),
    C("gather 2-D X", lambda: B_.gather_positions(torch.zeros(5, 8), torch.tensor([[1]])), r"X must be a tensor \(B, T, D\)"),
    C("parameter count zero", lambda: B_.bert_parameter_count(0, 8, 16), "vocab_size must be an int >= 1"),
    C("parameter count float", lambda: B_.bert_parameter_count(10, 8.0, 16), "num_hiddens must be an int >= 1"),
    C("nsp generator seed", lambda: B_.nsp_pairs(DOCS, 0), "generator must be a torch.Generator", TypeError),
    C("fra-eng preprocess bytes", lambda: DS.preprocess_fra_eng(b"Go.\tVa !"), "expects the text of fra.txt as a str",
      TypeError),
    C("fra-eng tokenize None", lambda: DS.tokenize_fra_eng(None), "expects the preprocessed text as a str", TypeError),
    C("nsp one document", lambda: B_.nsp_pairs(DOCS[:1]), "at least 2 documents, got 1"),
    C("nsp one-sentence documents", lambda: B_.nsp_pairs([[["a", "b"]], [["c"]], [["d"]]]),
      "documents of 2 or more sentences.*all 3 documents have fewer"),
    C("nsp str sentences", lambda: B_.nsp_pairs([["the cat sat", "it purred"], ["a dog"]]),
      "sentence 0 of document 0 must be a list of tokens", TypeError),
    C("nsp str document", lambda: B_.nsp_pairs(["the cat sat", "a dog"]), "document 0 is a str", TypeError),
    C("nsp trim max_len", lambda: B_.nsp_pairs(DOCS, max_len=4, trim=True), "max_len must be an int >= 5"),
    C("nsp trim int", lambda: B_.nsp_pairs(DOCS, trim=1), "trim must be True or False"),
    C("mask_tokens no <mask>", lambda: B_.mask_tokens(ids(2, 5, high=len(BARE)), torch.tensor([5, 5]), BARE),
      "mask_tokens needs the tokens <mask>.*lacks <mask>.*silently become <unk>"),
    C("mask_tokens ratio 0", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5, 5]), VOCAB, ratio=0.0),
      r"ratio must be in \(0, 1\)"),
    C("mask_tokens ids too large", lambda: B_.mask_tokens(with_value(ids(2, 5), (0, 0), NV), torch.tensor([5, 5]), VOCAB),
      rf"token ids must be in \[0, {NV}\)"),
    C("mask_tokens lens too long", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([6, 5]), VOCAB),
      r"valid_lens must hold lengths in \[0, 5\] \(T = 5 positions\), got 6 at index 0"),
    C("mask_tokens lens count", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5]), VOCAB),
      "valid_lens must be an integer tensor of N = 2 lengths"),
    C("mask_tokens float lens", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5.0, 5.0]), VOCAB),
      "valid_lens must be an integer tensor"),
    C("mask_tokens num_preds 0", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5, 5]), VOCAB, num_preds=0),
      "num_preds must be an int >= 1"),
    C("mask_tokens generator", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5, 5]), VOCAB, generator=0),
      "generator must be a torch.Generator", TypeError),
    C("mask_tokens not a vocab", lambda: B_.mask_tokens(ids(2, 5), torch.tensor([5, 5]), {"<mask>": 1}),
      "expects a course_lib.text.Vocab", TypeError),
    C("dataset vocab without <cls>", lambda: B_.BERTPretrainingDataset(DOCS, BARE),
      "needs the tokens <pad>, <cls>, <sep>, <mask>.*lacks <cls>, <sep>, <mask>"),
    C("dataset one-sentence documents", lambda: B_.BERTPretrainingDataset([[["a"]], [["b"]]], VOCAB),
      "documents of 2 or more sentences"),
    C("dataset max_len 3", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB, max_len=3), "max_len must be an int >= 4"),
    C("dataset nothing fits", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB, max_len=6), "no sentence pair fits max_len=6"),
    C("dataset seed negative", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB, seed=-1), "seed must be an int >= 0"),
    C("dataset batch out of range", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB).batch([0, 99]),
      r"indices must be in \[0, \d+\)"),
    C("dataset loader batch 0", lambda: B_.BERTPretrainingDataset(DOCS, VOCAB).loader(0), "batch_size must be an int >= 1"),
    C("pretraining data source", lambda: B_.load_pretraining_data(4, source="wiki"), "source must be 'corpus' or"),
    C("wikitext2 dataset split", lambda: B_.wikitext2_dataset("dev", folder=_tmp()), "unknown WikiText-2 split"),
    C("mlm loss label == V", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), with_value(ids(2, 3, high=5), (1, 2), 5),
                                                       torch.ones(2, 3)),
      r"labels must be in \[0, 5\) at the real prediction slots, for a vocabulary of 5 tokens, got 5 at batch 1, "
      r"position 2"),
    C("mlm loss negative label", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), with_value(ids(2, 3, high=5), (0, 0), -1),
                                                           torch.ones(2, 3)), "got -1 at batch 0, position 0"),
    C("mlm loss float labels", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), torch.zeros(2, 3), torch.ones(2, 3)),
      "integer labels"),
    C("mlm loss shapes", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), torch.ones(2, 4)),
      r"expected logits \(B, P, V\), integer labels and weights \(B, P\)"),
    C("mlm loss negative weight", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5),
                                                            with_value(torch.ones(2, 3), (0, 1), -1.0)),
      "weights must be finite and >= 0"),
    C("mlm loss nan weight", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5),
                                                       with_value(torch.ones(2, 3), (0, 1), float("nan"))),
      "weights must be finite and >= 0"),
    C("mlm loss reduction", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5), ids(2, 3, high=5), None, "max"),
      "reduction must be 'mean' or 'sum'"),
    C("mlm loss int logits", lambda: B_.masked_lm_loss(torch.zeros(2, 3, 5, dtype=torch.long), ids(2, 3, high=5)),
      r"logits must be a floating-point tensor \(B, P, V\)"),
    C("pretraining_loss nsp label 2", lambda: B_.pretraining_loss(BERT, *_nsp_batch(2)),
      r"nsp_labels must be in \[0, 2\) \(1: the true next sentence, 0: a random one\), got 2 at index 1"),
    C("pretraining_loss float nsp labels", lambda: B_.pretraining_loss(BERT, *_nsp_batch(1.0)),
      "nsp_labels must be an integer tensor"),
    C("encode_inputs str texts", lambda: B_.encode_inputs(VOCAB, ["the cat", "a dog"]), r"texts_a\[0\] must be a list",
      TypeError),
    C("encode_inputs pair count", lambda: B_.encode_inputs(VOCAB, [["a"], ["b"]], [["c"]]), "2 first texts but 1"),
    C("encode_inputs bare vocab", lambda: B_.encode_inputs(BARE, [["a"]]), "lacks <cls>, <sep>"),
    C("encode_tagging lengths", lambda: B_.encode_tagging(VOCAB, VOCAB, [(["a", "b"], ["X"])]), "2 tokens but 1 tags"),
    C("encode_tagging str", lambda: B_.encode_tagging(VOCAB, VOCAB, [("a b", "X Y")]), "must be a list of tokens",
      TypeError),
    C("classifier classes 0", lambda: B_.BERTClassifier(BERT, 0), "num_classes must be an int >= 1"),
    C("classifier not a model", lambda: B_.BERTClassifier("bert-base", 2), "expects a pretrained BERTModel", TypeError),
    C("tagger tags bool", lambda: B_.BERTTagger(BERT, True), "num_tags must be an int >= 1"),
    C("tagger encoder only", lambda: B_.BERTTagger(BERT.encoder, 3), "expects a pretrained BERTModel", TypeError),
    C("classifier id too large", lambda: B_.BERTClassifier(BERT, 2)(with_value(ids(2, 5), (0, 0), NV)),
      rf"token ids must be in \[0, {NV}\)"),
    C("from_huggingface not HF", lambda: B_.from_huggingface(BERT), "expected a Hugging Face BERT model"),
    C("save_pretrained vocab size", lambda: B_.save_pretrained(BERT, BARE, _tmp() / "m.pt"),
      f"vocabulary has {len(BARE)} tokens but the model's vocab_size is {NV}"),
    C("save_pretrained not a model", lambda: B_.save_pretrained(nn.Linear(2, 2), VOCAB, _tmp() / "m.pt"),
      "expects a BERTModel", TypeError),
    C("load_pretrained damaged", lambda: B_.load_pretrained(bad_file(_tmp(), "d.pt", b"\x80\x02garbage")),
      "not a readable course_lib BERT checkpoint"),
    C("load_pretrained state dict", lambda: B_.load_pretrained(_bare_state_dict()), "a bare state dict"),
    C("load_pretrained truncated", lambda: B_.load_pretrained(_truncated_checkpoint()), "not a readable"),
    C("load_pretrained missing", lambda: B_.load_pretrained(_tmp() / "none.pt"), "", FileNotFoundError),
    C("load_pretrained map_location gpu", lambda: B_.load_pretrained(_tmp() / "none.pt", map_location="gpu"),
      "map_location must be a device such as 'cpu' or 'cuda', got 'gpu'"),
    C("load_pretrained map_location int list", lambda: B_.load_pretrained(_tmp() / "none.pt", map_location=[0]),
      "map_location must be a device"),
    C("save_pretrained overwrite int", lambda: B_.save_pretrained(BERT, VOCAB, _tmp() / "m.pt", overwrite=1),
      "overwrite must be True or False, got 1"),
    C("save_pretrained onto an existing file", lambda: B_.save_pretrained(BERT, VOCAB, bad_file(_tmp(), "e.pt", b"x")),
      "e.pt' already exists; it was left as it is", FileExistsError),
    C("Vocab.save onto an existing file", lambda: VOCAB.save(bad_file(_tmp(), "e.json", b"x")),
      "e.json' already exists; it was left as it is", FileExistsError),
    C("tied BERT, untied weights", lambda: _tied_bert().load_state_dict(_untied_state()),
      "shares one tensor between 'encoder.token_embedding.weight' and 'mlm.mlp.3.weight'"),
    C("tied transformer, untied weights",
      lambda: build_transformer(NV, NV, 8, 16, 2, 1, 0.0, tie_weights=True).load_state_dict(MODEL.state_dict()),
      "shares one tensor between 'decoder.embedding.weight' and 'decoder.dense.weight'"),
    C("shared embedding, two embeddings",
      lambda: build_transformer(NV, NV, 8, 16, 2, 1, 0.0, shared_embedding=True).load_state_dict(MODEL.state_dict()),
      "shares one tensor between 'encoder.embedding.weight' and 'decoder.embedding.weight'"),
    # ------------------------------------------------------- plotting and benchmarks
    C("plot None", lambda: P_.plot(None), "got X=None"),
    C("plot x/y lengths", lambda: P_.plot([1, 2, 3], [1, 2]), "x has 3 points but y has 2"),
    C("plot legend", lambda: P_.plot([1, 2], [[1, 2], [2, 3]], legend=["a"]), "legend has 1 entries for 2 series"),
    C("plot 3-D", lambda: P_.plot(torch.zeros(2, 2, 2)), "1-D series"),
    C("heatmaps 5-D", lambda: P_.show_heatmaps(torch.zeros(1, 1, 1, 2, 2), "k", "q"), r"\(num_rows, num_cols, Q, K\)"),
    C("heatmaps empty", lambda: P_.show_heatmaps(torch.zeros(1, 1, 0, 3), "k", "q"), "at least one non-empty matrix"),
    C("heatmaps titles", lambda: P_.show_heatmaps(torch.zeros(1, 2, 2, 2), "k", "q", titles=["a"]),
      "1 titles for 2 columns"),
    C("alignment shape", lambda: P_.show_alignment(torch.zeros(2, 3), ["a", "b"], ["x", "y"]), "do not match 2 output"),
    C("to_tokens NumPy out of range", lambda: VOCAB.to_tokens(np.array([1, NV])), f"got {NV}"),
    C("loader without collate", lambda: T_.loader([1, 2, 3], 2), "with a collate method", TypeError),
    C("extract into a file", lambda: DS.extract(_zip(), bad_file(_tmp(), "target", b"x")), "is a file, not a folder"),
    C("cache_length without state", lambda: DEC.cache_length(None), "call decoder.init_state"),
    C("corpus probes unknown word", lambda: _corpus().probes("cat"), "not one of the ambiguous words"),
    C("special_token_ids not a vocab", lambda: B_.special_token_ids(["<cls>"]), "expects a course_lib.text.Vocab",
      TypeError),
    C("wikitext2_documents str", lambda: B_.wikitext2_documents("a b . c d"), "paragraphs must be a list", TypeError),
    C("wikitext2_documents str paragraphs", lambda: B_.wikitext2_documents(["a b . c d"]), "paragraph 0 is",
      TypeError),
    C("rnn init_state Transformer outputs", lambda: BAH_DEC.init_state(torch.zeros(2, 4, 8)),
      r"init_state expects the RNN encoder's \(outputs \(Ts, B, H\), state \(L, B, H\)\)"),
    C("rnn plain init_state", lambda: RNN_DEC.init_state(None), "init_state expects the RNN encoder's"),
    C("bahdanau enc_valid_lens too long", lambda: BAH_DEC.init_state(RNN_OUT, torch.tensor([6, 3])),
      r"enc_valid_lens must hold lengths in \[1, 5\] \(at least one token, at most Ts = 5\), got 6 at index 0"),
    C("bahdanau enc_valid_lens float", lambda: BAH_DEC.init_state(RNN_OUT, torch.tensor([5.0, 3.0])),
      r"enc_valid_lens must be None or an integer tensor \(B,\) with B = 2"),
    C("bahdanau enc_valid_lens batch", lambda: BAH_DEC.init_state(RNN_OUT, torch.tensor([5])),
      r"enc_valid_lens must be None or an integer tensor \(B,\) with B = 2"),
    C("bahdanau state of one item", lambda: BAH_DEC(ids(2, 2), [torch.zeros(2, 5, 8)]),
      "the decoder state must be the list of 3 items that Seq2SeqAttentionDecoder.init_state.*got list of 1 items"),
    C("rnn decoder state None", lambda: RNN_DEC(ids(2, 2), None),
      "the decoder state must be the list of 2 items that Seq2SeqDecoder.init_state.*got NoneType"),
    C("translate swapped vocabularies", lambda: D_.translate(_swapped_model(), [["the"]], VOCAB, BIG),
      rf"the model predicts over {NV} target tokens but tgt_vocab has {NV + 2} \(src_vocab has that size: are the "
      r"two vocabularies swapped\?\)"),
    C("greedy swapped vocabularies", lambda: D_.greedy_decode(_swapped_model(), ["the"], VOCAB, BIG),
      "are the two vocabularies swapped"),
    C("beam swapped vocabularies", lambda: D_.beam_search(_swapped_model(), ["the"], VOCAB, BIG),
      "are the two vocabularies swapped"),
    C("TranslationDataset no vocab", lambda: T_.TranslationDataset([(["a"], ["b"])], VOCAB, None),
      "expects course_lib.text.Vocab vocabularies, got NoneType", TypeError),
    C("TaggingDataset dict vocab", lambda: T_.TaggingDataset([(["a"], ["X"])], VOCAB, {"X": 0}),
      "expects course_lib.text.Vocab", TypeError),
    C("count_parameters trainable str", lambda: count_parameters(ENC, trainable_only="yes"),
      "trainable_only must be True or False"),
    C("fit vocab None", lambda: _fit(tgt_vocab=None), "expects a course_lib.text.Vocab", TypeError),
    C("greedy vocab None", lambda: D_.greedy_decode(MODEL, ["the"], None, VOCAB), "expects a course_lib.text.Vocab",
      TypeError),
    C("time_fn repeat 0", lambda: time_fn(lambda: None, repeat=0), "need repeat >= 1"),
    C("time_fn not callable", lambda: time_fn(3), "expects a function", TypeError),
    C("time_fn device gpu", lambda: time_fn(lambda: None, device="gpu"), "device must be a device such as 'cpu'"),
    C("time_fn repeat bool", lambda: time_fn(lambda: None, repeat=True), "need repeat >= 1"),
    C("peak_memory device gpu", lambda: peak_memory(lambda: None, device="gpu"), "device must be a device such as"),
    C("peak_memory not callable", lambda: peak_memory(None), "expects a function", TypeError),
]


_TMP: list[Path] = []


def _tmp() -> Path:
    return _TMP[0]


def _placed() -> Path:
    folder = _tmp() / "placed"
    folder.mkdir(exist_ok=True)
    (folder / "wikitext-2-v1.zip").write_bytes(b"a copy placed by hand")
    return folder


def _nsp_batch(label):
    """One pretraining batch of two examples whose second NSP label is ``label``."""
    data = B_.BERTPretrainingDataset(DOCS, VOCAB, max_len=12)
    batch = list(data.batch([0, 1]))
    batch[6] = torch.tensor([0, label]) if isinstance(label, int) else torch.tensor([0.0, label])
    return batch


def _zip() -> Path:
    import zipfile

    path = _tmp() / "data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a/b.txt", "text")
    return path


BIG = T_.Vocab(WORDS + ["zebra", "lion"])   # two more tokens than VOCAB


def _swapped_model():
    """A model from BIG's tokens to VOCAB's, called with the vocabularies in the wrong order (VOCAB, BIG)."""
    return build_transformer(len(BIG), NV, 8, 16, 2, 1, 0.0, max_len=40)


def _sdpa(module):
    module.impl = "sdpa"
    return module


def _masklm():
    m = B_.MaskLM(NV, 8)
    m(torch.zeros(1, 4, 8), torch.tensor([[0, 1]]))  # learns 8 inputs
    return m


def _tied_bert():
    return B_.BERTModel(NV, 8, 16, 2, 1, 0.0, max_len=12, tie_weights=True)


def _untied_state():
    state = B_.BERTModel(NV, 8, 16, 2, 1, 0.0, max_len=12).state_dict()
    assert not torch.equal(state["mlm.mlp.3.weight"], state["encoder.token_embedding.weight"])
    return state


def _bare_state_dict() -> Path:
    path = _tmp() / "state.pt"
    torch.save(BERT.state_dict(), path)
    return path


def _truncated_checkpoint() -> Path:
    path = _tmp() / "whole.pt"
    B_.save_pretrained(BERT, VOCAB, path)
    cut = _tmp() / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def _corpus():
    if not hasattr(_corpus, "value"):
        _corpus.value = C_.load_corpus(60)
    return _corpus.value


def _fit(model=None, loader=None, tgt_vocab=VOCAB, num_epochs=1, **kwargs):
    model = model if model is not None else build_transformer(NV, NV, 8, 16, 2, 1, 0.0)
    if loader is None:
        loader = [(ids(2, 4), torch.tensor([4, 3]), ids(2, 3), torch.tensor([3, 2]))]
    return TR.fit(model, loader, tgt_vocab, num_epochs, show=False, **kwargs)


@pytest.fixture(autouse=True)
def _temporary_folder(tmp_path):
    _TMP[:] = [tmp_path]
    yield


def test_there_are_many_cases():
    assert len(CASES) >= 250
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_raises_a_clear_error(case):
    with pytest.raises(case.exc) as err:
        case.fn()
    if case.exc is not OSError and case.exc is not FileNotFoundError:
        assert type(err.value) is case.exc or isinstance(err.value, case.exc)
    import re

    assert re.search(case.match, str(err.value), re.S), f"message {str(err.value)!r} does not match {case.match!r}"


# --------------------------------------------------------------------------- what stays unchanged


def test_inputs_are_not_changed_by_a_refused_call():
    x = with_value(ids(2, 5), (1, 3), NV)
    before = x.clone()
    with pytest.raises(ValueError):
        ENC(x)
    assert torch.equal(x, before)
    lens = torch.tensor([5, 9])
    with pytest.raises(ValueError):
        masked_softmax(torch.zeros(2, 3, 5), lens)
    assert lens.tolist() == [5, 9]


# --------------------------------------------------------------------------- valid edge cases


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_empty_batches_and_no_queries_give_empty_results_on_both_paths(impl):
    for b, tq in ((0, 3), (2, 0)):
        q, k, v = qkv(b=b, tq=tq)
        out, _ = dot_product_attention(q, k, v, impl=impl)
        assert out.shape == (b, tq, 8)
        mha = MultiHeadAttention(8, 2, 0.0, impl=impl, query_size=8, key_size=8, value_size=8)
        assert mha(q, k, v).shape == (b, tq, 8)


def test_edge_sizes_that_are_valid():
    assert causal_mask(0, 3).shape == (0, 3)
    assert VOCAB.to_tokens(torch.tensor([[4, 5], [6, 7]])) == [VOCAB.to_tokens([4, 5]), VOCAB.to_tokens([6, 7])]
    assert VOCAB.to_tokens(torch.tensor(4)) == VOCAB.idx_to_token[4]
    assert VOCAB[("the", "cat")] == [VOCAB["the"], VOCAB["cat"]]
    assert D_.translate(MODEL, [], VOCAB, VOCAB) == []
    x, lens = T_.pad_batch([], 0)
    assert x.shape == (0, 0) and lens.shape == (0,)
    assert B_.trim_pair(["a"] * 6, ["b"] * 4, 9) == (["a"] * 3, ["b"] * 3)
    assert B_.trim_pair(["a", "b"], None, 3) == (["a"], None)


# --------------------------------------------------------------------------- no host sync in hot paths


def test_value_checks_never_read_back_from_the_device(monkeypatch):
    """Where values cannot be read back cheaply (a GPU; torch.compile, simulated here), the checks of every hot
    path are skipped: no bool(), item(), int(), float() or tolist() on a tensor during a forward pass or a loss."""
    lens = torch.tensor([5, 3])
    x = ids(2, 5)
    positions = torch.tensor([[1, 2], [0, 2]])
    enc_out = torch.randn(2, 5, 8)
    mha_sdpa = MultiHeadAttention(8, 2, 0.0, impl="sdpa", query_size=8, key_size=8, value_size=8)
    model_sdpa = build_transformer(NV, NV, 8, 16, 2, 1, 0.0, impl="sdpa")
    labels = ids(2, 2, high=NV)

    def no_sync(*args, **kwargs):
        raise AssertionError("host synchronisation")

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for method in ("__bool__", "item", "__int__", "__float__", "__index__", "tolist"):
        monkeypatch.setattr(torch.Tensor, method, no_sync)
    for mha in (MHA, mha_sdpa):
        mha(*qkv(tk=5), lens)
    dot_product_attention(*qkv(tk=5), lens)
    dot_product_attention(*qkv(tk=5), lens, impl="sdpa")
    AdditiveAttention(8, 0.0, 8, 8)(*qkv(tk=5), lens)
    for model in (MODEL, model_sdpa):
        model(x, ids(2, 4), lens)
        state = model.decoder.init_state(enc_out, lens)
        _, state = model.decoder(ids(2, 1), state)
        model.decoder(ids(2, 1), state)
    _, mlm, _ = BERT(x, torch.zeros_like(x), lens, positions)
    B_.masked_lm_loss(mlm, labels, torch.ones(2, 2))
    TR.masked_ce_loss(torch.randn(2, 4, NV), ids(2, 4), torch.tensor([4, 2]))
    monkeypatch.undo()


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_mixed_precision_is_not_mistaken_for_a_dtype_error(impl):
    """Under torch.autocast, activations in bfloat16 meet float32 parameters: that is how autocast works."""
    x = ids(2, 5)
    lens = torch.tensor([5, 3])
    model = build_transformer(NV, NV, 8, 16, 2, 1, 0.0, impl=impl)
    bert = B_.BERTModel(NV, 8, 16, 2, 2, 0.0, max_len=12, impl=impl)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x, x, lens).dtype == torch.bfloat16
        _, mlm, nsp = bert(x, None, lens, torch.tensor([[1], [2]]))
        assert mlm.dtype == nsp.dtype == torch.bfloat16
        q, k, v = qkv()
        dot_product_attention(q.bfloat16(), k, v, impl=impl)
    with pytest.raises(ValueError, match="need one dtype"):
        dot_product_attention(q.bfloat16(), k, v, impl=impl)
