"""Chapter 1: kernels and Nadaraya-Watson attention pooling, against independent oracles.

Oracles: the kernels' closed forms; statsmodels' KernelReg (local-constant regression
is the Nadaraya-Watson estimator); a plain Python double loop over equation (1.3);
PyTorch's scaled_dot_product_attention (Gaussian weights are a softmax of dot products
between (x, 1) and (x_i, -x_i^2 / 2)); finite differences for the gradient in w.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import KERNELS, NWKernelRegression, nadaraya_watson
from course_lib import boxcar_kernel, constant_kernel, epanechnikov_kernel, gaussian_kernel



@pytest.fixture(autouse=True)
def _float64():
    """Double precision, so that comparisons with the oracles can be tight."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.sort(torch.rand(30, generator=g) * 5).values
    y = 2 * torch.sin(x) + x**0.8 + 0.5 * torch.randn(30, generator=g)
    q = torch.linspace(0, 5, 17)
    return q, x, y


def loop_nw(q, x, y, kernel, h):
    """Equation (1.3) term by term, in plain Python floats."""
    out = []
    for qj in q.tolist():
        ks = [kernel(torch.tensor((qj - xi) / h)).item() for xi in x.tolist()]
        total = sum(ks)
        out.append(math.nan if total == 0 else sum(k * yi for k, yi in zip(ks, y.tolist())) / total)
    return torch.tensor(out)


# --- kernels ----------------------------------------------------------------------


def test_kernels_match_closed_forms():
    u = torch.linspace(-3, 3, 121)
    un = u.numpy()
    np.testing.assert_allclose(gaussian_kernel(u).numpy(), np.exp(-un**2 / 2))
    np.testing.assert_allclose(boxcar_kernel(u).numpy(), (np.abs(un) <= 1).astype(float))
    np.testing.assert_allclose(constant_kernel(u).numpy(), np.ones_like(un))
    np.testing.assert_allclose(epanechnikov_kernel(u).numpy(), np.where(np.abs(un) <= 1, 0.75 * (1 - un**2), 0.0))


def test_window_edges_are_inside_the_window():
    edges = torch.tensor([-1.0, 1.0, 1.0 + 1e-6, -1.0 - 1e-6])
    assert boxcar_kernel(edges).tolist() == [1.0, 1.0, 0.0, 0.0]  # |u| <= 1 is inside
    assert epanechnikov_kernel(edges).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_normalized_kernels_integrate_to_expected_mass():
    u = torch.linspace(-8, 8, 160001)
    du = (u[1] - u[0]).item()
    assert torch.trapezoid(gaussian_kernel(u), dx=du).item() == pytest.approx(math.sqrt(2 * math.pi), rel=1e-6)
    assert torch.trapezoid(epanechnikov_kernel(u), dx=du).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.trapezoid(boxcar_kernel(u), dx=du).item() == pytest.approx(2.0, rel=1e-3)


def test_kernel_registry_names():
    assert set(KERNELS) == {"gaussian", "boxcar", "constant", "epanechnikov"}


# --- the estimator ----------------------------------------------------------------


@pytest.mark.parametrize("h", [0.2, 0.7, 2.0])
def test_gaussian_matches_statsmodels_kernelreg(data, h):
    from statsmodels.nonparametric.kernel_regression import KernelReg

    q, x, y = data
    oracle = KernelReg(endog=y.numpy(), exog=x.numpy(), var_type="c", reg_type="lc", bw=[h])
    expected, _ = oracle.fit(q.numpy())
    preds, _ = nadaraya_watson(q, x, y, kernel="gaussian", bandwidth=h)
    np.testing.assert_allclose(preds.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(KERNELS))
@pytest.mark.parametrize("h", [0.5, 1.5])
def test_every_kernel_matches_the_equation_term_by_term(data, name, h):
    q, x, y = data
    preds, weights = nadaraya_watson(q, x, y, kernel=name, bandwidth=h)
    torch.testing.assert_close(preds, loop_nw(q, x, y, KERNELS[name], h), equal_nan=True)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(len(q)))


def test_gaussian_weights_equal_dot_product_attention(data):
    """softmax(-(q - k)^2 / 2) = softmax(<(q, 1), (k, -k^2 / 2)>): the chapter's exercise 5."""
    q, x, y = data
    _, weights = nadaraya_watson(q, x, y)
    queries = torch.stack([q, torch.ones_like(q)], dim=-1)[None, None]  # (1, 1, Q, 2)
    keys = torch.stack([x, -(x**2) / 2], dim=-1)[None, None]  # (1, 1, K, 2)
    values = torch.eye(len(x))[None, None]  # (1, 1, K, K): returns the weights
    sdpa = F.scaled_dot_product_attention(queries, keys, values, scale=1.0)[0, 0]
    torch.testing.assert_close(weights, sdpa)


def test_constant_kernel_is_average_pooling(data):
    q, x, y = data
    preds, weights = nadaraya_watson(q, x, y, kernel="constant")
    torch.testing.assert_close(preds, y.mean().expand(len(q)))
    torch.testing.assert_close(weights, torch.full((len(q), len(x)), 1 / len(x)))


