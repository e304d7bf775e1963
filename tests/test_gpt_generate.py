"""Generation: the top-k and top-p filters on hand-made distributions, greedy decoding, seeded sampling."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.gpt import GPT, GPTConfig
from course_lib.gpt_generate import generate, next_token_distribution, top_k_filter, top_p_filter

INF = float("inf")


def _kept(filtered: torch.Tensor) -> list[int]:
    return torch.isfinite(filtered).nonzero().flatten().tolist()


def _logits(probs: list[float]) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


# ---------------------------------------------------------------- top-k


@pytest.mark.parametrize("logits,k,kept", [
    ([1.0, 5.0, 3.0, 2.0], 1, [1]),
    ([1.0, 5.0, 3.0, 2.0], 2, [1, 2]),
    ([1.0, 5.0, 3.0, 2.0], 4, [0, 1, 2, 3]),
    ([1.0, 5.0, 3.0, 2.0], 9, [0, 1, 2, 3]),  # k beyond V keeps all
    ([2.0, 5.0, 2.0, 1.0], 2, [0, 1, 2]),  # a tie with the k-th: both kept
    ([3.0, 3.0, 3.0], 1, [0, 1, 2]),  # all tied
    ([-INF, 0.0, 1.0], 3, [1, 2]),  # already removed stays removed
])
def test_top_k_on_hand_made_logits(logits, k, kept):
    x = torch.tensor(logits)
    before = x.clone()
    out = top_k_filter(x, k)
    assert _kept(out) == kept
    torch.testing.assert_close(out[kept], x[kept])  # kept logits unchanged
    torch.testing.assert_close(x, before)  # input unchanged


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_keeps_exactly_k_without_ties_in_batches(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 50, generator=g)  # continuous: no ties
    for k in (1, 7, 50):
        out = top_k_filter(x, k)
        assert bool((torch.isfinite(out).sum(-1) == k).all())
        assert bool((out.max(-1).values == x.max(-1).values).all())


# ---------------------------------------------------------------- top-p


@pytest.mark.parametrize("probs,p,kept", [
    ([0.5, 0.3, 0.2], 0.5, [0]),  # the first token alone reaches p exactly: the next is not added
    ([0.5, 0.3, 0.2], 0.8, [0, 1]),  # 0.5 + 0.3 = 0.8 exactly
    ([0.5, 0.3, 0.2], 0.81, [0, 1, 2]),
    ([0.5, 0.3, 0.2], 0.1, [0]),  # the most likely token always stays
    ([0.5, 0.3, 0.2], 1.0, [0, 1, 2]),
    ([0.2, 0.3, 0.5], 0.8, [1, 2]),  # order of the vocabulary does not matter
    ([0.25, 0.25, 0.25, 0.25], 0.5, [0, 1]),  # ties: lower ids first, and stop at the exact boundary
    ([0.25, 0.25, 0.25, 0.25], 0.6, [0, 1, 2]),
    ([0.1, 0.4, 0.1, 0.4], 0.5, [1, 3]),  # tie at the top: 0.4 then 0.4 (0.4 < 0.5, so add the second)
    ([0.1, 0.4, 0.1, 0.4], 0.8, [1, 3]),  # 0.8 exactly
    ([0.1, 0.4, 0.1, 0.4], 0.85, [0, 1, 3]),  # the tied 0.1s: the lower id comes first
    ([1.0, 0.0, 0.0], 0.999, [0]),
])
def test_top_p_on_hand_made_distributions(probs, p, kept):
    for dtype in (torch.float64, torch.float32):
        x = _logits(probs).to(dtype)
        out = top_p_filter(x, p)
        assert _kept(out) == kept, (probs, p, dtype)
        torch.testing.assert_close(out[kept], x[kept])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_p_keeps_the_smallest_set_reaching_p(seed):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(4, 30, generator=g, dtype=torch.float64)
    probs = logits.softmax(-1)
    for p in (0.05, 0.3, 0.9, 0.99):
        keep = torch.isfinite(top_p_filter(logits, p))
        for row in range(4):
            mass = probs[row][keep[row]].sum()
            assert mass >= p - 1e-6  # reaches p
            smallest = probs[row][keep[row]].min()
            assert mass - smallest < p  # without its least likely token it would not
            assert bool((probs[row][~keep[row]] <= smallest).all())  # the kept are the most likely


def test_next_token_distribution_applies_temperature_then_filters():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(next_token_distribution(logits), logits.softmax(-1))
    torch.testing.assert_close(next_token_distribution(logits, temperature=2.0), (logits / 2).softmax(-1))
    sharp = next_token_distribution(logits, temperature=0.05)
    assert sharp[0, 0] > 0.999  # low temperature: nearly greedy
    flat = next_token_distribution(logits, temperature=100.0)
    torch.testing.assert_close(flat, torch.full((1, 4), 0.25), atol=0.01, rtol=0)
    both = next_token_distribution(logits, top_k=3, top_p=0.7)
    p = logits[0, :3].softmax(-1)  # top-3 first; then 0.665 < 0.7, so tokens 0 and 1
    assert p[0] < 0.7 < p[0] + p[1]
    torch.testing.assert_close(both[0], torch.cat([logits[0, :2].softmax(-1), torch.zeros(2)]))


# ---------------------------------------------------------------- generate


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=23, max_len=20, num_hiddens=16, num_heads=4, num_blks=2, ffn_num_hiddens=32,
                          positions="rotary", num_kv_heads=2))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)  # sharper than a fresh model, so that the tokens vary
    return model.eval()


def _greedy_by_hand(net, prompt, n):
    tokens = prompt.clone()
    for _ in range(n):
        tokens = torch.cat([tokens, net(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_greedy_equals_argmax_by_hand_and_both_switches(net):
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    expected = _greedy_by_hand(net, prompt, 8)
    for kwargs in (dict(temperature=0.0), dict(do_sample=False), dict(do_sample=False, temperature=3.0),
                   dict(temperature=0.0, use_cache=False)):
        assert torch.equal(generate(net, prompt, 8, **kwargs), expected), kwargs
    assert generate(net, torch.tensor([1, 2, 3]), 4, temperature=0).shape == (1, 7)
    assert torch.equal(generate(net, prompt, 0), prompt)


@pytest.mark.parametrize("kwargs", [dict(), dict(temperature=0.7), dict(top_k=3), dict(top_p=0.8),
                                    dict(temperature=1.5, top_k=5, top_p=0.9)])
def test_the_same_generator_state_gives_the_same_tokens(net, kwargs):
    prompt = torch.tensor([[3, 1], [7, 7]])
    runs = [generate(net, prompt, 12, generator=torch.Generator().manual_seed(s), **kwargs) for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])  # another seed, other tokens (the model is not degenerate)
    # the cache changes nothing: the same generator state, the same tokens
    again = generate(net, prompt, 12, generator=torch.Generator().manual_seed(5), use_cache=False, **kwargs)
    assert torch.equal(again, runs[0])


def test_sampling_draws_only_from_the_filtered_tokens(net):
    prompt = torch.tensor([[2, 9]]).repeat(200, 1)
    logits = net(prompt[:1])[0, -1]
    allowed = set(torch.topk(logits, 2).indices.tolist())
    out = generate(net, prompt, 1, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(out[:, -1].tolist()) <= allowed and len(set(out[:, -1].tolist())) == 2
    out = generate(net, prompt, 1, top_p=1e-9, generator=torch.Generator().manual_seed(0))  # only the top token
    assert set(out[:, -1].tolist()) == {int(logits.argmax())}


def test_sampling_frequencies_follow_the_distribution(net):
    prompt = torch.tensor([[4]]).repeat(4000, 1)
    probs = next_token_distribution(net(prompt[:1])[0, -1], temperature=2.0)
    out = generate(net, prompt, 1, temperature=2.0, generator=torch.Generator().manual_seed(1))[:, -1]
    freq = torch.bincount(out, minlength=23).double() / 4000
    se = (probs.double() * (1 - probs.double()) / 4000).sqrt()
    assert bool(((freq - probs.double()).abs() <= 5 * se + 1e-3).all())


def test_generation_stops_at_the_end_token(net):
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    run = lambda **kw: generate(net, prompt, 10, generator=torch.Generator().manual_seed(3), **kw)  # noqa: E731
    free = run()
    eos = int(free[0, 5])  # the third token sampled for the first sequence
    out = run(eos=eos)
    for row in range(2):
        hits = (free[row, 3:] == eos).nonzero().flatten().tolist()
        if hits:  # up to and including its first eos the sequence is the free one, then eos only
            end = 3 + hits[0] + 1
            assert torch.equal(out[row, :end], free[row, :end]) and bool((out[row, end:] == eos).all())
        else:
            assert torch.equal(out[row], free[row])
    firsts = [(free[r, 3:] == eos).nonzero().flatten().tolist() for r in range(2)]
    if all(firsts):  # both finished: generation stops after the later of the two eos
        assert out.shape[1] == 3 + max(f[0] for f in firsts) + 1
    else:
        assert out.shape[1] == 13


@pytest.mark.parametrize("kwargs,match", [
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=math.nan), "temperature"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(eos=23), "eos"),
    (dict(generator=0), "generator"),
    (dict(do_sample="yes"), "do_sample"),
])
def test_bad_arguments_are_refused_clearly(net, kwargs, match):
    args = dict(max_new_tokens=kwargs.pop("max_new_tokens", 3))
    with pytest.raises(ValueError, match=match):
        generate(net, torch.tensor([[1, 2]]), **args, **kwargs)


def test_bad_prompts_are_refused_clearly(net):
    with pytest.raises(ValueError, match="more than the model's context of max_len=20"):
        generate(net, torch.zeros(1, 21, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="ask for at most 5"):
        generate(net, torch.zeros(1, 15, dtype=torch.long), 6)
    with pytest.raises(ValueError, match="integer dtype"):
        generate(net, torch.zeros(1, 3), 1)
    with pytest.raises(ValueError, match="T >= 1"):
        generate(net, torch.zeros(1, 0, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="course_lib.gpt.GPT"):
        generate(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="top_k"):
        top_k_filter(torch.zeros(3), 0)
