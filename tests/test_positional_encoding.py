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
