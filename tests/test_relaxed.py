"""companion.relaxed: concrete relaxation, RQ-ST, the ε guard and the local grid.

References: scipy's chi-square test, torch.nn.functional.gumbel_softmax,
the Euler–Mascheroni constant, the full-grid categorical of companion.rounding
and closed forms written out here.
"""

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform
from companion.relaxed import (

    fuzzed_log_probabilities,
    gumbel,
    local_log_probabilities,
    relaxed_quantize,
    straight_through,
    window_radius,
)
from companion.rounding import grid_probabilities, log_grid_probabilities, quantized_moments


def test_gumbel_mean_is_euler_mascheroni_and_finite_at_the_ends(monkeypatch):
    g = gumbel((200000,), torch.Generator().manual_seed(0), torch.float64)
    # Gumbel(0,1) mean γ = 0.5772, std π/√6: SE = 1.2825/√200000 = 0.0029; tolerance 5 SE.
    assert abs(g.mean().item() - 0.5772156649) < 0.0145
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.tensor([0.0, 1.0], dtype=kw.get("dtype")))
    assert torch.isfinite(gumbel((2,), dtype=torch.float32)).all()


def test_hard_samples_lie_on_the_grid_with_grid_probabilities_frequencies():
    grid, noise, x0, n = UniformGrid(2, scale=0.5), Logistic(0.3), 0.3, 20000
    y = relaxed_quantize(torch.full((n,), x0, dtype=torch.float64), grid, noise, temperature=0.7, hard=True,
                         generator=torch.Generator().manual_seed(0))
    points = grid.points_like(y)
    counts = torch.stack([(y == p).sum() for p in points]).double()
    assert counts.sum().item() == n
    p = grid_probabilities(torch.tensor([x0], dtype=torch.float64), grid, noise, "truncate")[0]
    # Chi-square goodness of fit, n = 20000, seeded: reject only at p < 1e-3 (ε = 1e-6 shifts p by < 1e-5).
    assert stats.chisquare(counts.numpy(), (p * n).numpy()).pvalue > 1e-3


def test_soft_samples_approach_grid_points_as_temperature_goes_to_zero():
    grid = UniformGrid(2, scale=0.5)
    x = torch.linspace(-1, 1, 2000, dtype=torch.float64)
    medians = []
    for lam in (1.0, 0.3, 0.1, 0.01):
        y = relaxed_quantize(x, grid, Logistic(0.2), temperature=lam, generator=torch.Generator().manual_seed(0))
        distance = (y.unsqueeze(-1) - grid.points_like(y)).abs().min(-1).values
        medians.append(distance.median().item())
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    assert medians[-1] < 1e-3


def test_concrete_samples_match_torch_gumbel_softmax():
    grid, noise, x0, n, lam = UniformGrid(2, scale=0.5), Logistic(0.35), 0.1, 40000, 0.5
    x = torch.full((n,), x0, dtype=torch.float64)
    ours = relaxed_quantize(x, grid, noise, temperature=lam, generator=torch.Generator().manual_seed(0))
    logits = torch.log(grid_probabilities(x, grid, noise, "truncate"))
    torch.manual_seed(1)
    theirs = (F.gumbel_softmax(logits, tau=lam) * grid.points_like(x)).sum(-1)
    # Same distribution: means and standard deviations agree. Soft x̂ has std < 0.5, so the
    # MC standard error of each mean is < 0.5/√40000 = 0.0025; tolerance 0.015 (≈ 4 SE of the difference).
    assert abs(ours.mean().item() - theirs.mean().item()) < 0.015
    assert abs(ours.std().item() - theirs.std().item()) < 0.015
    assert stats.ks_2samp(ours.numpy(), theirs.numpy()).pvalue > 1e-3


def test_rq_st_forward_is_hard_and_backward_is_the_concrete_gradient():
    grid = UniformGrid(2, scale=0.5)
    x = torch.linspace(-1, 1, 50, dtype=torch.float64, requires_grad=True)
    soft = relaxed_quantize(x, grid, Logistic(0.3), 0.5, generator=torch.Generator().manual_seed(4))
    hard = relaxed_quantize(x, grid, Logistic(0.3), 0.5, hard=True, generator=torch.Generator().manual_seed(4))
    assert torch.isin(hard, grid.points_like(x)).all()
    g_soft, = torch.autograd.grad(soft.sum(), x)
    g_hard, = torch.autograd.grad(hard.sum(), x)
    torch.testing.assert_close(g_hard, g_soft)


def test_straight_through_value_is_exact():
    hard = torch.tensor([0.1, 0.7])
    surrogate = torch.tensor([0.123456789, -3.3], requires_grad=True)
    y = straight_through(hard, surrogate)
    assert torch.equal(y, hard)
    (y * torch.tensor([2.0, 3.0])).sum().backward()
    assert surrogate.grad.tolist() == [2.0, 3.0]


