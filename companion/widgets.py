"""ipywidgets explorers used by the chapters.

Each explorer is a function that returns an ``ipywidgets.interactive``; the
wrapped plotting function returns the matplotlib Figure it drew (and stores it
on ``widget.result``), so plain pytest can set a slider's ``.value`` and
assert on the figure or the data without a browser.  The maths comes from the
package; the explorers only plot it.
"""
from __future__ import annotations

import ipywidgets as W


def float_slider(description: str, value: float, low: float, high: float, step: float, readout_format: str = ".2f"):
    """A FloatSlider with the companion's defaults (continuous_update off: redraw on release)."""
    return W.FloatSlider(
        value=value, min=low, max=high, step=step, description=description,
        continuous_update=False, readout_format=readout_format, style={"description_width": "initial"},
    )


def int_slider(description: str, value: int, low: int, high: int):
    return W.IntSlider(value=value, min=low, max=high, description=description, continuous_update=False,
                       style={"description_width": "initial"})


def show_figure(fig):
    """Display a Figure in the widget's output area and return it (so ``widget.result`` holds it)."""
    from IPython.display import display

    display(fig)
    return fig


# -- chapters 02–03: stochastic rounding and noisy quantization --------------------


def stochastic_rounding_explorer(x: float = 0.3, step: float = 0.5, samples: int = 2000, seed: int = 0):
    """Slide x and the spacing δ: the hats P(x̂ = g_i | x) = max(0, 1 - |x - g_i|/δ) and seeded SR samples.

    Left: the stochastic-rounding probabilities of the grid points in view (from
    ``grid_probabilities`` with ``Uniform(width=δ)``), the two non-zero ones
    marked at x.  Right: the frequencies of ``stochastic_round`` samples
    (``torch.Generator`` seeded with ``seed``) against those probabilities;
    the title reads P(up) = t = frac(x/δ).
    """
    import torch

    from .grids import UniformGrid
    from .noise import Uniform
    from .plotting import new_figure
    from .rounding import grid_probabilities, round_up_probability, stochastic_round

    view = 1.5

    def draw(x, step, samples):
        grid = UniformGrid(6, scale=step)  # 64 points, covers the view for every δ ≥ 0.05
        noise = Uniform(width=step)
        points = grid.points.double()
        xs = torch.linspace(-view, view, 601, dtype=torch.float64)
        p = grid_probabilities(xs, grid, noise)
        x_t = torch.tensor([x], dtype=torch.float64)
        p_x = grid_probabilities(x_t, grid, noise)[0]
        t = float(round_up_probability(x_t, grid)[0])
        draws = stochastic_round(x_t.expand(samples), grid, generator=torch.Generator().manual_seed(seed))
        values, counts = torch.unique(draws, return_counts=True)
        up = float((draws > x).double().mean())  # the upper neighbour is the only value above x
        fig, (ax_p, ax_h) = new_figure(ncols=2)
        for i in ((points >= -view) & (points <= view)).nonzero().flatten().tolist():
            ax_p.plot(xs, p[:, i], lw=1.2)
        reached = p_x > 0
        ax_p.plot(torch.full((int(reached.sum()),), x), p_x[reached], "ko", ms=6, label=r"$P(\hat x = g_i\mid x)$")
        ax_p.axvline(x, color="k", lw=0.8, ls=":")
        ax_p.set(xlabel="$x$", ylabel=r"$P(\hat x = g_i\mid x)$", ylim=(-0.03, 1.08),
                 title=rf"hats max$(0, 1 - |x - g_i|/\delta)$, $\delta$ = {step:.2f}")
        ax_h.bar(values.numpy(), (counts / samples).numpy(), width=0.6 * step, color="C0", alpha=0.7, label=f"{samples} samples")
        ax_h.plot(points[reached], p_x[reached], "ko", ms=6, label="probabilities")
        ax_h.axvline(x, color="k", lw=0.8, ls=":")
        ax_h.set(xlabel=r"$\hat x$", ylabel="frequency", ylim=(0, 1.08),
                 title=f"P(up) = t = {t:.3f}; sampled {up:.3f}")
        ax_h.legend(fontsize=8)
        return show_figure(fig)

    return W.interactive(
        draw,
        x=float_slider("x", x, -1.0, 1.0, 0.01),
        step=float_slider("spacing δ", step, 0.05, 1.0, 0.05),
        samples=W.IntSlider(value=samples, min=100, max=20000, step=100, description="samples",
                            continuous_update=False, style={"description_width": "initial"}),
    )


