"""The Transformer (chapter 5): d2l 1.0.3 and torch.nn oracles, causality, the key/value cache.

Oracles:

* d2l 1.0.3's PositionWiseFFN, AddNorm, TransformerEncoderBlock and TransformerEncoder
  (state dicts load strictly both ways; same outputs in eval mode).
* d2l's decoder: the d2l 1.0.3 *package* has no TransformerDecoderBlock or
  TransformerDecoder (they are defined only in the book's chapter), so the reference
  below is assembled from d2l 1.0.3's own MultiHeadAttention, AddNorm, PositionWiseFFN
  and PositionalEncoding with the book's parameter names and its training-mode
  masking: self-attention with per-query valid lengths 1, 2, ..., T (query t sees
  target positions 0..t). Only that mode can be compared: in eval mode d2l's decoder
  masks nothing (over a whole target it is not causal) and, decoding one token per
  call, adds the positional encoding of position 0 to every token; ours is causal in
  every mode and gives token t the encoding of position t.
* torch.nn.TransformerEncoderLayer / TransformerDecoderLayer and the stacks
  nn.TransformerEncoder / nn.TransformerDecoder, post-norm and pre-norm, with copied
  weights (ours with use_bias=True; LayerNorm eps 1e-5 in both), in eval mode.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib import (
    AddNorm,
    PositionWiseFFN,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    VASWANI_2017,
    build_transformer,
    count_parameters,
)
from course_lib.decoding import beam_search, greedy_decode, translate
from course_lib.text import BOS, EOS, TranslationDataset, Vocab, loader
from course_lib.training import fit, masked_ce_loss, shift_right, train_seq2seq, warmup_schedule
from course_lib.transformer import init_transformer_weights

B, TS, TT, D, F, H, V = 3, 7, 6, 16, 32, 4, 23
VALID = torch.tensor([7, 3, 5])  # source valid lengths


def tokens(T, seed=0, vocab=V):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


def randomize_norms(module: nn.Module, seed: int = 0) -> nn.Module:
    """LayerNorms start at weight 1, bias 0: give them random values so that a swapped norm shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    return module


# ---------------------------------------------------------------------------------------- d2l 1.0.3


def assert_loads_both_ways(ours: nn.Module, theirs: nn.Module) -> None:
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)


def test_ffn_and_addnorm_match_d2l(d2l):
    X, Y = torch.randn(B, TS, D), torch.randn(B, TS, D)
    theirs = d2l.PositionWiseFFN(F, D + 1).eval()
    expected = theirs(X)  # materialize d2l's lazy layers
    for ours in (PositionWiseFFN(F, D + 1), PositionWiseFFN(F, D + 1, ffn_num_inputs=D)):  # lazy, then eager
        ours.eval()
        ours.load_state_dict(theirs.state_dict(), strict=True)
        torch.testing.assert_close(ours(X), expected)
        back = d2l.PositionWiseFFN(F, D + 1)  # uninitialized lazy layers take our shapes
        back.load_state_dict(ours.state_dict(), strict=True)
        torch.testing.assert_close(back(X), expected)
    ours, theirs = randomize_norms(AddNorm(D, 0.5)).eval(), d2l.AddNorm(D, 0.5).eval()
    assert_loads_both_ways(ours, theirs)
    torch.testing.assert_close(ours(X, Y), theirs(X, Y))
    torch.testing.assert_close(ours(X, Y), nn.functional.layer_norm(X + Y, (D,), ours.ln.weight, ours.ln.bias))


@pytest.mark.parametrize("use_bias", [False, True])
def test_encoder_block_and_encoder_match_d2l(d2l, use_bias):
    X = torch.randn(B, TS, D)
    theirs = d2l.TransformerEncoderBlock(D, F, H, 0.0, use_bias).eval()
    expected = theirs(X, VALID)
    ours = TransformerEncoderBlock(D, F, H, 0.0, use_bias).eval()
    assert_loads_both_ways(ours, randomize_norms(theirs))
    expected = theirs(X, VALID)
    torch.testing.assert_close(ours(X, VALID), expected)

    src = tokens(TS)
    theirs = d2l.TransformerEncoder(V, D, F, H, 2, 0.0, use_bias).eval()
    theirs(src, VALID)
    ours = TransformerEncoder(V, D, F, H, 2, 0.0, use_bias).eval()
    assert_loads_both_ways(ours, randomize_norms(theirs))
    expected = theirs(src, VALID)
    for impl in ("manual", "sdpa"):
        ours.impl = impl
        torch.testing.assert_close(ours(src, VALID), expected)
    ours.impl = "manual"
    ours(src, VALID)
    assert len(ours.attention_weights) == 2
    for w_ours, w_theirs in zip(ours.attention_weights, theirs.attention_weights):  # ours (B, H, T, T), d2l's (B*H, T, T)
        torch.testing.assert_close(w_ours.reshape(B * H, TS, TS), w_theirs)


