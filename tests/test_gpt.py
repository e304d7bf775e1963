"""The decoder-only model: RMSNorm, parameter counts, the two attention paths, grouped heads, the caches.

Oracles: ``torch.nn.RMSNorm``; PyTorch's ``scaled_dot_product_attention`` with the
chapter 2 masks; a multi-head model with every key/value head repeated (for grouped
and multi-query attention); the model's own full pass (for the caches); the classes
counted on the meta device (for the closed-form parameter counts). Hugging Face's
GPT-2 and Llama are the oracles of tests/test_gpt_bridge.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.gpt import (
    GPT,
    GPT2_SMALL,
    LLAMA2_7B,
    GPTConfig,
    KVCache,
    RMSNorm,
    SlidingWindowCache,
    cache_memory_bytes,
    gpt_parameter_count,
)
from course_lib.masking import causal_mask, local_window_mask

V = 37

# Every option, each with its alternatives; the combinations below cover every pair.
OPTIONS = dict(
    positions=("learned", "sinusoidal", "rotary"),
    num_kv_heads=(None, 2, 1),
    norm=("layernorm", "rmsnorm"),
    ffn=("gelu", "gelu_tanh", "swiglu"),
    bias=(True, False),
    tie_weights=(True, False),
    window=(None, 3),
)


def _all_combinations():
    keys = list(OPTIONS)
    for values in itertools.product(*OPTIONS.values()):
        yield dict(zip(keys, values))


ALL = list(_all_combinations())  # 3 * 3 * 2 * 3 * 2 * 2 * 2 = 432
# A fixed spread of them for the slower tests: every value of every option appears.
SOME = [ALL[i] for i in range(0, len(ALL), 17)]


def _config(seed_options: dict, **extra) -> GPTConfig:
    base = dict(vocab_size=V, max_len=24, num_hiddens=16, num_heads=4, num_blks=2, ffn_num_hiddens=24)
    base.update(seed_options)
    base.update(extra)
    return GPTConfig(**base)


def _perturbed(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Norm weights and biases moved away from 1 and 0, so that a swapped or missing one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return net


def _tokens(B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- RMSNorm


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape,eps", [((5, 8), 1e-6), ((2, 3, 16), 1e-5), ((1, 1, 1, 4), 0.1)])
def test_rmsnorm_equals_torch(seed, shape, eps):
    g = torch.Generator().manual_seed(seed)
    ours, theirs = RMSNorm(shape[-1], eps), torch.nn.RMSNorm(shape[-1], eps=eps)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(shape[-1], generator=g))
        ours.weight.copy_(theirs.weight)
    X = 3 * torch.randn(*shape, generator=g, requires_grad=True)
    before = X.detach().clone()
    out = ours(X)
    torch.testing.assert_close(out, theirs(X))
    torch.testing.assert_close(X.detach(), before, rtol=0, atol=0)
    gx_ours, = torch.autograd.grad(out.sum(), X)
    gx_theirs, = torch.autograd.grad(theirs(X).sum(), X)
    torch.testing.assert_close(gx_ours, gx_theirs)
    # no centring: adding a constant to a row changes the result (LayerNorm's would not)
    assert not torch.allclose(ours(X + 5.0), out, atol=1e-3)


def test_rmsnorm_half_precision_is_computed_in_float32():
    X = torch.randn(4, 64) * 300
    torch.testing.assert_close(RMSNorm(64)(X.bfloat16()).float(), RMSNorm(64)(X), atol=2e-2, rtol=2e-2)
    with pytest.raises(ValueError, match=r"\(\.\.\., 8\)"):
        RMSNorm(8)(torch.randn(3, 7))


# ---------------------------------------------------------------- parameter counts


def test_named_configs_count_on_the_meta_device():
    for config, expected in ((GPT2_SMALL, 124_439_808), (LLAMA2_7B, 6_738_415_616)):
        with torch.device("meta"):
            net = GPT(config)
        assert all(p.is_meta for p in net.parameters())  # nothing allocated
        counted = sum(p.numel() for p in net.parameters())  # each shared tensor once
        assert counted == expected == gpt_parameter_count(config)
    # GPT-2 ties its output layer: untied, it would have one more V x D matrix
    assert gpt_parameter_count(dataclasses.replace(GPT2_SMALL, tie_weights=False)) == 124_439_808 + 50257 * 768


@pytest.mark.parametrize("options", ALL[::3])
def test_closed_form_count_equals_the_classes_for_every_option(options):
    for extra in (dict(), dict(head_size=6, num_hiddens=20, ffn_num_hiddens=10, max_len=9, vocab_size=11)):
        if extra and options["positions"] == "sinusoidal":
            extra = dict(extra, num_hiddens=22)
        config = _config(options, **extra)
        with torch.device("meta"):
            net = GPT(config)
        assert sum(p.numel() for p in net.parameters()) == gpt_parameter_count(config), config


# ---------------------------------------------------------------- the model


def test_fresh_model_starts_near_a_uniform_guess():
    torch.manual_seed(0)
    net = GPT(_config(dict(), num_blks=4)).eval()
    X, Y = _tokens(8, 20, 0), _tokens(8, 20, 1)  # targets independent of the inputs
    loss = F.cross_entropy(net(X).reshape(-1, V), Y.reshape(-1))
    assert abs(loss.item() - math.log(V)) < 0.05
    assert net(X).std().item() < 0.5  # every logit small: no confident guess before training


@pytest.mark.parametrize("options", SOME)
def test_manual_and_sdpa_paths_agree_with_gradients(options):
    torch.manual_seed(1)
    net = _perturbed(GPT(_config(options)), 1).eval()
    X = _tokens(3, 11, 1)
    outs, grads = [], []
    for impl in ("manual", "sdpa"):
        net.impl = impl
        assert net.impl == impl
        net.zero_grad()
        out = net(X)
        out.pow(2).mean().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("index", range(len(ALL)))
def test_cache_one_token_at_a_time_equals_one_full_pass(index):
    """Every combination of options; the prompt is 1 token or several (alternately), then one token per call."""
    options = ALL[index]
    torch.manual_seed(index)
    net = _perturbed(GPT(_config(options)), index).eval()
    T, prompt = 7, (1 if index % 2 else 4)
    X = _tokens(2, T, index)
    full = net(X)  # (B, T, V)
    cache = net.make_cache()
    assert isinstance(cache, SlidingWindowCache if options["window"] else KVCache)
    pieces = [net(X[:, :prompt], cache)] + [net(X[:, t : t + 1], cache) for t in range(prompt, T)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=2e-5, rtol=1e-4)
    assert cache.get_seq_length(0) == cache.get_seq_length(1) == T
    if options["window"]:  # the rolling cache holds window - 1 positions, not T
        assert {cache.stored(i) for i in range(2)} == {options["window"] - 1}


@pytest.mark.parametrize("window", [None, 3])
def test_a_copied_cache_continues_independently(window):
    """Two continuations of one prompt from cache.copy(): each equals its own full pass."""
    torch.manual_seed(4)
    net = _perturbed(GPT(_config(dict(window=window, positions="rotary"))), 4).eval()
    prompt, a, b = _tokens(2, 5, 4), _tokens(2, 3, 5), _tokens(2, 2, 6)
    cache = net.make_cache()
    net(prompt, cache)
    branch = cache.copy()
    out_a = net(a, cache)
    out_b = net(b, branch)
    torch.testing.assert_close(out_a, net(torch.cat([prompt, a], 1))[:, 5:], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out_b, net(torch.cat([prompt, b], 1))[:, 5:], atol=2e-5, rtol=1e-4)
    assert cache.get_seq_length(0) == 8 and branch.get_seq_length(0) == 7


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_grouped_heads_equal_multi_head_with_repeated_key_value_heads(seed, num_kv_heads, positions):
    """Hkv key/value heads shared by groups of H / Hkv query heads = H heads whose W_k, W_v rows repeat."""
    torch.manual_seed(seed)
    H, Dh = 4, 4
    grouped = _perturbed(GPT(_config(dict(positions=positions, num_kv_heads=num_kv_heads))), seed).eval()
    multi = GPT(_config(dict(positions=positions, num_kv_heads=None))).eval()
    state = grouped.state_dict()
    G = H // num_kv_heads
    for name in list(state):
        if name.endswith(("W_k.weight", "W_k.bias", "W_v.weight", "W_v.bias")):
            t = state[name]
            t = t.reshape(num_kv_heads, Dh, *t.shape[1:]).repeat_interleave(G, dim=0)  # head h <- kv head h // G
            state[name] = t.reshape(H * Dh, *t.shape[2:])
    multi.load_state_dict(state)
    X = _tokens(2, 10, seed)
    torch.testing.assert_close(grouped(X), multi(X), atol=1e-5, rtol=1e-5)
    # and the cache of the grouped model is G times smaller
    c1, c2 = grouped.make_cache(), multi.make_cache()
    grouped(X, c1), multi(X, c2)
    assert cache_memory_bytes(c2) == G * cache_memory_bytes(c1) == 2 * 2 * (2 * 10 * 4 * 4 * 4)


def _reference_attention(attn, X, mask, positions):
    """One block's attention with PyTorch's kernel and the chapter 2 masks, written out here."""
    H, Hkv, Dh = attn.num_heads, attn.num_kv_heads, attn.head_size
    B, T, _ = X.shape
    q = attn.W_q(X).reshape(B, T, H, Dh).transpose(1, 2)
    k = attn.W_k(X).reshape(B, T, Hkv, Dh).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    v = attn.W_v(X).reshape(B, T, Hkv, Dh).transpose(1, 2).repeat_interleave(H // Hkv, dim=1)
    if attn.positions == "rotary":
        from course_lib.positional_encoding import apply_rotary

        q, k = apply_rotary(q, positions), apply_rotary(k, positions)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.W_o(out.transpose(1, 2).reshape(B, T, H * Dh))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 2, 5, 30])
@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_sliding_window_equals_full_attention_with_a_window_mask(seed, window, impl, positions):
    torch.manual_seed(seed)
    net = _perturbed(GPT(_config(dict(window=window, num_kv_heads=2, positions=positions), impl=impl)), seed).eval()
    attn = net.blks[0].attention
    T = 12
    X = torch.randn(2, T, 16, generator=torch.Generator().manual_seed(seed))
    mask = causal_mask(T) & local_window_mask(T, T, window - 1)  # keys i - window < j <= i
    torch.testing.assert_close(attn(X), _reference_attention(attn, X, mask, torch.arange(T)),
                               atol=1e-5, rtol=1e-5)
    if window < T:  # the window does change the result
        assert not torch.allclose(attn(X), _reference_attention(attn, X, causal_mask(T), torch.arange(T)))


def test_sliding_window_with_rotary_positions_sees_only_the_window():
    """One block, rotary positions: position t's output equals a full pass over the window ending at t alone."""
    torch.manual_seed(3)
    w = 4
    windowed = _perturbed(GPT(_config(dict(window=w, positions="rotary"), num_blks=1)), 3).eval()
    full = GPT(_config(dict(window=None, positions="rotary"), num_blks=1)).eval()
    full.load_state_dict(windowed.state_dict())
    X = _tokens(2, 15, 3)
    out = windowed(X)
    for t in range(w - 1, 15):
        torch.testing.assert_close(out[:, t], full(X[:, t - w + 1 : t + 1])[:, -1], atol=1e-5, rtol=1e-5)


