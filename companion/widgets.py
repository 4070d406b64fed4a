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
