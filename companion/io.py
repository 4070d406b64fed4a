"""Atomic file writes and run records shared by figures and experiments."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path


def quick_mode() -> bool:
    """True when ``COMPANION_QUICK=1`` (set by CI): experiments shrink sample and epoch counts."""
    return os.environ.get("COMPANION_QUICK", "0") not in ("", "0", "false", "False")


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    A reader sees either the old file or the whole new one, never half of it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path, obj) -> Path:
    """JSON with sorted keys and a trailing newline, written atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def git_revision(cwd=None) -> str | None:
    """The current git commit (with ``-dirty`` when the tree has changes), or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_metadata(seed=None) -> dict:
    """Seed, library versions, machine and git revision, recorded next to every result."""
    import matplotlib
    import numpy
    import torch

    from .perf import fused_kernels_enabled

    return {
        "seed": seed,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "matplotlib": matplotlib.__version__,
        },
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "threads": torch.get_num_threads()},
        "fused_kernels": fused_kernels_enabled(),
        "git_revision": git_revision(),
    }
