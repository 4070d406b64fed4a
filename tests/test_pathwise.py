"""companion.estimators.quantize: forward values and gradients of every pathwise method.

References that share no code with the implementation: hand-derived values,
torch's own LSQ kernel, autograd of companion.rounding.quantized_moments, the
closed form (α/s) Σ_k F'((x - b_k)/s) and scipy's chi-square test.
"""
import math

import pytest
import torch

from companion.estimators import PATHWISE_METHODS, quantize
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform
from companion.rounding import quantized_moments, round_to_grid

from grid_samples import assert_samples_follow_grid_probabilities


def leaf(value, dtype=torch.float64):
    return torch.tensor(value, dtype=dtype, requires_grad=True)


def grads(y, *tensors):
    return torch.autograd.grad(y.sum(), tensors, allow_unused=True)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        quantize(torch.zeros(3), UniformGrid(2), "round")
    for method in PATHWISE_METHODS:
        assert repr(method) in str(error.value)


@pytest.mark.parametrize("method", ["noisy-st", "rq", "rq-st", "mean"])
def test_noise_is_required_by_the_noisy_methods(method):
    with pytest.raises(TypeError, match="noise"):
        quantize(torch.zeros(3), UniformGrid(2), method)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, math.nan])
def test_bad_temperature_is_rejected(temperature):
    with pytest.raises(ValueError, match="temperature"):
        quantize(torch.zeros(3), UniformGrid(2), "rq", noise=Logistic(0.3), temperature=temperature)


def test_bad_tails_and_radius_are_rejected():
    with pytest.raises(ValueError, match="tails"):
        quantize(torch.zeros(3), UniformGrid(2), "mean", noise=Logistic(0.3), tails="cut")
    with pytest.raises(ValueError, match="local_radius"):
        quantize(torch.zeros(3), UniformGrid(2), "rq", noise=Logistic(0.3), local_radius=0.0)


def test_ste_forward_and_gradient_at_the_range_boundary():
    # 2-bit grid α = 0.5, β = 0.25: points -0.75, -0.25, 0.25, 0.75 (levels -2..1).
    alpha, beta = leaf(0.5), leaf(0.25)
    grid = UniformGrid(2, scale=alpha, offset=beta)
    x = leaf([-2.0, -0.75, -0.7499, 0.1, 0.7499, 0.75, 0.7501, 3.0])
    y = quantize(x, grid, "ste")
    assert torch.equal(y, torch.tensor([-0.75, -0.75, -0.75, 0.25, 0.75, 0.75, 0.75, 0.75], dtype=torch.float64))
    gx, ga, gb = grads(y, x, alpha, beta)
    # Exactly at g_0 = -0.75 and g_3 = 0.75 the clipped identity passes the gradient (closed range).
    assert gx.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # Outside, x̂ = α·k_end + β: ∂/∂α = k_min = -2 (one point), k_max = 1 (two points); ∂/∂β = 1 each.
    assert ga.item() == -2.0 + 1.0 + 1.0
    assert gb.item() == 3.0