def noisy_quantization_explorer(x: float = 0.3, scale: float = 0.15, bits: int = 2,
                                family: str = "logistic", tails: str = "clamp"):
    """Slide the noise scale σ, the bits, the noise family and the tails of noisy quantization.

    The grid has 2**bits points spread over [-1, 1] (bits = 1: {-1, +1}).
    Left: the categorical P(x̂ = g_i | x) at the chosen x.  Middle: E[x̂|x]
    with a ±1 std band (``quantized_moments``).  Right: d/dx E[x̂|x] by
    autograd, the principled straight-through slope.  σ is the logistic scale,
    the Gaussian std or the uniform width (uniform of width α is SR).
    """
    import torch

    from .noise import NOISE_FAMILIES, make_noise
    from .plots.foundation import mean_and_slope, symmetric_grid
    from .plotting import new_figure
    from .rounding import TAILS, grid_probabilities

    def draw(x, scale, bits, family, tails):
        grid = symmetric_grid(bits)
        noise = make_noise(family, scale)
        points = grid.points.double()
        alpha = float(grid.scale)
        p_x = grid_probabilities(torch.tensor([x], dtype=torch.float64), grid, noise, tails=tails)[0]
        xs = torch.linspace(-1.8, 1.8, 721, dtype=torch.float64)
        mean, var, slope = mean_and_slope(xs, grid, noise, tails=tails)
        fig, (ax_p, ax_m, ax_d) = new_figure(ncols=3)
        ax_p.bar(points.numpy(), p_x.numpy(), width=0.6 * alpha)
        ax_p.set(xlabel=r"$g_i$", ylabel=r"$P(\hat x = g_i\mid x)$", ylim=(0, 1.05),
                 title=f"x = {x:.2f}: {noise!r}, std {noise.std:.3f}")
        std = var.sqrt()
        ax_m.fill_between(xs, mean - std, mean + std, color="C0", alpha=0.2, label=r"$\pm$ std")
        ax_m.plot(xs, mean, color="C0", label=r"$E[\hat x\mid x]$")
        ax_m.plot(xs, xs.clamp(float(points[0]), float(points[-1])), color="0.5", ls=":", lw=1, label="clip$(x)$")
        ax_m.axvline(x, color="k", lw=0.8, ls=":")
        ax_m.set(xlabel="$x$", ylabel=r"$E[\hat x\mid x]$", title=f"{bits}-bit grid, {tails} tails")
        ax_m.legend(fontsize=8, loc="upper left")
        ax_d.plot(xs, slope, color="C1")
        ax_d.axvline(x, color="k", lw=0.8, ls=":")
        ax_d.set(xlabel="$x$", ylabel=r"$\frac{d}{dx}E[\hat x\mid x]$", title="straight-through slope")
        return show_figure(fig)

    return W.interactive(
        draw,
        x=float_slider("x", x, -1.5, 1.5, 0.01),
        scale=float_slider("noise scale σ", scale, 0.01, 1.0, 0.01),
        bits=int_slider("bits", bits, 1, 4),
        family=W.Dropdown(options=tuple(NOISE_FAMILIES), value=family, description="noise"),
        tails=W.Dropdown(options=TAILS, value=tails, description="tails"),
    )


# -- chapter 05: gradient estimators on the toy Bernoulli problem ---------------------


