"""companion.exercises: right answers pass; each typical wrong answer gets its own hint.

The right answers here are written from the closed forms of THEORY.md (hats,
sπ/√3, sigmoid sums, 2F'(a), 2(z - t)p(1 - p)), not from the functions the
checks use as their reference, so a wrong reference fails these tests too.
"""
import math

import pytest
import torch

from companion import exercises as ex
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform

DELTA = 0.5


# ---------------------------------------------------------------- SR sampler
def sr_floor(x, step, generator=None):
    return step * torch.floor(x / step + torch.rand(x.shape, generator=generator, dtype=x.dtype))


def sr_round(x, step, generator=None):
    return step * torch.round(x / step + torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5)


def wrong_round_u01(x, step, generator=None):
    return step * torch.round(x / step + torch.rand(x.shape, generator=generator, dtype=x.dtype))


def wrong_floor_centred(x, step, generator=None):
    return step * torch.floor(x / step + torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5)


def wrong_up_with_1_minus_t(x, step, generator=None):
    y = x / step
    t = y - torch.floor(y)
    return step * (torch.floor(y) + (torch.rand(x.shape, generator=generator, dtype=x.dtype) < 1 - t).to(x.dtype))


def wrong_one_u(x, step, generator=None):
    return step * torch.floor(x / step + torch.rand((), generator=generator, dtype=x.dtype))


def wrong_levels(x, step, generator=None):
    return torch.floor(x / step + torch.rand(x.shape, generator=generator, dtype=x.dtype))


def wrong_not_on_grid(x, step, generator=None):
    return x + step * (torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5)


def wrong_wide(x, step, generator=None):  # unbiased, but reaches two levels away
    return step * torch.floor(x / step + 2 * torch.rand(x.shape, generator=generator, dtype=x.dtype) - 0.5)


def wrong_raises(x, step):
    return x


@pytest.mark.parametrize("sampler", [sr_floor, sr_round])
@pytest.mark.parametrize("step", [0.5, 0.125])
def test_sr_sampler_right(sampler, step, capsys):
    result = ex.check_sr_sampler(sampler, step=step)
    assert result.ok and bool(result), result.message
    assert "unbiased" in capsys.readouterr().out  # the message is printed


@pytest.mark.parametrize("sampler, hint", [
    (wrong_round_u01, "biased by +δ/2: did you pair round() with U[0,1)?"),
    (wrong_floor_centred, "biased by -δ/2: did you pair floor() with U[-1/2,1/2)?"),
    (wrong_up_with_1_minus_t, "probability 1 - t instead of t"),
    (wrong_one_u, "one u for the whole tensor"),
    (lambda x, step, generator=None: step * torch.round(x / step), "deterministic round-to-nearest"),
    (lambda x, step, generator=None: step * torch.floor(x / step), "always rounds down"),
    (wrong_levels, "integer levels k"),
    (wrong_not_on_grid, "not on the grid"),
    (wrong_wide, "leave the two neighbours"),
    (wrong_raises, "raised TypeError"),
    (lambda x, step, generator=None: x[:1], "should have shape"),
])
def test_sr_sampler_hints(sampler, hint):
    result = ex.check_sr_sampler(sampler, step=DELTA)
    assert not result.ok
    assert hint in result.message


def test_sr_sampler_small_bias_is_caught():
    # A sampler biased by δ/20 everywhere: none of the typical hints, the generic bias message.
    def biased(x, step, generator=None):
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return step * torch.floor(x / step + 0.05 + u)

    result = ex.check_sr_sampler(biased, step=DELTA, samples=50_000)
    assert not result.ok and result.message.startswith("✗ biased: E[x̂] - x =")


# ---------------------------------------------------------------- SR probabilities
GRID = UniformGrid(3, scale=DELTA)  # points -2, -1.5, ..., 1.5
XS = torch.tensor([-1.3, -0.5, 0.1, 0.85, 1.2], dtype=torch.float64)  # -0.5 is a grid point


def hats(x, grid, width=None):
    width = width or float(grid.scale)
    points = grid.points.double()
    return (1 - (x.unsqueeze(-1) - points).abs() / width).clamp(min=0)


