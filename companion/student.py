"""Student copies of the chapters: solutions removed, outputs cleared.

A chapter puts the solution of each exercise in a cell whose metadata has
``"tags": ["solution"]``.  ``python -m companion.student`` writes a copy of
every ``notebooks/*.ipynb`` without those cells and with every output and
execution count cleared, so students start from a clean notebook::

    python -m companion.student [--src notebooks] [--out build/student]

(``make student`` runs it.)  The copies are written atomically; the
chapters themselves are never modified.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from .io import atomic_write_bytes

SOLUTION_TAG = "solution"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "build" / "student"
EXERCISE_HEADING = re.compile(r"^[ \t]*(#+[ \t]*|\*\*)exercises?\b", re.IGNORECASE | re.MULTILINE)


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def first_exercise_index(nb) -> int | None:
    """Index of the first markdown cell with a line that starts an "Exercise(s)" heading, or None."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and EXERCISE_HEADING.search(cell.source):
            return index
    return None


def student_copy(nb):
    """A new notebook without solution cells, with outputs, execution counts and widget state cleared."""
    copy = nbformat.from_dict(nb)
    copy.cells = [cell for cell in copy.cells if not is_solution(cell)]
    for cell in copy.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    copy.metadata.pop("widgets", None)
    return copy


def write_student_copies(src=DEFAULT_SRC, out=DEFAULT_OUT) -> list[tuple[Path, int]]:
    """Write a student copy of every ``src/*.ipynb`` into ``out``; returns (path, solutions removed) pairs."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"src must be a folder of notebooks, got {src}")
    written = []
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        copy = student_copy(nb)
        removed = len(nb.cells) - len(copy.cells)
        target = atomic_write_bytes(out / path.name, (nbformat.writes(copy) + "\n").encode())
        written.append((target, removed))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.student", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=str(DEFAULT_SRC), help="folder of chapter notebooks (default: notebooks/)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: build/student/)")
    args = parser.parse_args(argv)
    try:
        written = write_student_copies(args.src, args.out)
    except FileNotFoundError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    for path, removed in written:
        note = "" if removed else "  (no solution cells: check the chapter's tags)"
        print(f"{path.name}: {removed} solution cell(s) removed{note}")
    print(f"wrote {len(written)} student notebook(s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