def test_limits_of_the_bandwidth(data):
    q, x, y = data
    wide, _ = nadaraya_watson(q, x, y, bandwidth=1e4)
    torch.testing.assert_close(wide, y.mean().expand(len(q)))
    narrow, w = nadaraya_watson(q, x, y, bandwidth=1e-4)  # softmax keeps this finite
    nearest = (q[:, None] - x[None]).abs().argmin(1)
    torch.testing.assert_close(narrow, y[nearest])
    assert torch.isfinite(w).all()


def test_vector_values_pool_each_column(data):
    q, x, y = data
    vals = torch.stack([y, 2 * y, -y], dim=1)  # (K, 3)
    preds, _ = nadaraya_watson(q, x, vals, bandwidth=0.5)
    single, _ = nadaraya_watson(q, x, y, bandwidth=0.5)
    torch.testing.assert_close(preds, torch.stack([single, 2 * single, -single], 1))


def test_per_query_keys_equal_separate_calls(data):
    q, x, y = data
    n = len(x)
    off = ~torch.eye(n, dtype=torch.bool)
    keys = x.repeat(n, 1)[off].reshape(n, n - 1)
    vals = y.repeat(n, 1)[off].reshape(n, n - 1)
    preds, weights = nadaraya_watson(x, keys, vals, bandwidth=0.4)
    assert weights.shape == (n, n - 1)
    for i in (0, 7, n - 1):
        mask = torch.arange(n) != i
        expected, _ = nadaraya_watson(x[i : i + 1], x[mask], y[mask], bandwidth=0.4)
        torch.testing.assert_close(preds[i : i + 1], expected)


def test_query_outside_every_window_gives_nan_and_warns(data):
    q, x, y = data
    far = torch.tensor([100.0, 2.5])
    with pytest.warns(RuntimeWarning, match="1 of 2 queries have no key"):
        preds, weights = nadaraya_watson(far, x, y, kernel="boxcar", bandwidth=0.5)
    assert math.isnan(preds[0]) and not math.isnan(preds[1])
    assert (weights[0] == 0).all()
    torch.testing.assert_close(weights[1].sum(), torch.tensor(1.0))