def uniform_categorical(x, grid, width):
    """F(g_i + δ/2 - x) - F(g_i - δ/2 - x), F(t) = clip(t/w + 1/2, 0, 1), end cells to ∓∞ (clamp)."""
    points = grid.points.double()
    cdf = lambda t: (t / width + 0.5).clamp(0, 1)  # noqa: E731
    upper = cdf(points + DELTA / 2 - x.unsqueeze(-1))
    lower = cdf(points - DELTA / 2 - x.unsqueeze(-1))
    upper[..., -1], lower[..., 0] = 1.0, 0.0
    return upper - lower


def test_sr_probabilities_right():
    assert ex.check_sr_probabilities(hats(XS, GRID), XS, GRID).ok
    assert torch.allclose(uniform_categorical(XS, GRID, DELTA), hats(XS, GRID))  # the derivation, as a test


def test_sr_probabilities_hints():
    right = hats(XS, GRID)
    assert "you computed 1 - p_i" in ex.check_sr_probabilities(1 - right, XS, GRID).message
    shifted = hats(XS - DELTA / 2, GRID)
    assert "shifted by δ/2" in ex.check_sr_probabilities(shifted, XS, GRID).message
    assert "width 2δ" in ex.check_sr_probabilities(uniform_categorical(XS, GRID, 2 * DELTA), XS, GRID).message
    assert "width δ/2" in ex.check_sr_probabilities(uniform_categorical(XS, GRID, DELTA / 2), XS, GRID).message
    assert "should have shape" in ex.check_sr_probabilities(right[:, :-1], XS, GRID).message
    assert "sum to 1" in ex.check_sr_probabilities(right * 0.9, XS, GRID).message
    eq8 = right.clone()
    eq8[1] = 0
    eq8[1, 4] = 1.0  # x = -0.5 = g_3: RQ eq. 8 sends it one level up
    assert "RQ eq. 8" in ex.check_sr_probabilities(eq8, XS, GRID).message
    assert "contains NaN" in ex.check_sr_probabilities(right * float("nan"), XS, GRID).message


# ---------------------------------------------------------------- logistic std
@pytest.mark.parametrize("s", [0.5, 2.0])
def test_logistic_std(s):
    assert ex.check_logistic_std(s * math.pi / math.sqrt(3), s).ok
    assert "the scale s itself" in ex.check_logistic_std(s, s).message
    assert "the variance" in ex.check_logistic_std(s**2 * math.pi**2 / 3, s).message
    assert "inverted" in ex.check_logistic_std(s * math.sqrt(3) / math.pi, s).message
    assert "not the logistic std" in ex.check_logistic_std(7.0, s).message
    assert "should be a tensor of numbers" in ex.check_logistic_std("big", s).message


def test_logistic_std_matches_scipy():
    from scipy import stats

    assert ex.check_logistic_std(stats.logistic(scale=0.3).std(), 0.3).ok


# ---------------------------------------------------------------- clamp vs truncate
def test_tail_probabilities_theory_example():
    # THEORY.md §3: grid {-1, +1}, logistic scale 0.5, x = 0.3: clamped P(+1) = σ(0.6) = 0.6457, truncated 0.6404.
    grid, noise, x = UniformGrid.binary(), Logistic(0.5), torch.tensor([0.3], dtype=torch.float64)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    clamp = torch.tensor([[1 - sig(0.6), sig(0.6)]])
    cells = [sig((0 - 0.3) / 0.5) - sig((-2 - 0.3) / 0.5), sig((2 - 0.3) / 0.5) - sig((0 - 0.3) / 0.5)]
    truncate = torch.tensor([cells]) / sum(cells)
    assert abs(float(truncate[0, 1]) - 0.6404) < 1e-4
    assert ex.check_tail_probabilities(clamp, truncate, x, grid, noise).ok
    assert "swapped" in ex.check_tail_probabilities(truncate, clamp, x, grid, noise).message
    raw = torch.tensor([cells])
    message = ex.check_tail_probabilities(clamp, raw, x, grid, noise).message
    assert message.startswith("✗ truncate: these are the raw cell masses")
    message = ex.check_tail_probabilities(raw, truncate, x, grid, noise).message
    assert message.startswith("✗ clamp: these are the raw cell masses")
    s_std = 0.5 * math.sqrt(3) / math.pi
    as_std = torch.tensor([[1 - sig(0.3 / s_std), sig(0.3 / s_std)]])
    assert "standard deviation" in ex.check_tail_probabilities(as_std, truncate, x, grid, noise).message