def test_epsilon_guard_is_the_closed_form_and_keeps_gradients_finite():
    p = torch.tensor([[0.0, 0.25, 0.75, 0.0]], dtype=torch.float64)
    log_pi = fuzzed_log_probabilities(torch.log(p), epsilon=1e-3)
    torch.testing.assert_close(log_pi.exp(), (p + 1e-3) / (1 + 4e-3))
    # Uniform noise has cells of zero mass: log p = -inf there; RQ with the guard stays finite.
    alpha = torch.tensor(0.5, requires_grad=True)
    width = torch.tensor(0.5, requires_grad=True)
    x = torch.tensor([-0.2, 0.0, 0.6, 40.0], requires_grad=True)
    y = relaxed_quantize(x, UniformGrid(3, scale=alpha), Uniform(width), 0.5, generator=torch.Generator().manual_seed(0))
    y.sum().backward()
    for t in (y, x.grad, alpha.grad, width.grad):
        assert torch.isfinite(t).all()


def _full_from_window(x, grid, noise, tails, radius):
    """Scatter the window categorical back onto the K grid levels: shape [..., K]."""
    log_p, points, valid = local_log_probabilities(x, grid, noise, tails, radius)
    index = torch.round((points - grid.offset_like(x)) / grid.scale_like(x)).long() - grid.level_range[0]
    full = torch.zeros(*x.shape, grid.num_points, dtype=x.dtype)
    return full.scatter_add(-1, index, torch.where(valid, log_p.exp(), torch.zeros_like(log_p)))


@pytest.mark.parametrize("tails", ["clamp", "truncate"])
@pytest.mark.parametrize("noise", [Logistic(0.4), Gaussian(0.3)], ids=["logistic", "gaussian"])
def test_large_local_radius_equals_the_full_grid(tails, noise):
    grid = UniformGrid(3, scale=0.5, offset=0.1)
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    full = grid_probabilities(x, grid, noise, tails)
    local = _full_from_window(x, grid, noise, tails, 1e3)  # window 2K - 1 levels: covers the grid from any k0
    torch.testing.assert_close(local, full)


@pytest.mark.parametrize("tails", ["clamp", "truncate"])
def test_truncation_error_shrinks_as_the_radius_grows(tails):
    grid, noise = UniformGrid(5, scale=0.1), Logistic(0.1)
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    full = grid_probabilities(x, grid, noise, tails)
    errors = []
    for radius in (1.0, 2.0, 4.0, 8.0, 16.0):
        local = _full_from_window(x, grid, noise, tails, radius)
        errors.append(0.5 * (local - full).abs().sum(-1).max().item())  # worst total-variation distance
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # Logistic tails: mass beyond r levels is about 2·exp(-(r - 1/2)α/s); at radius 16 (r = 16) < 1e-6.
    assert errors[-1] < 1e-6


def test_local_window_cost_does_not_grow_with_bits():
    noise = Logistic(0.1)
    x = torch.randn(100)
    widths = []
    for bits in (2, 4, 8):
        grid = UniformGrid(bits, scale=0.3)
        log_p, points, _ = local_log_probabilities(x, grid, noise, "truncate", 3.0)
        widths.append(log_p.shape[-1])
        assert window_radius(grid, noise, 3.0) == 1  # ⌈3·0.1/0.3⌉
    assert widths == [3, 3, 3]


def test_local_grid_keeps_points_within_radius_sigma_of_round_x():
    grid, noise = UniformGrid(4, scale=0.25), Logistic(0.2)
    x = torch.tensor([0.31], dtype=torch.float64)
    log_p, points, valid = local_log_probabilities(x, grid, noise, "truncate", 2.5)  # r = ⌈2.5·0.2/0.25⌉ = 2
    kept = points[valid].tolist()
    assert kept == pytest.approx([-0.25, 0.0, 0.25, 0.5, 0.75])  # round(x) = 0.25, ±2 levels
    cells = torch.tensor(kept, dtype=torch.float64)
    mass = noise.cdf(cells + 0.125 - 0.31) - noise.cdf(cells - 0.125 - 0.31)
    torch.testing.assert_close(log_p[valid].exp(), mass / mass.sum())  # renormalised over the window (RQ eq. 7)


def test_full_grid_log_probabilities_pass_through():
    grid, noise = UniformGrid(2, scale=0.5), Logistic(0.3)
    x = torch.randn(7, dtype=torch.float64)
    log_p, points, valid = local_log_probabilities(x, grid, noise, "clamp")
    assert valid is None and torch.equal(points, grid.points_like(x))
    torch.testing.assert_close(log_p, log_grid_probabilities(x, grid, noise, "clamp"))


def test_concrete_explorer_redraws_when_a_slider_moves():
    from companion.widgets import concrete_explorer

    widget = concrete_explorer(samples=500)
    first = widget.result
    heights = [p.get_height() for p in first.axes[0].patches]
    widget.children[0].value = 0.05  # temperature
    assert widget.result is not first
    assert [p.get_height() for p in widget.result.axes[0].patches] != heights


def test_window_mean_is_the_full_mean_for_a_wide_window_and_differs_for_a_narrow_one():
    from companion.relaxed import window_mean

    grid, noise = UniformGrid(4, scale=0.25), Logistic(0.1)
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    full = quantized_moments(x, grid, noise, "truncate")[0]
    torch.testing.assert_close(window_mean(x, grid, noise, "truncate", 1e3), full)
    assert (window_mean(x, grid, noise, "truncate", 1.0) - full).abs().max() > 1e-3  # r = 1: mass dropped
