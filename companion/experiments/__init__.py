"""Experiments: gradient accuracy, training comparison, cost.

Run them with ``python -m companion.experiments SUBCOMMAND``; each writes small
JSON files under ``results/`` (with seed, versions, git revision and wall time)
that figures and notebooks read.
"""
