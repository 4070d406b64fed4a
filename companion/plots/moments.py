"""Figures of chapter 07: moment propagation rules beside Monte Carlo, per-layer error, cost."""
from __future__ import annotations

from pathlib import Path

import torch

from ..figures import register
from ..grids import UniformGrid
from ..io import read_json
from ..noise import Logistic
from ..plotting import new_figure
from ..rounding import round_to_grid
from .. import moments as M

RESULTS = Path(__file__).resolve().parent.parent.parent / "results"
D = torch.float64


def rule_panels(axes, var: float = 0.5, noise_scale: float = 0.15, samples: int = 20000, seed: int = 0):
    """Draw ReLU, sign, 2-bit quantizer and max(X, 0.5·X') moments against Monte Carlo on four axes.

    Lines: the analytic rules of companion.moments; dots: ``samples`` Monte Carlo draws.
    """
    g = torch.Generator().manual_seed(seed)
    mu = torch.linspace(-2.5, 2.5, 101, dtype=D)
    dots = mu[::10]
    z = torch.randn(samples, len(dots), generator=g, dtype=D)
    x = dots + var**0.5 * z
    noise, grid = Logistic(noise_scale), UniformGrid(2, scale=0.5)
    eps = noise.sample((samples, len(dots)), generator=g, dtype=D)
    second = torch.randn(samples, len(dots), generator=g, dtype=D)
    v = torch.full_like(mu, var)
    cases = [
        ("ReLU", M.relu(mu, v), torch.relu(x)),
        (f"sign(x + logistic(s={noise_scale:g}))", M.sign(mu, v, noise), torch.where(x + eps > 0, 1.0, -1.0)),
        ("2-bit noisy quantizer (clamp)", M.noisy_quantize(mu, v, grid, noise), round_to_grid(x + eps, grid)),
        ("max(X, Y), Y ~ N(0, 1)", M.max2(mu, v, torch.zeros_like(mu), torch.ones_like(mu)), torch.maximum(x, second)),
    ]
    for ax, (title, (m, s2), mc) in zip(axes, cases):
        ax.plot(mu, m, color="C0", label="mean (AP)")
        ax.plot(mu, s2, color="C1", label="variance (AP)")
        ax.plot(dots, mc.mean(0), "o", color="C0", ms=4, label="mean (MC)")
        ax.plot(dots, mc.var(0), "s", color="C1", ms=4, label="variance (MC)")
        ax.set(title=title, xlabel=r"input mean $\mu$ (input variance %g)" % var)
    axes[0].legend(fontsize="small")


@register("moments_rules", "07_probabilistic_propagation", "Moment rules (ReLU, sign, quantizer, max) beside Monte Carlo")
def moments_rules():
    fig, axes = new_figure(ncols=2, nrows=2)
    rule_panels(axes.ravel())
    return fig


def _two_panels_with(path, default_name):
    """(figure, two axes, results) — results None, and the figure says so, when the file is missing."""
    path = Path(path) if path else RESULTS / default_name
    fig, axes = new_figure(ncols=2, nrows=1, width=10)
    if path.exists():
        return fig, axes, read_json(path)
    axes[0].text(0.5, 0.5, f"results/{path.name} not found:\nrun python -m companion.experiments moments-check",
                 ha="center", va="center", transform=axes[0].transAxes)
    for ax in axes:
        ax.set_axis_off()
    return fig, axes, None


@register("moments_layer_errors", "07_probabilistic_propagation", "AP2 relative error per layer vs Monte Carlo (2-bit MLP, LeNet-5)")
def moments_layer_errors(path=None):
    fig, axes, data = _two_panels_with(path, "moments_layers.json")
    if data is None:
        return fig
    for ax, name in zip(axes, ("mlp", "lenet5")):
        for state, style in (("random", "--"), ("trained", "-")):
            rows = data["models"][f"{name}_{state}"]
            labels = [f"{r['index']}:{r['layer'].replace('Quant', 'Q')}" for r in rows]
            ax.plot(labels, [r["mean_error"] for r in rows], style, marker="o", color="C0", label=f"mean, {state}")
            ax.plot(labels, [r["var_error"] for r in rows], style, marker="s", color="C1", label=f"variance, {state}")
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=60)
        ax.set(title=f"{name}: {data['samples'][name]:,} MC samples", ylabel="relative error ‖AP − MC‖/‖MC‖")
    axes[0].legend(fontsize="small", handlelength=3.5)
    return fig


@register("moments_speed", "07_probabilistic_propagation", "AP2 cost per step and accuracy after equal wall time")
def moments_speed(path=None):
    fig, axes, data = _two_panels_with(path, "moments_speed.json")
    if data is None:
        return fig
    ratios = data["step"]["ratio_to_fp"]
    colours = {"fp": "C7", "ap": "C0", "ap1": "C2", "noisy-st": "C1"}
    for name, ratio in ratios.items():  # "-fused": the same method with fused kernels, hatched
        axes[0].bar(name.replace("-fused", "\nfused"), ratio, color=colours.get(name.removesuffix("-fused"), "C4"),
                    hatch="//" if name.endswith("-fused") else None, edgecolor="white")
    axes[0].axhline(3, color="0.5", ls=":", label="target 3×")
    threads = data["step"].get("threads")
    axes[0].set(ylabel="step time / fp step time",
                title=f"2-bit LeNet-5, batch 128, CPU{'' if threads is None else f', {threads} thread' + 's' * (threads > 1)}")
    axes[0].legend()
    methods = data["equal_time"]["methods"]
    names = list(methods)
    positions = range(len(names))
    axes[1].bar([i - 0.2 for i in positions], [methods[n]["val_stochastic"] for n in names], width=0.4, color="C0",
                label="stochastic")
    axes[1].bar([i + 0.2 for i in positions], [methods[n]["val_round"] for n in names], width=0.4, color="C1",
                label="rounded")
    axes[1].set_xticks(list(positions), [f"{n}\n{methods[n]['steps']:,} steps" for n in names])
    axes[1].set(ylabel="validation accuracy", ylim=(0, 1.15), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0],
                title=f"2-bit MLP on digits after {data['equal_time']['budget_seconds']:g} s each")
    axes[1].legend(loc="upper center", ncol=2)
    return fig
