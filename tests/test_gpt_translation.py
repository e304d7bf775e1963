"""Translation with a decoder-only model: encoding, batches, the training loop, greedy translation.

Oracles: the vocabulary read by hand (encoding); the items themselves, recovered from
every batch (batches); PyTorch's optimizer-step hooks (the step count), a cross-entropy
with ``ignore_index`` on targets whose non-French positions are set to -100 (the loss),
shorter runs from the same start (snapshots, Ctrl-C); a plain greedy loop written here,
one sentence at a time, without the cache (translation).
"""

from __future__ import annotations

import copy
import random
import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from course_lib.corpus import load_corpus
from course_lib.gpt import GPT, GPTConfig
from course_lib.gpt_translation import LMHistory, encode_translation, lm_batches, train_lm, translate_lm
from course_lib.text import BOS, EOS, MASK, PAD, RESERVED, SEP, UNK, Vocab
from course_lib.training import warmup_schedule

# A tiny world: English words, each with one French word; the French is the English
# word by word, reversed (so a model must read the whole source before writing).
EN = ["red", "cat", "dog", "sees", "big", "runs"]
FR = {"red": "rouge", "cat": "chat", "dog": "chien", "sees": "voit", "big": "grand", "runs": "court"}
VOCAB = Vocab([*EN, *FR.values()])


def _sentences(n: int, seed: int, lengths=(1, 6)) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < n:
        en = [rng.choice(EN) for _ in range(rng.randint(*lengths))]
        if tuple(en) not in seen:
            seen.add(tuple(en))
            pairs.append((en, [FR[w] for w in reversed(en)]))
    return pairs


def _tiny_gpt(seed: int = 0, **options) -> GPT:
    config = dict(vocab_size=len(VOCAB), max_len=16, num_hiddens=16, num_heads=2, num_blks=1, ffn_num_hiddens=32)
    config.update(options)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**config))


def _items(n: int = 12, seed: int = 0) -> list[tuple[list[int], int]]:
    return [encode_translation(pair, VOCAB) for pair in _sentences(n, seed)]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- encode_translation


def test_encode_translation_by_hand_on_a_small_vocabulary():
    vocab = Vocab(["a", "a", "b"])  # the reserved tokens in their order, then a (more frequent), then b
    assert vocab.idx_to_token[:len(RESERVED)] == list(RESERVED)
    a, b = len(RESERVED), len(RESERVED) + 1
    sep, eos, unk = RESERVED.index(SEP), RESERVED.index(EOS), RESERVED.index(UNK)
    assert encode_translation((["a", "b"], ["b"]), vocab) == ([a, b, sep, b, eos], 3)
    assert encode_translation((("b",), ("a", "a", "zzz")), vocab) == ([b, sep, a, a, unk, eos], 2)
    assert encode_translation([["zzz", UNK], ["a"]], vocab) == ([unk, unk, sep, a, eos], 3)  # <unk> may appear


def test_encode_translation_on_corpus_sentences():
    corpus = load_corpus()
    vocab = Vocab([t for s in corpus.train for t in (*s.en, *s.fr)])
    sentences = corpus.train[:40] + corpus.test_novel[:20]
    assert len({len(s.en) for s in sentences}) >= 5  # several source lengths
    for s in sentences:
        ids, n_before = encode_translation(s, vocab)
        expected = [vocab.idx_to_token.index(t) if t in vocab.idx_to_token else vocab.unk
                    for t in (*s.en, SEP, *s.fr, EOS)]
        assert ids == expected
        assert n_before == len(s.en) + 1 and ids[n_before - 1] == vocab.idx_to_token.index(SEP)
        assert vocab.to_tokens(ids[n_before:-1]) == list(s.fr)  # the French starts at n_before
        assert encode_translation((list(s.en), list(s.fr)), vocab) == (ids, n_before)  # a pair: the same


