"""Plotting helpers shared by the figure registry, the widgets and the notebooks."""
from __future__ import annotations

import contextlib
from pathlib import Path


STYLE = Path(__file__).with_name("companion.mplstyle")


@contextlib.contextmanager
def style():
    """Use the companion's matplotlib style inside the block."""
    import matplotlib.pyplot as plt

    with plt.style.context(str(STYLE)):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, width: float | None = None, height: float | None = None, **kwargs):
    """A (figure, axes) pair in the companion style, not attached to pyplot's state.

    The figure is built with ``matplotlib.figure.Figure`` so that notebooks and
    the registry do not leak open pyplot windows; notebooks display it as the
    cell's value or with ``display(fig)``.
    """
    from matplotlib.figure import Figure

    w = width or 4.2 * ncols + 0.6
    h = height or 3.4 * nrows + 0.4
    with style():
        fig = Figure(figsize=(w, h), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def use_style() -> None:
    """Apply the companion style globally (notebooks call this once)."""
    import matplotlib.style

    matplotlib.style.use(str(STYLE))
