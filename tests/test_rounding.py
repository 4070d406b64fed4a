"""Rounding, stochastic rounding and the noisy-quantization categorical.

References: torch's fake quantization, scipy.stats, closed forms of
THEORY.md §2–§3, and Monte Carlo of the noisy model (sample sizes and
tolerances stated next to each test).
"""
import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform
from companion.rounding import (
    grid_probabilities,
    quantized_moments,
    round_to_grid,
    round_up_probability,
    round_with_uniform,
    stochastic_round,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- deterministic rounding ---------------------------------------------------
@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("scale", [0.1, 0.37, 0.25, 3.3])
def test_round_to_grid_equals_torch_fake_quantize(bits, signed, scale):
    grid = UniformGrid(bits, scale=scale, signed=signed)
    x = torch.randn(20_000, generator=gen(bits)) * scale * 2**bits
    x = torch.cat([x, torch.tensor([0.5, 1.5, -0.5, 2.5]) * scale])  # exact ties: torch rounds to even
    k_min, k_max = grid.level_range
    expected = torch.fake_quantize_per_tensor_affine(x, scale, 0, k_min, k_max)
    assert torch.equal(round_to_grid(x, grid), expected)


@pytest.mark.parametrize("zero_point", [-3, 2, 5])
def test_round_to_grid_with_offset_equals_torch_zero_point(zero_point):
    # β = -z·α; a power-of-two α keeps x/α exact, so no tie can be split differently.
    scale = 0.25
    grid = UniformGrid(4, scale=scale, offset=-zero_point * scale)
    x = torch.rand(10_000, generator=gen(3)) * 8 - 4
    expected = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, -8, 7)
    assert torch.equal(round_to_grid(x, grid), expected)


def test_round_to_grid_clips_to_the_end_points():
    grid = UniformGrid(2, scale=1.0)
    assert round_to_grid(torch.tensor([-100.0, 100.0]), grid).tolist() == [-2.0, 1.0]


# --- stochastic rounding ------------------------------------------------------
def test_correct_samplers_agree_pathwise():
    x = torch.randn(10_000, generator=gen(1), dtype=torch.float64) * 3
    u = torch.rand(10_000, generator=gen(2), dtype=torch.float64)
    delta = 0.3
    floor_version = round_with_uniform(x, delta, "floor", 0.0, uniform=u)
    round_version = round_with_uniform(x, delta, "round", -0.5, uniform=u)
    # Same U ⇒ same value, except where x/δ + U lands exactly on a half-integer (measure zero).
    assert (floor_version != round_version).sum().item() == 0


@pytest.mark.parametrize("operator, low, bias", [("round", 0.0, +0.5), ("floor", -0.5, -0.5), ("floor", 0.0, 0.0), ("round", -0.5, 0.0)])
def test_mismatched_samplers_are_biased_by_half_a_step(operator, low, bias):
    # 400,000 draws at x spread over a cell: std of the mean error ≤ δ/2/√n ≈ 2.4e-4; tolerance 2e-3.
    delta = 0.5
    x = torch.rand(400_000, generator=gen(4), dtype=torch.float64) * 10 - 5
    xq = round_with_uniform(x, delta, operator, low, generator=gen(5))
    assert (xq - x).mean().item() == pytest.approx(bias * delta, abs=2e-3)


@pytest.mark.parametrize("x0", [0.1, 0.37, -0.62, 0.0])
def test_stochastic_round_mean_and_variance(x0):
    # 200,000 draws: mean within 5 standard errors, variance within 2 % (+1e-6 when it is 0).
    delta = 0.5
    grid = UniformGrid(4, scale=delta)
    x = torch.full((200_000,), x0, dtype=torch.float64)
    xq = stochastic_round(x, grid, generator=gen(6))
    t = x0 / delta - math.floor(x0 / delta)
    var = delta**2 * t * (1 - t)
    assert set(np.unique(xq.numpy())) <= set(grid.points_like(x).numpy())
    assert xq.mean().item() == pytest.approx(x0, abs=5 * math.sqrt(var / 200_000) + 1e-12)
    assert xq.var().item() == pytest.approx(var, rel=0.02, abs=1e-6)


