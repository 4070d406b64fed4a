"""The figure registry and ``python -m companion.figures``.

Every figure of the companion is a function registered here with its chapter;
notebooks call the same functions (``figures.render(name)``) that
``make figures`` saves.  Figure functions live in ``companion/plots/*.py``,
return a ``matplotlib.figure.Figure`` and read any experiment data from
``results/*.json``; they must be deterministic (fixed seeds).

Usage::

    python -m companion.figures --list
    python -m companion.figures [NAME ...] [--out figures/]
"""
from __future__ import annotations

import argparse
import importlib
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .io import atomic_write_bytes

# Modules that define figures, in chapter order.  Add yours here.
FIGURE_MODULES = [
    "companion.plots.foundation",
    "companion.plots.estimators",
    "companion.plots.relaxed",
    "companion.plots.moments",
    "companion.plots.experiments",
]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "figures"


@dataclass(frozen=True)
class FigureSpec:
    name: str
    chapter: str
    title: str
    func: Callable


REGISTRY: dict[str, FigureSpec] = {}


def register(name: str, chapter: str, title: str):
    """Decorator: add a figure function (returning a Figure) to the registry."""

    def decorate(func):
        if name in REGISTRY and REGISTRY[name].func.__qualname__ != func.__qualname__:
            raise ValueError(f"figure name {name!r} is registered twice")
        REGISTRY[name] = FigureSpec(name, chapter, title, func)
        return func

    return decorate


def load_all() -> dict[str, FigureSpec]:
    """Import every figure module and return the registry, sorted by chapter then name."""
    for module in FIGURE_MODULES:
        importlib.import_module(module)
    return dict(sorted(REGISTRY.items(), key=lambda item: (item[1].chapter, item[0])))


def render(name: str, **kwargs):
    """Build one registered figure in the companion style (notebooks use this)."""
    from .plotting import style

    specs = load_all()
    if name not in specs:
        raise ValueError(f"name must be a registered figure; got {name!r}. Known: {', '.join(specs)}")
    with style():
        return specs[name].func(**kwargs)


def figure_bytes(fig, fmt: str) -> bytes:
    """Serialise deterministically: PNG without a timestamp, PDF with CreationDate None.

    Drawing happens here, and colours such as "C1" resolve at draw time, so the
    companion style is active while saving.
    """
    from .plotting import style

    buffer = io.BytesIO()
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}}[fmt]
    with style():
        fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def save(name: str, out_dir=DEFAULT_OUT) -> list[Path]:
    """Render ``name`` and write ``out_dir/name.png`` and ``.pdf`` atomically."""
    fig = render(name)
    out_dir = Path(out_dir)
    return [atomic_write_bytes(out_dir / f"{name}.{fmt}", figure_bytes(fig, fmt)) for fmt in ("png", "pdf")]


def index_markdown(specs: dict[str, FigureSpec]) -> str:
    lines = [
        "# Figures",
        "",
        "Every figure is a function in the registry `companion/figures.py` (defined in",
        "`companion/plots/`). Regenerate all of them with `make figures`, or one with",
        "`python -m companion.figures NAME`. PNG files are byte-identical on rerun.",
        "",
        "| figure | chapter | what it shows | command |",
        "|---|---|---|---|",
    ]
    for spec in specs.values():
        lines.append(
            f"| [{spec.name}]({spec.name}.png) | {spec.chapter} | {spec.title} | "
            f"`python -m companion.figures {spec.name}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="figures to make (default: all)")
    parser.add_argument("--list", action="store_true", help="list the registered figures and exit")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: figures/)")
    args = parser.parse_args(argv)
    specs = load_all()
    if args.list:
        for spec in specs.values():
            print(f"{spec.name:32s} {spec.chapter:28s} {spec.title}")
        return 0
    unknown = [n for n in args.names if n not in specs]
    if unknown:
        parser.error(f"unknown figure(s): {', '.join(unknown)}; see --list")
    names = args.names or list(specs)
    from tqdm import tqdm

    start = time.perf_counter()
    for name in tqdm(names, desc="figures", unit="fig", disable=None):
        save(name, args.out)
    if not args.names:
        atomic_write_bytes(Path(args.out) / "README.md", index_markdown(specs).encode())
    print(f"wrote {len(names)} figure(s) to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    # Run the imported module's main so that the plots register into one REGISTRY.
    from companion.figures import main as _main

    sys.exit(_main())