@pytest.mark.parametrize("sentence,match", [
    (([], ["rouge"]), "source .*empty"),
    ((["red"], []), "translation .*empty"),
    (("red cat", ["rouge"]), "str"),
    ((["red"], "rouge"), "str"),
    ((["red", SEP], ["rouge"]), "reserved token '<sep>'"),
    ((["red"], ["rouge", EOS]), "reserved token '<eos>'"),
    (([PAD, "red"], ["rouge"]), "reserved token '<pad>'"),
    ((["red"], [BOS, "rouge"]), "reserved token '<bos>'"),
    ((["red"], ["rouge", MASK]), "reserved token '<mask>'"),
    (([3, "red"], ["rouge"]), "str tokens"),
    ((["red"], ["rouge"], ["extra"]), r"\.en and \.fr"),
    (42, r"\.en and \.fr"),
    ((["red"], 7), "sequence of str tokens"),
])
def test_encode_translation_refuses_bad_sentences(sentence, match):
    with pytest.raises(ValueError, match=match):
        encode_translation(sentence, VOCAB)


def test_encode_translation_refuses_a_vocabulary_without_sep():
    with pytest.raises(ValueError, match="<sep>"):
        encode_translation((["a"], ["b"]), Vocab(["a", "b"], reserved_tokens=[PAD, EOS, UNK]))
    with pytest.raises(TypeError, match="Vocab"):
        encode_translation((["a"], ["b"]), {"a": 1})


# ---------------------------------------------------------------- lm_batches


def _unpad(X: torch.Tensor, Y: torch.Tensor, pad: int) -> list[list[int]]:
    """Each row's whole sequence (X's first token, then Y), trailing pads removed."""
    rows = []
    for x, y in zip(X.tolist(), Y.tolist()):
        seq = [x[0], *y]
        while seq and seq[-1] == pad:
            seq.pop()
        rows.append(seq)
    return rows


@pytest.mark.parametrize("n,batch_size,seed", [(1, 1, 0), (7, 3, 1), (33, 4, 2), (33, 32, 3), (20, 100, 4)])
def test_lm_batches_hold_every_item_once_shifted_and_masked(n, batch_size, seed):
    pad = VOCAB[PAD]
    items = _items(n, seed)
    before = copy.deepcopy(items)
    batches = list(lm_batches(items, batch_size, pad_id=pad, generator=torch.Generator().manual_seed(seed)))
    assert [len(X) for X, _, _ in batches] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
    seen = Counter()
    for X, Y, in_loss in batches:
        assert X.shape == Y.shape == in_loss.shape and X.dtype == Y.dtype == torch.long and in_loss.dtype == torch.bool
        for b, seq in enumerate(_unpad(X, Y, pad)):
            L = len(seq)
            assert X[b, :L - 1].tolist() == seq[:-1] and Y[b, :L - 1].tolist() == seq[1:]  # shifted by one
            assert (X[b, L:] == pad).all() and (Y[b, L - 1:] == pad).all()  # padding on the right only
            positions = in_loss[b].nonzero().flatten().tolist()
            n_before = positions[0] + 1
            assert positions == list(range(n_before - 1, L - 1))  # the French targets and <eos>, nothing else
            fr = seq[n_before:-1]
            assert len(positions) == len(fr) + 1 and Y[b, positions[-1]] == VOCAB[EOS]
            assert seq[n_before - 1] == VOCAB[SEP]
            seen[(tuple(seq), n_before)] += 1
        assert X.shape[1] == max(len(s) for s in _unpad(X, Y, pad)) - 1  # padded to the longest of the batch
    assert seen == Counter((tuple(ids), k) for ids, k in items)  # every item exactly once
    assert items == before  # unchanged


def test_lm_batches_shuffle_with_the_generator():
    items = _items(30, 0)
    pad = VOCAB[PAD]

    def order(seed=None, shuffle=True):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return [tuple(s) for X, Y, _ in lm_batches(items, 4, pad_id=pad, generator=gen, shuffle=shuffle)
                for s in _unpad(X, Y, pad)]

    assert order(0) == order(0) and order(5) == order(5)
    assert order(0) != order(1)
    assert order(shuffle=False) == [tuple(ids) for ids, _ in items]
    torch.manual_seed(3)
    first = order()
    torch.manual_seed(3)
    assert order() == first  # None: PyTorch's global generator
    gen = torch.Generator().manual_seed(0)  # one generator, two epochs: two orders
    epoch1 = [len(X) for X in lm_batches(items, 30, pad_id=pad, generator=gen)]
    a = next(lm_batches(items, 30, pad_id=pad, generator=torch.Generator().manual_seed(0)))[0]
    b = next(lm_batches(items, 30, pad_id=pad, generator=gen))[0]
    assert epoch1 == [3] and not torch.equal(a, b)


