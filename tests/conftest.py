"""Shared test settings: a non-interactive backend, one torch thread per xdist worker."""
import os

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