def test_round_up_probability_is_frac_and_one_minus_it_is_p_down():
    grid = UniformGrid(3, scale=0.5)
    x = torch.tensor([0.0, 0.1, 0.25, 0.49, 1.0])
    torch.testing.assert_close(round_up_probability(x, grid), torch.tensor([0.0, 0.2, 0.5, 0.98, 0.0]))
    # on a grid point rounding goes down (stays) with probability 1, not 0 (RQ eq. 8's slip)
    assert 1 - round_up_probability(torch.tensor([0.5]), grid).item() == 1.0


# --- the categorical ----------------------------------------------------------
def _scipy_probs(x, points, alpha, dist, tails):
    edges_lo = points - alpha / 2
    edges_hi = points + alpha / 2
    if tails == "clamp":
        edges_lo[0], edges_hi[-1] = -np.inf, np.inf
    p = dist.cdf(edges_hi[None, :] - x[:, None]) - dist.cdf(edges_lo[None, :] - x[:, None])
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("tails", ["clamp", "truncate"])
@pytest.mark.parametrize(
    "noise, dist", [(Logistic(0.3), st.logistic(scale=0.3)), (Gaussian(0.4), st.norm(scale=0.4))], ids=["logistic", "gaussian"]
)
def test_probabilities_match_scipy(noise, dist, tails):
    grid = UniformGrid(3, scale=0.5, offset=0.1)
    x = torch.linspace(-3, 3, 121, dtype=torch.float64)
    expected = _scipy_probs(x.numpy(), grid.points_like(x).numpy(), 0.5, dist, tails)
    got = grid_probabilities(x, grid, noise, tails)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(got.sum(-1).numpy(), 1.0, atol=1e-12)


def test_uniform_noise_of_width_delta_gives_the_hat():
    delta = 0.4
    grid = UniformGrid(3, scale=delta)
    points = grid.points_like(torch.zeros(1, dtype=torch.float64))
    x = torch.linspace(points[0].item(), points[-1].item(), 301, dtype=torch.float64)
    hat = (1 - (x[:, None] - points[None, :]).abs() / delta).clamp(min=0)
    torch.testing.assert_close(grid_probabilities(x, grid, Uniform(delta), "clamp"), hat)
    # the hat peaks at its own grid point: p_i(g_i) = 1
    torch.testing.assert_close(grid_probabilities(points, grid, Uniform(delta)), torch.eye(8, dtype=torch.float64))


def test_clamp_and_truncate_reference_example():
    # THEORY.md §3: grid {-1, +1}, logistic σ = 0.5, x = 0.3.
    grid = UniformGrid.binary()
    x = torch.tensor([0.3], dtype=torch.float64)
    assert grid_probabilities(x, grid, Logistic(0.5), "truncate")[0, 1].item() == pytest.approx(0.6404, abs=5e-5)
    assert grid_probabilities(x, grid, Logistic(0.5), "clamp")[0, 1].item() == pytest.approx(0.6457, abs=5e-5)
    # clamp on the binary grid is the stochastic binary neuron P(+1) = F(x) = σ(x/s)
    assert grid_probabilities(x, grid, Logistic(0.5), "clamp")[0, 1].item() == pytest.approx(1 / (1 + math.exp(-0.6)))


