"""``python -m companion.experiments speed [--quick]``: cost of one quantized training step.

One training step (forward, backward, SGD update) of RQ's LeNet-5 on a batch
of 128 28×28 images, with 2-bit weights and activations, for every pathwise
method, divided by the unquantized step timed in the same run.  RQ-ST with
the local grid (radius 3σ, RQ eqs. 6–7) is timed at 2, 4 and 8 bits; "ap"
(moment propagation) is timed too when ``companion.moments.ap_loss`` exists.
Steps are timed round-robin (one step of every configuration per round), so
that a change in machine load hits all of them alike; the warm-up rounds are
excluded and the median over the rounds is reported.  Writes ``results/speed.json``.

Targets (issue 3): ste, sr, noisy-st ≤ 1.5×; rq-st with the local grid ≤ 4×
at any bit width and its 8-bit cost ≤ 1.5× its 2-bit cost (RQ reports about
15× for the full grid).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io import atomic_write_json, quick_mode, run_metadata

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "results" / "speed.json"
BATCH = 128
LOCAL_RADIUS = 3.0
PATHWISE = ("ste", "lsq", "sr", "noisy-st", "rq", "rq-st", "mean")
TARGETS = {
    "ste": 1.5, "sr": 1.5, "noisy-st": 1.5,
    "rq-st-local-2bit": 4.0, "rq-st-local-4bit": 4.0, "rq-st-local-8bit": 4.0,
}


def configurations(ap_loss=None) -> dict:
    """name → model kwargs for lenet5: the unquantized baseline first.

    Tails as in the default study (``train --tails per-method``): RQ's truncated
    categorical for "rq"/"rq-st", clamped tails for every other method.
    """
    from .train import tails_for

    configs = {"fp": dict()}
    for method in PATHWISE:
        configs[method] = dict(weight_bits=2, act_bits=2, method=method, tails=tails_for(method))
    for bits in (2, 4, 8):
        configs[f"rq-st-local-{bits}bit"] = dict(weight_bits=bits, act_bits=bits, method="rq-st",
                                                 local_radius=LOCAL_RADIUS, tails=tails_for("rq-st"))
    if ap_loss is not None:
        configs["ap"] = dict(weight_bits=2, act_bits=2, method="ap", tails=tails_for("ap"))
    return configs


def _available_ap_loss():
    """companion.moments.ap_loss if helper D's module provides it, else None."""
    try:
        from ..moments import ap_loss
    except ImportError:
        return None
    return ap_loss


def time_steps(rounds: int, warmup: int, seed: int = 0, progress: bool = True) -> dict:
    """Median seconds per training step for every configuration (round-robin, warm-up excluded)."""
    from tqdm.auto import tqdm

    from ..nn import lenet5, quantizers

    ap_loss = _available_ap_loss()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (BATCH,), generator=g)
    runs = {}
    for name, kwargs in configurations(ap_loss).items():
        torch.manual_seed(seed)
        model = lenet5(**kwargs)
        for q in quantizers(model):
            q.generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        if name == "ap":
            loss_of = lambda model=model: ap_loss(model, x, y)  # noqa: E731
        else:
            loss_of = lambda model=model: F.cross_entropy(model(x), y)  # noqa: E731
        runs[name] = (loss_of, optimizer, [])
    for r in tqdm(range(warmup + rounds), desc="speed", unit="round", disable=None if progress else True):
        for loss_of, optimizer, times in runs.values():
            start = time.perf_counter()
            loss = loss_of()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if r >= warmup:
                times.append(time.perf_counter() - start)
    return {name: times for name, (_, _, times) in runs.items()}


def summarise(times: dict) -> dict:
    """Medians (ms), ratios to "fp" and the target checks."""
    base = statistics.median(times["fp"])
    methods = {}
    for name, values in times.items():
        median = statistics.median(values)
        methods[name] = {"median_ms": round(1e3 * median, 2), "ratio": round(median / base, 3),
                         "times_ms": [round(1e3 * t, 2) for t in values]}
    checks = {name: methods[name]["ratio"] <= bound for name, bound in TARGETS.items()}
    local = ("rq-st-local-8bit", "rq-st-local-2bit")
    eight_over_two = methods[local[0]]["median_ms"] / methods[local[1]]["median_ms"]
    checks["rq-st-local 8bit/2bit <= 1.5"] = eight_over_two <= 1.5
    return {"methods": methods, "rq_st_local_8bit_over_2bit": round(eight_over_two, 3), "meets_targets": checks}


def run(args) -> int:
    quick = args.quick or quick_mode()
    rounds = args.rounds or (3 if quick else 7)
    warmup = 1 if quick else 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        times = time_steps(rounds, warmup, seed=args.seed)
    finally:
        torch.set_num_threads(threads)
    result = {
        "description": "LeNet-5 training step (batch 128, CPU), time relative to the unquantized step of the same run",
        "settings": {"batch": BATCH, "rounds": rounds, "warmup_rounds": warmup, "threads": args.threads,
                     "quick": quick, "local_radius": LOCAL_RADIUS, "bits": "2 unless named"},
        **summarise(times),
        "targets": TARGETS,
        "metadata": {**run_metadata(args.seed), "wall_time_s": round(time.perf_counter() - start, 1)},
    }
    path = atomic_write_json(args.out, result)
    for name, entry in result["methods"].items():
        print(f"{name:18s} {entry['median_ms']:9.1f} ms  {entry['ratio']:6.2f}x")
    print(f"rq-st local 8-bit / 2-bit: {result['rq_st_local_8bit_over_2bit']:.2f}; wrote {path}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("speed", help="time a 2-bit LeNet-5 training step per quantization method")
    parser.add_argument("--quick", action="store_true", help="3 timed rounds instead of 7")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (overrides --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output JSON (default results/speed.json)")
    parser.set_defaults(func=run)
