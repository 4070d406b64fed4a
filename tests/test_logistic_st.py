"""The fused logistic "noisy-st" for truncated tails: closed-form sample and mean derivatives against the categorical route.

(Clamped tails take ``companion.thresholds``: tests/test_thresholds.py.)

Reference: ``companion.rounding.quantized_moments`` (cell masses in log space,
normalised, Σ p_i g_i) differentiated by autograd; it shares no code with
``companion.estimators.logistic_st``.
"""
import pytest
import torch

from companion.estimators import quantize
from companion.estimators.logistic_st import (
    exceedance,
    logistic_mean,
    logistic_sample,
    logistic_straight_through,
    truncation_constants,
)
from companion.grids import UniformGrid
from companion.noise import Logistic
from companion.rounding import grid_probabilities, quantized_moments

from grid_samples import assert_samples_follow_grid_probabilities

GRIDS = [(1, True), (2, True), (2, False), (3, True), (4, False)]


def _leaves(alpha, beta, sigma, dtype=torch.float64):
    return tuple(torch.tensor(v, dtype=dtype, requires_grad=True) for v in (alpha, beta, sigma))


@pytest.mark.parametrize("bits,signed", GRIDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.05, 0.3, 3.0, 50.0])
def test_gradients_equal_autograd_of_the_categorical_mean(bits, signed, sigma):
    tails = "truncate"
    g = torch.Generator().manual_seed(bits * 10 + int(signed))
    alpha, beta, s = _leaves(0.7, 0.1, sigma)
    x = torch.cat([torch.randn(300, generator=g, dtype=torch.float64) * 3,
                   torch.tensor([-1e6, -40.0, 0.45, 40.0, 1e6], dtype=torch.float64)]).requires_grad_()
    weights = torch.randn(x.shape, generator=g, dtype=torch.float64)
    grid, noise = UniformGrid(bits, scale=alpha, offset=beta, signed=signed), Logistic(s)
    reference = torch.autograd.grad((quantized_moments(x, grid, noise, tails)[0] * weights).sum(), (x, alpha, beta, s))
    fused = torch.autograd.grad((logistic_straight_through(x, grid, noise) * weights).sum(), (x, alpha, beta, s))
    for name, got, want in zip(("x", "alpha", "beta", "sigma"), fused, reference):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=f"gradient for {name}")


def test_closed_form_mean_equals_the_categorical_mean():
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    for bits, signed in GRIDS:
        grid, noise = UniformGrid(bits, scale=0.5, offset=-0.2, signed=signed), Logistic(0.35)
        torch.testing.assert_close(logistic_mean(x, grid, noise), quantized_moments(x, grid, noise, "truncate")[0],
                                   rtol=1e-12, atol=1e-12)


def test_truncation_constants_by_hand():
    # K = 4, w = 2: c_j = (1 - e^{-2(3-j)}) / (1 - e^{-8}); derivative by central differences.
    w = torch.tensor(2.0, dtype=torch.float64)
    c, dc = truncation_constants(w, 3)
    a = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(c, (1 - torch.exp(-2 * a)) / (1 - torch.exp(torch.tensor(-8.0, dtype=torch.float64))))
    h = 1e-6
    numeric = (truncation_constants(w + h, 3)[0] - truncation_constants(w - h, 3)[0]) / (2 * h)
    torch.testing.assert_close(dc, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samples_follow_grid_probabilities(dtype):
    tails = "truncate"
    # n = 40000 draws per x, seeded; chi-square rejects only at p < 1e-3.
    grid, noise = UniformGrid(2, scale=0.5), Logistic(0.4)
    generator = torch.Generator().manual_seed(11)
    n = 40000
    for x0 in (-50.0, -1.2, -0.3, 0.0, 0.26, 0.9, 40.0, 1e8):
        y = logistic_sample(torch.full((n,), x0, dtype=dtype), grid, noise, generator)
        assert_samples_follow_grid_probabilities(y, x0, grid, noise, tails)


def test_exceedance_decreases_and_matches_cell_masses():
    grid, noise = UniformGrid(3, scale=0.25, signed=False), Logistic(0.2)
    x = torch.linspace(-3, 5, 101, dtype=torch.float64)
    prob, _ = exceedance(x, grid, noise)
    assert (prob[1:] <= prob[:-1] + 1e-15).all()
    p = grid_probabilities(x, grid, noise, "truncate")  # P(x̂ > g_j) = Σ_{i > j} p_i
    tail = p.flip(-1).cumsum(-1).flip(-1)[..., 1:].T
    torch.testing.assert_close(prob, tail, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tails", ["clamp", "truncate"])
def test_extreme_inputs_and_scales_stay_finite(dtype, tails):
    x = torch.tensor([-3e38, -1e8, -1e3, -1.0, 0.0, 1.0, 1e3, 1e8, 3e38], dtype=dtype, requires_grad=True)
    for sigma in (1e-4, 1e-2, 1.0, 1e2):
        alpha, beta, s = _leaves(0.1, 0.0, sigma, dtype)
        grid, noise = UniformGrid(4, scale=alpha, offset=beta), Logistic(s)
        y = quantize(x, grid, "noisy-st", noise=noise, tails=tails, generator=torch.Generator().manual_seed(0))
        grads = torch.autograd.grad(y.sum(), (x, alpha, beta, s))
        assert torch.isfinite(y).all()
        assert all(torch.isfinite(g).all() for g in grads), sigma


def test_quantize_takes_the_fused_path_only_where_it_applies():
    # Truncated tails, logistic noise, no local grid: this module; clamped tails: companion.thresholds;
    # a small local window on an 8-bit grid: the categorical route.
    x = torch.randn(10, requires_grad=True)
    kinds = {}
    for name, kwargs in {"truncate": dict(tails="truncate"), "clamp": dict(tails="clamp"),
                         "local": dict(tails="truncate", local_radius=3.0)}.items():
        grid = UniformGrid(8 if name == "local" else 2, scale=0.5)
        kinds[name] = type(quantize(x, grid, "noisy-st", noise=Logistic(0.2), **kwargs).grad_fn).__name__
    assert kinds == {"truncate": "_LogisticStraightThroughBackward", "clamp": "_ThresholdStraightThroughBackward",
                     "local": kinds["local"]}
    assert kinds["local"] not in ("_LogisticStraightThroughBackward", "_ThresholdStraightThroughBackward")