@pytest.mark.parametrize("items,kwargs,match", [
    ([], {}, "empty"),
    ("abc", {}, "list of"),
    ([([5, 6, 7], 1, 0)], {}, r"items\[0\].*pair"),
    ([([5, 6, 7], 0)], {}, "n_before"),
    ([([5, 6, 7], 3)], {}, "n_before"),
    ([([5, 6, 7], 1.0)], {}, "n_before"),
    ([([5, -1, 7], 1)], {}, "ids"),
    ([("567", 1)], {}, "ids"),
    ([([5, 6, 7], 1)], {"batch_size": 0}, "batch_size"),
    ([([5, 6, 7], 1)], {"pad_id": -1}, "pad_id"),
    ([([5, 6, 7], 1)], {"generator": 0}, "generator"),
    ([([5, 6, 7], 1)], {"shuffle": 1}, "shuffle"),
])
def test_lm_batches_refuse_bad_input_at_the_call(items, kwargs, match):
    args = dict(batch_size=2, pad_id=0) | kwargs
    batch_size = args.pop("batch_size")
    with pytest.raises(ValueError, match=match):
        lm_batches(items, batch_size, **args)  # at the call, before any batch is asked for


# ---------------------------------------------------------------- train_lm


def _reference_loss(net: nn.Module, items) -> float:
    """Mean cross-entropy per French token, over all items at once: non-French targets set to -100."""
    T = max(len(ids) for ids, _ in items)
    seqs = torch.full((len(items), T), VOCAB[PAD])
    target = torch.full((len(items), T - 1), -100)
    for b, (ids, n_before) in enumerate(items):
        seqs[b, :len(ids)] = torch.tensor(ids)
        target[b, n_before - 1:len(ids) - 1] = torch.tensor(ids[n_before:])
    with torch.no_grad():
        logits = net(seqs[:, :-1])  # (B, T - 1, V)
    return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100).item()


def _count_steps():
    """Every optimizer step, with the learning rate it used, through PyTorch's global step hook."""
    counter = {"steps": 0, "lrs": []}

    def hook(optimizer, args, kwargs):
        counter["steps"] += 1
        counter["lrs"].append(optimizer.param_groups[0]["lr"])

    return counter, register_optimizer_step_post_hook(hook)


def test_train_lm_lowers_the_loss_and_then_translates_the_training_sentences():
    items, pairs = _items(12), _sentences(12, 0)
    before = copy.deepcopy(items)
    net = _tiny_gpt()
    start = _reference_loss(net, items)
    history = train_lm(net, items, num_steps=300, pad_id=VOCAB[PAD], lr=0.01, batch_size=4, warmup=20)
    assert isinstance(history, LMHistory) and not history.interrupted
    assert history.losses[0] > 0.7 * start and history.losses[-1] < 0.1 * history.losses[0]
    assert _reference_loss(net, items) < 0.1 * start
    assert not net.training and items == before
    outputs = translate_lm(net, [en for en, _ in pairs], VOCAB)
    assert sum(out == fr for out, (_, fr) in zip(outputs, pairs)) >= 10  # memorized


