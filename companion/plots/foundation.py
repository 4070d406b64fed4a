"""Figures of chapters 01–03: grids, stochastic rounding, noisy quantization."""
from __future__ import annotations

import torch

from ..figures import register
from ..grids import UniformGrid
from ..plotting import new_figure
from ..noise import Gaussian, Logistic, Uniform
from ..rounding import grid_probabilities, quantized_moments, round_to_grid, round_with_uniform, stochastic_round


@register("quantization_staircase", "01_quantization_grids", "Round-to-nearest on a 2-bit grid and its rounding error")
def quantization_staircase(bits: int = 2, scale: float = 0.5):
    grid = UniformGrid(bits, scale=scale)
    x = torch.linspace(-2.0, 2.0, 2001, dtype=torch.float64)
    xq = round_to_grid(x, grid)
    fig, (ax_q, ax_e) = new_figure(ncols=2)
    ax_q.plot(x, x, color="0.6", lw=1, ls="--", label="identity")
    ax_q.plot(x, xq, label=r"$\hat x = \mathrm{round}_G(x)$")
    ax_q.plot(grid.points, grid.points, "o", color="C1", label="grid points $g_i$")
    ax_q.set(xlabel="$x$", ylabel=r"$\hat x$", title=f"{bits}-bit grid, $\\alpha$ = {scale}")
    ax_q.legend()
    ax_e.plot(x, xq - x)
    ax_e.axhline(scale / 2, color="0.6", ls=":")
    ax_e.axhline(-scale / 2, color="0.6", ls=":")
    ax_e.set(xlabel="$x$", ylabel=r"$\hat x - x$", title=r"rounding error: $\pm\alpha/2$ inside, growing outside")
    return fig


# -- chapter 02: stochastic rounding -------------------------------------------------


@register("sr_probabilities", "02_stochastic_rounding",
          "Stochastic-rounding probabilities: hats peaked at each grid point (and the published slip 1 - p_i)")
def sr_probabilities(step: float = 0.5, bits: int = 2):
    """P(x̂ = g_i | x) = max(0, 1 - |x - g_i|/δ), from the noisy categorical with Uniform(width=δ), clamp tails."""
    grid = UniformGrid(bits, scale=step)
    points = grid.points.double()
    x = torch.linspace(float(points[0]) - step, float(points[-1]) + step, 1201, dtype=torch.float64)
    p = grid_probabilities(x, grid, Uniform(width=step), tails="clamp")
    fig, (ax, ax_slip) = new_figure(ncols=2)
    for i, g in enumerate(points.tolist()):
        ax.plot(x, p[:, i], color=f"C{i}", label=f"$p_{i}$, $g_{i}$ = {g:g}")
        ax.axvline(g, color=f"C{i}", lw=0.8, ls=":")
    ax.set(xlabel="$x$", ylabel=r"$P(\hat x = g_i \mid x)$", ylim=(-0.03, 1.08),
           title=rf"correct: $p_i$ peaks at $g_i$ ($\delta$ = {step:g})")
    ax.legend(loc="center right", fontsize=8)
    i = 1
    ax_slip.plot(x, p[:, i], color=f"C{i}", label=rf"$p_{i}$ (correct hat)")
    ax_slip.plot(x, 1 - p[:, i], color="0.3", ls="--", label=rf"$1 - p_{i}$ (the published curve)")
    ax_slip.axvline(float(points[i]), color=f"C{i}", lw=0.8, ls=":")
    ax_slip.set(xlabel="$x$", ylim=(-0.03, 1.08),
                title=rf"the slip: a curve that falls at $g_{i}$ = {float(points[i]):g} is $1 - p_{i}$")
    ax_slip.legend(loc="lower right", fontsize=8)
    return fig


SAMPLERS = (  # (operator, low of the uniform, label, expected bias in units of δ)
    ("floor", 0.0, r"$\delta\lfloor x/\delta + U[0,1)\rfloor$", 0.0),
    ("round", -0.5, r"$\delta\,\mathrm{round}(x/\delta + U[-1/2,1/2))$", 0.0),
    ("round", 0.0, r"$\delta\,\mathrm{round}(x/\delta + U[0,1))$  (mismatched)", 0.5),
    ("floor", -0.5, r"$\delta\lfloor x/\delta + U[-1/2,1/2)\rfloor$  (mismatched)", -0.5),
)


@register("sr_samplers", "02_stochastic_rounding",
          "The two correct stochastic-rounding samplers versus the two mismatched ones (biased by ±δ/2)")
