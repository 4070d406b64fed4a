"""``python -m companion.bench [--quick] [--notebooks]``: the companion against its peers.

Every row times two things side by side in one run — a companion function and
the implementation a user would otherwise reach for — and reports their ratio
(median over repeats, warm-up excluded).  Results go to ``results/bench.json``
and a markdown table ``results/bench.md`` (machine, threads and versions are
recorded with them).  Ratios, not seconds, are the comparable quantity; both
sides share the machine and its load.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .grids import UniformGrid
from .io import atomic_write_bytes, atomic_write_json, quick_mode, run_metadata
from .noise import Logistic
from .perf import keep_freed_memory

RESULTS = Path(__file__).resolve().parent.parent / "results"


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _row(group, case, ours, theirs, reference, repeats, target=None):
    t_ours, t_theirs = median_time(ours, repeats), median_time(theirs, repeats)
    ratio = t_ours / t_theirs
    return {
        "group": group, "case": case, "reference": reference,
        "ours_ms": round(t_ours * 1e3, 4), "reference_ms": round(t_theirs * 1e3, 4),
        "ratio": round(ratio, 3), "target": target,
        "meets_target": None if target is None else bool(ratio <= target),
    }


def _backward(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()
    return run


def rounding_rows(sizes, repeats):
    from .estimators import quantize
    from .rounding import round_to_grid

    rows = []
    grid = UniformGrid(4, scale=0.1)
    k_min, k_max = grid.level_range
    for n in sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, generator=g).requires_grad_(True)
        target = 1.5 if n >= 10**6 else None
        rows.append(_row(
            "rounding", f"round_to_grid forward, n={n:.0e}",
            lambda: round_to_grid(x.detach(), grid),
            lambda: torch.fake_quantize_per_tensor_affine(x.detach(), 0.1, 0, k_min, k_max),
            "torch.fake_quantize_per_tensor_affine", repeats, target))
        rows.append(_row(
            "rounding", f'"ste" forward+backward, n={n:.0e}',
            _backward(lambda t: quantize(t, grid, "ste"), x),
            _backward(lambda t: torch.fake_quantize_per_tensor_affine(t, 0.1, 0, k_min, k_max), x),
            "torch.fake_quantize_per_tensor_affine", repeats, target))
        scale = torch.tensor([0.1], requires_grad=True)  # torch's LSQ wants one-element tensors
        learnable = UniformGrid(4, scale=scale)
        zero_point = torch.tensor([0.0])
        grad_factor = 1.0 / (n * k_max) ** 0.5

        def ours_lsq():
            x.grad = scale.grad = None
            quantize(x, learnable, "lsq").sum().backward()

        def torch_lsq():
            x.grad = scale.grad = None
            torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero_point, k_min, k_max, grad_factor).sum().backward()

        rows.append(_row("rounding", f'"lsq" forward+backward, n={n:.0e}', ours_lsq, torch_lsq,
                         "torch._fake_quantize_learnable_per_tensor_affine", repeats, target))
    return rows


def relaxed_rows(n, repeats, local_radius=3.0):
    from .estimators import quantize

    rows = []
    x = torch.randn(n, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    for bits in (2, 4, 8):
        # the same relative noise at every bit width: σ = α/3 (companion.nn's default)
        scale = 2.0 / 2**bits
        grid, noise = UniformGrid(bits, scale=scale), Logistic(scale / 3)
        ste = _backward(lambda t: quantize(t, grid, "ste"), x)
        for method in ("rq", "rq-st"):
            for radius in (None, local_radius):
                where = "full grid" if radius is None else f"local grid r={radius:g}σ"
                # The ≤ 4× target of the RQ issue is for a whole training step: see `experiments speed`.
                target = None
                rows.append(_row(
                    "relaxed", f'"{method}" {where}, {bits} bits, n={n:.0e}',
                    _backward(lambda t, m=method, r=radius: quantize(
                        t, grid, m, noise=noise, local_radius=r, generator=torch.Generator().manual_seed(2)), x),
                    ste, '"ste" forward+backward', repeats, target))
    return rows


def concrete_rows(n, k, repeats):
    from .relaxed import gumbel

    logits = torch.randn(n, k, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)

    def ours():
        return torch.softmax((logits + gumbel(logits.shape, generator)) / 0.5, dim=-1)

    return [_row("concrete", f"concrete sample, {n}×{k}", ours, lambda: F.gumbel_softmax(logits, tau=0.5),
                 "torch.nn.functional.gumbel_softmax", repeats, 1.2)]


def ap_rows(repeats, batch=128):
    from . import moments, nn as qnn

    x = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    fp = qnn.lenet5(method="fp")

    def step(model, loss):
        def run():
            model.zero_grad()
            loss(model).backward()
        return run

    rows = []
    for tails in ("clamp", "truncate"):  # truncate needs Gauss–Hermite quadrature per activation
        ap = qnn.lenet5(weight_bits=2, act_bits=2, method="ap", tails=tails)
        ap(x)  # initialise the activation quantizers from data
        rows.append(_row("moments", f"AP2 LeNet-5 2/2 ({tails} tails) forward+backward, batch {batch}",
                         step(ap, lambda m: moments.ap_loss(m, x, y)),
                         step(fp, lambda m: F.cross_entropy(m(x), y)),
                         "unquantized LeNet-5 forward+backward", repeats, 3.0))
    return rows


def notebook_rows():
    """Execution time of every notebook (nbclient, current kernel) and of ``make figures``."""
    import subprocess

    import nbformat
    from nbclient import NotebookClient

    root = RESULTS.parent
    rows = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        rows.append({"group": "notebooks", "case": path.stem, "seconds": round(time.perf_counter() - start, 2)})
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "companion.figures", "--out", str(root / "build" / "bench-figures")],
                   check=True, capture_output=True)
    rows.append({"group": "figures", "case": "python -m companion.figures (all)", "seconds": round(time.perf_counter() - start, 2)})
    return rows


def markdown(rows, meta) -> str:
    lines = [
        "# Benchmarks", "",
        f"`python -m companion.bench` on {meta['machine']['platform']}, {meta['machine']['threads']} torch threads, "
        f"torch {meta['versions']['torch']}. Ratio = companion time / reference time (median of repeats; < 1 is faster).", "",
        "| group | case | reference | ours (ms) | reference (ms) | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "ratio" in r:
            target = "" if r["target"] is None else f"≤ {r['target']} {'✓' if r['meets_target'] else '✗'}"
            lines.append(f"| {r['group']} | {r['case']} | {r['reference']} | {r['ours_ms']} | {r['reference_ms']} | {r['ratio']} | {target} |")
    timed = [r for r in rows if "seconds" in r]
    if timed:
        lines += ["", "| execution | seconds |", "|---|---|"] + [f"| {r['case']} | {r['seconds']} |" for r in timed]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (also COMPANION_QUICK=1)")
    parser.add_argument("--notebooks", action="store_true", help="also time every notebook and make figures")
    parser.add_argument("--out", default=str(RESULTS), help="output folder (default: results/)")
    args = parser.parse_args(argv)
    keep_freed_memory()
    quick = args.quick or quick_mode()
    repeats = 5 if quick else 15
    sizes = (10**4, 10**5, 10**6) if quick else (10**4, 10**6, 10**7)
    start = time.perf_counter()
    rows = rounding_rows(sizes, repeats)
    rows += relaxed_rows(10**4 if quick else 10**5, repeats)
    rows += concrete_rows(10**4 if quick else 10**5, 16, repeats)
    rows += ap_rows(3 if quick else 5)
    if args.notebooks:
        rows += notebook_rows()
    meta = run_metadata(seed=0)
    meta.update(quick=quick, wall_time_s=round(time.perf_counter() - start, 1))
    out = Path(args.out)
    atomic_write_json(out / "bench.json", {"meta": meta, "rows": rows})
    atomic_write_bytes(out / "bench.md", markdown(rows, meta).encode())
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