@pytest.mark.parametrize("num_steps,batch_size,snapshots,expected", [
    (1, 4, (), [1]),
    (6, 4, (), [3, 6]),
    (7, 4, (), [3, 6, 7]),
    (7, 4, (2, 5, 6), [2, 3, 5, 6, 7]),
    (5, 12, (5,), [1, 2, 3, 4, 5]),
    (4, 5, (1,), [1, 3, 4]),
])
def test_train_lm_runs_exactly_num_steps_and_records_where_it_says(num_steps, batch_size, snapshots, expected):
    counter, handle = _count_steps()
    try:
        history = train_lm(_tiny_gpt(), _items(12), num_steps=num_steps, pad_id=VOCAB[PAD], batch_size=batch_size,
                           snapshot_steps=snapshots)
    finally:
        handle.remove()
    assert counter["steps"] == num_steps
    schedule = warmup_schedule(200)  # the default warm-up; step k uses its value at k
    assert counter["lrs"] == pytest.approx([0.002 * schedule(k) for k in range(1, num_steps + 1)], rel=1e-12)
    assert history.steps == expected  # epoch ends (12 items / batch_size), snapshots, the last step
    assert len(history.losses) == len(history.seconds) == len(expected)
    assert sorted(history.snapshots) == sorted(snapshots)
    assert all(b > a for a, b in zip(history.seconds, history.seconds[1:])) and history.seconds[0] > 0


def test_train_lm_same_seed_same_weights_other_seed_other_weights():
    start = _tiny_gpt(seed=3)
    nets = [copy.deepcopy(start) for _ in range(3)]
    for net, seed in zip(nets, (0, 0, 1)):
        train_lm(net, _items(12), num_steps=8, pad_id=VOCAB[PAD], batch_size=5, seed=seed)
    assert _same_weights(nets[0].state_dict(), nets[1].state_dict())
    assert not _same_weights(nets[0].state_dict(), nets[2].state_dict())
    assert not _same_weights(nets[0].state_dict(), start.state_dict())


def test_train_lm_clips_the_gradients():
    start = _tiny_gpt(seed=5)
    runs = {}
    for clip in (None, 1e9, 1e-7):
        net = copy.deepcopy(start)
        train_lm(net, _items(12), num_steps=4, pad_id=VOCAB[PAD], batch_size=4, clip=clip)
        runs[clip] = net.state_dict()
    assert _same_weights(runs[None], runs[1e9])  # a norm never reached: no clipping
    assert not _same_weights(runs[None], runs[1e-7])  # gradients scaled down to Adam's epsilon: other steps


def test_train_lm_loss_is_the_cross_entropy_over_french_targets():
    items = _items(12)
    net = _tiny_gpt(seed=1)
    expected = _reference_loss(net, items)
    history = train_lm(copy.deepcopy(net), items, num_steps=1, pad_id=VOCAB[PAD], batch_size=len(items))
    assert history.losses[0] == pytest.approx(expected, rel=1e-5)  # one batch of all items, before its step
    # An epoch of three batches with a learning rate too small to move a float32 weight: the record is the
    # mean over every French token of the epoch, not the mean of the three batches' means.
    frozen = train_lm(copy.deepcopy(net), items, num_steps=3, pad_id=VOCAB[PAD], batch_size=5, warmup=10**9)
    assert frozen.steps == [3] and frozen.losses[0] == pytest.approx(expected, rel=1e-5)
    per_batch = []
    for X, Y, in_loss in lm_batches(items, 5, pad_id=VOCAB[PAD], generator=torch.Generator().manual_seed(0)):
        with torch.no_grad():
            per_batch.append(F.cross_entropy(net(X)[in_loss], Y[in_loss]).item())
    assert abs(sum(per_batch) / len(per_batch) - expected) > 1e-3  # the test tells the two apart


def test_train_lm_snapshots_are_the_weights_at_those_steps():
    start = _tiny_gpt(seed=2)
    net = copy.deepcopy(start)
    history = train_lm(net, _items(12), num_steps=9, pad_id=VOCAB[PAD], batch_size=5, snapshot_steps=[2, 6])
    for k in (2, 6):
        shorter = copy.deepcopy(start)
        train_lm(shorter, _items(12), num_steps=k, pad_id=VOCAB[PAD], batch_size=5)
        assert _same_weights(history.snapshots[k], shorter.state_dict())
    assert not _same_weights(history.snapshots[6], net.state_dict())  # copies, not the live weights
    assert not _same_weights(history.snapshots[2], history.snapshots[6])
    restored = _tiny_gpt(seed=9)
    restored.load_state_dict(history.snapshots[6])  # a snapshot loads into a fresh model


