"""Chapter 3: encoder, decoders, training and decoding, with d2l 1.0.3 and PyTorch as oracles."""

from __future__ import annotations

import pytest
import torch

import course_lib
import torch.nn.functional as F

from course_lib.corpus import load_corpus
from course_lib.seq2seq import (
    EncoderDecoder,
    Seq2SeqAttentionDecoder,
    Seq2SeqDecoder,
    Seq2SeqEncoder,
    beam_search,
    evaluate_bleu,
    greedy_decode,
    masked_ce_loss,
    shift_right,
    train_seq2seq,
)
from course_lib.text import bleu


def test_encoder_state_dicts_load_both_ways_with_d2l(d2l):
    torch.manual_seed(0)
    X = torch.randint(0, 20, (3, 7))
    theirs = d2l.Seq2SeqEncoder(20, 8, 16, 2).eval()
    ours = Seq2SeqEncoder(20, 8, 16, 2).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for a, b in zip(ours(X), theirs(X)):
        torch.testing.assert_close(a, b)
    back = d2l.Seq2SeqEncoder(20, 8, 16, 2).eval()
    back.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(back(X)[0], ours(X)[0])
    outputs, state = ours(X)
    assert outputs.shape == (7, 3, 16) and state.shape == (2, 3, 16)


def test_encoder_stops_at_the_valid_length():
    """With valid lengths the final state is that of the last real token, as if unpadded."""
    torch.manual_seed(4)
    enc = Seq2SeqEncoder(20, 8, 16, 2).eval()
    X = torch.randint(3, 20, (2, 6))
    X[1, 4:] = 0  # sentence 1 has 4 real tokens, then padding
    outputs, state = enc(X, torch.tensor([6, 4]))
    alone_out, alone_state = enc(X[1:, :4])  # the same sentence without its padding
    torch.testing.assert_close(state[:, 1], alone_state[:, 0])
    torch.testing.assert_close(outputs[:4, 1], alone_out[:, 0])
    assert outputs[4:, 1].eq(0).all()
    torch.testing.assert_close(outputs[:, 0], enc(X[:1])[0][:, 0])  # a full-length row is unchanged


@pytest.mark.parametrize("decoder_class", [Seq2SeqDecoder, Seq2SeqAttentionDecoder])
def test_padding_does_not_change_a_sentence_s_output(decoder_class):
    """A sentence padded inside a batch gets exactly the outputs it gets alone."""
    torch.manual_seed(6)
    model = EncoderDecoder(Seq2SeqEncoder(20, 8, 16, 2), decoder_class(25, 8, 16, 2)).eval()
    src = torch.randint(3, 20, (2, 7))
    src[1, 3:] = 0  # sentence 1: 3 real tokens
    tgt_in = torch.randint(3, 25, (2, 4))
    batch = model(src, tgt_in, torch.tensor([7, 3]))
    alone = model(src[1:, :3], tgt_in[1:], torch.tensor([3]))
    torch.testing.assert_close(batch[1:], alone)


def test_attention_decoder_keeps_d2l_parameter_names():
    dec = Seq2SeqAttentionDecoder(30, 8, 16, 2)
    names = set(dec.state_dict())
    assert {"attention.W_q.weight", "attention.W_k.weight", "attention.w_v.weight", "embedding.weight",
            "rnn.weight_ih_l0", "rnn.weight_hh_l1", "dense.weight", "dense.bias"} <= names


def test_attention_decoder_step_by_step_equals_whole_sequence():
    """Teacher forcing over a whole sequence = feeding the same tokens one call at a time."""
    torch.manual_seed(1)
    model = EncoderDecoder(Seq2SeqEncoder(20, 8, 16, 1), Seq2SeqAttentionDecoder(25, 8, 16, 1)).eval()
    src, valid = torch.randint(3, 20, (2, 6)), torch.tensor([6, 4])
    tgt_in = torch.randint(3, 25, (2, 5))
    whole = model(src, tgt_in, valid)
    weights_whole = model.decoder.attention_weights
    state = model.decoder.init_state(model.encoder(src, valid), valid)
    steps = []
    for t in range(5):
        out, state = model.decoder(tgt_in[:, t : t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), whole)
    assert weights_whole.shape == (2, 5, 6)
    assert weights_whole[1, :, 4:].eq(0).all()  # padded source positions get no attention
    torch.testing.assert_close(weights_whole.sum(-1), torch.ones(2, 5))