@pytest.mark.parametrize("noise", [Logistic(0.25), Gaussian(0.3), Uniform(0.6)], ids=["logistic", "gaussian", "uniform"])
def test_probabilities_match_monte_carlo_of_the_noisy_model(noise):
    # x̂ = round-and-clip(x + ε); 200,000 draws per x: each frequency within 0.006 (≥ 5 standard errors).
    grid = UniformGrid(2, scale=0.5)
    n = 200_000
    for x0 in (-0.9, -0.1, 0.33, 0.8):
        x = torch.full((n,), x0, dtype=torch.float64)
        xq = round_to_grid(x + noise.sample(n, generator=gen(7), dtype=torch.float64), grid)
        freq = torch.stack([(xq == g).double().mean() for g in grid.points_like(x)])
        np.testing.assert_allclose(freq.numpy(), grid_probabilities(x[:1], grid, noise)[0].numpy(), atol=0.006)


def test_truncated_probabilities_match_rejection_sampling():
    # Keep only x̃ inside (g_0 - α/2, g_{K-1} + α/2]; 300,000 draws, tolerance 0.006.
    grid = UniformGrid(2, scale=0.5)
    noise = Logistic(0.4)
    x0 = 0.6
    xt = x0 + noise.sample(300_000, generator=gen(8), dtype=torch.float64)
    xt = xt[(xt > -1.25) & (xt <= 0.75)]
    xq = round_to_grid(xt, grid)
    freq = np.array([(xq == g).double().mean().item() for g in grid.points_like(xt)])
    expected = grid_probabilities(torch.tensor([x0], dtype=torch.float64), grid, noise, "truncate")[0].numpy()
    np.testing.assert_allclose(freq, expected, atol=0.006)


def test_truncated_logistic_far_away_keeps_its_limit_shape():
    # For exponential tails the truncated law tends to a fixed one as x → ∞ (a one-hot
    # fallback would be wrong).  Grid {-1, +1}: cells (-2, 0] and (0, 2]; with F(t) ≈ e^{t/s}
    # far left, p(+1)/p(-1) = (e^{2/s} - 1)/(1 - e^{-2/s}) = e^{2/s}.
    grid = UniformGrid.binary()
    noise = Logistic(0.5)
    far = grid_probabilities(torch.tensor([1e4], dtype=torch.float64), grid, noise, "truncate")[0, 1].item()
    s = 0.5
    expected = math.exp(2 / s) / (1 + math.exp(2 / s))
    assert far == pytest.approx(expected, rel=1e-9)


