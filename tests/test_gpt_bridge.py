"""From Hugging Face's GPT-2 and Llama into the course's GPT: the same logits, in one pass and with the cache.

Offline: small, randomly initialized ``transformers`` models, every parameter drawn
anew (biases and norm weights far from 0 and 1), so that a missing, swapped or
untransposed tensor changes the logits. Negative controls show that the two
transformations the bridge makes (GPT-2's Conv1D transpose, Llama's rotary row order)
are needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from course_lib.gpt import GPT, from_huggingface, generate, gpt_parameter_count  # noqa: E402
from course_lib.hf_bridge import halves_to_interleaved  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
V = 61


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # biases and norm weights: far from 0 and 1
                p.copy_(0.5 * torch.randn(p.shape, generator=g) + (1.0 if "norm" in name or "ln" in name else 0.0))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return model.eval()


def _gpt2(seed: int, **overrides):
    cfg = dict(vocab_size=V, n_positions=24, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
               attn_pdrop=0.0)
    cfg.update(overrides)
    config = transformers.GPT2Config(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return _randomize(transformers.GPT2LMHeadModel(config), seed)


def _llama(seed: int, num_kv_heads: int, **overrides):
    cfg = dict(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=num_kv_heads, max_position_embeddings=24, rms_norm_eps=1e-6,
               tie_word_embeddings=False)
    cfg.update(overrides)
    config = transformers.LlamaConfig(**cfg)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return _randomize(transformers.LlamaForCausalLM(config), seed)


def _tokens(B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def _check_same_logits(theirs, ours, seed: int) -> None:
    X = _tokens(3, 13, seed)
    with torch.no_grad():
        expected = theirs(X).logits  # (B, T, V)
        for impl in ("manual", "sdpa"):
            ours.impl = impl
            torch.testing.assert_close(ours(X), expected, atol=2e-5, rtol=2e-5)
            cache = ours.make_cache()  # the prompt in one call, then one token per call
            pieces = [ours(X[:, :5], cache)] + [ours(X[:, t : t + 1], cache) for t in range(5, 13)]
            torch.testing.assert_close(torch.cat(pieces, dim=1), expected, atol=2e-5, rtol=2e-5)
    assert sum(p.numel() for p in ours.parameters()) == gpt_parameter_count(ours.config) == theirs.num_parameters()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("overrides", [dict(), dict(activation_function="gelu", n_inner=48),
                                       dict(tie_word_embeddings=False)])
def test_gpt2_gives_hugging_faces_logits(seed, overrides):
    theirs = _gpt2(seed, **overrides)
    ours = from_huggingface(theirs)
    assert ours.config.tie_weights == overrides.get("tie_word_embeddings", True)
    assert ours.config.ffn == ("gelu" if "activation_function" in overrides else "gelu_tanh")
    _check_same_logits(theirs, ours, seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_llama_gives_hugging_faces_logits_with_4_2_and_1_key_value_heads(seed, num_kv_heads):
    theirs = _llama(seed, num_kv_heads)
    ours = from_huggingface(theirs)
    assert ours.config.kv_heads == num_kv_heads and ours.config.positions == "rotary"
    _check_same_logits(theirs, ours, seed)


@pytest.mark.parametrize("overrides", [
    dict(attention_bias=True, mlp_bias=True),
    dict(tie_word_embeddings=True),
    dict(rope_theta=500000.0, rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    dict(head_dim=12),  # a head size that is not hidden_size / heads
])
def test_llama_variants_give_hugging_faces_logits(overrides):
    theirs = _llama(3, 2, **overrides)
    ours = from_huggingface(theirs)
    _check_same_logits(theirs, ours, 3)


def test_cached_generation_equals_hugging_faces_greedy_generation():
    theirs = _llama(4, 2)
    ours = from_huggingface(theirs)
    prompt = _tokens(2, 4, 4)
    expected = theirs.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0,
                               attention_mask=torch.ones_like(prompt))
    assert torch.equal(generate(ours, prompt, 8, do_sample=False), expected)


def test_the_two_transformations_are_needed():
    """Negative controls: without the Conv1D transpose or the rotary row order the logits differ."""
    X = _tokens(2, 9, 5)
    theirs = _gpt2(5)
    ours = from_huggingface(theirs)
    with torch.no_grad():
        expected = theirs(X).logits
        W = ours.blks[0].attention.W_o.weight  # square (D, D): an untransposed copy would load silently
        W.copy_(W.T.clone())
        assert not torch.allclose(ours(X), expected, atol=1e-3)
    theirs = _llama(5, 2)
    ours = from_huggingface(theirs)
    with torch.no_grad():
        expected = theirs(X).logits
        for blk, layer in zip(ours.blks, theirs.model.layers):  # copy q_proj and k_proj as they are
            blk.attention.W_q.weight.copy_(layer.self_attn.q_proj.weight)
            blk.attention.W_k.weight.copy_(layer.self_attn.k_proj.weight)
        assert not torch.allclose(ours(X), expected, atol=1e-3)


def test_halves_to_interleaved_row_order():
    assert halves_to_interleaved(2, 4).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert sorted(halves_to_interleaved(3, 8).tolist()) == list(range(24))


def test_unsupported_models_are_refused_clearly():
    with pytest.raises(ValueError, match="GPT2LMHeadModel or LlamaForCausalLM"):
        from_huggingface(transformers.BertModel(transformers.BertConfig(
            vocab_size=V, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)))
    with pytest.raises(ValueError, match="GPT2LMHeadModel or LlamaForCausalLM"):
        from_huggingface(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rope_type"):
        from_huggingface(_llama(0, 2, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}))
    with pytest.raises(ValueError, match="one bias switch"):
        from_huggingface(_llama(0, 2, attention_bias=True, mlp_bias=False))
    with pytest.raises(ValueError, match="activation_function"):
        from_huggingface(_gpt2(0, activation_function="relu"))


def test_course_lib_gpt_imports_without_transformers():
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None  # any import of transformers now fails\n"
        "import course_lib.gpt, course_lib.hf_bridge\n"
        "from course_lib.gpt import GPT, GPTConfig, from_huggingface\n"
        "GPT(GPTConfig(vocab_size=5))\n"
        "try:\n"
        "    from_huggingface(object())\n"
        "except ImportError:\n"
        "    print('ImportError')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ImportError"
