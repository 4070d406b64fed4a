"""``python -m companion.experiments SUBCOMMAND [...]``.

Each subcommand lives in its own module with ``add_parser(subparsers)`` that
registers it and sets ``func(args) -> int``.  Bad arguments exit with status 2
and a one-line message (argparse's convention).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..perf import keep_freed_memory

# Modules that provide subcommands.  Add yours here.
SUBCOMMAND_MODULES: list[str] = ["companion.experiments.train", "companion.experiments.gradient_accuracy", "companion.experiments.speed", "companion.experiments.moments_check"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m companion.experiments", description="Run the companion's experiments.")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    subparsers.required = True
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