class D2LDecoderBlock(nn.Module):
    """The book's decoder block in training mode, dropout 0, from d2l 1.0.3's parts (see the module docstring)."""

    def __init__(self, d2l, num_hiddens, ffn_num_hiddens, num_heads):
        super().__init__()
        self.attention1 = d2l.MultiHeadAttention(num_hiddens, num_heads, 0.0)
        self.addnorm1 = d2l.AddNorm(num_hiddens, 0.0)
        self.attention2 = d2l.MultiHeadAttention(num_hiddens, num_heads, 0.0)
        self.addnorm2 = d2l.AddNorm(num_hiddens, 0.0)
        self.ffn = d2l.PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm3 = d2l.AddNorm(num_hiddens, 0.0)

    def forward(self, X, enc_outputs, enc_valid_lens):
        batch, steps = X.shape[:2]
        lens = torch.arange(1, steps + 1).repeat(batch, 1)  # (B, T): query t sees target positions 0..t
        Y = self.addnorm1(X, self.attention1(X, X, X, lens))
        Z = self.addnorm2(Y, self.attention2(Y, enc_outputs, enc_outputs, enc_valid_lens))
        return self.addnorm3(Z, self.ffn(Z))


class D2LDecoder(nn.Module):
    def __init__(self, d2l, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.embedding = nn.Embedding(vocab_size, num_hiddens)
        self.pos_encoding = d2l.PositionalEncoding(num_hiddens, 0.0)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(f"block{i}", D2LDecoderBlock(d2l, num_hiddens, ffn_num_hiddens, num_heads))
        self.dense = nn.LazyLinear(vocab_size)

    def forward(self, X, enc_outputs, enc_valid_lens):
        X = self.pos_encoding(self.embedding(X) * math.sqrt(self.num_hiddens))
        for blk in self.blks:
            X = blk(X, enc_outputs, enc_valid_lens)
        return self.dense(X)


def test_decoder_block_and_decoder_match_d2l_training_mode(d2l):
    X, memory = torch.randn(B, TT, D), torch.randn(B, TS, D)
    theirs = D2LDecoderBlock(d2l, D, F, H)
    theirs(X, memory, VALID)  # materialize
    ours = TransformerDecoderBlock(D, F, H, 0.0, 0)
    assert_loads_both_ways(ours, randomize_norms(theirs))
    expected = theirs(X, memory, VALID)
    for mode in ("train", "eval"):  # ours is causal in both
        getattr(ours, mode)()
        Y, state = ours(X, [memory, VALID, [None]])
        torch.testing.assert_close(Y, expected)
        assert state[2][0].keys.shape == (B, TT, D)

    tgt = tokens(TT, seed=1)
    theirs = D2LDecoder(d2l, V, D, F, H, 2)
    theirs(tgt, memory, VALID)
    ours = TransformerDecoder(V, D, F, H, 2, 0.0)
    assert_loads_both_ways(ours, randomize_norms(theirs))
    expected = theirs(tgt, memory, VALID)
    for mode in ("train", "eval"):
        getattr(ours, mode)()
        torch.testing.assert_close(ours(tgt, ours.init_state(memory, VALID))[0], expected)
    ours.eval()  # one token at a time: the same logits
    state, steps = ours.init_state(memory, VALID), []
    for t in range(TT):
        logits, state = ours(tgt[:, t : t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), expected)


# -------------------------------------------------------------------------- torch.nn oracles


def copy_attention(ours, prefix):
    return {
        f"{prefix}.in_proj_weight": torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]),
        f"{prefix}.in_proj_bias": torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]),
        f"{prefix}.out_proj.weight": ours.W_o.weight,
        f"{prefix}.out_proj.bias": ours.W_o.bias,
    }


