"""Positional encodings: the formula, d2l 1.0.3's class, the relative-position map, equivariance."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    PositionalEncoding,
    relative_position_map,
    sinusoidal_encoding,
)


def test_sinusoidal_encoding_is_the_formula_entry_by_entry():
    L, D = 50, 6
    P = sinusoidal_encoding(L, D)
    assert P.shape == (L, D) and P.dtype == torch.float32
    for pos in (0, 1, 7, 49):
        for i in range(D // 2):
            angle = pos / 10000 ** (2 * i / D)
            assert math.isclose(P[pos, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(P[pos, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


@pytest.mark.parametrize("D", [2, 8, 32])
def test_matches_d2l_with_empty_state_dicts(d2l, D):
    theirs, ours = d2l.PositionalEncoding(D, 0.0, max_len=200).eval(), PositionalEncoding(D, 0.0, max_len=200).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert ours.state_dict() == {}  # P is a fixed function of the sizes, not a parameter
    X = torch.randn(3, 150, D)
    # d2l computes the angles in float32, we in float64: they differ by float32 rounding of pos * w
    torch.testing.assert_close(ours(X), theirs(X), atol=1e-4, rtol=0)


def test_buffer_follows_dtype_and_is_not_trained():
    pe = PositionalEncoding(8, 0.0)
    assert list(pe.parameters()) == [] and pe.P.shape == (1, 1000, 8)
    out = pe(torch.zeros(2, 5, 8, dtype=torch.float64))
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[1].float(), sinusoidal_encoding(5, 8))


@pytest.mark.parametrize("offset", [1, 3, 10, -4])
@pytest.mark.parametrize("D", [4, 16, 64])
def test_relative_position_map_moves_every_position_by_the_offset(offset, D):
    P = sinusoidal_encoding(300, D).double()
    M = relative_position_map(offset, D)
    start, stop = max(0, -offset), 300 - max(0, offset)
    torch.testing.assert_close(P[start:stop] @ M, P[start + offset : stop + offset], atol=1e-6, rtol=0)
    torch.testing.assert_close(M @ M.T, torch.eye(D, dtype=torch.float64))  # a rotation: lengths are kept
    assert not torch.allclose(M, torch.eye(D, dtype=torch.float64))


def test_relative_position_map_composes():
    torch.testing.assert_close(relative_position_map(3, 8) @ relative_position_map(4, 8), relative_position_map(7, 8))


def test_learned_embedding_is_trainable_and_adds_per_position():
    torch.manual_seed(0)
    pe = LearnedPositionalEmbedding(5, 0.0, max_len=10)
    assert [n for n, _ in pe.named_parameters()] == ["P"] and pe.P.shape == (1, 10, 5)
    X = torch.randn(2, 4, 5)
    torch.testing.assert_close(pe(X), X + pe.P[:, :4])
    pe(X).sum().backward()
    assert pe.P.grad[0, :4].eq(2).all() and pe.P.grad[0, 4:].eq(0).all()  # two sequences used positions 0-3


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="even"):
        PositionalEncoding(7, 0.0)
    with pytest.raises(ValueError, match="max_len"):
        PositionalEncoding(8, 0.0, max_len=0)
    with pytest.raises(ValueError, match="longer than max_len=4"):
        PositionalEncoding(8, 0.0, max_len=4)(torch.zeros(1, 5, 8))
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        LearnedPositionalEmbedding(8, 0.0)(torch.zeros(1, 5, 6))
    LearnedPositionalEmbedding(7, 0.0)  # odd sizes are fine when nothing is paired


def test_self_attention_is_permutation_equivariant_until_positions_are_added():
    torch.manual_seed(0)
    T, D = 6, 16
    mha = MultiHeadAttention(D, 4, 0.0, query_size=D, key_size=D, value_size=D).eval()
    X = torch.randn(1, T, D)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out, out_perm = mha(X, X, X), mha(X[:, perm], X[:, perm], X[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-6, rtol=1e-5)  # permuted inputs -> permuted outputs
    pe = PositionalEncoding(D, 0.0).eval()
    Y, Y_perm = pe(X), pe(X[:, perm])
    with_pe, with_pe_perm = mha(Y, Y, Y), mha(Y_perm, Y_perm, Y_perm)
    assert (with_pe_perm - with_pe[:, perm]).abs().max() > 1e-2  # the symmetry is broken


# ---------------------------------------------------------------- rotary positions (chapter 7)

from course_lib.positional_encoding import apply_rotary, rotary_frequencies  # noqa: E402


def _interleaved_to_halves(Dh: int) -> torch.Tensor:
    """Index map: halves-layout feature j holds interleaved feature perm[j] (pair i = (2i, 2i+1) -> (i, i + Dh/2))."""
    return torch.cat([torch.arange(0, Dh, 2), torch.arange(1, Dh, 2)])


def test_rotary_is_the_formula_pair_by_pair():
    torch.manual_seed(0)
    X, positions = torch.randn(2, 5, 6, dtype=torch.float64), torch.tensor([0, 1, 4, 9, 300])
    out = apply_rotary(X, positions, base=100.0)
    for t, p in enumerate(positions.tolist()):
        for i in range(3):
            a = p / 100.0 ** (2 * i / 6)
            x0, x1 = X[:, t, 2 * i], X[:, t, 2 * i + 1]
            torch.testing.assert_close(out[:, t, 2 * i], x0 * math.cos(a) - x1 * math.sin(a))
            torch.testing.assert_close(out[:, t, 2 * i + 1], x0 * math.sin(a) + x1 * math.cos(a))
    torch.testing.assert_close(apply_rotary(X, torch.zeros(5, dtype=torch.long)), X)  # position 0: no rotation


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(7, 2), (3, 9, 8), (2, 4, 11, 16)])
def test_rotary_keeps_norms_and_its_input(seed, shape):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(*shape, generator=g)
    positions = torch.randint(0, 5000, (shape[-2],), generator=g)
    before = X.clone()
    out = apply_rotary(X, positions)
    assert out.shape == X.shape and out.dtype == X.dtype
    torch.testing.assert_close(X, before, rtol=0, atol=0)  # the input is not modified
    torch.testing.assert_close(out.norm(dim=-1), X.norm(dim=-1))
    pairs = lambda Y: Y.reshape(*Y.shape[:-1], -1, 2).norm(dim=-1)  # noqa: E731  every pair keeps its own length
    torch.testing.assert_close(pairs(out), pairs(X))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("Dh", [2, 8, 64])
def test_rotated_dot_product_depends_only_on_the_offset(seed, Dh):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, Dh, generator=g, dtype=torch.float64), torch.randn(1, Dh, generator=g, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        return apply_rotary(q, torch.tensor([m])) @ apply_rotary(k, torch.tensor([n])).T

    for offset in (-7, 0, 1, 5, 123):
        scores = torch.stack([score(m, m + offset) for m in (0, 3, 50, 1000, 20000)]).flatten()
        torch.testing.assert_close(scores, scores[:1].expand_as(scores), atol=1e-9, rtol=1e-9)
    # and it does depend on the offset (else the test above proves nothing)
    assert not torch.allclose(score(0, 1), score(0, 2))


def test_rotary_frequencies_are_the_sinusoidal_ones():
    from course_lib.positional_encoding import frequencies

    torch.testing.assert_close(rotary_frequencies(16), frequencies(16))
    torch.testing.assert_close(rotary_frequencies(4, base=500000.0),
                               torch.tensor([1.0, 500000.0 ** -0.5], dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("Dh,base", [(8, 10000.0), (32, 10000.0), (16, 500000.0)])
def test_rotary_equals_hugging_face_llama_after_the_halves_permutation(seed, Dh, base):
    """HF's Llama pairs feature i with i + Dh/2 ("halves"); ours pairs 2i with 2i + 1 ("interleaved")."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    H, T, B = 2, 10, 3
    config = transformers.LlamaConfig(hidden_size=H * Dh, num_attention_heads=H, rope_theta=base,
                                      max_position_embeddings=4096)
    config.rope_parameters = {"rope_type": "default", "rope_theta": base}
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, H, T, Dh, generator=g), torch.randn(B, H, T, Dh, generator=g)
    position_ids = torch.randint(0, 2000, (T,), generator=g)
    cos, sin = LlamaRotaryEmbedding(config)(q, position_ids.unsqueeze(0).expand(B, T))  # (B, T, Dh) each
    perm = _interleaved_to_halves(Dh)
    inverse = torch.argsort(perm)
    q_hf, k_hf = apply_rotary_pos_emb(q[..., perm], k[..., perm], cos, sin)  # HF on the halves layout
    torch.testing.assert_close(apply_rotary(q, position_ids, base), q_hf[..., inverse], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(apply_rotary(k, position_ids, base), k_hf[..., inverse], atol=2e-4, rtol=1e-4)
    # Without the permutation the two conventions disagree: the bridge must reorder W_q and W_k.
    q_direct, _ = apply_rotary_pos_emb(q, k, cos, sin)
    assert not torch.allclose(apply_rotary(q, position_ids, base), q_direct, atol=1e-2)


@pytest.mark.parametrize("X,positions,match", [
    (torch.randn(2, 4, 5), torch.arange(4), "even"),
    (torch.randn(2, 4, 6), torch.arange(3), r"\(T,\) = \(4,\)"),
    (torch.randn(2, 4, 6), torch.arange(4).reshape(1, 4), r"\(T,\) = \(4,\)"),
    (torch.randn(2, 4, 6), [0, 1, 2, 3], r"\(T,\) = \(4,\)"),
    (torch.arange(24).reshape(4, 6), torch.arange(4), "floating-point"),
    (torch.randn(6), torch.arange(1), r"\(\.\.\., T, Dh\)"),
])
def test_rotary_bad_input_is_refused_clearly(X, positions, match):
    with pytest.raises(ValueError, match=match):
        apply_rotary(X, positions)
    with pytest.raises(ValueError, match="base"):
        apply_rotary(torch.randn(3, 4), torch.arange(3), base=-1.0)