def test_tail_probabilities_gaussian_multilevel():
    from scipy.stats import norm

    grid, x = UniformGrid(2, scale=0.5), torch.tensor([0.1, 0.9], dtype=torch.float64)
    noise = Gaussian(0.4)
    edges = [-math.inf, -0.75, -0.25, 0.25, math.inf]
    clamp = torch.tensor([[norm.cdf((hi - xi) / 0.4) - norm.cdf((lo - xi) / 0.4) for lo, hi in zip(edges[:-1], edges[1:])]
                          for xi in x.tolist()])
    cut = [-1.25, -0.75, -0.25, 0.25, 0.75]
    cells = torch.tensor([[norm.cdf((hi - xi) / 0.4) - norm.cdf((lo - xi) / 0.4) for lo, hi in zip(cut[:-1], cut[1:])]
                          for xi in x.tolist()])
    truncate = cells / cells.sum(-1, keepdim=True)
    assert ex.check_tail_probabilities(clamp, truncate, x, grid, noise).ok
    assert "raw cell masses" in ex.check_tail_probabilities(clamp, cells, x, grid, noise).message


# ---------------------------------------------------------------- E[x̂|x] slope
def logistic_slope(x, grid, s, shift=0.0):
    points = grid.points.double()
    alpha = float(grid.scale)
    b = points[:-1] + alpha / 2 + shift
    z = (x.unsqueeze(-1) - b) / s
    return (alpha / s * torch.sigmoid(z) * torch.sigmoid(-z)).sum(-1)


def test_expected_slope_right_and_hints():
    grid, s = UniformGrid(2, scale=0.5), 0.2
    x = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64)
    right = logistic_slope(x, grid, s)
    assert ex.check_expected_slope(right, x, grid, s).ok
    assert ex.check_expected_slope(right.float(), x, grid, s).ok  # float32 answers are fine
    assert "missing the 1/s" in ex.check_expected_slope(right * s, x, grid, s).message
    assert "missing the factor α" in ex.check_expected_slope(right / 0.5, x, grid, s).message
    assert "identity STE" in ex.check_expected_slope(torch.ones_like(x), x, grid, s).message
    inside = ((x >= -1.0) & (x <= 0.5)).double()
    assert "clipped identity" in ex.check_expected_slope(inside, x, grid, s).message
    assert "midpoints" in ex.check_expected_slope(logistic_slope(x, grid, s, shift=-0.25), x, grid, s).message
    assert "not (α/s)" in ex.check_expected_slope(right + 0.01, x, grid, s).message


def test_expected_slope_truncate_hint():
    # d/dx of the truncated-tails mean, by central finite differences of Σ p_i g_i (step 1e-5, float64).
    from scipy.special import expit

    grid, s = UniformGrid(2, scale=0.5), 0.3
    x = torch.linspace(-1.2, 0.9, 8, dtype=torch.float64)
    points = grid.points.double().numpy()

    def mean(v):
        v = v.numpy()[:, None]
        cells = expit((points + 0.25 - v) / s) - expit((points - 0.25 - v) / s)
        return torch.from_numpy((cells / cells.sum(-1, keepdims=True) * points).sum(-1))

    h = 1e-5
    slope = (mean(x + h) - mean(x - h)) / (2 * h)
    assert "truncated tails" in ex.check_expected_slope(slope, x, grid, s).message


# ---------------------------------------------------------------- toy ST gradient
def st_right(z, logit, target):
    p = 1 / (1 + math.exp(-logit))
    return 2 * (z - target) * p * (1 - p)