def torch_layer(ours: nn.Module, norm_first: bool) -> nn.Module:
    """nn.TransformerEncoderLayer / DecoderLayer (ReLU, batch first) holding a copy of our block's weights."""
    decoder = isinstance(ours, TransformerDecoderBlock)
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    theirs = cls(D, H, F, dropout=0.0, batch_first=True, norm_first=norm_first)  # activation relu, eps 1e-5
    assert theirs.norm1.eps == ours.addnorm1.ln.eps == 1e-5
    sd = {"linear1.weight": ours.ffn.dense1.weight, "linear1.bias": ours.ffn.dense1.bias,
          "linear2.weight": ours.ffn.dense2.weight, "linear2.bias": ours.ffn.dense2.bias}
    if decoder:
        sd |= copy_attention(ours.attention1, "self_attn") | copy_attention(ours.attention2, "multihead_attn")
        norms = [ours.addnorm1, ours.addnorm2, ours.addnorm3]
    else:
        sd |= copy_attention(ours.attention, "self_attn")
        norms = [ours.addnorm1, ours.addnorm2]
    for k, addnorm in enumerate(norms, 1):
        sd |= {f"norm{k}.weight": addnorm.ln.weight, f"norm{k}.bias": addnorm.ln.bias}
    theirs.load_state_dict(sd, strict=True)
    return theirs.eval()


def key_padding(valid_lens, T):
    return torch.arange(T).unsqueeze(0) >= valid_lens.unsqueeze(1)  # (B, T): True = padding (PyTorch's convention)


