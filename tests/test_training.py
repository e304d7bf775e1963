"""course_lib.training (shared by chapters 3, 5 and 6) and course_lib.decoding, with closed
forms and PyTorch's own loss as oracles."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.corpus import load_corpus
from course_lib.decoding import greedy_decode, length_buckets, translate
from course_lib.seq2seq import EncoderDecoder, Seq2SeqAttentionDecoder, Seq2SeqDecoder, Seq2SeqEncoder
from course_lib.training import fit, linear_warmup, masked_ce_loss, warmup_schedule


@pytest.fixture(scope="module")
def small():
    corpus = load_corpus(num_sentences=300, seed=2)
    torch.manual_seed(0)
    model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 16, 32, 1),
                           Seq2SeqAttentionDecoder(len(corpus.tgt_vocab), 16, 32, 1))
    fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 3, show=False)
    return corpus, model


def test_label_smoothing_matches_pytorch_on_the_real_tokens_only():
    torch.manual_seed(0)
    logits, tgt = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    lengths = torch.tensor([5, 2])
    expected = torch.cat([F.cross_entropy(logits[0], tgt[0], label_smoothing=0.1, reduction="none"),
                          F.cross_entropy(logits[1, :2], tgt[1, :2], label_smoothing=0.1, reduction="none")]).mean()
    torch.testing.assert_close(masked_ce_loss(logits, tgt, lengths, label_smoothing=0.1), expected)
    garbage = logits.clone()
    garbage[1, 2:] = 100 * torch.randn(3, 7)  # padding positions change nothing
    torch.testing.assert_close(masked_ce_loss(garbage, tgt, lengths, 0.1), expected)
    with pytest.raises(ValueError, match="label_smoothing"):
        masked_ce_loss(logits, tgt, lengths, label_smoothing=1.0)
    with pytest.raises(ValueError, match="do not match"):
        masked_ce_loss(logits[:, :4], tgt, lengths)


def test_warmup_schedule_is_the_transformer_rate_divided_by_its_peak():
    d_model, warmup = 512, 400
    sched = warmup_schedule(warmup)
    paper = lambda s: d_model ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)  # noqa: E731
    peak = paper(warmup)
    for step in (1, 10, 399, 400, 401, 1600, 10_000):
        assert math.isclose(sched(step), paper(step) / peak, rel_tol=1e-12)
    assert sched(warmup) == 1.0 and sched(4 * warmup) == 0.5
    assert linear_warmup(10)(5) == 0.5 and linear_warmup(10)(50) == 1.0
    with pytest.raises(ValueError):
        warmup_schedule(0)


def test_fit_applies_the_schedule_per_optimizer_step():
    corpus = load_corpus(num_sentences=120, seed=3)
    loader = corpus.loader("train", 32)
    model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 8, 1), Seq2SeqDecoder(len(corpus.tgt_vocab), 8, 8, 1))
    steps = len(loader)
    history = fit(model, loader, corpus.tgt_vocab, 2, lr=0.01, schedule=linear_warmup(4 * steps), show=False)
    # after epoch e the scheduler has taken e * steps steps: lr = 0.01 * (e * steps + 1) / (4 * steps)
    for epoch, lr in enumerate(history.learning_rates, 1):
        assert math.isclose(lr, 0.01 * (epoch * steps + 1) / (4 * steps), rel_tol=1e-9)


def test_early_stopping_stops_and_restores_the_best_epoch():
    corpus = load_corpus(num_sentences=120, seed=3)
    torch.manual_seed(0)
    model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 8, 1), Seq2SeqDecoder(len(corpus.tgt_vocab), 8, 8, 1))
    scores = iter([1.0, 3.0, 2.0, 2.5, 9.0])  # best at epoch 2, then two epochs without improvement
    snapshots = []

    def valid(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(scores)

    history = fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 5, valid_fn=valid, patience=2, show=False)
    assert history.valid_scores == [1.0, 3.0, 2.0, 2.5] and history.best_epoch == 2 and history.stopped_early
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[1][name])  # the weights of epoch 2 are back
    assert len(history.seconds) == 4 and all(a < b for a, b in zip(history.seconds, history.seconds[1:]))
    with pytest.raises(ValueError, match="early stopping"):
        fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 1, patience=2, show=False)


def test_batched_translation_equals_greedy_decoding_one_by_one(small):
    corpus, model = small
    sentences = [s.en for s in corpus.test[:25]]
    one_by_one = [greedy_decode(model, s, corpus.src_vocab, corpus.tgt_vocab)[0] for s in sentences]
    assert translate(model, sentences, corpus.src_vocab, corpus.tgt_vocab, batch_size=8) == one_by_one
    assert translate(model, sentences, corpus.src_vocab, corpus.tgt_vocab, batch_size=1) == one_by_one


def test_greedy_decode_returns_alignments_through_step_alignment(small):
    corpus, model = small
    s = corpus.test[0]
    out, weights = greedy_decode(model, s.en, corpus.src_vocab, corpus.tgt_vocab)
    assert weights.shape[1] == len(s.en) + 1 and len(weights) >= len(out)
    plain = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 8, 1), Seq2SeqDecoder(len(corpus.tgt_vocab), 8, 8, 1))
    assert greedy_decode(plain, s.en, corpus.src_vocab, corpus.tgt_vocab)[1] is None


def test_length_buckets_end_with_an_open_group():
    corpus = load_corpus(num_sentences=300, seed=2)
    groups = length_buckets(corpus.train, edges=(5, 10))
    assert [label for label, _ in groups] == ["1-5", "6-10", "11+"]
    assert sum(len(g) for _, g in groups) == len(corpus.train)
    assert all(len(s.en) > 10 for s in groups[-1][1])
    with pytest.raises(ValueError):
        length_buckets(corpus.train, edges=(10, 5))


def test_bidirectional_encoder_sees_both_sides_and_keeps_the_shapes():
    torch.manual_seed(1)
    X = torch.randint(3, 20, (2, 6))
    for bidirectional in (False, True):
        enc = Seq2SeqEncoder(20, 8, 16, 2, bidirectional=bidirectional).eval()
        outputs, state = enc(X, torch.tensor([6, 4]))
        assert outputs.shape == (6, 2, 16) and state.shape == (2, 2, 16)
        changed = X.clone()
        changed[0, 4] = (X[0, 4] + 1) % 20  # a later word of sentence 0
        sees_later = not torch.allclose(enc(changed, torch.tensor([6, 4]))[0][1, 0], outputs[1, 0])
        assert sees_later == bidirectional  # output at position 1 knows position 4 only if bidirectional
    # final state: the forward half ends at the last real token, the backward half at the first
    assert torch.allclose(state[-1, 1, :8], outputs[3, 1, :8]) and torch.allclose(state[-1, 1, 8:], outputs[0, 1, 8:])
    with pytest.raises(ValueError, match="odd"):
        Seq2SeqEncoder(20, 8, 15, 1, bidirectional=True)


# --- bad input: nothing silently wrong ----------------------------------------------------------


def test_masked_ce_loss_without_real_tokens_is_zero_and_padding_may_hold_anything():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, requires_grad=True)
    tgt = torch.randint(0, 6, (3, 4))
    loss = masked_ce_loss(logits, tgt, torch.zeros(3, dtype=torch.long))
    assert loss.item() == 0.0  # not NaN, like masked_lm_loss
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    lengths = torch.tensor([4, 1, 2])
    spoiled = tgt.clone()
    spoiled[1, 1:], spoiled[2, 2:] = -100, 99  # padding: out-of-vocabulary ids are never read
    torch.testing.assert_close(masked_ce_loss(logits, spoiled, lengths), masked_ce_loss(logits, tgt, lengths))
    real = tgt.clone()
    real[2, 1] = 6  # = V at a real position
    with pytest.raises(ValueError, match=r"tgt must be in \[0, 6\) .* got 6 at batch 2, position 1"):
        masked_ce_loss(logits, real, lengths)


def _tiny_task():
    corpus = load_corpus(num_sentences=120, seed=3)
    torch.manual_seed(0)
    model = EncoderDecoder(Seq2SeqEncoder(len(corpus.src_vocab), 8, 8, 1, dropout=0.0),
                           Seq2SeqDecoder(len(corpus.tgt_vocab), 8, 8, 1))
    return corpus, model


def test_fit_refuses_a_zero_clip_and_says_it_returns_the_model_in_eval_mode():
    corpus, model = _tiny_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="grad_clip must be a finite number > 0"):
        fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 1, grad_clip=0, show=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # refused before any step
    fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 1, grad_clip=None, show=False)
    assert not model.training and "returned in evaluation mode" in fit.__doc__ and "model.train()" in fit.__doc__


@pytest.mark.parametrize("score", [math.nan, math.inf, "12", None])
def test_fit_refuses_a_validation_score_that_is_not_a_number(score):
    corpus, model = _tiny_task()
    with pytest.raises(ValueError, match="valid_fn must return a finite number.*after epoch 1"):
        fit(model, corpus.loader("train", 32), corpus.tgt_vocab, 2, valid_fn=lambda m: score, show=False)


def test_fit_refuses_empty_loaders_and_batches_of_another_task():
    corpus, model = _tiny_task()
    with pytest.raises(ValueError, match="loader has no batch"):
        fit(model, [], corpus.tgt_vocab, 1, show=False)
    with pytest.raises(ValueError, match="loader has no batch"):
        fit(model, torch.utils.data.DataLoader(range(10), batch_size=32, drop_last=True), corpus.tgt_vocab, 1,
            show=False)  # fewer examples than one batch
    with pytest.raises(ValueError, match=r"batches \(src, src_valid_len, tgt, tgt_valid_len\), got a tuple of 3"):
        fit(model, corpus.tagging_loader("train", 32), corpus.tgt_vocab, 1, show=False)


def test_fit_stops_when_the_loss_diverges_and_keeps_the_last_finite_weights():
    """A NaN loss used to be averaged into the epoch's loss and its gradients written into the weights."""
    corpus, model = _tiny_task()
    calls = {"n": 0}
    forward = model.forward

    def spoiled_at_the_third_batch(*args, **kwargs):
        calls["n"] += 1
        out = forward(*args, **kwargs)
        if calls["n"] == 3:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
            return out * math.inf
        return out

    snapshot = {}
    model.forward = spoiled_at_the_third_batch
    with pytest.raises(FloatingPointError, match=r"training loss is (nan|inf) at batch 3 of epoch 1 .*smaller lr"):
        fit(model, corpus.loader("train", 16), corpus.tgt_vocab, 2, grad_clip=None, show=False)
    assert all(torch.equal(v, snapshot[k]) for k, v in model.state_dict().items())  # the bad step took no effect
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