def test_custom_kernel_callable(data):
    q, x, y = data

    def triangular(u):
        return torch.clamp(1 - u.abs(), min=0)

    preds, _ = nadaraya_watson(q, x, y, kernel=triangular, bandwidth=2.0)
    torch.testing.assert_close(preds, loop_nw(q, x, y, triangular, 2.0))


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((torch.zeros(2, 2), torch.zeros(3), torch.zeros(3)), {}, r"queries must be 1-D \(Q,\)"),
        ((torch.zeros(2), torch.zeros(3), torch.zeros(4)), {}, r"values must be \(K,\) or \(K, Dv\)"),
        ((torch.zeros(2), torch.zeros(3, 4), torch.zeros(3, 4)), {}, r"need Q = 2 rows"),
        ((torch.zeros(2), torch.zeros(2, 4), torch.zeros(2, 5)), {}, r"values must be \(Q, K\)"),
        ((torch.zeros(2), torch.zeros(2, 4, 1), torch.zeros(2, 4)), {}, r"keys must be \(K,\) or \(Q, K\)"),
        ((torch.zeros(2), torch.zeros(0), torch.zeros(0)), {}, "at least one key"),
        ((torch.zeros(2), torch.zeros(3), torch.zeros(3)), {"bandwidth": 0.0}, "bandwidth must be a single positive"),
        ((torch.zeros(2), torch.zeros(3), torch.zeros(3)), {"kernel": "cosine"}, "unknown kernel 'cosine'"),
        (([0.0], torch.zeros(3), torch.zeros(3)), {}, "queries must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_clear_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nadaraya_watson(*args, **kwargs)


def test_negative_kernel_is_rejected(data):
    q, x, y = data
    with pytest.raises(ValueError, match="non-negative"):
        nadaraya_watson(q, x, y, kernel=lambda u: -torch.ones_like(u))


# --- the parametric model ---------------------------------------------------------


def test_module_equals_function_with_inverse_width(data):
    q, x, y = data
    net = NWKernelRegression(init_w=2.5)
    expected, weights = nadaraya_watson(q, x, y, bandwidth=1 / 2.5)
    torch.testing.assert_close(net(q, x, y), expected)
    torch.testing.assert_close(net.attention_weights, weights)
    assert net.bandwidth == pytest.approx(0.4)
    assert [n for n, _ in net.named_parameters()] == ["w"]


def test_gradient_in_w_matches_finite_differences(data):
    q, x, y = data
    net = NWKernelRegression(init_w=1.7)
    loss = ((net(q, x, y) - torch.sin(q)) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, net.w)

    def loss_at(w):
        preds, _ = nadaraya_watson(q, x, y, bandwidth=1 / w)
        return ((preds - torch.sin(q)) ** 2).mean().item()

    eps = 1e-6
    numeric = (loss_at(1.7 + eps) - loss_at(1.7 - eps)) / (2 * eps)
    assert grad.item() == pytest.approx(numeric, rel=1e-5)


def test_leave_one_out_training_learns_a_finite_sharper_width(data):
    _, x, y = data
    n = len(x)
    off = ~torch.eye(n, dtype=torch.bool)
    keys, vals = x.repeat(n, 1)[off].reshape(n, -1), y.repeat(n, 1)[off].reshape(n, -1)
    net = NWKernelRegression(init_w=1.0)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = ((net(x, keys, vals) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert 1.0 < net.w.item() < 20.0  # sharper than the start, not collapsed onto points


def test_epanechnikov_module_and_errors():
    net = NWKernelRegression(init_w=1.0, kernel="epanechnikov")
    x = torch.linspace(0, 1, 5)
    torch.testing.assert_close(net(x, x, x), nadaraya_watson(x, x, x, kernel="epanechnikov")[0])
    with pytest.raises(ValueError, match="useful gradient"):
        NWKernelRegression(kernel="boxcar")
    with pytest.raises(ValueError, match="init_w must be positive"):
        NWKernelRegression(init_w=0.0)


# --- review fixes -------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["gaussian", gaussian_kernel, KERNELS["gaussian"]])
def test_gaussian_is_stable_however_it_is_passed(kernel, recwarn):
    """q = 6 is 60 bandwidths from its nearest key: exp(-u^2 / 2) underflows to 0 for every key."""
    keys, values = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])
    preds, weights = nadaraya_watson(torch.tensor([6.0]), keys, values, kernel=kernel, bandwidth=0.05)
    assert preds.tolist() == [4.0]  # all weight on the nearest key, x = 3
    torch.testing.assert_close(weights, torch.tensor([[0.0, 0.0, 1.0]]))
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("w", [0.0, 1e-3, -1e-3, -1.7])
def test_gradient_in_w_near_zero_and_negative(data, w):
    """Equation (1.5) computes (q - k) * w: finite at w = 0, and even in w."""
    q, x, y = data
    net = NWKernelRegression()
    with torch.no_grad():
        net.w.fill_(w)
    loss = ((net(q, x, y) - torch.sin(q)) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, net.w)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()

    def loss_at(v):
        with torch.no_grad():
            net.w.fill_(v)
            return ((net(q, x, y) - torch.sin(q)) ** 2).mean().item()

    eps = 1e-6
    numeric = (loss_at(w + eps) - loss_at(w - eps)) / (2 * eps)
    assert grad.item() == pytest.approx(numeric, rel=1e-5, abs=1e-9)
    assert loss_at(w) == pytest.approx(loss_at(-w), rel=1e-12)  # w and -w: the same width


def test_w_zero_is_average_pooling_with_infinite_bandwidth(data):
    q, x, y = data
    net = NWKernelRegression()
    with torch.no_grad():
        net.w.zero_()
    assert net.bandwidth == math.inf
    torch.testing.assert_close(net(q, x, y), y.mean().expand(len(q)))
    with torch.no_grad():
        net.w.fill_(-4.0)
    assert net.bandwidth == pytest.approx(0.25)


def test_module_computes_scaled_differences_times_w(data, monkeypatch):
    """The kernel sees (q - k) * w itself, not (q - k) / (1 / |w|)."""
    q, x, y = data
    seen = []
    real = KERNELS["epanechnikov"]
    monkeypatch.setitem(KERNELS, "epanechnikov", lambda u: seen.append(u) or real(u))
    net = NWKernelRegression(init_w=3.0, kernel="epanechnikov")
    net(q, x, y)
    assert torch.equal(seen[0], (q[:, None] - x[None]) * 3.0)


def test_value_checks_do_not_read_back_off_the_cpu(data, monkeypatch):
    """Under torch.compile (and on a GPU) no check may call bool()/item(); the NaN still appears."""
    q, x, y = data

    def no_sync(*args):
        raise AssertionError("host synchronisation")

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for method in ("__bool__", "item", "__int__", "__float__"):
        monkeypatch.setattr(torch.Tensor, method, no_sync)
    far = torch.cat([q, torch.tensor([100.0])])
    preds, _ = nadaraya_watson(far, x, y, kernel="boxcar", bandwidth=torch.tensor(0.5))
    net = NWKernelRegression(init_w=2.0, kernel="epanechnikov")
    net(far, x, y)
    monkeypatch.undo()
    assert math.isnan(preds[-1]) and not preds[:-1].isnan().any()


def test_cpu_value_checks_still_raise():
    with pytest.raises(ValueError, match="bandwidth must be a single positive"):
        nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), bandwidth=torch.tensor(-1.0))
    with pytest.raises(ValueError, match="bandwidth must be a single positive"):
        nadaraya_watson(torch.zeros(2), torch.zeros(3), torch.zeros(3), bandwidth=float("nan"))
