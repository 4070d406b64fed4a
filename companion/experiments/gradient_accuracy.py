"""Gradient accuracy against the exact gradient (the PSA protocol, THEORY.md §4).

``python -m companion.experiments gradient-accuracy [--quick] [--out results/]``

Binary part (Shekhovtsov, Yanush & Flach 2020, §5): the 2-D two-class toy set
(:mod:`companion.toydata`), a 2-5-5-5 stochastic binary net (logistic noise)
with a linear output and the NLL, float64.  The net is trained by Adam on the
*exact* gradient (full batch, one step per epoch).  At the checkpoint epochs
the exact gradient g is computed by enumeration (:mod:`companion.estimators.exact`);
each estimator draws S single-sample gradients ĝ_1..ĝ_S (one sample of every
unit per data point), averages them in groups of M and scores every group mean by

    relative error ‖ĝ_M - g‖ / ‖g‖   and   cosine similarity cos(ĝ_M, g),

per layer and for all parameters, with the 15/50/85 % quantiles over groups and
the relative RMSE sqrt(mean_groups ‖ĝ_M - g‖²)/‖g‖.  An unbiased estimator's
relative RMSE falls like 1/√M; a biased one levels off at its bias.

Multi-level part: a 2-3-3 net with 2-bit activations (grid {-1, -1/3, 1/3, 1},
4³ = 64 states per layer) under logistic noise (REINFORCE, RQ, RQ-ST, noisy-ST,
clipped identity, AP1, AP2) and under uniform noise of the grid spacing, i.e.
stochastic rounding (REINFORCE, SR with its clipped-identity backward, AP1, AP2).

Outputs ``gradient_accuracy.json`` and ``gradient_accuracy_multilevel.json``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..binary import StochasticNet, gradient_estimate, nll
from ..estimators.exact import exact_gradient
from ..grids import UniformGrid
from ..io import atomic_write_json, quick_mode, run_metadata
from ..toydata import cos_boundary_data

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "results"

BINARY_METHODS = {  # label: (registry method, temperature)
    "reinforce": ("reinforce", 1.0),
    "arm": ("arm", 1.0),
    "concrete-0.1": ("concrete", 0.1),
    "concrete-1": ("concrete", 1.0),
    "st": ("st", 1.0),
    "hardtanh-st": ("hardtanh-st", 1.0),
    "identity-st": ("identity-st", 1.0),
    "psa": ("psa", 1.0),
    "ap1": ("ap1", 1.0),
    "ap2": ("ap2", 1.0),
}
MULTILEVEL_NETS = {
    # name: (noise family, noise scale, {label: (method, temperature)})
    "logistic": ("logistic", 0.25, {
        "reinforce": ("reinforce", 1.0),
        "rq-0.5": ("rq", 0.5),
        "rq-st-0.5": ("rq-st", 0.5),
        "noisy-st": ("noisy-st", 1.0),
        "clipped-identity-st": ("hardtanh-st", 1.0),
        "ap1": ("ap1", 1.0),
        "ap2": ("ap2", 1.0),
    }),
    "uniform-sr": ("uniform", 2.0 / 3.0, {
        "reinforce": ("reinforce", 1.0),
        "sr": ("sr", 1.0),
        "ap1": ("ap1", 1.0),
        "ap2": ("ap2", 1.0),
    }),
}
DETERMINISTIC = {"ap1", "ap2"}
FULL = {"epochs": (1, 100, 2000), "samples": 20000, "multilevel_samples": 5000}
QUICK = {"epochs": (1, 20, 100), "samples": 2000, "multilevel_samples": 1000}


def group_sizes(samples: int) -> list[int]:
    """M = 1, 2, 5, 10, ... up to samples/10 (at least 10 groups for the 15/85 % bands)."""
    sizes, base = [], 1
    while True:
        for m in (1, 2, 5):
            if base * m * 10 > samples:
                return sizes
            sizes.append(base * m)
        base *= 10


def layer_slices(net: StochasticNet) -> dict[str, slice]:
    """Index ranges of each layer's (W, b) in the flattened parameter vector."""
    names = [f"hidden{k + 1}" for k in range(len(net.widths))] + ["output"]
    slices, start = {}, 0
    for name, (w, b) in zip(names, net.theta()):
        stop = start + w.numel() + b.numel()
        slices[name] = slice(start, stop)
        start = stop
    slices["all"] = slice(0, start)
    return slices


