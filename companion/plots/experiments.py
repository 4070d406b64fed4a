"""Figures of chapter 08: the training comparison, read from ``results/train_default.json``.

Every figure takes ``path`` (a results file written by ``python -m
companion.experiments train``) and plots mean ± sample std over seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..experiments.train import FP_BITS, group_cells, mean_std, parse_bits
from ..figures import register
from ..io import read_json
from ..plotting import new_figure

RESULTS = Path(__file__).resolve().parents[2] / "results" / "train_default.json"
CHAPTER = "08_experiments"


def load(path=None) -> dict:
    path = Path(path or RESULTS)
    if not path.exists():
        raise FileNotFoundError(f"{path.name} not found; run the default study "
                                "(python -m companion.experiments train ... --out results/train_default.json)")
    return read_json(path)


def _groups(path):
    groups = group_cells(load(path))
    if not groups:
        raise ValueError(f"results file {path or RESULTS} holds no finished cells")
    return groups


def _panels(path):
    """The finished cells grouped by (dataset, model), and a figure with one panel per group."""
    groups = _groups(path)
    fig, axes = new_figure(ncols=len(groups), width=5.2 * len(groups) + 0.6, height=4.0)
    return groups, fig, np.atleast_1d(axes)


def _methods(group) -> list[str]:
    from ..nn import METHODS

    return [m for m in METHODS if any(k[0] == m for k in group)]


def _quant_bits(group) -> list[str]:
    return sorted({b for _, b in group if b != FP_BITS}, key=parse_bits)


def _stat(cells, get):
    values = [get(c) for c in cells]
    values = [v for v in values if v is not None]
    if not values:
        return np.nan, 0.0
    mean, std = mean_std(values)
    return mean, std or 0.0


def _det(c):
    return c["test"]["deterministic"]["round"]


def _line_style(index: int) -> dict:
    """Colours cycle every 8 methods (the shared style); methods 9 and on get a dashed line and a square marker."""
    return {"ls": "--", "marker": "s"} if index >= 8 else {"ls": "-", "marker": "o"}


@register("train_accuracy_vs_bits", CHAPTER, "Test accuracy of the deterministic model versus bits, per method")
def accuracy_vs_bits(path=None):
    groups, fig, axes = _panels(path)
    for ax, ((dataset, model), group) in zip(axes, groups.items()):
        bits = _quant_bits(group)
        x = np.arange(len(bits))
        quantized = [m for m in _methods(group) if m != "fp"]
        for i, m in enumerate(_methods(group)):
            if m == "fp":
                mean, std = _stat(group[("fp", FP_BITS)], _det)
                ax.axhline(100 * mean, color="k", ls="--", lw=1, label="fp (full precision)")
                ax.axhspan(100 * (mean - std), 100 * (mean + std), color="k", alpha=0.08)
                continue
            stats = [_stat(group.get((m, b), []), _det) for b in bits]
            offset = (i - len(_methods(group)) / 2) * 0.025
            ax.errorbar(x + offset, [100 * s[0] for s in stats], yerr=[100 * s[1] for s in stats],
                        ms=4, capsize=2, label=m, **_line_style(quantized.index(m)))
        ax.set_xticks(x, bits)
        ax.set(xlabel="bits (weights/activations)", ylabel="test accuracy (%), rule 'round'", title=f"{dataset} / {model}")
    axes[-1].legend(fontsize="small", ncols=2)
    return fig


@register("train_curves", CHAPTER, "Validation accuracy per epoch at the lowest bit width, per method")
def training_curves(path=None):
    groups, fig, axes = _panels(path)
    for ax, ((dataset, model), group) in zip(axes, groups.items()):
        low = _quant_bits(group)[0] if _quant_bits(group) else FP_BITS
        quantized = [m for m in _methods(group) if m != "fp"]
        for m in _methods(group):
            cells = group.get((m, FP_BITS if m == "fp" else low), [])
            if not cells:
                continue
            curves = np.array([c["history"]["val_acc"] for c in cells], dtype=float)
            epochs = np.arange(1, curves.shape[1] + 1)
            mean = 100 * curves.mean(0)
            style = {"color": "k", "ls": ":"} if m == "fp" else {"ls": _line_style(quantized.index(m))["ls"]}
            line, = ax.plot(epochs, mean, label=m, **style)
            if len(cells) > 1:
                std = 100 * curves.std(0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.12, lw=0)
        ax.axhline(100 * next(iter(group.values()))[0]["target"]["val_acc"], color="0.5", ls=":", lw=1)
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title=f"{dataset} / {model}, {low} bits (fp dotted)")
    axes[-1].legend(fontsize="small", ncols=2)
    return fig


def _bars(ax, group, methods, bits, get, scale):
    width = 0.8 / len(bits)
    for j, b in enumerate(bits):
        stats = [_stat(group.get((m, FP_BITS if m == "fp" else b), []), get) for m in methods]
        ax.bar(np.arange(len(methods)) + (j - (len(bits) - 1) / 2) * width, [scale * s[0] for s in stats], width,
               yerr=[scale * s[1] for s in stats], capsize=2, label=b)
    ax.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right")


@register("train_time_per_step", CHAPTER, "Median time per training step, per method and bit width")
def time_per_step(path=None):
    groups, fig, axes = _panels(path)
    for ax, ((dataset, model), group) in zip(axes, groups.items()):
        _bars(ax, group, _methods(group), _quant_bits(group), lambda c: c["time_per_step"], 1000.0)
        ax.set(ylabel="ms per step (shared CPU: noisy)", title=f"{dataset} / {model}")
    axes[-1].legend(title="bits", fontsize="small")
    return fig


@register("train_extraction_rules", CHAPTER, "Stochastic model versus deterministic extraction rules, lowest bit width")
def extraction_rules(path=None):
    groups, fig, axes = _panels(path)
    for ax, ((dataset, model), group) in zip(axes, groups.items()):
        low = _quant_bits(group)[0]
        methods = [m for m in _methods(group) if m != "fp"]
        rules = sorted({r for c in group[(methods[0], low)] for r in c["test"]["deterministic"]})
        getters = [("stochastic", lambda c: c["test"]["stochastic"])]
        getters += [(r, lambda c, r=r: c["test"]["deterministic"][r]) for r in rules]
        width = 0.8 / len(getters)
        for j, (label, get) in enumerate(getters):
            stats = [_stat(group.get((m, low), []), get) for m in methods]
            ax.bar(np.arange(len(methods)) + (j - (len(getters) - 1) / 2) * width, [100 * s[0] for s in stats], width,
                   yerr=[100 * s[1] for s in stats], capsize=2, label=label)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right")
        lows = [100 * _stat(group.get((m, low), []), get)[0] for m in methods for _, get in getters]
        ax.set_ylim(max(0.0, np.nanmin(lows) - 5), 100)
        ax.set(ylabel="test accuracy (%)", title=f"{dataset} / {model}, {low} bits")
    axes[-1].legend(fontsize="small")
    return fig


@register("train_time_to_target", CHAPTER, "Epochs and training seconds to the target validation accuracy")
def time_to_target(path=None):
    groups = _groups(path)
    fig, axes = new_figure(ncols=len(groups), nrows=2, width=5.2 * len(groups) + 0.6, height=7.0)
    axes = np.asarray(axes).reshape(2, len(groups))
    for col, ((dataset, model), group) in enumerate(groups.items()):
        methods, bits = _methods(group), _quant_bits(group)
        target = 100 * next(iter(group.values()))[0]["target"]["val_acc"]
        _bars(axes[0, col], group, methods, bits, lambda c: c["target"]["epochs"], 1.0)
        _bars(axes[1, col], group, methods, bits, lambda c: c["target"]["wall_time"], 1.0)
        axes[0, col].set(ylabel="epochs to target", title=f"{dataset} / {model}: validation accuracy ≥ {target:.0f} %")
        axes[1, col].set(ylabel="training seconds to target")
    axes[0, -1].legend(title="bits", fontsize="small")
    fig.text(0.01, 0.0, "missing bar: the target was not reached within the epochs run", fontsize="small")
    return fig