def test_train_lm_keeps_the_run_on_ctrl_c(monkeypatch):
    start = _tiny_gpt(seed=4)
    net = copy.deepcopy(start)
    calls = {"n": 0}
    forward = net.forward

    def interrupted_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # in the middle of the second epoch (4 batches of 3)
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", interrupted_forward)
    try:
        with pytest.warns(UserWarning, match="interrupted after 5 of 20"):
            history = train_lm(net, _items(12), num_steps=20, pad_id=VOCAB[PAD], batch_size=3, snapshot_steps=[2])
    except KeyboardInterrupt:  # caught here, or it would stop the whole test run
        pytest.fail("train_lm re-raised the KeyboardInterrupt instead of returning the run so far")
    assert history.interrupted and history.steps == [2, 4, 5] and list(history.snapshots) == [2]
    assert not net.training
    shorter = copy.deepcopy(start)
    reference = train_lm(shorter, _items(12), num_steps=5, pad_id=VOCAB[PAD], batch_size=3, snapshot_steps=[2])
    assert _same_weights(net.state_dict(), shorter.state_dict())  # the model as trained by step 5
    assert history.losses == pytest.approx(reference.losses, rel=1e-6)


def test_train_lm_stops_on_a_loss_that_is_not_finite():
    net = _tiny_gpt()
    with torch.no_grad():
        net.embedding.weight[VOCAB["red"]] = float("nan")
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(FloatingPointError, match="step 1"):
        train_lm(net, _items(12), num_steps=3, pad_id=VOCAB[PAD])
    assert all(torch.equal(a, b) or (a.isnan() == b.isnan()).all() for a, b in
               zip(before.values(), net.state_dict().values()))


ITEMS = _items(12)


@pytest.mark.parametrize("kwargs,name", [
    (dict(num_steps=0), "num_steps"),
    (dict(num_steps=2.0), "num_steps"),
    (dict(num_steps=True), "num_steps"),
    (dict(lr=0), "lr"),
    (dict(lr=-0.1), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(batch_size=0), "batch_size"),
    (dict(warmup=0), "warmup"),
    (dict(seed=-1), "seed"),
    (dict(clip=0), "clip"),
    (dict(pad_id=-1), "pad_id"),
    (dict(pad_id=len(VOCAB)), "pad_id"),
    (dict(snapshot_steps=[0]), "snapshot_steps"),
    (dict(snapshot_steps=[5, 6]), "snapshot_steps"),
    (dict(snapshot_steps=5), "snapshot_steps"),
    (dict(snapshot_steps="3"), "snapshot_steps"),
    (dict(items=[]), "items"),
    (dict(items=[([5, 6], 1, 1)]), "items"),
    (dict(items=[([5, len(VOCAB)], 1)]), "items"),
    (dict(items=[(list(range(7, 7 + 10)) * 2, 3)]), "max_len"),
    (dict(device="nonsense"), "device"),
    (dict(net=nn.Linear(3, 3)), "GPT"),
])
def test_train_lm_refuses_bad_arguments_before_training(kwargs, name):
    net = kwargs.pop("net", _tiny_gpt())
    before = copy.deepcopy(net.state_dict())
    args = dict(items=ITEMS, num_steps=5, pad_id=VOCAB[PAD]) | kwargs
    with pytest.raises(ValueError, match=name):
        train_lm(net, args.pop("items"), **args)
    assert _same_weights(before, net.state_dict())


# ---------------------------------------------------------------- translate_lm


def _greedy_one(net: GPT, source: list[str], max_new: int | None = None) -> list[str]:
    """The plain loop: the whole sequence through the model at every step, argmax of the last position."""
    tokens = VOCAB[[*source, SEP]]
    budget = net.config.max_len - len(tokens) if max_new is None else max_new
    written = []
    with torch.no_grad():
        for _ in range(budget):
            nxt = int(net(torch.tensor([tokens]))[0, -1].argmax())
            if nxt == VOCAB[EOS]:
                break
            tokens.append(nxt)
            written.append(nxt)
    return VOCAB.to_tokens(written)