def reference_attention_decoder(dec: Seq2SeqAttentionDecoder, X, state):
    """Equation (3.3) and the GRU step written the plain way: additive attention over the raw
    encoder outputs (W_k applied at every step) and nn.GRU called on a sequence of length one."""
    enc_outputs, hidden, valid = state
    a, outputs = dec.attention, []
    for x in dec.embedding(X.t()):
        q, k = a.W_q(hidden[-1].unsqueeze(1)), a.W_k(enc_outputs)  # (B, 1, D), (B, Ts, D)
        scores = a.w_v(torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))).squeeze(-1)  # (B, 1, Ts)
        positions = torch.arange(enc_outputs.shape[1])
        scores = scores.masked_fill(positions[None, None, :] >= valid[:, None, None], float("-inf"))
        context = torch.softmax(scores, dim=-1) @ enc_outputs  # (B, 1, D)
        out, hidden = dec.rnn(torch.cat([context, x.unsqueeze(1)], dim=-1).transpose(0, 1), hidden)
        outputs.append(out)
    return dec.dense(torch.cat(outputs)).transpose(0, 1), hidden


@pytest.mark.parametrize(("layers", "seed"), [(1, 0), (2, 1), (3, 2)])
def test_attention_decoder_equals_the_plain_equations(layers, seed):
    """The decoder's shortcuts (keys projected once per call, one GRU cell per step) compute
    the plain equations: same logits, same final state, same gradients, for 1 to 3 layers."""
    torch.manual_seed(seed)
    B, Ts, Tt, V = 3, 7, 6, 19
    dec = Seq2SeqAttentionDecoder(V, 5, 8, layers).eval()
    enc = torch.randn(B, Ts, 8, requires_grad=True)
    hidden = torch.randn(layers, B, 8, requires_grad=True)
    valid, X = torch.tensor([7, 3, 5]), torch.randint(0, V, (B, Tt))
    logits, (_, h_fast, _) = dec(X, [enc, hidden, valid])
    ref, h_ref = reference_attention_decoder(dec, X, [enc, hidden, valid])
    torch.testing.assert_close(logits, ref)
    torch.testing.assert_close(h_fast, h_ref)
    grads_fast = torch.autograd.grad(logits.square().sum(), [enc, hidden, *dec.parameters()])
    grads_ref = torch.autograd.grad(ref.square().sum(), [enc, hidden, *dec.parameters()])
    for g_fast, g_ref in zip(grads_fast, grads_ref):
        torch.testing.assert_close(g_fast, g_ref)


def test_projected_keys_must_be_the_keys_projection():
    attention = course_lib.AdditiveAttention(8, 0.0, query_size=4, key_size=6)
    q, k = torch.randn(2, 1, 4), torch.randn(2, 5, 6)
    same = attention(q, k, k, projected_keys=attention.W_k(k))
    torch.testing.assert_close(same, attention(q, k, k))
    with pytest.raises(ValueError, match="projected_keys must be W_k"):
        attention(q, k, k, projected_keys=torch.randn(2, 4, 8))


def test_plain_decoder_uses_one_fixed_context():
    torch.manual_seed(2)
    model = EncoderDecoder(Seq2SeqEncoder(20, 8, 16, 1), Seq2SeqDecoder(25, 8, 16, 1)).eval()
    src = torch.randint(3, 20, (2, 6))
    out = model(src, torch.randint(3, 25, (2, 4)))
    assert out.shape == (2, 4, 25)
    src2 = src.clone()
    src2[:, :3] = 3  # change early tokens: the plain decoder sees them only through h_T
    assert not torch.allclose(model(src2, torch.zeros(2, 4, dtype=torch.long)), model(src, torch.zeros(2, 4, dtype=torch.long)))


def test_masked_loss_equals_cross_entropy_ignoring_padding():
    torch.manual_seed(3)
    logits, tgt = torch.randn(2, 4, 7), torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    expected = F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=0)
    torch.testing.assert_close(masked_ce_loss(logits, tgt, torch.tensor([3, 2])), expected)
    assert shift_right(tgt, bos=9).tolist() == [[9, 1, 2, 3], [9, 4, 5, 0]]


@pytest.fixture(scope="module")
def trained():
    corpus = load_corpus(num_sentences=1200, seed=5)
    torch.manual_seed(0)
    model = EncoderDecoder(
        Seq2SeqEncoder(len(corpus.src_vocab), 32, 64, 1), Seq2SeqAttentionDecoder(len(corpus.tgt_vocab), 32, 64, 1)
    )
    losses = train_seq2seq(model, corpus.loader("train", 64), corpus.tgt_vocab, 6, 0.01, show=False)
    return corpus, model, losses


def test_training_lowers_the_loss(trained):
    _, _, losses = trained
    assert losses[-1] < 0.75 * losses[0] and all(b < a for a, b in zip(losses, losses[1:]))


def test_greedy_decode_is_the_argmax_loop(trained):
    corpus, model, _ = trained
    s = corpus.test[0]
    out, weights = greedy_decode(model, s.en, corpus.src_vocab, corpus.tgt_vocab)
    state = model.decoder.init_state(
        model.encoder(torch.tensor([corpus.src_vocab[list(s.en)] + [corpus.src_vocab["<eos>"]]]), torch.tensor([len(s.en) + 1])),
        torch.tensor([len(s.en) + 1]),
    )
    step, manual = torch.tensor([[corpus.tgt_vocab["<bos>"]]]), []
    with torch.no_grad():
        for _ in range(len(out)):
            logits, state = model.decoder(step, state)
            step = logits.argmax(-1)
            manual.append(corpus.tgt_vocab.to_tokens(int(step)))
    assert manual == out and weights.shape[1] == len(s.en) + 1
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(weights)))