@pytest.mark.parametrize("norm_first", [False, True])
def test_blocks_match_torch_transformer_layers(norm_first):
    torch.manual_seed(0)
    X, memory = torch.randn(B, TT, D), torch.randn(B, TS, D)
    enc = randomize_norms(TransformerEncoderBlock(D, F, H, 0.0, use_bias=True, norm_first=norm_first)).eval()
    src = torch.randn(B, TS, D)
    expected = torch_layer(enc, norm_first)(src, src_key_padding_mask=key_padding(VALID, TS))
    for impl in ("manual", "sdpa"):
        enc.impl = impl
        torch.testing.assert_close(enc(src, VALID), expected, atol=1e-5, rtol=1e-5)
    dec = randomize_norms(TransformerDecoderBlock(D, F, H, 0.0, 0, use_bias=True, norm_first=norm_first)).eval()
    expected = torch_layer(dec, norm_first)(
        X, memory, tgt_mask=~torch.tril(torch.ones(TT, TT, dtype=torch.bool)), tgt_is_causal=True,
        memory_key_padding_mask=key_padding(VALID, TS),
    )
    for impl in ("manual", "sdpa"):
        dec.impl = impl
        torch.testing.assert_close(dec(X, [memory, VALID, [None]])[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch_transformer_encoder_and_decoder(norm_first):
    """Whole stacks: pre-norm ends with one LayerNorm (ours ``norm``), post-norm with none."""
    torch.manual_seed(1)
    model = build_transformer(V, V + 2, D, F, H, 2, 0.0, use_bias=True, norm_first=norm_first)
    randomize_norms(model).eval()
    enc, dec = model.encoder, model.decoder
    assert hasattr(enc, "norm") == hasattr(dec, "norm") == norm_first
    src, tgt = tokens(TS), tokens(TT, seed=1, vocab=V + 2)

    def final_norm(ours):
        if not norm_first:
            return None
        norm = nn.LayerNorm(D)
        norm.load_state_dict(ours.norm.state_dict())
        return norm

    t_enc = nn.TransformerEncoder(torch_layer(enc.blks[0], norm_first), 2, norm=final_norm(enc),
                                  enable_nested_tensor=False).eval()
    t_enc.layers[1] = torch_layer(enc.blks[1], norm_first)
    t_dec = nn.TransformerDecoder(torch_layer(dec.blks[0], norm_first), 2, norm=final_norm(dec)).eval()
    t_dec.layers[1] = torch_layer(dec.blks[1], norm_first)
    memory = t_enc(enc.pos_encoding(enc.embedding(src) * math.sqrt(D)), src_key_padding_mask=key_padding(VALID, TS))
    hidden = t_dec(dec.pos_encoding(dec.embedding(tgt) * math.sqrt(D)), memory,
                   tgt_mask=nn.Transformer.generate_square_subsequent_mask(TT), tgt_is_causal=True,
                   memory_key_padding_mask=key_padding(VALID, TS))
    for impl in ("manual", "sdpa"):
        model.encoder.impl = model.decoder.impl = impl
        torch.testing.assert_close(enc(src, VALID), memory, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(src, tgt, VALID), dec.dense(hidden), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- causality and the cache


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_later_target_token_never_changes_earlier_logits(impl, mode):
    torch.manual_seed(2)
    model = build_transformer(V, V, D, F, H, 2, 0.0, impl=impl)
    getattr(model, mode)()
    src, tgt = tokens(TS), tokens(TT, seed=3)
    base = model(src, tgt, VALID)
    for t in range(TT):
        changed = tgt.clone()
        changed[:, t] = (changed[:, t] + 1) % V
        out = model(src, changed, VALID)
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=0, rtol=0)
        assert (out[:, t] - base[:, t]).abs().amax() > 1e-3  # the changed position itself does change


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("chunks", [[1] * TT, [2, 3, 1]])
def test_decoding_with_the_cache_equals_one_pass_over_the_target(impl, norm_first, chunks):
    torch.manual_seed(3)
    dec = randomize_norms(TransformerDecoder(V, D, F, H, 2, 0.0, norm_first=norm_first, impl=impl)).eval()
    memory, tgt = torch.randn(B, TS, D), tokens(TT, seed=4)
    full, _ = dec(tgt, dec.init_state(memory, VALID))
    state, pieces, start = dec.init_state(memory, VALID), [], 0
    for n in chunks:  # several positions per call also work: each sees the cache and its own past
        before = [entry for entry in state[2]]
        logits, new_state = dec(tgt[:, start : start + n], state)
        assert [entry for entry in state[2]] == before  # the given state is not modified
        assert TransformerDecoder.cache_length(new_state) == start + n
        for i, entry in enumerate(new_state[2]):
            assert entry.keys.shape == entry.values.shape == (B, start + n, D)
            assert entry.src_keys.shape == entry.src_values.shape == (B, TS, D)
            if start:  # the source is projected at the first call only
                assert entry.src_keys is state[2][i].src_keys and entry.src_values is state[2][i].src_values
        pieces.append(logits)
        state, start = new_state, start + n
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_teaching_and_fused_paths_agree_for_the_whole_model_outputs_and_gradients():
    torch.manual_seed(4)
    model = build_transformer(V, V, D, F, H, 2, 0.0, use_bias=True).train()
    src, tgt = tokens(TS), tokens(TT, seed=5)
    results = {}
    for impl in ("manual", "sdpa"):
        model.encoder.impl = model.decoder.impl = impl
        model.zero_grad()
        out = model(src, tgt, VALID)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results[impl] = [out] + [p.grad.clone() for p in model.parameters()]
    assert model.encoder.impl == "sdpa"
    for a, b in zip(results["manual"], results["sdpa"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_attention_weights_for_plots():
    torch.manual_seed(5)
    model = build_transformer(V, V, D, F, H, 2, 0.0).eval()
    src, tgt = tokens(TS), tokens(TT, seed=6)
    model(src, tgt, VALID)
    self_w, cross_w = model.decoder.attention_weights  # d2l's layout: [self, cross][block]
    assert len(self_w) == len(cross_w) == 2
    for w in self_w:
        assert w.shape == (B, H, TT, TT)
        assert torch.all(w.triu(diagonal=1) == 0)  # no weight on later positions
    for w in cross_w:
        assert w.shape == (B, H, TT, TS)
        assert torch.all(w[1, :, :, 3:] == 0)  # sequence 1 has 3 real source tokens
        torch.testing.assert_close(w.sum(-1), torch.ones(B, H, TT))
    torch.testing.assert_close(model.decoder.step_alignment(), cross_w[-1][:, :, -1].mean(1))  # (B, Ts)
    model.decoder.impl = "sdpa"
    assert model.decoder.step_alignment() is None
    with pytest.raises(RuntimeError, match="manual"):
        model.decoder.attention_weights


# ------------------------------------------------------------------------------- options


def test_tied_weights_are_one_parameter_with_gradients_from_both_uses():
    torch.manual_seed(6)
    tied = TransformerDecoder(V, D, F, H, 2, 0.0, tie_weights=True)
    untied = TransformerDecoder(V, D, F, H, 2, 0.0)
    assert tied.dense.weight is tied.embedding.weight and tied.tie_weights and not untied.tie_weights
    assert tied.dense.bias is not None
    assert count_parameters(untied) - count_parameters(tied) == V * D
    untied.load_state_dict(tied.state_dict())  # both keys hold the same matrix
    memory, tgt = torch.randn(B, TS, D), tokens(TT, seed=7)
    for m in (tied, untied):
        m(tgt, m.init_state(memory, VALID))[0].square().mean().backward()
    torch.testing.assert_close(tied.embedding.weight.grad, untied.embedding.weight.grad + untied.dense.weight.grad)
    assert untied.embedding.weight.grad.abs().sum() > 0 and untied.dense.weight.grad.abs().sum() > 0


def test_shared_embedding_between_source_target_and_output():
    model = build_transformer(V, V, D, F, H, 1, 0.0, shared_embedding=True, tie_weights=True)
    assert model.encoder.embedding is model.decoder.embedding
    assert model.decoder.dense.weight is model.encoder.embedding.weight
    separate = build_transformer(V, V, D, F, H, 1, 0.0)
    assert count_parameters(separate) - count_parameters(model) == 2 * V * D


def test_pre_norm_adds_only_the_final_norms_to_the_state_dict():
    post = build_transformer(V, V, D, F, H, 2, 0.1)
    pre = build_transformer(V, V, D, F, H, 2, 0.1, norm_first=True)
    extra = set(pre.state_dict()) - set(post.state_dict())
    assert extra == {"encoder.norm.weight", "encoder.norm.bias", "decoder.norm.weight", "decoder.norm.bias"}
    assert set(post.state_dict()) <= set(pre.state_dict())


def vaswani_count(vocab, num_hiddens, ffn_num_hiddens, num_blks, **_):
    """Parameters of the paper's model as built here: one shared, tied embedding; no attention biases."""
    d, f = num_hiddens, ffn_num_hiddens
    ffn = d * f + f + f * d + d
    encoder_block = 4 * d * d + ffn + 2 * 2 * d  # W_q, W_k, W_v, W_o; FFN; two LayerNorms
    decoder_block = 8 * d * d + ffn + 3 * 2 * d
    return vocab * d + num_blks * (encoder_block + decoder_block) + vocab  # + the output layer's bias


@pytest.mark.parametrize("size,paper", [("base", 65e6), ("big", 213e6)])
def test_paper_configurations_build_on_the_meta_device(size, paper):
    cfg = VASWANI_2017[size]
    with torch.device("meta"):
        model = build_transformer(37000, 37000, **cfg, shared_embedding=True, tie_weights=True)
    assert all(p.device.type == "meta" for p in model.parameters())
    n = count_parameters(model)
    assert n == vaswani_count(37000, **cfg)  # base 63,082,632; big 214,208,648
    assert abs(n - paper) / paper < 0.035


def test_decoding_functions_of_chapter_3_work_and_match_a_full_recompute():
    torch.manual_seed(7)
    words = "the cat sat on a mat with one hat".split()
    src_vocab, tgt_vocab = Vocab(words), Vocab(words[::-1] + ["le", "chat"])
    model = build_transformer(len(src_vocab), len(tgt_vocab), D, F, H, 2, 0.1).eval()
    with torch.no_grad():  # make <eos> unlikely, so that the decoding runs all its steps
        model.decoder.dense.bias[tgt_vocab[EOS]] = -100.0
    sentence = ["the", "cat", "sat"]
    out, alignment = greedy_decode(model, sentence, src_vocab, tgt_vocab, max_steps=8)
    src = torch.tensor([src_vocab[sentence] + [src_vocab[EOS]]])
    ids = [tgt_vocab[BOS]]
    with torch.no_grad():
        for _ in range(8):  # no cache: the whole prefix again at every step
            ids.append(int(model(src, torch.tensor([ids]), torch.tensor([src.shape[1]]))[0, -1].argmax()))
    assert out == tgt_vocab.to_tokens(ids[1:])
    assert alignment.shape == (8, 4)  # output steps, source tokens + <eos>
    torch.testing.assert_close(alignment.sum(-1), torch.ones(8))
    others = [["a", "mat"], ["one", "hat", "with", "the", "cat"]]
    assert translate(model, [sentence] + others, src_vocab, tgt_vocab, max_steps=8, batch_size=2) == \
        [out] + [greedy_decode(model, s, src_vocab, tgt_vocab, max_steps=8)[0] for s in others]
    assert beam_search(model, sentence, src_vocab, tgt_vocab, beam_size=1, max_steps=8) == out
    assert len(beam_search(model, sentence, src_vocab, tgt_vocab, beam_size=3, max_steps=8)) == 8
    model.decoder.impl = "sdpa"  # no weights on the fused path: the same tokens, no alignment
    assert greedy_decode(model, sentence, src_vocab, tgt_vocab, max_steps=8) == (out, None)


def test_chapter_3_training_loop_trains_it():
    words = "the cat sat on a mat with one hat".split()
    g = torch.Generator().manual_seed(0)
    sentences = [[words[int(i)] for i in torch.randint(0, len(words), (n,), generator=g)] for n in (2, 3, 4, 5) * 2]
    pairs = [(s, [w.upper() for w in s[::-1]]) for s in sentences]  # reverse the words
    src_vocab, tgt_vocab = Vocab(words), Vocab([w.upper() for w in words])
    torch.manual_seed(0)
    model = build_transformer(len(src_vocab), len(tgt_vocab), D, F, H, 1, 0.0)
    data = loader(TranslationDataset(pairs, src_vocab, tgt_vocab), 4, shuffle=True)
    losses = train_seq2seq(model, data, tgt_vocab, 4, lr=0.01, show=False)
    assert losses[-1] < 0.8 * losses[0]
    assert not model.training  # left in eval mode, ready to decode


# ------------------------------------------------------------------------ initialization


@pytest.fixture(scope="module")
def course_batch():
    from course_lib.corpus import load_corpus

    corpus = load_corpus(num_sentences=2000, seed=4)
    src, src_len, tgt, tgt_len = next(iter(corpus.loader("train", batch_size=128, shuffle=False)))
    return corpus.src_vocab, corpus.tgt_vocab, (src, src_len, tgt, tgt_len)


def initial_loss(model, tgt_vocab, batch):
    src, src_len, tgt, tgt_len = batch
    with torch.no_grad():
        return masked_ce_loss(model.eval()(src, shift_right(tgt, tgt_vocab[BOS]), src_len), tgt, tgt_len).item()


@pytest.mark.parametrize("tie_weights", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_a_fresh_model_starts_near_the_loss_of_a_uniform_guess(course_batch, tie_weights, norm_first):
    """Untrained, tied or not, the default model's loss on course sentences is within 10 % of ln V."""
    src_vocab, tgt_vocab, batch = course_batch
    ln_v = math.log(len(tgt_vocab))
    for seed, (d, blocks) in enumerate([(32, 1), (64, 2), (64, 4)] * 2):
        torch.manual_seed(seed)
        model = build_transformer(len(src_vocab), len(tgt_vocab), d, 4 * d, 4, blocks, 0.1,
                                  tie_weights=tie_weights, norm_first=norm_first)
        loss = initial_loss(model, tgt_vocab, batch)
        assert abs(loss - ln_v) < 0.1 * ln_v, (d, blocks, seed, loss, ln_v)
    if tie_weights:  # the same model with nn.Embedding's default N(0, 1): scores of size sqrt(D), far off
        for embedding in (model.encoder.embedding, model.decoder.embedding):
            embedding.reset_parameters()
        assert initial_loss(model, tgt_vocab, batch) > 3 * ln_v


def test_initialization_is_xavier_for_every_matrix_and_leaves_the_rest():
    torch.manual_seed(8)
    vocab = 500
    model = build_transformer(vocab, vocab + 100, 64, 256, 4, 2, 0.0, use_bias=True, tie_weights=True)
    seen = set()
    for name, p in model.named_parameters():
        seen.add(name)
        if p.dim() > 1:  # std sqrt(2 / (fan_in + fan_out)), uniform: |entries| <= sqrt(3) std
            std = math.sqrt(2 / sum(p.shape))
            assert abs(p.std().item() / std - 1) < 0.05, name
            assert p.abs().max().item() <= math.sqrt(3) * std + 1e-6, name
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    ffn_bias = model.encoder.blks[0].ffn.dense1.bias  # biases keep PyTorch's default U(-1/sqrt(fan_in), ..)
    assert 0 < ffn_bias.abs().max().item() <= 64 ** -0.5
    assert model.decoder.dense.weight is model.decoder.embedding.weight
    scaled = model.encoder.embedding.weight * 8  # x sqrt(D): spread sqrt(2D / (V + D)), not sqrt(D)
    assert abs(scaled.std().item() - math.sqrt(2 * 64 / (vocab + 64))) < 0.03
    # a shared embedding is drawn once, by the encoder; the decoder leaves it as it is
    torch.manual_seed(9)
    emb = nn.Embedding(V, D)
    before = emb.weight.detach().clone()
    TransformerDecoder(V, D, F, H, 1, 0.0, embedding=emb, tie_weights=True)
    assert torch.equal(emb.weight, before)
    # the blocks alone keep PyTorch's defaults (chapter 6's BERT builds its stack from them)
    torch.manual_seed(10)
    blk = TransformerEncoderBlock(D, F, H, 0.0)
    torch.manual_seed(10)
    reference = nn.Linear(D, D, bias=False)
    torch.testing.assert_close(blk.attention.W_q.weight, reference.weight)
    assert init_transformer_weights(blk) is blk and not torch.equal(blk.attention.W_q.weight, reference.weight)


def test_scale_embedding_false_leaves_out_the_sqrt_d_factor():
    torch.manual_seed(11)
    scaled = build_transformer(V, V + 2, D, F, H, 2, 0.0).eval()
    plain = build_transformer(V, V + 2, D, F, H, 2, 0.0, scale_embedding=False).eval()
    assert scaled.encoder.scale_embedding and not plain.encoder.scale_embedding and not plain.decoder.scale_embedding
    state = scaled.state_dict()  # the same model: embeddings multiplied by sqrt(D) in the weights instead
    for key in ("encoder.embedding.weight", "decoder.embedding.weight"):
        state[key] = state[key] * math.sqrt(D)
    plain.load_state_dict(state)
    src, tgt = tokens(TS), tokens(TT, seed=12, vocab=V + 2)
    torch.testing.assert_close(plain(src, tgt, VALID), scaled(src, tgt, VALID), atol=1e-5, rtol=1e-5)
    # tied: the output layer uses the unscaled matrix either way; the blocks see E[x] (* sqrt(D)) + P
    for scale in (True, False):
        model = build_transformer(V, V, D, F, H, 1, 0.0, tie_weights=True, scale_embedding=scale).eval()
        seen, tgt = [], tokens(TT, seed=13)
        model.decoder.blks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        model(src, tgt, VALID)
        factor = math.sqrt(D) if scale else 1.0
        expected = model.decoder.embedding(tgt) * factor + model.decoder.pos_encoding.P[:, :TT]
        torch.testing.assert_close(seen[0], expected)
    with pytest.raises(ValueError, match="scale_embedding"):
        TransformerEncoder(V, D, F, H, 1, 0.0, scale_embedding=1)


def copy_task(seed=0, n_train=960, n_test=196, symbols=10):
    """Random sequences of 3 to 10 symbols, to be copied: held-out ones never seen in training."""
    g = torch.Generator().manual_seed(seed)
    seqs = set()
    while len(seqs) < n_train + n_test:
        n = int(torch.randint(3, 11, (1,), generator=g))
        seqs.add(tuple(f"s{int(i)}" for i in torch.randint(0, symbols, (n,), generator=g)))
    seqs = sorted(seqs)
    order = torch.randperm(len(seqs), generator=g).tolist()
    seqs = [seqs[i] for i in order]
    return Vocab([f"s{i}" for i in range(symbols)]), seqs[:n_train], seqs[n_train:]


def copied(model, vocab, train, test):
    torch.set_num_threads(1)
    data = loader(TranslationDataset([(list(s), list(s)) for s in train], vocab, vocab), 32, shuffle=True)
    fit(model, data, vocab, 10, lr=0.002, schedule=warmup_schedule(50), show=False)  # 300 steps
    out = translate(model, [list(s) for s in test], vocab, vocab)
    return sum(o == list(s) for o, s in zip(out, test)) / len(test)


def test_the_default_model_learns_to_copy_held_out_sequences_in_300_steps():
    """The classic copy task (d = 64, 2 blocks): the default initialization copies most held-out
    sequences exactly after 300 steps; PyTorch's own defaults, in the same model and loop, few."""
    threads = torch.get_num_threads()
    try:
        vocab, train, test = copy_task()
        torch.manual_seed(0)
        model = build_transformer(len(vocab), len(vocab), 64, 256, 4, 2, 0.0)
        assert copied(model, vocab, train, test) >= 0.7
        torch.manual_seed(0)
        model = build_transformer(len(vocab), len(vocab), 64, 256, 4, 2, 0.0)
        for m in model.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        assert copied(model, vocab, train, test) < 0.4
    finally:
        torch.set_num_threads(threads)


# -------------------------------------------------------------------------------- errors


def test_clear_errors():
    with pytest.raises(ValueError, match="must divide"):
        TransformerEncoder(V, 10, F, 3, 1, 0.0)
    with pytest.raises(ValueError, match="must divide"):
        TransformerDecoder(V, 10, F, 4, 1, 0.0)
    with pytest.raises(ValueError, match="num_blks"):
        TransformerDecoder(V, D, F, H, 0, 0.0)
    with pytest.raises(ValueError, match="norm_first"):
        TransformerEncoderBlock(D, F, H, 0.0, norm_first="yes")
    dec = TransformerDecoder(V, D, F, H, 2, 0.0, max_len=5)
    tgt, memory = tokens(3), torch.randn(B, TS, D)
    with pytest.raises(ValueError, match="init_state"):
        dec(tgt, None)
    with pytest.raises(ValueError, match="one cache entry per block"):
        dec(tgt, [memory, VALID, [None]])
    with pytest.raises(ValueError, match="RNN"):
        dec.init_state((torch.randn(TS, B, D), torch.randn(1, B, D)), VALID)
    with pytest.raises(ValueError, match="token indices"):
        dec(torch.randn(B, 3), dec.init_state(memory, VALID))
    _, state = dec(tgt, dec.init_state(memory, VALID))
    dec(tokens(2), state)  # 3 + 2 = max_len: fine
    with pytest.raises(ValueError, match="max_len=5"):
        dec(tokens(3), state)
    with pytest.raises(ValueError, match="one vocabulary"):
        build_transformer(V, V + 1, D, F, H, 1, 0.0, shared_embedding=True)
    with pytest.raises(ValueError, match="nn.Embedding"):
        TransformerDecoder(V, D, F, H, 1, 0.0, embedding=nn.Embedding(V + 1, D))
    with pytest.raises(ValueError, match="forward pass"):
        count_parameters(PositionWiseFFN(F, D))
    with pytest.raises(ValueError, match="impl"):
        dec.impl = "flash"


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_token_ids_out_of_range_and_a_state_of_another_batch_are_refused(impl):
    """Both paths refuse, naming the id and where it is, and the two batch sizes (the fused path used to broadcast
    one source over several targets)."""
    model = build_transformer(V, V, D, F, H, 1, 0.0, impl=impl)
    src = tokens(TS)
    for bad, where in ((V, "got 23 at batch 2, position 4"), (-1, "got -1 at batch 2, position 4")):
        spoiled = src.clone()
        spoiled[2, 4] = bad
        with pytest.raises(ValueError, match=rf"TransformerEncoder: token ids must be in \[0, {V}\) .*{where}"):
            model(spoiled, tokens(TT), VALID)
    state = model.decoder.init_state(model.encoder(src, VALID), VALID)
    for other in (1, B + 2):
        with pytest.raises(ValueError, match=f"built for a batch of {B} sequences.*target holds {other}"):
            model.decoder(tokens(2)[:1].expand(other, 2).contiguous(), state)
    _, state = model.decoder(tokens(2), state)  # with a cache
    with pytest.raises(ValueError, match=f"built for a batch of {B} sequences"):
        model.decoder(tokens(1)[:2], state)


def test_tied_and_shared_models_refuse_untied_weights_and_load_their_own():
    import copy
    import io

    untied = build_transformer(V, V, D, F, H, 1, 0.0)
    for kwargs, names in ((dict(tie_weights=True), ("decoder.embedding.weight", "decoder.dense.weight")),
                          (dict(shared_embedding=True), ("encoder.embedding.weight", "decoder.embedding.weight"))):
        tied = build_transformer(V, V, D, F, H, 1, 0.0, **kwargs)
        before = {k: v.clone() for k, v in tied.state_dict().items()}
        with pytest.raises(ValueError, match=f"shares one tensor between '{names[0]}' and '{names[1]}'"):
            tied.load_state_dict(untied.state_dict())
        for k, v in tied.state_dict().items():  # nothing was overwritten
            assert torch.equal(v, before[k]), k
        other = build_transformer(V, V, D, F, H, 1, 0.0, **kwargs)
        other.load_state_dict(tied.state_dict())  # a tied model's own state dict loads
        assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), tied.state_dict().values()))
        twin = copy.deepcopy(tied)  # the check survives a copy and a round trip through torch.save
        with pytest.raises(ValueError, match="shares one tensor"):
            twin.load_state_dict(untied.state_dict())
        buffer = io.BytesIO()
        torch.save(tied, buffer)
        buffer.seek(0)
        with pytest.raises(ValueError, match="shares one tensor"):
            torch.load(buffer, weights_only=False).load_state_dict(untied.state_dict())
    decoder = TransformerDecoder(V, D, F, H, 1, 0.0, tie_weights=True)
    with pytest.raises(ValueError, match="'embedding.weight' and 'dense.weight'"):
        decoder.load_state_dict(TransformerDecoder(V, D, F, H, 1, 0.0).state_dict())
