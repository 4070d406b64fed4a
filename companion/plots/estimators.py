"""Figures of chapters 05–06: the toy estimators, ST's fixed point, noise → STE slopes, gradient accuracy."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..binary import binary_mean, st_slope
from ..estimators import toy
from ..figures import register
from ..io import read_json
from ..noise import Gaussian, Logistic, Uniform
from ..plotting import new_figure

RESULTS = Path(__file__).resolve().parents[2] / "results"
LABELS = {
    "reinforce": "REINFORCE", "arm": "ARM", "disarm": "DisARM", "st": "ST", "concrete": "Concrete",
    "st-gumbel": "ST-Gumbel", "exact": "exact", "concrete-0.1": "Concrete τ=0.1", "concrete-1": "Concrete τ=1",
    "hardtanh-st": "hardtanh ST", "identity-st": "identity ST", "psa": "PSA", "ap1": "AP1 (tanh)",
    "ap2": "AP2 (means and variances)",
    "rq-0.5": "RQ λ=0.5", "rq-st-0.5": "RQ-ST λ=0.5", "noisy-st": "noisy ST", "clipped-identity-st": "clipped-identity ST",
    "sr": "SR (clipped identity)",
}


ORDER = list(LABELS)
COLORS = {
    "reinforce": "tab:blue", "arm": "tab:orange", "disarm": "tab:olive", "st": "tab:red", "concrete": "tab:purple",
    "st-gumbel": "tab:brown", "exact": "black", "concrete-0.1": "tab:gray", "concrete-1": "tab:purple",
    "hardtanh-st": "tab:cyan", "identity-st": "tab:pink", "psa": "tab:green", "ap1": "tab:olive",
    "ap2": "darkgreen",
    "rq-0.5": "tab:purple", "rq-st-0.5": "tab:brown", "noisy-st": "tab:red", "clipped-identity-st": "tab:cyan",
    "sr": "tab:cyan",
}
"""One colour per method, the same in every figure."""


def _color(label: str):
    return COLORS.get(label, "0.3")


def _load(name: str) -> dict:
    path = RESULTS / name
    if not path.exists():
        raise FileNotFoundError(f"{path.name} is missing: run `python -m companion.experiments gradient-accuracy` first")
    return read_json(path)


@register("toy_estimator_moments", "05_gradient_estimators",
          "Toy Bernoulli problem: each estimator's mean and standard deviation vs the logit, closed form and Monte Carlo")
def toy_estimator_moments(target: float = 0.49, temperature: float = 1.0, samples: int = 2000):
    phis = np.linspace(-4, 4, 25)
    marks = np.linspace(-4, 4, 9)
    fig, (ax_m, ax_s) = new_figure(ncols=2)
    generator = torch.Generator().manual_seed(0)
    for method in toy.METHODS:
        color = _color(method)
        curve = np.array([toy.moments(method, p, target, temperature) for p in phis])
        ax_m.plot(phis, curve[:, 0], color=color, label=LABELS[method], lw=2.2 if method == "exact" else 1.4)
        ax_s.plot(phis, np.sqrt(curve[:, 1]), color=color, label=LABELS[method])
        mc = [toy.gradient_samples(method, p, target, samples, temperature, generator) for p in marks]
        ax_m.plot(marks, [s.mean().item() for s in mc], "o", ms=3, color=color)
        ax_s.plot(marks, [s.std().item() for s in mc], "o", ms=3, color=color)
    ax_m.set(xlabel=r"logit $\phi$", ylabel=r"$E[\hat g]$", title=f"mean (t = {target}, τ = {temperature}); dots: {samples} samples")
    ax_s.set(xlabel=r"logit $\phi$", ylabel=r"std$[\hat g]$", title="standard deviation of one sample")
    ax_m.axhline(0, color="0.7", lw=0.8)
    ax_m.legend(fontsize=7)
    return fig


@register("st_fixed_point", "05_gradient_estimators",
          "ST's mean gradient vanishes at p = t: descent with ST stops at p = t, exact descent goes to p = 0")
def st_fixed_point(target: float = 0.3, steps: int = 300, lr: float = 2.0):
    p = np.linspace(0.001, 0.999, 500)
    fig, (ax_g, ax_t) = new_figure(ncols=2)
    ax_g.plot(p, (1 - 2 * target) * p * (1 - p), label=r"true $(1-2t)\,p(1-p)$")
    ax_g.plot(p, 2 * (p - target) * p * (1 - p), label=r"ST mean $2(p-t)\,p(1-p)$")
    ax_g.axhline(0, color="0.7", lw=0.8)
    ax_g.axvline(target, color="C1", ls=":", lw=1)
    ax_g.set(xlabel="$p = \\sigma(\\phi)$", ylabel="dE/dφ", title=f"t = {target}: the ST mean is zero at p = t")
    ax_g.legend()
    for method, color in (("exact", "C0"), ("st", "C1")):
        phi, path = math.log(0.7 / 0.3), []
        for _ in range(steps):
            path.append(1 / (1 + math.exp(-phi)))
            phi -= lr * toy.moments(method, phi, target)[0]
        ax_t.plot(path, color=color, label=f"descent with the {'exact' if method == 'exact' else 'ST mean'} gradient")
    ax_t.axhline(target, color="C1", ls=":", lw=1)
    ax_t.set(xlabel="step", ylabel="p", ylim=(0, 1), title="gradient descent on φ from p = 0.7")
    ax_t.legend()
    return fig


@register("noise_ste_slopes", "06_binary_networks",
          "Which noise gives which straight-through slope: the mean 2F(a) - 1 and its derivative 2F'(a)")
def noise_ste_slopes():
    a = torch.linspace(-3, 3, 601, dtype=torch.float64)
    noises = [("logistic, s = 1: tanh(a/2)", Logistic(1.0)), ("uniform U[-1, 1]: hardtanh", Uniform(2.0)),
              ("Gaussian, σ = 1", Gaussian(1.0))]
    fig, (ax_m, ax_s) = new_figure(ncols=2)
    for i, (label, noise) in enumerate(noises):
        ax_m.plot(a, binary_mean(a, noise), color=f"C{i}", label=label)
        ax_s.plot(a, st_slope(a, noise), color=f"C{i}", label=label)
    ax_m.plot(a, a, color="0.4", ls="--", label="identity (no noise has this mean)")
    ax_s.plot(a, torch.ones_like(a), color="0.4", ls="--", label="identity STE: slope 1")
    ax_m.set(xlabel="pre-activation $a$", ylabel=r"$E[x|a] = 2F(a) - 1$", ylim=(-1.5, 1.5), title="mean of x = sign(a - Z)")
    ax_s.set(xlabel="pre-activation $a$", ylabel=r"$2F'(a)$", title="principled ST slope = derivative of the mean")
    ax_m.legend(fontsize=7)
    ax_s.legend(fontsize=7)
    return fig


def _accuracy_figure(nets: dict, layer: str, title: str):
    rows = [(name, cp) for name, net in nets.items() for cp in net["checkpoints"]]
    fig, axes = new_figure(ncols=2, nrows=len(rows), height=2.6 * len(rows) + 0.6)
    axes = np.atleast_2d(axes)
    for (name, checkpoint), (ax_e, ax_c) in zip(rows, axes):
        sizes = nets[name]["group_sizes"]
        for label, result in sorted(checkpoint["methods"].items(), key=lambda item: ORDER.index(item[0])):
            r = result["layers"][layer]
            color = _color(label)
            ax_e.plot(sizes, r["rel_err_q50"], color=color, label=LABELS.get(label, label))
            ax_e.fill_between(sizes, r["rel_err_q15"], r["rel_err_q85"], color=color, alpha=0.15, lw=0)
            ax_c.plot(sizes, r["cos_q50"], color=color)
            ax_c.fill_between(sizes, r["cos_q15"], r["cos_q85"], color=color, alpha=0.15, lw=0)
        prefix = f"{name}, " if len(nets) > 1 else ""
        ax_e.set(xscale="log", yscale="log", ylabel=r"$\|\hat g_M - g\| / \|g\|$",
                 title=f"{prefix}epoch {checkpoint['epoch']}: relative error ({layer})")
        ax_c.set(xscale="log", ylabel="cosine similarity", ylim=(-0.2, 1.02), title="cosine to the exact gradient")
    axes[-1, 0].set_xlabel("samples averaged, M")
    axes[-1, 1].set_xlabel("samples averaged, M")
    axes[0, 0].legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    return fig


@register("gradient_accuracy", "06_binary_networks",
          "Binary 2-5-5-5 net: relative error and cosine of M-sample averages vs the exact gradient (median, 15/85 %)")
def gradient_accuracy(layer: str = "all"):
    data = _load("gradient_accuracy.json")
    kind = "quick run" if data["quick"] else f"{data['samples']} samples"
    return _accuracy_figure({"binary": data}, layer, f"PSA protocol, {kind}")


@register("gradient_accuracy_multilevel", "06_binary_networks",
          "2-bit 2-3-3 net (logistic noise; uniform noise = SR): estimator accuracy vs the exact gradient")
def gradient_accuracy_multilevel(layer: str = "all", net: str = "logistic"):
    data = _load("gradient_accuracy_multilevel.json")
    kind = "quick run" if data["quick"] else f"{data['nets'][net]['samples']} samples"
    return _accuracy_figure({net: data["nets"][net]}, layer, f"2-bit activations, {net} noise, {kind}")