def flatten(grads) -> torch.Tensor:
    """[per-parameter tensors with an optional leading axis R] → [R, P] (or [P])."""
    lead = grads[0].shape[:1] if grads[0].dim() == 3 else ()
    return torch.cat([g.reshape(*lead, -1) for g in grads], dim=-1)


def sample_gradients(net, x, y, method, temperature, samples, generator, chunk=500) -> torch.Tensor:
    """[samples, P] single-sample gradient estimates (deterministic methods: one, repeated)."""
    if method in DETERMINISTIC:
        return flatten(gradient_estimate(net, x, y, method)).expand(samples, -1)
    out = []
    for start in range(0, samples, chunk):
        r = min(chunk, samples - start)
        out.append(flatten(gradient_estimate(net, x, y, method, temperature=temperature, generator=generator, replicas=r)))
    return torch.cat(out)


def score(estimates: torch.Tensor, exact: torch.Tensor, sizes, slices) -> dict:
    """Relative error and cosine of group means ĝ_M against g, per layer."""
    result = {}
    for name, sl in slices.items():
        g, est = exact[sl], estimates[:, sl]
        g_norm = g.norm().item()
        rows = {k: [] for k in ("rel_rmse", "rel_err_q15", "rel_err_q50", "rel_err_q85", "cos_q15", "cos_q50", "cos_q85")}
        for m in sizes:
            groups = est[: (est.shape[0] // m) * m].reshape(-1, m, est.shape[1]).mean(1)
            err = (groups - g).norm(dim=1) / g_norm
            cos = torch.nn.functional.cosine_similarity(groups, g.expand_as(groups), dim=1)
            q_err = torch.quantile(err, torch.tensor([0.15, 0.5, 0.85], dtype=err.dtype)).tolist()
            q_cos = torch.quantile(cos, torch.tensor([0.15, 0.5, 0.85], dtype=cos.dtype)).tolist()
            rows["rel_rmse"].append(math.sqrt((err**2).mean().item()))
            for key, value in zip(("rel_err_q15", "rel_err_q50", "rel_err_q85"), q_err):
                rows[key].append(value)
            for key, value in zip(("cos_q15", "cos_q50", "cos_q85"), q_cos):
                rows[key].append(value)
        bias = (est.mean(0) - g).norm().item() / g_norm
        result[name] = {**rows, "grad_norm": g_norm, "bias_all_samples": bias}
    return result


def train_exact(net, x, y, epochs, lr, record):
    """Adam on the exact gradient, one full-batch step per epoch; calls ``record(epoch)`` after each step."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for epoch in range(1, epochs + 1):
        loss, grads = exact_gradient(net, x, y)
        losses.append(loss)
        opt.zero_grad()
        for p, g in zip(net.parameters(), grads):
            p.grad = g.clone()
        opt.step()
        record(epoch)
    return losses


def evaluate_net(net, x, y, methods, epochs, samples, generator, progress, desc, lr):
    """Train ``net`` and score ``methods`` at ``epochs``; returns the result dict."""
    from tqdm.auto import tqdm

    sizes = group_sizes(samples)
    slices = layer_slices(net)
    checkpoints = []
    bar = tqdm(total=len(epochs) * len(methods), desc=desc, disable=not progress, leave=False)

    def record(epoch):
        if epoch not in epochs:
            return
        loss, grads = exact_gradient(net, x, y)
        exact = flatten(grads)
        with torch.no_grad():
            accuracy = (net.sample_forward(x, generator).argmax(-1) == y).double().mean().item()
        entry = {"epoch": epoch, "exact_loss": loss, "sampled_accuracy": accuracy, "methods": {}}
        for label, (method, temperature) in methods.items():
            bar.set_postfix_str(f"epoch {epoch} {label}")
            start = time.perf_counter()
            estimates = sample_gradients(net, x, y, method, temperature, samples, generator)
            seconds = time.perf_counter() - start
            entry["methods"][label] = {"method": method, "temperature": temperature, "seconds": seconds,
                                       "layers": score(estimates, exact, sizes, slices)}
            bar.update(1)
        checkpoints.append(entry)

    losses = train_exact(net, x, y, max(epochs), lr, record)
    bar.close()
    return {"group_sizes": sizes, "samples": samples, "layers": list(slices), "checkpoints": checkpoints,
            "training": {"lr": lr, "exact_loss": losses}}


def cost_benchmark(net, x, y, methods, repeats, generator) -> dict:
    """Seconds per single-sample estimate (replicas=None), relative to one forward+backward
    of the deterministic net of the same shape (tanh units, NLL)."""
    def deterministic():
        h = x
        for w, b in net.theta()[:-1]:
            h = torch.tanh(torch.nn.functional.linear(h, w, b))
        loss = nll(torch.nn.functional.linear(h, *net.theta()[-1]), y).mean()
        torch.autograd.grad(loss, list(net.parameters()))

    def timed(fn):
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    base = timed(deterministic)
    costs = {"deterministic_forward_backward_s": base, "repeats": repeats, "relative": {}}
    for label, (method, temperature) in methods.items():
        t = timed(lambda: gradient_estimate(net, x, y, method, temperature=temperature, generator=generator))
        costs["relative"][label] = t / base
    return costs


def run(quick: bool = False, out_dir=DEFAULT_OUT, seed: int = 0, progress: bool = True,
        epochs=None, samples=None, multilevel_samples=None, cost_repeats=None) -> tuple[dict, dict]:
    """Run both parts and write the two JSON files atomically; returns (binary, multilevel) results.

    Full: epochs 1, 100, 2000; 20,000 binary and 5,000 multi-level samples
    (the multi-level quantizers cost ~3× more per sample).  Quick: 1, 20, 100; 2,000 and 1,000.
    """
    config = QUICK if quick else FULL
    epochs = tuple(epochs or config["epochs"])
    samples = int(samples or config["samples"])
    multilevel_samples = int(multilevel_samples or config["multilevel_samples"])
    cost_repeats = cost_repeats or (20 if quick else 200)
    out_dir = Path(out_dir)
    generator = torch.Generator().manual_seed(seed)
    x, y = cos_boundary_data(100, generator)

    start = time.perf_counter()
    net = StochasticNet([2, 5, 5, 5], 2, generator=generator)
    binary = evaluate_net(net, x, y, BINARY_METHODS, epochs, samples, generator, progress, "binary 2-5-5-5", lr=0.01)
    binary["cost"] = cost_benchmark(net, x, y, BINARY_METHODS, cost_repeats, generator)
    binary.update(quick=quick, metadata=run_metadata(seed), wall_time_s=time.perf_counter() - start,
                  network="2-5-5-5 stochastic binary (logistic noise, scale 1) + linear output, NLL, float64",
                  data="companion.toydata.cos_boundary_data(100)", epochs=list(epochs),
                  methods={k: {"method": m, "temperature": t} for k, (m, t) in BINARY_METHODS.items()})
    atomic_write_json(out_dir / "gradient_accuracy.json", binary)

    start = time.perf_counter()
    grid = UniformGrid(2, scale=2.0 / 3.0, offset=1.0 / 3.0)
    nets = {}
    for name, (family, scale, methods) in MULTILEVEL_NETS.items():
        net = StochasticNet([2, 3, 3], 2, grid=grid, noise=family, noise_scale=scale, generator=generator)
        nets[name] = evaluate_net(net, x, y, methods, epochs, multilevel_samples, generator, progress, f"2-bit 2-3-3 {name}", lr=0.01)
        nets[name].update(noise=family, noise_scale=scale,
                          methods={k: {"method": m, "temperature": t} for k, (m, t) in methods.items()})
    multilevel = {"nets": nets, "quick": quick, "metadata": run_metadata(seed), "epochs": list(epochs),
                  "wall_time_s": time.perf_counter() - start,
                  "network": "2-3-3, 2-bit activations on {-1, -1/3, 1/3, 1} (clamped tails) + linear output, NLL, float64",
                  "data": "companion.toydata.cos_boundary_data(100)"}
    atomic_write_json(out_dir / "gradient_accuracy_multilevel.json", multilevel)
    return binary, multilevel


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("gradient-accuracy", help="estimators vs the exact gradient (PSA protocol)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples (also COMPANION_QUICK=1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: results/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_main)


def _main(args) -> int:
    torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead
    binary, multilevel = run(quick=args.quick or quick_mode(), out_dir=args.out, seed=args.seed)
    print(f"wrote {args.out / 'gradient_accuracy.json'} ({binary['wall_time_s']:.0f} s) and "
          f"{args.out / 'gradient_accuracy_multilevel.json'} ({multilevel['wall_time_s']:.0f} s)")
    return 0
