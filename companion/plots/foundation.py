"""Figures of chapters 01–03: grids, stochastic rounding, noisy quantization."""
from __future__ import annotations

import torch

from ..figures import register
from ..grids import UniformGrid
from ..plotting import new_figure
from ..rounding import round_to_grid


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