# --- moments ------------------------------------------------------------------
def test_moments_equal_the_categorical_sums():
    grid = UniformGrid(3, scale=0.3)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    points = grid.points_like(x).numpy()
    p = _scipy_probs(x.numpy(), points.copy(), 0.3, st.logistic(scale=0.2), "clamp")
    mean = p @ points
    var = p @ points**2 - mean**2
    got_mean, got_var = quantized_moments(x, grid, Logistic(0.2))
    np.testing.assert_allclose(got_mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(got_var.numpy(), var, atol=1e-12)


def test_moments_match_monte_carlo():
    # 200,000 noisy-model draws; mean within 0.005, variance within 3 %.
    grid = UniformGrid(2, scale=0.5)
    noise = Gaussian(0.35)
    x = torch.full((200_000,), 0.2, dtype=torch.float64)
    xq = round_to_grid(x + noise.sample(200_000, generator=gen(9), dtype=torch.float64), grid)
    mean, var = quantized_moments(x[:1], grid, noise)
    assert xq.mean().item() == pytest.approx(mean.item(), abs=0.005)
    assert xq.var().item() == pytest.approx(var.item(), rel=0.03)


def test_mean_and_its_derivative_match_the_sum_of_sigmoids():
    # THEORY.md §3: E[x̂|x] = g_0 + α Σ_k S((x - b_k)/s), derivative (α/s) Σ_k S'((x - b_k)/s).
    alpha, s = 0.5, 0.2
    grid = UniformGrid(3, scale=alpha, offset=0.05)
    x = torch.linspace(-3, 3, 201, dtype=torch.float64, requires_grad=True)
    mean, _ = quantized_moments(x, grid, Logistic(s))
    (slope,) = torch.autograd.grad(mean.sum(), x)
    xs = x.detach().numpy()[:, None]
    b = (np.arange(-4, 3) * alpha + 0.05 + alpha / 2)[None, :]
    sig = 1 / (1 + np.exp(-(xs - b) / s))
    np.testing.assert_allclose(mean.detach().numpy(), -4 * alpha + 0.05 + alpha * sig.sum(1), atol=1e-12)
    np.testing.assert_allclose(slope.numpy(), alpha / s * (sig * (1 - sig)).sum(1), atol=1e-10)


def test_uniform_noise_moments_are_clipped_identity_and_sr_variance():
    alpha = 0.5
    grid = UniformGrid(2, scale=alpha)
    x = torch.linspace(-2, 1.5, 141, dtype=torch.float64)
    mean, var = quantized_moments(x, grid, Uniform(alpha))
    torch.testing.assert_close(mean, x.clamp(-1.0, 0.5))
    t = (x.clamp(-1, 0.5) / alpha) % 1
    torch.testing.assert_close(var, alpha**2 * t * (1 - t), atol=1e-12, rtol=0)


# --- validation ---------------------------------------------------------------
@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: grid_probabilities(torch.zeros(2), UniformGrid(2), Logistic(1.0), "wrap"), ValueError, "tails.*clamp.*truncate"),
        (lambda: grid_probabilities(torch.zeros(2), 4, Logistic(1.0)), TypeError, "grid"),
        (lambda: grid_probabilities(torch.zeros(2), UniformGrid(2), 0.5), TypeError, "noise"),
        (lambda: grid_probabilities([0.0], UniformGrid(2), Logistic(1.0)), TypeError, "x"),
        (lambda: round_to_grid(torch.tensor([float("nan")]), UniformGrid(2)), ValueError, "NaN"),
        (lambda: round_to_grid(torch.tensor([1, 2]), UniformGrid(2)), TypeError, "floating"),
        (lambda: stochastic_round(torch.zeros(2), UniformGrid(2), generator=3), TypeError, "generator"),
        (lambda: round_with_uniform(torch.zeros(2), 0.5, "ceil", 0.0), ValueError, "operator.*floor.*round"),
        (lambda: round_with_uniform(torch.zeros(2), 0.0, "floor", 0.0), ValueError, "step"),
        (lambda: round_with_uniform(torch.zeros(2), 0.5, "floor", 0.25), ValueError, "low"),
        (lambda: round_with_uniform(torch.zeros(2), 0.5, "floor", 0.0, uniform=torch.zeros(3)), ValueError, "uniform"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


@pytest.mark.parametrize("dtype, x0", [(torch.float32, 1e8), (torch.float64, 1e30), (torch.float32, 3e38)])
@pytest.mark.parametrize("noise", [Logistic(0.5), Gaussian(0.5), Uniform(1.0)], ids=["logistic", "gaussian", "uniform"])
def test_truncated_probabilities_for_astronomic_inputs_keep_their_limit(dtype, x0, noise):
    # Far right the truncated law is the x → ∞ limit: e^{2/s}/(1 + e^{2/s}) on +1 for the
    # logistic (see above), one-hot +1 for Gaussian and uniform noise; far left, mirrored.
    grid = UniformGrid.binary()
    limit = math.exp(4) / (1 + math.exp(4)) if isinstance(noise, Logistic) else 1.0
    x = torch.tensor([x0, -x0], dtype=dtype, requires_grad=True)
    p = grid_probabilities(x, grid, noise, "truncate")
    assert p[0, 1].item() == pytest.approx(limit, rel=1e-5)
    assert p[1, 0].item() == pytest.approx(limit, rel=1e-5)
    mean, var = quantized_moments(x, grid, noise, "truncate")
    (mean.sum() + var.sum()).backward()
    assert torch.isfinite(x.grad).all()
