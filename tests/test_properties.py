"""Property tests (hypothesis): no NaN/inf anywhere a user can reach.

Ranges from the foundation issue: bits 1–8 (and 16 once), grid scales
1e-3..1e3, noise scales down to 1e-6 and up to 1e2, |x| up to 1e4, float32
and float64, both tails conventions, all three noise families.
"""
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from companion.grids import UniformGrid
from companion.noise import make_noise
from companion.rounding import grid_probabilities, quantized_moments, round_to_grid, stochastic_round

bits_s = hs.integers(1, 8)
scale_s = hs.floats(1e-3, 1e3)
noise_scale_s = hs.floats(1e-6, 1e2)
x_s = hs.lists(hs.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=8)
family_s = hs.sampled_from(["logistic", "gaussian", "uniform"])
tails_s = hs.sampled_from(["clamp", "truncate"])
dtype_s = hs.sampled_from([torch.float32, torch.float64])


@settings(max_examples=150, deadline=None)
@given(bits_s, scale_s, noise_scale_s, x_s, family_s, tails_s, dtype_s, hs.booleans())
def test_probabilities_moments_and_gradients_are_finite(bits, scale, noise_scale, xs, family, tails, dtype, signed):
    alpha = torch.tensor(scale, dtype=dtype, requires_grad=True)
    sigma = torch.tensor(noise_scale, dtype=dtype, requires_grad=True)
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    grid = UniformGrid(bits, scale=alpha, signed=signed)
    noise = make_noise(family, sigma)
    p = grid_probabilities(x, grid, noise, tails)
    mean, var = quantized_moments(x, grid, noise, tails)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    torch.testing.assert_close(p.sum(-1), torch.ones_like(x), atol=1e-4, rtol=0)
    lo, hi = grid.points_like(x)[[0, -1]]
    slack = 1e-4 * (hi - lo)
    assert ((mean >= lo - slack) & (mean <= hi + slack)).all()
    assert torch.isfinite(var).all() and (var >= 0).all() and (var <= (hi - lo) ** 2 / 4 * (1 + 1e-4)).all()
    (mean.sum() + var.sum()).backward()
    for leaf in (x, alpha, sigma):
        assert torch.isfinite(leaf.grad).all(), leaf


@settings(max_examples=60, deadline=None)
@given(bits_s, scale_s, x_s, dtype_s)
def test_rounded_values_are_grid_points(bits, scale, xs, dtype):
    grid = UniformGrid(bits, scale=scale)
    x = torch.tensor(xs, dtype=dtype)
    points = grid.points_like(x)
    for xq in (round_to_grid(x, grid), stochastic_round(x, grid, generator=torch.Generator().manual_seed(0))):
        assert torch.isclose(xq[:, None], points[None, :], rtol=0, atol=1e-6 * scale).any(-1).all()


def test_sixteen_bit_grid_probabilities_are_finite():
    grid = UniformGrid(16, scale=1e-3)
    x = torch.tensor([-1e4, 0.0, 1e-3 / 3, 1e4], requires_grad=True)
    mean, var = quantized_moments(x, grid, make_noise("logistic", 1e-6))
    (mean.sum() + var.sum()).backward()
    assert torch.isfinite(mean).all() and torch.isfinite(var).all() and torch.isfinite(x.grad).all()
