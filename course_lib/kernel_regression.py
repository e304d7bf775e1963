"""Chapter 1: attention pooling as Nadaraya–Watson kernel regression.

Shape legend: Q queries (test inputs), K keys (training inputs), Dv value size.

The estimator (Nadaraya 1964, Watson 1964), equation (1.3) of the chapter::

    f(q) = sum_i  alpha(q, k_i) v_i,    alpha(q, k_i) = κ((q - k_i) / h) / sum_j κ((q - k_j) / h)

Keys k_i and queries q are scalars; values v_i are scalars or vectors. κ (kappa) is the
kernel and ``h`` the bandwidth (the kernel's width; in the book ``h`` means nothing
else). With the Gaussian kernel the attention weights are exactly
``softmax(-((q - k_i) / h)**2 / 2)`` over i, which is how they are computed here (stable
even for tiny widths).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from course_lib._checks import check_number
from course_lib.masking import host_checks_allowed

Kernel = Callable[[Tensor], Tensor]


def gaussian_kernel(u: Tensor) -> Tensor:
    """Gaussian kernel exp(-u^2 / 2) (unnormalized: constants cancel in the weights)."""
    return torch.exp(-(u**2) / 2)


def boxcar_kernel(u: Tensor) -> Tensor:
    """Boxcar (uniform) kernel: 1 where |u| <= 1, else 0."""
    return (u.abs() <= 1).to(u.dtype)


def constant_kernel(u: Tensor) -> Tensor:
    """Constant kernel: every key gets the same weight, i.e. average pooling."""
    return torch.ones_like(u)


def epanechnikov_kernel(u: Tensor) -> Tensor:
    """Epanechnikov kernel 3/4 (1 - u^2) for |u| <= 1, else 0."""
    return 0.75 * torch.clamp(1 - u**2, min=0)


#: The kernels by name, as accepted by :func:`nadaraya_watson`.
KERNELS: dict[str, Kernel] = {
    "gaussian": gaussian_kernel,
    "boxcar": boxcar_kernel,
    "epanechnikov": epanechnikov_kernel,
    "constant": constant_kernel,
}


def _resolve_kernel(kernel: str | Kernel) -> tuple[str, Kernel]:
    if callable(kernel):
        return getattr(kernel, "__name__", "custom"), kernel
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; expected one of {sorted(KERNELS)} or a callable")
    return kernel, KERNELS[kernel]


def _check_inputs(queries: Tensor, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """Validate shapes; return keys and values broadcast per query: (Q, K) and (Q, K[, Dv])."""
    for name, t in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if queries.dim() != 1:
        raise ValueError(f"queries must be 1-D (Q,), got shape {tuple(queries.shape)}")
    n_q = queries.shape[0]
    if keys.dim() == 1:  # keys shared by all queries
        keys = keys.unsqueeze(0).expand(n_q, -1)  # (Q, K)
        if values.dim() not in (1, 2) or values.shape[0] != keys.shape[1]:
            raise ValueError(
                f"with keys of shape (K,) = {tuple(keys.shape[1:])}, values must be (K,) or (K, Dv); "
                f"got {tuple(values.shape)}"
            )
        values = values.unsqueeze(0).expand(n_q, *values.shape)  # (Q, K[, Dv])
    elif keys.dim() == 2:  # one set of keys per query, e.g. leave-one-out
        if keys.shape[0] != n_q:
            raise ValueError(f"keys of shape (Q, K) need Q = {n_q} rows, got {tuple(keys.shape)}")
        if values.dim() not in (2, 3) or values.shape[:2] != keys.shape:
            raise ValueError(
                f"with keys of shape (Q, K) = {tuple(keys.shape)}, values must be (Q, K) or (Q, K, Dv); "
                f"got {tuple(values.shape)}"
            )
    else:
        raise ValueError(f"keys must be (K,) or (Q, K), got shape {tuple(keys.shape)}")
    if keys.shape[1] == 0:
        raise ValueError("need at least one key/value pair, got K = 0")
    return keys, values


def _pool(
    u: Tensor, values: Tensor, name: str, kernel_fn: Kernel, width: Callable[[], str]
) -> tuple[Tensor, Tensor]:
    """Weights from the scaled differences u (Q, K) and the pooled values.

    ``width()`` describes the kernel's width for the warning about empty queries; it is
    called only when that warning is issued.
    """
    empty = None  # (Q,) queries with no key in the kernel's support
    if kernel_fn is gaussian_kernel:  # by the function, however it was named or passed
        weights = torch.softmax(-(u**2) / 2, dim=1)  # (Q, K), exact and overflow-free
    else:
        k = kernel_fn(u)  # (Q, K)
        if k.shape != u.shape:
            raise ValueError(f"kernel {name!r} returned shape {tuple(k.shape)} for input {tuple(u.shape)}")
        checks = host_checks_allowed(k)
        if checks and bool((k < 0).any()):
            raise ValueError(f"kernel {name!r} returned negative values; kernels must be non-negative")
        total = k.sum(dim=1, keepdim=True)  # (Q, 1)
        empty = total.squeeze(1) == 0  # (Q,)
        if checks and bool(empty.any()):
            warnings.warn(
                f"{int(empty.sum())} of {len(u)} queries have no key inside the {name} "
                f"kernel's support ({width()}); their predictions are NaN",
                RuntimeWarning,
                stacklevel=3,
            )
        weights = k / torch.where(total == 0, torch.ones_like(total), total)  # (Q, K)
    if values.dim() == 2:
        preds = (weights * values).sum(dim=1)  # (Q,)
    else:
        preds = torch.einsum("qk,qkd->qd", weights, values)  # (Q, Dv)
    if empty is not None:  # no host sync: torch.where is cheap where nothing is empty
        mask = empty.view(-1, *([1] * (preds.dim() - 1)))  # (Q,) or (Q, 1)
        preds = torch.where(mask, torch.full_like(preds, math.nan), preds)
    return preds, weights


def _positive_number(x: object) -> bool:
    try:
        check_number("x", x, positive=True)
    except ValueError:
        return False
    return True


def nadaraya_watson(
    queries: Tensor,
    keys: Tensor,
    values: Tensor,
    kernel: str | Kernel = "gaussian",
    bandwidth: float | Tensor = 1.0,
) -> tuple[Tensor, Tensor]:
    """Nadaraya–Watson attention pooling.

    Args:
        queries: (Q,) inputs at which to predict.
        keys: (K,) training inputs shared by all queries, or (Q, K) a set per query.
        values: (K,) or (K, Dv) training targets; (Q, K) or (Q, K, Dv) with per-query keys.
        kernel: a name from :data:`KERNELS` or a callable applied elementwise to
            ``(q - k) / bandwidth``. The Gaussian kernel, by name or as the function
            :func:`gaussian_kernel` itself, is computed as a softmax, which stays exact
            for tiny widths where ``exp`` underflows to zero for every key.
        bandwidth: the kernel's width h > 0 (a float or a scalar tensor, which may
            require grad).

    Returns:
        ``(predictions, weights)``: predictions (Q,) or (Q, Dv) and attention weights
        (Q, K), non-negative, each row summing to one.

    A query whose kernel gives zero weight to every key (a boxcar or Epanechnikov
    kernel narrower than the gap to the nearest key) has no defined estimate: its
    weights are all zero, its prediction is NaN, and a ``RuntimeWarning`` says how
    many queries were affected.

    Shapes and types are always checked. Checks that read values back to Python (a
    tensor bandwidth > 0, a custom kernel's values >= 0, the warning about empty
    queries) run only on the CPU and outside ``torch.compile``, so that a GPU forward
    pass never waits for the host; on a GPU the NaN predictions still appear.
    """
    name, kernel_fn = _resolve_kernel(kernel)
    keys, values = _check_inputs(queries, keys, values)
    if isinstance(bandwidth, Tensor):
        if bandwidth.numel() != 1:
            raise ValueError(f"bandwidth must be a single positive number, got shape {tuple(bandwidth.shape)}")
        if host_checks_allowed(bandwidth) and not bool(bandwidth > 0):
            raise ValueError(f"bandwidth must be a single positive number, got {bandwidth!r}")
    elif not _positive_number(bandwidth):  # a Python number: checking it costs nothing (and catches NaN)
        raise ValueError(f"bandwidth must be a single positive number, got {bandwidth!r}")
    bw = torch.as_tensor(bandwidth, dtype=queries.dtype, device=queries.device).reshape(())
    u = (queries.unsqueeze(1) - keys) / bw  # (Q, K)
    return _pool(u, values, name, kernel_fn, lambda: f"bandwidth {float(bw):.3g}")


class NWKernelRegression(nn.Module):
    """Parametric Nadaraya–Watson regression with a learnable inverse width ``w``.

    The kernel is applied to ``(q - k) * w``, exactly as in equation (1.5) of the
    chapter, so the bandwidth is ``h = 1 / |w|``: a larger ``|w|`` gives sharper, more
    local attention weights and a wigglier fit. Both allowed kernels are even, so ``w``
    and ``-w`` give the same weights, and the gradient in ``w`` is defined everywhere,
    including at ``w = 0``, which means an infinitely wide kernel: every key gets the
    same weight (average pooling). The parameter is named ``w`` as in d2l.

    ``forward(queries, keys, values)`` takes the shapes of :func:`nadaraya_watson`
    and returns predictions (Q,) or (Q, Dv). The weights of the last call are kept in
    ``self.attention_weights`` (Q, K) for plotting.
    """

    def __init__(self, init_w: float = 1.0, kernel: str = "gaussian") -> None:
        super().__init__()
        if kernel not in ("gaussian", "epanechnikov"):
            raise ValueError(
                f"NWKernelRegression needs a kernel with a useful gradient in w: 'gaussian' or "
                f"'epanechnikov', got {kernel!r}"
            )
        if not _positive_number(init_w):
            raise ValueError(f"init_w must be positive (a finite number > 0), got {init_w!r}")
        self.kernel = kernel
        self.w = nn.Parameter(torch.tensor([float(init_w)]))
        self.attention_weights: Tensor | None = None

    @property
    def bandwidth(self) -> float:
        """The current kernel width h = 1 / |w|; ``math.inf`` at w = 0 (every key weighs the same)."""
        w = abs(float(self.w.detach()))
        return math.inf if w == 0 else 1.0 / w

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        name, kernel_fn = _resolve_kernel(self.kernel)
        keys, values = _check_inputs(queries, keys, values)
        u = (queries.unsqueeze(1) - keys) * self.w.to(queries.dtype).squeeze()  # (Q, K), equation (1.5)
        preds, weights = _pool(u, values, name, kernel_fn, lambda: f"w = {float(self.w.detach()):.3g}")
        self.attention_weights = weights.detach()
        return preds