def toy_estimator_explorer(logit: float = 0.0, target: float = 0.49, temperature: float = 1.0,
                           samples: int = 2000, seed: int = 0):
    """Slide the logit φ, the target t and the temperature τ of the toy problem E[(z - t)²], z ~ Bernoulli(σ(φ)).

    Left: each estimator's exact mean (bar, ``companion.estimators.toy.moments``)
    with ``samples`` seeded Monte Carlo estimates (dot ± 2 standard errors) and
    the true gradient (1 - 2t)σ'(φ) (line).  Right: the standard deviation of
    one estimate, exact (bar) and sampled (dot).  τ only affects "concrete" and
    "st-gumbel".
    """
    import numpy as np
    import torch

    from .estimators import toy
    from .plotting import new_figure

    def draw(logit, target, temperature):
        methods = toy.METHODS
        exact = np.array([toy.moments(m, logit, target, temperature) for m in methods])
        generator = torch.Generator().manual_seed(seed)
        draws = [toy.gradient_samples(m, logit, target, samples, temperature, generator) for m in methods]
        mc_mean = np.array([d.mean().item() for d in draws])
        mc_std = np.array([d.std().item() for d in draws])
        pos = np.arange(len(methods))
        fig, (ax_m, ax_s) = new_figure(ncols=2)
        ax_m.bar(pos, exact[:, 0], color="C0", alpha=0.5, label="exact mean")
        ax_m.errorbar(pos, mc_mean, yerr=2 * mc_std / np.sqrt(samples), fmt="o", color="k", ms=4,
                      label=f"{samples} samples ± 2 se")
        ax_m.axhline(toy.true_gradient(logit, target), color="C3", lw=1.2, label="true gradient")
        ax_m.set_xticks(pos, methods, rotation=40, ha="right")
        ax_m.set(ylabel=r"$E[\hat g]$", title=f"φ = {logit:.2f}, t = {target:.3f}, τ = {temperature:.2f}")
        ax_m.legend(fontsize=7)
        ax_s.bar(pos, np.sqrt(exact[:, 1]), color="C1", alpha=0.5, label="exact")
        ax_s.plot(pos, mc_std, "o", color="k", ms=4, label="sampled")
        ax_s.set_xticks(pos, methods, rotation=40, ha="right")
        ax_s.set(ylabel=r"std$[\hat g]$ of one sample", title="spread of a single estimate")
        ax_s.legend(fontsize=7)
        return show_figure(fig)

    return W.interactive(
        draw,
        logit=float_slider("logit φ", logit, -5.0, 5.0, 0.1),
        target=float_slider("target t", target, 0.0, 1.0, 0.01, readout_format=".3f"),
        temperature=float_slider("temperature τ", temperature, 0.05, 3.0, 0.05),
    )


def concrete_explorer(temperature: float = 0.5, sigma: float = 0.25, x: float = 0.2, samples: int = 4000, seed: int = 0):
    """Chapter 04: soft Relaxed-Quantization samples Σ z_i g_i for one input x on a 2-bit grid (α = 0.5).

    Sliders: the concrete temperature λ, the logistic noise scale σ and x.
    The histogram of soft samples is drawn against the categorical P(x̂ = g_i | x).
    """
    from .plots.relaxed import draw_concrete_samples
    from .plotting import new_figure

    def draw(temperature, sigma, x):
        fig, ax = new_figure()
        draw_concrete_samples(ax, x=x, sigma=sigma, temperature=temperature, n=samples, seed=seed)
        return show_figure(fig)

    return W.interactive(
        draw,
        temperature=float_slider("temperature λ", temperature, 0.05, 3.0, 0.05),
        sigma=float_slider("noise scale σ", sigma, 0.02, 1.0, 0.01),
        x=float_slider("input x", x, -1.5, 1.0, 0.01),
    )


def moments_explorer(var: float = 0.5, noise_scale: float = 0.15, samples: int = 4000):
    """Chapter 07: the moment rules (ReLU, sign with logistic noise, 2-bit quantizer, max) beside
    Monte Carlo, for a chosen input variance and noise scale (companion.plots.moments.rule_panels)."""
    from .plotting import new_figure
    from .plots.moments import rule_panels

    def draw(var, noise_scale):
        fig, axes = new_figure(ncols=2, nrows=2)
        rule_panels(axes.ravel(), var=var, noise_scale=noise_scale, samples=samples)
        return show_figure(fig)

    return W.interactive(
        draw,
        var=float_slider("input variance σ²", var, 0.01, 3.0, 0.01),
        noise_scale=float_slider("noise scale s", noise_scale, 0.02, 1.0, 0.01),
    )