def test_attention_weights_on_the_teaching_path_only():
    net = GPT(_config(dict(window=3))).eval()
    net(_tokens(2, 6, 0))
    weights = net.attention_weights
    assert len(weights) == 2 and weights[0].shape == (2, 4, 6, 6)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(2, 4, 6))
    assert bool((weights[0].tril(-3) == 0).all()) and bool((weights[0].triu(1) == 0).all())  # causal, window 3
    net.impl = "sdpa"
    with pytest.raises(RuntimeError, match="impl='manual'"):
        net.attention_weights


def test_tied_weights_are_one_tensor_and_untied_are_two():
    tied, untied = GPT(_config(dict(tie_weights=True))), GPT(_config(dict(tie_weights=False)))
    assert tied.dense.weight is tied.embedding.weight
    assert untied.dense.weight is not untied.embedding.weight


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_kv_heads=3), "num_kv_heads must divide num_heads=4"),
    (dict(num_kv_heads=0), "num_kv_heads"),
    (dict(num_heads=3), "num_heads must divide num_hiddens"),
    (dict(positions="alibi"), "positions must be one of"),
    (dict(norm="batchnorm"), "norm must be one of"),
    (dict(ffn="relu"), "ffn must be one of"),
    (dict(positions="rotary", head_size=5), "head_size must be even"),
    (dict(dropout=1.5), "dropout"),
    (dict(window=0), "window"),
    (dict(impl="flash"), "impl must be one of"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(bias=1), "bias must be True or False"),
])
def test_bad_config_is_refused_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(dict(), **kwargs)