@pytest.mark.parametrize("estimate, hint", [
    (lambda z, phi, t: (1 - 2 * t) * st_right(1, phi, 0) / 2, "true gradient"),
    (lambda z, phi, t: st_right(1 / (1 + math.exp(-phi)), phi, t), "ST's mean"),
    (lambda z, phi, t: 2 * (z - t), "missing σ'(φ)"),
    (lambda z, phi, t: st_right(z, phi, t) / 2, "missing the factor 2"),
    (lambda z, phi, t: -st_right(z, phi, t), "sign is flipped"),
    (lambda z, phi, t: (z - t) ** 2 * (z - 1 / (1 + math.exp(-phi))), "REINFORCE"),
    (lambda z, phi, t: 2 * (z - t) / (1 + math.exp(-phi)), "not p"),
    (lambda z, phi, t: st_right(z, phi, t) + 0.001, "not 2(z - t)·p(1 - p)"),
    (lambda z, phi: 0.0, "raised TypeError"),
    (0.25, "pass your function itself"),
])
def test_toy_st_gradient_hints(estimate, hint):
    result = ex.check_toy_st_gradient(estimate)
    assert not result.ok and hint in result.message


def test_toy_st_gradient_right():
    result = ex.check_toy_st_gradient(st_right)
    assert result.ok and "agree with companion.estimators.toy.moments" in result.message


# ---------------------------------------------------------------- binary ST slope
A = torch.linspace(-3, 3, 61, dtype=torch.float64)  # includes ±1 exactly: the jump of U[-1, 1]


def test_binary_st_slope_logistic():
    s = torch.sigmoid(A)
    right = 2 * s * (1 - s)
    assert ex.check_binary_st_slope(right, A, Logistic(1.0)).ok
    assert ex.check_binary_st_slope(0.5 * (1 - torch.tanh(A / 2) ** 2), A, Logistic(1.0)).ok
    assert "missing the factor 2" in ex.check_binary_st_slope(right / 2, A, Logistic(1.0)).message
    assert "slope of tanh(a)" in ex.check_binary_st_slope(1 - torch.tanh(A) ** 2, A, Logistic(1.0)).message
    assert "identity STE" in ex.check_binary_st_slope(torch.ones_like(A), A, Logistic(1.0)).message
    assert "hardtanh STE" in ex.check_binary_st_slope((A.abs() <= 1).double(), A, Logistic(1.0)).message
    assert "P(x = +1)" in ex.check_binary_st_slope(s, A, Logistic(1.0)).message
    assert "the mean E[x|a]" in ex.check_binary_st_slope(2 * s - 1, A, Logistic(1.0)).message
    assert "ignored the noise scale" in ex.check_binary_st_slope(right, A, Logistic(0.5)).message
    s2 = torch.sigmoid(A / 0.5)
    assert ex.check_binary_st_slope(2 * s2 * (1 - s2) / 0.5, A, Logistic(0.5)).ok


def test_binary_st_slope_uniform():
    u = Uniform(width=2.0)  # U[-1, 1]
    hardtanh = (A.abs() <= 1).double()
    assert ex.check_binary_st_slope(hardtanh, A, u).ok
    assert ex.check_binary_st_slope((A.abs() < 1).double(), A, u).ok  # the jump points are not compared
    s = torch.sigmoid(A)
    assert "logistic slope" in ex.check_binary_st_slope(2 * s * (1 - s), A, u).message
    assert "missing the factor 2" in ex.check_binary_st_slope(hardtanh / 2, A, u).message
    assert "hardtanh STE" in ex.check_binary_st_slope(hardtanh, A, Uniform(width=4.0)).message


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="grid must be"):
        ex.check_sr_probabilities(hats(XS, GRID), XS, grid="3 bits")
    with pytest.raises(ValueError, match="scale must be > 0"):
        ex.check_logistic_std(1.0, scale=0.0)
    with pytest.raises(TypeError, match="noise must be"):
        ex.check_binary_st_slope(A, A, noise="logistic")
    with pytest.raises(ValueError, match="samples must be"):
        ex.check_sr_sampler(sr_floor, samples=10)
