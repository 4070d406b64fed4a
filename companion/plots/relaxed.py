"""Figures of chapter 04: the concrete relaxation, the local grid, training curves per method."""
from __future__ import annotations

import torch

from ..estimators import quantize
from ..figures import register
from ..grids import UniformGrid
from ..noise import Logistic
from ..plotting import new_figure
from ..relaxed import relaxed_quantize, window_mean
from ..rounding import grid_probabilities

CURVE_METHODS = ("ste", "sr", "noisy-st", "rq", "rq-st", "mean", "lsq")


def draw_concrete_samples(ax, x: float = 0.2, sigma: float = 0.25, temperature: float = 0.5, *, bits: int = 2,
                          scale: float = 0.5, n: int = 4000, seed: int = 0):
    """Histogram of n soft RQ samples Σ z_i g_i for one x, with P(x̂ = g_i|x) as stems; returns the samples."""
    grid = UniformGrid(bits, scale=scale)
    xs = torch.full((n,), float(x), dtype=torch.float64)
    soft = relaxed_quantize(xs, grid, Logistic(sigma), temperature, generator=torch.Generator().manual_seed(seed))
    points = grid.points_like(xs)
    probabilities = grid_probabilities(xs[:1], grid, Logistic(sigma), "truncate")[0]
    low, high = points[0].item() - scale / 2, points[-1].item() + scale / 2
    ax.hist(soft.numpy(), bins=80, range=(low, high), density=True, color="C0", alpha=0.75, label="soft samples")
    twin = ax.twinx()
    twin.stem(points.numpy(), probabilities.numpy(), linefmt="C1-", markerfmt="C1o", basefmt=" ",
              label=r"$P(\hat x = g_i \mid x)$")
    twin.set_ylim(0, 1.05)
    twin.set_ylabel("categorical probability", color="C1")
    ax.axvline(x, color="0.3", ls=":", lw=1)
    ax.set(xlabel=r"$\hat x = \sum_i z_i g_i$", ylabel="density", xlim=(low, high),
           title=rf"$\lambda$ = {temperature:g}, $\sigma$ = {sigma:g}, $x$ = {x:g}")
    return soft


@register("concrete_samples_temperature", "04_relaxed_quantization",
          "Soft RQ samples for one input as the temperature λ falls: mass moves onto the grid points")
def concrete_samples_temperature():
    fig, axes = new_figure(ncols=4, width=15.5, height=3.4)
    for ax, temperature in zip(axes, (3.0, 1.0, 0.3, 0.05)):
        draw_concrete_samples(ax, temperature=temperature)
    return fig


@register("local_grid_truncation", "04_relaxed_quantization",
          "Local grid: truncation error of E[x̂|x] versus radius, and categorical entries per input versus bits")
def local_grid_truncation():
    fig, (ax_err, ax_cost) = new_figure(ncols=2)
    x = torch.linspace(-2.0, 2.0, 801, dtype=torch.float64)
    radii = torch.linspace(0.5, 12.0, 24).tolist()
    for ratio, style in ((1 / 3, "-"), (1.0, "--")):
        for bits, color in ((4, "C0"), (8, "C1")):
            grid = UniformGrid(bits, scale=4.0 / 2**bits)
            noise = Logistic(ratio * grid.scale)
            full = quantize(x, grid, "mean", noise=noise)
            errors = [((window_mean(x, grid, noise, "truncate", r) - full).abs().max() / grid.scale).item() for r in radii]
            ax_err.semilogy(radii, [max(e, 1e-6) for e in errors], style, color=color,
                            label=rf"{bits} bits, $\sigma/\alpha$ = {ratio:.2g}")
    ax_err.set(xlabel=r"local radius (units of $\sigma$)", ylabel=r"max$_x$ |E$_{local}$ - E$_{full}$| / $\alpha$",
               title="truncation error of the local grid", ylim=(1e-6, 2))
    ax_err.legend(fontsize="small")
    bits = list(range(1, 9))
    ax_cost.semilogy(bits, [2**b for b in bits], "o-", label="full grid: K = 2^b")
    for radius, marker in ((3.0, "s"), (6.0, "^")):
        widths = [min(2 * int(-(-radius // 3)) + 1, 2 * 2**b - 1) for b in bits]  # σ = α/3: r = ⌈radius/3⌉
        ax_cost.semilogy(bits, widths, marker + "-", label=f"local grid, radius {radius:g}σ (σ = α/3)")
    ax_cost.set(xlabel="bits", ylabel="categorical entries per input", title="what the local grid saves")
    ax_cost.legend(fontsize="small")
    return fig


def train_curves(methods=CURVE_METHODS, epochs: int = 4, seed: int = 0, train_size: int = 500):
    """Train a tiny seeded 2-bit MLP (64-24-10) on ``train_size`` digits per method (and "fp").

    Returns (histories, models, val): method → :func:`companion.train.fit` history, method → trained
    model, and the (x, y) validation pair (500 digits not used for training).
    """
    from sklearn.datasets import load_digits

    from ..nn import mlp
    from ..train import fit

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16
    y = torch.tensor(data.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    if not 1 <= train_size <= len(x) - 500:
        raise ValueError(f"train_size must be in 1..{len(x) - 500}, got {train_size}")
    train = (x[perm[:train_size]], y[perm[:train_size]])
    val = (x[perm[-500:]], y[perm[-500:]])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        histories, models = {}, {}
        for method in ("fp", *methods):
            torch.manual_seed(seed)
            bits = None if method == "fp" else 2
            models[method] = mlp(64, 24, 10, weight_bits=bits, act_bits=bits, method=method)
            histories[method] = fit(models[method], train, epochs=epochs, lr=2e-2, seed=seed, val=val, progress=False)
    finally:
        torch.set_num_threads(threads)
    return histories, models, val


@register("training_curves_relaxed", "04_relaxed_quantization",
          "A seeded 2-bit MLP on digits trained with each pathwise method: validation accuracy and loss per epoch")
def training_curves_relaxed(histories=None):
    """Plot ``histories`` (method → fit history) or, by default, train them with :func:`train_curves`."""
    curves = histories if histories is not None else train_curves()[0]
    fig, (ax_acc, ax_loss) = new_figure(ncols=2)
    for i, (method, history) in enumerate(curves.items()):
        style = dict(color="0.3", ls="--") if method == "fp" else dict(color=f"C{i - 1}")
        ax_acc.plot(history["epoch"], history["val_acc"], marker="o", ms=3, label=method, **style)
        ax_loss.plot(history["epoch"], history["loss"], marker="o", ms=3, label=method, **style)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy (one sampled pass)",
               title="2-bit weights and activations, digits")
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="MLP 64-24-10, Adam, seed 0")
    ax_acc.set_xticks(curves["fp"]["epoch"])
    ax_loss.set_xticks(curves["fp"]["epoch"])
    ax_acc.legend(fontsize="small", ncol=2)
    return fig
