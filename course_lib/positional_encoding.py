"""Chapter 4: positional encodings, sinusoidal (fixed) and learned; chapter 7: rotary.

Shape legend: B batch, T positions, D model size (``num_hiddens``; the book's d), L
``max_len``.

Self-attention treats its input as a set: permute the input vectors and the outputs are
permuted the same way. Adding a vector that depends on the position breaks that
symmetry. The sinusoidal encoding (equation 4.4 of the chapter, from Vaswani et al.
2017) is, for position ``pos`` and ``i = 0 .. D/2 - 1``::

    P[pos, 2i]     = sin(pos / 10000 ** (2i / D))
    P[pos, 2i + 1] = cos(pos / 10000 ** (2i / D))

Each column pair is a clock turning at its own frequency. Because of that, the encoding
of position ``pos + offset`` is a fixed linear map (a rotation of every column pair) of
the encoding of ``pos``: :func:`relative_position_map` builds it (the book's R_Δ, with
Δ = ``offset``, equation 4.5).

Chapter 7 adds rotary positions (:func:`apply_rotary`): instead of adding a vector to
the input, each query and key of every head is rotated, pair of features by pair of
features, by an angle proportional to its position, so that a query–key dot product
depends only on how far apart the two positions are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib._checks import check_int, check_number, check_probability, describe, is_int


def _check_sizes(num_hiddens: int, max_len: int, even: bool = True) -> None:
    if not is_int(num_hiddens) or num_hiddens <= 0 or (even and num_hiddens % 2):
        need = "a positive even int (the encoding fills columns in sin/cos pairs)" if even else "a positive int"
        raise ValueError(f"num_hiddens must be {need}, got {num_hiddens!r}")
    if not is_int(max_len) or max_len <= 0:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")


def frequencies(num_hiddens: int) -> Tensor:
    """The D/2 angular frequencies 1 / 10000 ** (2i / D), i = 0 .. D/2 - 1 (float64)."""
    _check_sizes(num_hiddens, 1)
    return 1.0 / torch.pow(10000.0, torch.arange(0, num_hiddens, 2, dtype=torch.float64) / num_hiddens)


def sinusoidal_encoding(max_len: int, num_hiddens: int) -> Tensor:
    """The matrix P (L, D) of equation 4.4: row ``pos`` is the encoding of position ``pos``."""
    _check_sizes(num_hiddens, max_len)
    angles = torch.arange(max_len, dtype=torch.float64).unsqueeze(1) * frequencies(num_hiddens)  # (L, D/2)
    P = torch.empty(max_len, num_hiddens, dtype=torch.float64)
    P[:, 0::2] = torch.sin(angles)
    P[:, 1::2] = torch.cos(angles)
    return P.float()  # computed in float64 so that large positions keep their precision


def relative_position_map(offset: int, num_hiddens: int) -> Tensor:
    """The (D, D) rotation R with ``P[pos + offset] = P[pos] @ R`` for every position.

    R (the book's R_Δ, equation 4.5, with Δ = ``offset``) is block diagonal: for column
    pair (2i, 2i + 1) with frequency omega_i, the 2 x 2 block is
    ``[[cos(offset omega_i), -sin(offset omega_i)], [sin(offset omega_i), cos(offset omega_i)]]``,
    which follows from sin(a + b) = sin a cos b + cos a sin b and
    cos(a + b) = cos a cos b - sin a sin b. It depends on the offset only, not on ``pos``.
    ``offset`` is an int (negative: backwards).
    """
    check_int("offset", offset, minimum=None)
    w = offset * frequencies(num_hiddens)  # (D/2,)
    M = torch.zeros(num_hiddens, num_hiddens, dtype=torch.float64)
    M[0::2, 0::2] = torch.diag(torch.cos(w))
    M[0::2, 1::2] = torch.diag(-torch.sin(w))
    M[1::2, 0::2] = torch.diag(torch.sin(w))
    M[1::2, 1::2] = torch.diag(torch.cos(w))
    return M


def _check_input(X: Tensor, num_hiddens: int, max_len: int) -> None:
    if not isinstance(X, Tensor) or X.dim() != 3 or X.shape[-1] != num_hiddens:
        raise ValueError(f"expected input (B, T, {num_hiddens}), got {getattr(X, 'shape', type(X).__name__)}")
    if not X.dtype.is_floating_point:
        raise ValueError(f"expected input (B, T, {num_hiddens}) of floating-point embeddings, got {describe(X)} "
                         "(token ids go through an nn.Embedding first)")
    if X.shape[1] > max_len:
        raise ValueError(f"sequence of {X.shape[1]} positions is longer than max_len={max_len}; build with a larger max_len")


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal encoding to its input, then dropout: (B, T, D) -> (B, T, D).

    ``PositionalEncoding(num_hiddens, dropout, max_len=1000)`` as in d2l 1.0.3. ``P``
    (1, L, D) is a non-persistent buffer: it follows ``.to(device)`` but is not saved in
    the state dict (it is a fixed function of the sizes), so the state dict is empty, as
    d2l's is.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000) -> None:
        super().__init__()
        _check_sizes(num_hiddens, max_len)
        check_probability("dropout", dropout)
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("P", sinusoidal_encoding(max_len, num_hiddens).unsqueeze(0), persistent=False)  # (1, L, D)

    def forward(self, X: Tensor) -> Tensor:
        _check_input(X, self.num_hiddens, self.max_len)
        return self.dropout(X + self.P[:, : X.shape[1]].to(X.dtype))  # (B, T, D) + (1, T, D)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position, then dropout: (B, T, D) -> (B, T, D).

    ``LearnedPositionalEmbedding(num_hiddens, dropout, max_len=1000)``. ``P`` (1, L, D) is
    a parameter trained with the model (as in BERT and GPT), initialised with small
    random values (standard deviation 0.02). It cannot say anything about positions
    beyond ``max_len``, which were never trained: longer inputs raise an error.
    """

    def __init__(self, num_hiddens: int, dropout: float, max_len: int = 1000) -> None:
        super().__init__()
        _check_sizes(num_hiddens, max_len, even=False)
        check_probability("dropout", dropout)
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        self.P = nn.Parameter(0.02 * torch.randn(1, max_len, num_hiddens))  # (1, L, D)

    def forward(self, X: Tensor) -> Tensor:
        _check_input(X, self.num_hiddens, self.max_len)
        return self.dropout(X + self.P[:, : X.shape[1]])  # (B, T, D) + (1, T, D)


def rotary_frequencies(head_size: int, base: float = 10000.0) -> Tensor:
    """The Dh/2 angular frequencies of rotary positions, 1 / base ** (2i / Dh), i = 0 .. Dh/2 - 1 (float64).

    The same frequencies as the sinusoidal encoding's (:func:`frequencies`, base 10000),
    computed for the size of one head instead of the model size.
    """
    if not is_int(head_size) or head_size <= 0 or head_size % 2:
        raise ValueError("rotary positions rotate feature pairs, so the size must be a positive even int, "
                         f"got {head_size!r}")
    base = check_number("base", base, positive=True)
    return 1.0 / torch.pow(float(base), torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)


def apply_rotary(X: Tensor, positions: Tensor, base: float = 10000.0) -> Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021): rotate feature pairs of X by angles ∝ their positions.

    Args:
        X: queries or keys (..., T, Dh), floating point, Dh even; any leading axes
            (e.g. (B, H, T, Dh), the heads already split).
        positions: (T,) the absolute position of each of the T rows (ints, or floats);
            e.g. ``torch.arange(start, start + T)`` for T tokens after ``start`` cached ones.
        base: the base of the frequencies (10000 in the paper, GPT-NeoX and Llama 2;
            500000 in Llama 3).

    Returns a new tensor (..., T, Dh) of X's dtype; X is not modified. For row t at
    position p and every pair i = 0 .. Dh/2 - 1 with angle a = p * omega_i,
    omega_i = base ** (-2i / Dh) (:func:`rotary_frequencies`)::

        out[2i]     = X[2i] cos a - X[2i + 1] sin a
        out[2i + 1] = X[2i] sin a + X[2i + 1] cos a

    that is, the pair (X[2i], X[2i + 1]), read as the complex number X[2i] + i X[2i + 1],
    is multiplied by e^(i a). A rotation keeps every pair's length, so the norm of each
    row is kept; and since rotating q by a and k by b turns their dot product into one
    that depends on b - a only, ``apply_rotary(q, m) . apply_rotary(k, n)`` depends on
    the positions m and n only through the offset n - m.

    **Pairing convention: interleaved pairs** (2i, 2i + 1), the convention of the paper
    (and of Meta's original Llama code), the same pairs as chapter 4's sinusoidal
    encoding. Hugging Face's Llama (``rotate_half``) and GPT-NeoX pair feature i with
    feature i + Dh/2 instead ("halves"). The two differ by a fixed permutation of each
    head's features, applied to queries and keys alike, which leaves every dot product
    unchanged; so a Llama checkpoint from Hugging Face gives the same model here once the
    rows of its ``q_proj`` and ``k_proj`` weights are reordered within each head,
    halves -> interleaved: our row 2i is their row i and our row 2i + 1 is their row
    i + Dh/2 (``course_lib.gpt_bridge`` does this; a bias, if any, the same way).

    The angles are computed in float64 (positions in the thousands keep their precision)
    and the cosines and sines cast to X's dtype.
    """
    if not isinstance(X, Tensor) or X.dim() < 2 or not X.dtype.is_floating_point:
        raise ValueError("apply_rotary expects floating-point queries or keys of shape (..., T, Dh), "
                         f"got {describe(X)}")
    T, Dh = X.shape[-2], X.shape[-1]
    if Dh % 2:
        raise ValueError(f"apply_rotary rotates feature pairs, so the last axis must be even, got X of shape "
                         f"{tuple(X.shape)} (Dh = {Dh})")
    if not isinstance(positions, Tensor) or positions.dim() != 1 or positions.shape[0] != T \
            or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise ValueError(f"positions must be a tensor (T,) = ({T},) of positions, one per row of X "
                         f"{tuple(X.shape)}, got {describe(positions)}")
    omega = rotary_frequencies(Dh, base).to(X.device)  # (Dh/2,)
    angles = positions.to(device=X.device, dtype=torch.float64).unsqueeze(1) * omega  # (T, Dh/2)
    cos, sin = torch.cos(angles).to(X.dtype), torch.sin(angles).to(X.dtype)  # (T, Dh/2) each
    even, odd = X[..., 0::2], X[..., 1::2]  # (..., T, Dh/2) each: the two members of every pair
    out = torch.empty_like(X)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out  # (..., T, Dh)
