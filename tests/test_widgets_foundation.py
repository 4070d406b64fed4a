"""The chapter 02–03 explorers driven in plain pytest: set a control, check the new
figure against closed forms and scipy (not the package's own code)."""
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

from companion import widgets


def control(widget, description):
    (found,) = [c for c in widget.children if getattr(c, "description", None) == description]
    return found


def marker_values(ax):
    """y values of the black probability markers on an axes."""
    (markers,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    return np.sort(np.asarray(markers.get_ydata(), float))


def bars(ax):
    return {round(p.get_x() + p.get_width() / 2, 9): p.get_height() for p in ax.patches}


# -- stochastic rounding --------------------------------------------------------------


def test_sr_explorer_builds_a_figure_with_the_readout():
    w = widgets.stochastic_rounding_explorer(x=0.3, step=0.5)
    assert isinstance(w.result, Figure)
    assert w.result.axes[1].get_title().startswith("P(up) = t = 0.600")


@pytest.mark.parametrize("x, step", [(0.71, 0.5), (-0.37, 0.2), (0.9, 0.35)])
def test_sr_explorer_follows_the_sliders(x, step):
    w = widgets.stochastic_rounding_explorer(x=0.3, step=0.5)
    before = w.result
    control(w, "x").value = x
    control(w, "spacing δ").value = step
    control(w, "samples").value = 20000
    fig = w.result
    assert fig is not before
    t = np.mod(x / step, 1.0)  # frac(x/δ), computed here without the package
    assert fig.axes[1].get_title().startswith(f"P(up) = t = {t:.3f}")
    # the two hats that are non-zero at x take the values 1 - t and t
    np.testing.assert_allclose(marker_values(fig.axes[0]), np.sort([1 - t, t]), atol=1e-6)
    # 20000 seeded samples: the upper bar is within 0.015 of t (std ≤ 0.0036, > 4 std)
    lower = step * np.floor(x / step)
    heights = bars(fig.axes[1])
    assert sum(heights.values()) == pytest.approx(1.0)
    assert set(heights) == {round(lower, 9), round(lower + step, 9)}
    assert heights[round(lower + step, 9)] == pytest.approx(t, abs=0.015)


def test_sr_explorer_on_a_grid_point_never_moves_x():
    """x on a grid point: P(down) = 1 - frac = 1 (RQ eq. 8's ⌈x/α⌉ - x/α would say 0)."""
    w = widgets.stochastic_rounding_explorer(x=0.3, step=0.5)
    control(w, "x").value = 0.5
    fig = w.result
    assert fig.axes[1].get_title().startswith("P(up) = t = 0.000")
    assert bars(fig.axes[1]) == {0.5: pytest.approx(1.0)}


def test_sr_explorer_samples_are_seeded():
    first = widgets.stochastic_rounding_explorer(x=0.13, step=0.3, samples=500, seed=7).result
    second = widgets.stochastic_rounding_explorer(x=0.13, step=0.3, samples=500, seed=7).result
    assert bars(first.axes[1]) == bars(second.axes[1])


# -- noisy quantization ---------------------------------------------------------------


def test_noisy_explorer_binary_logistic_is_the_sigmoid():
    w = widgets.noisy_quantization_explorer()
    before = w.result
    control(w, "bits").value = 1
    control(w, "noise scale σ").value = 0.25
    control(w, "x").value = 0.3
    fig = w.result
    assert fig is not before
    ax_p, ax_m, ax_d = fig.axes
    p_up = stats.logistic.cdf(0.3 / 0.25)  # grid {-1, +1}, one threshold at 0: P(+1) = S(x/s)
    assert bars(ax_p) == {-1.0: pytest.approx(1 - p_up, abs=1e-9), 1.0: pytest.approx(p_up, abs=1e-9)}
    (slope,) = ax_d.get_lines()[:1]
    x = np.asarray(slope.get_xdata(), float)
    # d/dx E[x̂|x] = (α/s) S'(x/s) with α = 2: the "tanh(a/2)" straight-through slope
    np.testing.assert_allclose(slope.get_ydata(), (2 / 0.25) * stats.logistic.pdf(x / 0.25), atol=1e-9)


def test_noisy_explorer_truncated_tails_give_the_theory_example():
    """THEORY.md §3: grid {-1, +1}, σ = 0.5, x = 0.3: truncated p(+1) = 0.6404, clamped 0.6457."""
    w = widgets.noisy_quantization_explorer(x=0.3, scale=0.5, bits=1, tails="clamp")
    assert bars(w.result.axes[0])[1.0] == pytest.approx(0.6457, abs=5e-5)
    control(w, "tails").value = "truncate"
    assert bars(w.result.axes[0])[1.0] == pytest.approx(0.6404, abs=5e-5)
    F = stats.logistic(loc=0.3, scale=0.5).cdf  # of x̃ = x + ε; cells (-2, 0] and (0, 2]
    assert bars(w.result.axes[0])[1.0] == pytest.approx((F(2) - F(0)) / (F(2) - F(-2)), abs=1e-9)


def test_noisy_explorer_uniform_mean_matches_the_closed_form():
    w = widgets.noisy_quantization_explorer(bits=2)
    control(w, "noise").value = "uniform"
    control(w, "noise scale σ").value = 0.5
    ax_m = w.result.axes[1]
    (mean_line,) = [line for line in ax_m.get_lines() if line.get_label() == r"$E[\hat x\mid x]$"]
    x = np.asarray(mean_line.get_xdata(), float)
    alpha = 2 / 3
    b = np.array([-1.0, -1 / 3, 1 / 3]) + alpha / 2
    cdf = np.clip((x[:, None] - b[None, :]) / 0.5 + 0.5, 0, 1)  # uniform cdf of width 0.5
    np.testing.assert_allclose(mean_line.get_ydata(), -1.0 + alpha * cdf.sum(1), atol=1e-9)
    assert "Uniform(width=0.5)" in w.result.axes[0].get_title()


def test_noisy_explorer_offers_every_family_and_tail():
    w = widgets.noisy_quantization_explorer()
    assert set(control(w, "noise").options) == {"logistic", "gaussian", "uniform"}
    assert set(control(w, "tails").options) == {"clamp", "truncate"}
    control(w, "noise").value = "gaussian"
    assert "Gaussian(std=0.15)" in w.result.axes[0].get_title()