@pytest.mark.parametrize("bits,signed", [(2, True), (4, False), (3, True)])
def test_lsq_matches_torch_learnable_fake_quantize(bits, signed):
    grid0 = UniformGrid(bits, signed=signed)
    k_min, k_max = grid0.level_range
    g = torch.Generator().manual_seed(bits)
    x0 = torch.randn(257, generator=g) * 1.5 * max(-k_min, k_max) * 0.3
    x0[:3] = torch.tensor([k_min * 0.3 - 0.14, k_max * 0.3 + 0.16, 0.45])  # round back inside / just outside / tie
    scale0 = 0.3
    # torch's reference
    xt = x0.clone().requires_grad_(True)
    st = torch.tensor([scale0], requires_grad=True)
    zp = torch.tensor([0.0], requires_grad=True)
    factor = 1.0 / math.sqrt(x0.numel() * max(k_max, 1))
    yt = torch._fake_quantize_learnable_per_tensor_affine(xt, st, zp, k_min, k_max, factor)
    gyt = torch.randn(x0.shape, generator=g)
    yt.backward(gyt)
    # ours
    x = x0.clone().requires_grad_(True)
    alpha = torch.tensor(scale0, requires_grad=True)
    y = quantize(x, UniformGrid(bits, scale=alpha, signed=signed), "lsq")
    y.backward(gyt)
    torch.testing.assert_close(y, yt.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(x.grad, xt.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(alpha.grad.reshape(1), st.grad, rtol=1e-5, atol=1e-6)


def test_sr_gradient_is_the_derivative_of_its_mean():
    # SR is noisy quantization with Uniform(width α) and clamped tails; E[x̂|x] = clip(x, g_0, g_{K-1}).
    alpha, beta = leaf(0.4), leaf(-0.1)
    grid = UniformGrid(3, scale=alpha, offset=beta)
    x = leaf(torch.linspace(-3.0, 3.0, 97, dtype=torch.float64).tolist())
    y = quantize(x, grid, "sr", generator=torch.Generator().manual_seed(0))
    mean, _ = quantized_moments(x, grid, Uniform(alpha), tails="clamp")
    for got, want in zip(grads(y, x, alpha, beta), grads(mean, x, alpha, beta)):
        torch.testing.assert_close(got, want)


def test_sr_samples_are_the_two_neighbours_and_unbiased():
    grid = UniformGrid(2, scale=0.5)
    x = torch.full((40000,), 0.2)
    y = quantize(x, grid, "sr", generator=torch.Generator().manual_seed(1))
    assert set(y.unique().tolist()) == {0.0, 0.5}
    # P(up) = 0.4: MC standard error sqrt(0.24/40000) = 0.0024; tolerance 5 SE.
    assert abs((y == 0.5).double().mean().item() - 0.4) < 0.0125


NOISES = {"logistic": Logistic, "gaussian": Gaussian, "uniform": Uniform}


@pytest.mark.parametrize("family", sorted(NOISES))
@pytest.mark.parametrize("tails", ["clamp", "truncate"])
@pytest.mark.parametrize("method", ["noisy-st", "mean"])
def test_noisy_st_and_mean_gradients_equal_autograd_of_quantized_moments(family, tails, method):
    alpha, beta, sigma = leaf(0.5), leaf(0.1), leaf(0.35)
    grid = UniformGrid(2, scale=alpha, offset=beta)
    noise = NOISES[family](sigma)
    x = leaf(torch.linspace(-2.5, 2.5, 41, dtype=torch.float64).tolist())
    y = quantize(x, grid, method, noise=noise, tails=tails, generator=torch.Generator().manual_seed(0))
    mean, _ = quantized_moments(x, grid, noise, tails=tails)
    if method == "mean":
        torch.testing.assert_close(y, mean)
    for got, want in zip(grads(y, x, alpha, beta, sigma), grads(mean, x, alpha, beta, sigma)):
        torch.testing.assert_close(got, want)


def test_noisy_st_gradient_closed_form_for_clamped_logistic():
    # THEORY §3: E[x̂|x] = g_0 + α Σ_k S((x - b_k)/s), derivative (α/s) Σ_k S'((x - b_k)/s).
    alpha, s = 0.5, 0.3
    grid = UniformGrid(3, scale=alpha)
    x = leaf(torch.linspace(-3, 3, 61, dtype=torch.float64).tolist())
    (gx,) = grads(quantize(x, grid, "noisy-st", noise=Logistic(s), tails="clamp"), x)
    b = grid.points_like(x)[:-1] + alpha / 2
    z = (x.detach().unsqueeze(-1) - b) / s
    expected = (alpha / s) * (torch.sigmoid(z) * torch.sigmoid(-z)).sum(-1)
    torch.testing.assert_close(gx, expected)


@pytest.mark.parametrize("family", sorted(NOISES))
@pytest.mark.parametrize("tails", ["clamp", "truncate"])
def test_noisy_st_samples_follow_grid_probabilities(family, tails):
    grid = UniformGrid(2, scale=0.5)
    noise = NOISES[family](0.4)
    n, x0 = 20000, 0.3
    y = quantize(torch.full((n,), x0, dtype=torch.float64), grid, "noisy-st", noise=noise, tails=tails,
                 generator=torch.Generator().manual_seed(4))
    # Chi-square goodness of fit, n = 20000, seeded: reject only at p < 1e-3.
    assert_samples_follow_grid_probabilities(y, x0, grid, noise, tails)


@pytest.mark.parametrize("method", ["ste", "lsq", "sr", "noisy-st", "rq-st"])
def test_hard_methods_return_exact_grid_values(method):
    grid = UniformGrid(3, scale=0.37, offset=0.05)
    x = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 2
    y = quantize(x, grid, method, noise=Logistic(0.2), generator=torch.Generator().manual_seed(1))
    assert torch.isin(y, grid.points_like(x)).all()


def _noise_free_and_noisy_cases():
    yield from ((method, "logistic", "truncate") for method in ("ste", "lsq", "sr"))  # these ignore the noise
    for method in ("noisy-st", "rq", "rq-st", "mean"):
        for family in sorted(NOISES):
            for tails in ("clamp", "truncate"):
                yield method, family, tails


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1.0, 1e2])
@pytest.mark.parametrize("local_radius", [None, 3.0])
def test_finite_values_and_gradients_everywhere(dtype, sigma, local_radius):
    x0 = torch.tensor([-1e4, -37.0, -0.75, -0.3, 0.0, 0.2500001, 0.6, 5.0, 1e4], dtype=dtype)
    for method, family, tails in _noise_free_and_noisy_cases():
        x = x0.clone().requires_grad_(True)
        alpha = torch.tensor(0.5, dtype=dtype, requires_grad=True)
        beta = torch.tensor(0.0, dtype=dtype, requires_grad=True)
        s = torch.tensor(sigma, dtype=dtype, requires_grad=True)
        grid = UniformGrid(2, scale=alpha, offset=beta)
        y = quantize(x, grid, method, noise=NOISES[family](s), tails=tails, local_radius=local_radius,
                     temperature=0.5, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(y).all(), (method, family, tails)
        for g in grads(y, x, alpha, beta, s):
            assert g is None or torch.isfinite(g).all(), (method, family, tails)


def test_forward_of_deterministic_methods_matches_round_to_grid():
    grid = UniformGrid(4, scale=0.21, offset=-0.03)
    x = torch.linspace(-3, 3, 301)
    expected = round_to_grid(x, grid)
    for method in ("ste", "lsq"):
        assert torch.equal(quantize(x, grid, method), expected)