def _random_translator(seed: int, **options) -> GPT:
    """A random float64 model (no near-ties in float rounding) whose <eos> logit varies widely."""
    net = _tiny_gpt(seed=seed, tie_weights=False, num_blks=2, **options).double()
    with torch.no_grad():
        net.dense.weight[VOCAB[EOS]] *= 2  # <eos> wins at some steps and not others
    return net


@pytest.mark.parametrize("seed,options", [(0, {}), (1, dict(positions="rotary")), (2, dict(impl="sdpa")),
                                          (3, dict(positions="sinusoidal", num_kv_heads=1))])
def test_translate_lm_equals_a_plain_greedy_loop(seed, options):
    net = _random_translator(seed, **options)
    sources = [en for en, _ in _sentences(25, seed, lengths=(1, 8))]
    random.Random(seed).shuffle(sources)
    before = copy.deepcopy(sources)
    outputs = translate_lm(net, sources, VOCAB)
    expected = [_greedy_one(net, s) for s in sources]
    assert outputs == expected  # in the order of the sources
    assert sources == before
    assert all(EOS not in out for out in outputs)


def test_translate_lm_stops_at_eos_and_at_the_limits():
    stopped = full = nonempty = 0
    for seed in range(4):
        net = _random_translator(seed)
        sources = [en for en, _ in _sentences(25, seed, lengths=(1, 8))]
        outputs = translate_lm(net, sources, VOCAB)
        for source, out in zip(sources, outputs):
            room = net.config.max_len - len(source) - 1
            assert len(out) <= room
            stopped += len(out) < room
            full += len(out) == room
            nonempty += 0 < len(out) < room
        limited = translate_lm(net, sources, VOCAB, max_new_tokens=3)
        assert limited == [_greedy_one(net, s, 3) for s in sources]
        assert all(len(out) <= 3 for out in limited) and limited == [out[:3] for out in outputs]
    assert stopped > 10 and full > 10 and nonempty > 10  # translations ended by <eos> (some not at once), by max_len


@pytest.mark.parametrize("mode", [True, False])
def test_translate_lm_restores_the_training_flag(mode):
    net = _tiny_gpt(dropout=0.1)
    net.train(mode)
    net.blks[0].train(not mode)  # a submodule in the other mode stays so
    translate_lm(net, [["red", "cat"], ["dog"]], VOCAB)
    assert net.training == mode and net.blks[0].training == (not mode) and net.blks[0].attention.training == (not mode)
    assert net.embedding.training == mode
    assert torch.is_grad_enabled()  # gradients on again after the call


def test_translate_lm_with_no_source():
    assert translate_lm(_tiny_gpt(), [], VOCAB) == []


@pytest.mark.parametrize("sources,kwargs,match", [
    (["red cat"], {}, "str"),
    ("red cat", {}, "list of token sequences"),
    ([["red"], []], {}, r"sources\[1\] is empty"),
    ([["red", SEP]], {}, "reserved token"),
    ([["red"] * 15], {}, "no room"),
    ([["red"] * 10], dict(max_new_tokens=6), "at most 5 new tokens"),
    ([["red"]], dict(max_new_tokens=0), "max_new_tokens"),
    ([["red"]], dict(vocab=Vocab(["red", "rouge"])), "vocab has 9 tokens"),
    ([["red"]], dict(device="nonsense"), "device"),
])
def test_translate_lm_refuses_bad_input(sources, kwargs, match):
    vocab = kwargs.pop("vocab", VOCAB)
    with pytest.raises(ValueError, match=match):
        translate_lm(_tiny_gpt(), sources, vocab, **kwargs)


def test_translate_lm_on_another_device_than_the_model():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            translate_lm(_tiny_gpt(), [["red"]], VOCAB, device="cuda")
        return
    with pytest.raises(ValueError, match="move it first"):
        translate_lm(_tiny_gpt(), [["red"]], VOCAB, device="cuda")


def test_no_warning_from_a_normal_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_lm(_tiny_gpt(), _items(6), num_steps=2, pad_id=VOCAB[PAD])
