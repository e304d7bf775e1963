"""Chapter 4: positional encodings, sinusoidal (fixed) and learned.

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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_lib._checks import check_int, check_probability, describe, is_int


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