def sr_samplers(step: float = 0.5, samples: int = 4000, seed: int = 0):
    """Empirical mean of x̂ - x over x for the four samplers of THEORY.md §2 (shared uniforms)."""
    x = torch.linspace(-1.0, 1.0, 161, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(x.numel(), samples, generator=generator, dtype=torch.float64)
    xs = x.unsqueeze(1).expand_as(u)
    fig, (ax, ax_path) = new_figure(ncols=2)
    styles = ("-", "--", "-", "-")
    for (op, low, label, bias), ls in zip(SAMPLERS, styles):
        xq = round_with_uniform(xs, step, op, low, uniform=u)
        ax.plot(x, (xq - xs).mean(1), ls=ls, label=label)
    for bias in (0.0, 0.5, -0.5):
        ax.axhline(bias * step, color="0.2", lw=0.8, ls=":")
    ax.set(xlabel="$x$", ylabel=r"mean of $\hat x - x$" + f"  ({samples} samples per $x$)",
           ylim=(-0.75 * step, 0.75 * step), title=r"bias: 0 for the correct pairs, $\pm\delta/2$ otherwise")
    ax.legend(loc="upper left", fontsize=7, ncol=1)
    # One path: with the same U the two correct samplers are the same random variable.
    x_path = torch.full((400,), 0.3, dtype=torch.float64)
    u_path = torch.rand(400, generator=generator, dtype=torch.float64)
    for (op, low, label, _), marker, offset in zip(SAMPLERS, ("o", "x", "s", "^"), (0.0, 0.0, 0.04, -0.04)):
        xq = round_with_uniform(x_path, step, op, low, uniform=u_path)
        ax_path.plot(u_path, xq + offset, marker, ms=3, alpha=0.6, label=label.split("  ")[0])
    t = (0.3 / step) % 1
    ax_path.axvline(1 - t, color="0.5", lw=0.8, ls=":")  # floor(x/δ + U) jumps up at U = 1 - t
    ax_path.set(xlabel="$U$ (shared)", ylabel=r"$\hat x$ (markers offset for visibility)",
                title=rf"$x$ = 0.3, $\delta$ = {step:g}: correct pairs agree pathwise")
    ax_path.legend(loc="upper left", fontsize=7)
    return fig


@register("sr_moments", "02_stochastic_rounding",
          "Stochastic rounding is unbiased with variance δ² t(1 - t): formula versus Monte Carlo")
def sr_moments(step: float = 0.5, samples: int = 4000, seed: int = 0):
    """E[x̂|x] = x and Var[x̂|x] = δ² t(1-t) from quantized_moments(Uniform(δ)) beside stochastic_round samples."""
    grid = UniformGrid(3, scale=step)
    x = torch.linspace(-1.5, 1.5, 601, dtype=torch.float64)
    mean, var = quantized_moments(x, grid, Uniform(width=step))
    x_mc = torch.linspace(-1.5, 1.5, 41, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    draws = stochastic_round(x_mc.unsqueeze(1).expand(-1, samples), grid, generator=generator)
    fig, (ax_m, ax_v) = new_figure(ncols=2)
    ax_m.plot(x, mean, label=r"$E[\hat x\mid x]$ (noisy model, uniform noise)")
    ax_m.plot(x_mc, draws.mean(1), "o", ms=4, label=f"Monte Carlo ({samples} samples)")
    ax_m.plot(x, x, color="0.6", ls=":", lw=1, label="identity")
    ax_m.set(xlabel="$x$", ylabel=r"$E[\hat x\mid x]$", title="unbiased: the mean is $x$")
    ax_m.legend(fontsize=8)
    ax_v.plot(x, var, label=r"$\mathrm{Var}[\hat x\mid x] = \delta^2 t(1-t)$")
    ax_v.plot(x_mc, draws.var(1), "o", ms=4, label="Monte Carlo")
    ax_v.axhline(step**2 / 4, color="0.5", ls=":", lw=1, label=r"maximum $\delta^2/4$ at $t = 1/2$")
    ax_v.set(xlabel="$x$", ylabel=r"$\mathrm{Var}[\hat x\mid x]$", title=rf"variance, $\delta$ = {step:g}")
    ax_v.legend(fontsize=8, loc="upper right")
    return fig


# -- chapter 03: noisy quantization --------------------------------------------------


def symmetric_grid(bits: int, half_range: float = 1.0) -> UniformGrid:
    """A signed grid of 2**bits points spread evenly over [-half_range, half_range] (bits=1: {-1, +1})."""
    k = 2**bits
    alpha = 2 * half_range / (k - 1)
    return UniformGrid(bits, scale=alpha, offset=alpha / 2)


def noise_families(alpha: float, logistic_scale: float):
    """Logistic of scale s, the Gaussian of the same std, and uniform noise of width α (stochastic rounding)."""
    logistic = Logistic(logistic_scale)
    return (logistic, Gaussian(logistic.std), Uniform(width=alpha))


@register("noisy_categorical", "03_noisy_quantization",
          "The noisy-quantization categorical for logistic, Gaussian and uniform noise; clamp versus truncate tails")
def noisy_categorical(bits: int = 2, logistic_scale: float = 0.15):
    grid = symmetric_grid(bits)
    alpha = float(grid.scale)
    points = grid.points.double()
    x = torch.linspace(-1.8, 1.8, 721, dtype=torch.float64)
    fig, axes = new_figure(ncols=3, nrows=2, sharex=True, sharey=True)
    for col, noise in enumerate(noise_families(alpha, logistic_scale)):
        for row, tails in enumerate(("clamp", "truncate")):
            ax = axes[row, col]
            p = grid_probabilities(x, grid, noise, tails=tails)
            for i, g in enumerate(points.tolist()):
                ax.plot(x, p[:, i], color=f"C{i}", label=f"$g_{i}$ = {g:.2f}")
            ax.set_title(f"{noise!r}, std {noise.std:.3f}\n{tails} tails", fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("$x$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$P(\hat x = g_i\mid x)$")
    axes[0, 0].legend(fontsize=7, loc="center left")
    return fig


EXPECTED_SCALES = (0.02, 0.1, 0.2, 0.4)


def mean_and_slope(x: torch.Tensor, grid: UniformGrid, noise, tails: str = "clamp"):
    """E[x̂|x], Var[x̂|x] and d/dx E[x̂|x] by autograd (detached tensors of the shape of x)."""
    x = x.detach().clone().requires_grad_(True)
    mean, var = quantized_moments(x, grid, noise, tails=tails)
    (slope,) = torch.autograd.grad(mean.sum(), x)
    return mean.detach(), var.detach(), slope


@register("expected_quantizer", "03_noisy_quantization",
          "E[x̂|x] and its derivative (the principled straight-through slope) for several logistic scales")
def expected_quantizer(bits: int = 2, scales=EXPECTED_SCALES):
    grid = symmetric_grid(bits)
    alpha = float(grid.scale)
    x = torch.linspace(-1.8, 1.8, 721, dtype=torch.float64)
    fig, (ax_m, ax_d) = new_figure(ncols=2)
    for i, s in enumerate(scales):
        mean, _, slope = mean_and_slope(x, grid, Logistic(s))
        ax_m.plot(x, mean, color=f"C{i}", label=f"logistic, scale $s$ = {s:g}")
        ax_d.plot(x, slope, color=f"C{i}", label=f"$s$ = {s:g}")
    mean, _, slope = mean_and_slope(x, grid, Uniform(width=alpha))
    ax_m.plot(x, mean, color="k", ls="--", lw=1.2, label=r"uniform, width $\alpha$: clip$(x)$")
    ax_d.plot(x, slope, color="k", ls="--", lw=1.2, label=r"uniform: $1[g_0 \leq x \leq g_{K-1}]$")
    ax_m.plot(x, round_to_grid(x, grid), color="0.6", lw=0.8, ls=":", label="round (no noise)")
    ax_m.set(xlabel="$x$", ylabel=r"$E[\hat x\mid x]$", title=f"{bits}-bit grid, $\\alpha$ = {alpha:.3g}")
    ax_m.legend(fontsize=7, loc="upper left")
    ax_d.set(xlabel="$x$", ylabel=r"$\frac{d}{dx}E[\hat x\mid x]$",
             title=r"the principled straight-through slope", ylim=(-0.1, 4.0))
    ax_d.legend(fontsize=7, loc="upper right")
    return fig


@register("quantized_variance", "03_noisy_quantization",
          "Var[x̂|x] of noisy quantization as the logistic scale shrinks and grows, and δ² t(1 - t) for uniform noise")
def quantized_variance(bits: int = 2, scales=EXPECTED_SCALES):
    grid = symmetric_grid(bits)
    alpha = float(grid.scale)
    x = torch.linspace(-1.8, 1.8, 721, dtype=torch.float64)
    fig, ax = new_figure()
    for i, s in enumerate(scales):
        _, var = quantized_moments(x, grid, Logistic(s))
        ax.plot(x, var, color=f"C{i}", label=f"logistic, scale $s$ = {s:g}")
    _, var = quantized_moments(x, grid, Uniform(width=alpha))
    ax.plot(x, var, color="k", ls="--", lw=1.2, label=r"uniform, width $\alpha$: $\alpha^2 t(1-t)$")
    ax.set(xlabel="$x$", ylabel=r"$\mathrm{Var}[\hat x\mid x]$",
           title=f"{bits}-bit grid, $\\alpha$ = {alpha:.3g}: variance peaks between grid points")
    ax.legend(fontsize=8)
    return fig