def test_bad_input_is_refused_clearly():
    net = GPT(_config(dict()))
    with pytest.raises(ValueError, match="integer dtype"):
        net(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        net(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=f"vocabulary of {V}"):
        net(torch.tensor([[1, V]]))
    with pytest.raises(ValueError, match="max_len=24"):
        net(torch.zeros(1, 25, dtype=torch.long))
    cache = net.make_cache()
    net(torch.zeros(1, 20, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="20 cached \\+ 5 new"):
        net(torch.zeros(1, 5, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="make_cache"):
        net(torch.zeros(1, 2, dtype=torch.long), cache=[])
    with pytest.raises(ValueError, match="rolling cache"):
        GPT(_config(dict(window=2)))(torch.zeros(1, 2, dtype=torch.long), KVCache(2))
    with pytest.raises(ValueError, match="the cache has 3 layers"):
        net(torch.zeros(1, 2, dtype=torch.long), KVCache(3))
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT(dict(vocab_size=3))
    with pytest.raises(ValueError, match="impl must be one of"):
        net.impl = "fast"


# ---------------------------------------------------------------- cache memory and grouping a checkpoint


@pytest.mark.parametrize("options", SOME)
def test_kv_cache_bytes_equals_what_a_cache_holds(options):
    from course_lib.gpt import kv_cache_bytes

    net = GPT(_config(options)).eval()
    for dtype, size in ((torch.float32, 4), (torch.float64, 8)):
        net = net.to(dtype)
        cache = net.make_cache()
        net(_tokens(3, 5, 0), cache)
        for _ in range(4):
            net(_tokens(3, 1, 1), cache)
        assert cache_memory_bytes(cache) == kv_cache_bytes(net.config, 9, batch_size=3, bytes_per_number=size)
    assert kv_cache_bytes(LLAMA2_7B, 4096) == 2 * 2**30  # 512 KiB a token in float16


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("start,target", [(4, 2), (4, 1), (2, 1), (4, 4)])
def test_grouping_key_value_heads_averages_each_group(seed, start, target):
    from course_lib.gpt import group_key_value_heads

    torch.manual_seed(seed)
    net = _perturbed(GPT(_config(dict(num_kv_heads=start, positions="rotary"))), seed).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grouped = group_key_value_heads(net, target)
    assert grouped.config.kv_heads == target and not grouped.training
    for k, v in net.state_dict().items():  # the given model is unchanged
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    G, Dh = start // target, 4
    W = net.blks[1].attention.W_v.weight  # (start Dh, D)
    expected = W.reshape(target, G, Dh, -1).mean(1).reshape(target * Dh, -1)
    torch.testing.assert_close(grouped.blks[1].attention.W_v.weight, expected)
    torch.testing.assert_close(grouped.blks[1].attention.W_q.weight, net.blks[1].attention.W_q.weight)
    X = _tokens(2, 8, seed)
    if start == target:
        torch.testing.assert_close(grouped(X), net(X))
    # exact when the heads of each group are equal: make them equal, then group
    with torch.no_grad():
        for blk in net.blks:
            for lin in (blk.attention.W_k, blk.attention.W_v):
                for t in (lin.weight, lin.bias):
                    heads = t.reshape(target, G, Dh, *t.shape[1:])
                    t.copy_(heads[:, :1].expand_as(heads).reshape(t.shape))
    torch.testing.assert_close(group_key_value_heads(net, target)(X), net(X), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="num_kv_heads must divide"):
        group_key_value_heads(net, 3)