class _ToyDecoder(torch.nn.Module):
    """Fixed next-token probabilities, where greedy decoding goes wrong: after <bos>,
    "a" (0.6) beats "b" (0.4); but after "a" every continuation is unlikely, while "b" is
    followed by <eos> with probability 0.9. The best sentence is "b" (0.36)."""

    def __init__(self, vocab):
        super().__init__()
        V = len(vocab)
        probs = torch.full((V, V), 1e-6)
        bos, eos, a, b = vocab["<bos>"], vocab["<eos>"], vocab["a"], vocab["b"]
        probs[bos, a], probs[bos, b] = 0.6, 0.4
        probs[a, a], probs[a, b], probs[a, eos] = 0.34, 0.33, 0.33
        probs[b, eos], probs[b, a] = 0.9, 0.1
        self.register_buffer("log_probs", probs.log())

    def init_state(self, *args):
        return None

    def forward(self, X, state):
        return self.log_probs[X[:, -1]].unsqueeze(1), state  # (1, 1, V)


class _Toy(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.decoder = _ToyDecoder(vocab)

    def encoder(self, ids, valid):
        return None


def test_beam_search_finds_what_greedy_misses():
    from course_lib.text import Vocab

    vocab = Vocab(["a", "b"])
    toy = _Toy(vocab)
    assert greedy_decode(toy, ["x"], vocab, vocab, max_steps=5)[0] == ["a"] * 5  # greedy never recovers
    assert beam_search(toy, ["x"], vocab, vocab, beam_size=2, max_steps=5) == ["b"]
    assert beam_search(toy, ["x"], vocab, vocab, beam_size=1, max_steps=5) == ["a"] * 5  # beam 1 = greedy


def test_beam_size_one_is_greedy_on_a_trained_model(trained):
    corpus, model, _ = trained
    for s in corpus.test[:10]:
        greedy = greedy_decode(model, s.en, corpus.src_vocab, corpus.tgt_vocab)[0]
        assert beam_search(model, s.en, corpus.src_vocab, corpus.tgt_vocab, beam_size=1) == greedy
    with pytest.raises(ValueError, match="beam_size must be an int >= 1"):
        beam_search(model, corpus.test[0].en, corpus.src_vocab, corpus.tgt_vocab, beam_size=0)


def test_evaluate_bleu_is_bleu_of_the_outputs(trained):
    corpus, model, _ = trained
    score, outputs = evaluate_bleu(model, corpus.test[:20], corpus.src_vocab, corpus.tgt_vocab)
    assert score == pytest.approx(bleu(outputs, [list(s.fr) for s in corpus.test[:20]]))
    assert 0 <= score <= 100
    with pytest.raises(ValueError, match="decode must be"):
        evaluate_bleu(model, corpus.test[:2], corpus.src_vocab, corpus.tgt_vocab, decode="sample")


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match=r"token ids of shape \(B, T\) with an integer dtype"):
        Seq2SeqEncoder(10, 4, 8, 1)(torch.zeros(2, 3, 4, dtype=torch.long))


def test_training_reports_progress(capsys):
    corpus = load_corpus(num_sentences=300, seed=2)
    model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 16, 1), Seq2SeqDecoder(len(corpus.tgt_vocab), 8, 16, 1))
    losses = train_seq2seq(model, corpus.loader("train", 64), corpus.tgt_vocab, 2, title="demo")
    out = capsys.readouterr().out.splitlines()
    steps = len(corpus.loader("train", 64))
    assert out[0].startswith("demo: [") and f"{steps}/{2 * steps} batches, epoch 1/2" in out[0]
    assert f"{2 * steps}/{2 * steps} batches, epoch 2/2" in out[1] and "#" * 30 in out[1]
    assert out[2].startswith("demo: 2 epochs in") and len(losses) == 2


def test_the_training_seed_fixes_the_batches_and_the_result():
    """Same starting weights + same seed -> same losses, even from one shared loader whose
    generator has moved on; another seed shuffles differently and ends elsewhere."""
    corpus = load_corpus(num_sentences=300, seed=2)
    loader = corpus.loader("train", 32)

    def run(seed):
        torch.manual_seed(0)  # the same initial weights every time
        model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 16, 1),
                               Seq2SeqAttentionDecoder(len(corpus.tgt_vocab), 8, 16, 1))
        return train_seq2seq(model, loader, corpus.tgt_vocab, 2, seed=seed, show=False)

    first = run(1)
    assert run(1) == first  # the loader's generator was used in between, and re-seeded
    assert run(2) != first
