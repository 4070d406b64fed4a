"""The training comparison of chapter 08: ``train`` and ``summary`` subcommands.

``python -m companion.experiments train`` trains one network per *cell*
(dataset, model, bits w/a, method, seed) with :func:`companion.train.fit` and
records, per cell:

- test accuracy of the stochastic model (mean over sampled forwards) and of
  each deterministic extraction rule of :func:`companion.nn.to_deterministic`;
- training curves (loss, train and validation accuracy per epoch), time per
  step and per epoch;
- epochs and training wall time to reach a target *validation* accuracy
  (the target is fixed per dataset in :data:`TARGETS`, never read off test);
- seed, versions, machine and git revision (:func:`companion.io.run_metadata`).

All cells go into one JSON file (``--out``), rewritten atomically after every
finished cell, so an interrupted run (Ctrl-C) keeps what it finished and the
same command resumes where it stopped.  ``summary`` prints markdown tables
(mean ± sample std over seeds) from such a file.

The default study (chapter 08)::

    python -m companion.experiments train --dataset digits mnist5k --model mlp lenet5 \\
        --bits 2/2 4/4 8/8 --methods all --seeds 0 1 2 --epochs 15 10 --tails per-method \\
        --jobs 2 --out results/train_default.json

``--jobs N`` trains N cells side by side in worker processes, one torch thread each; a
cell's numbers depend on its thread count only, so ``--jobs 2`` and ``--jobs 1 --threads 1``
write the same accuracies and curves.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .. import data
from ..train import QUANTIZER_LR
from ..io import atomic_write_json, quick_mode, read_json, run_metadata

FORMAT = "companion-train-results/1"
MODELS = ("mlp", "lenet5", "vgg")
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "results" / "train.json"
FP_BITS = "fp"

TARGETS = {"digits": 0.90, "mnist5k": 0.95, "mnist": 0.98, "fashion-mnist": 0.85, "cifar10": 0.75}
"""Validation accuracy that counts as "trained" for epochs/wall-time to target."""

EPOCHS = {"digits": 15, "mnist5k": 10, "mnist": 20, "fashion-mnist": 20, "cifar10": 60}
"""Default epochs per dataset (``--epochs`` overrides)."""

MLP_HIDDEN = 256
LOCAL_RADIUS = 3.0
"""Default local-grid radius (units of σ) of the noisy categorical methods, RQ's δ = 3."""
TAILS_CHOICES = ("per-method", "clamp", "truncate")
RQ_METHODS = ("rq", "rq-st")


def tails_for(method: str, tails: str = "per-method") -> str:
    """The noise tails of a cell: "per-method" gives RQ's truncated categorical (RQ eq. 4) to "rq"/"rq-st"
    and clamped tails (x̂ = round-and-clip of x + ε, the noise-injection model of Shekhovtsov & Yanush and
    of moment propagation) to every other method; "clamp" or "truncate" sets one for all."""
    if tails != "per-method":
        return tails
    return "truncate" if method in RQ_METHODS else "clamp"


QUICK = {"epochs": 1, "train": 512, "eval": 256}
"""``--quick`` (or COMPANION_QUICK=1): one epoch on the first 512 training images, 256 val/test."""


# ----------------------------------------------------------------------------- arguments
def parse_bits(text: str) -> tuple[int, int]:
    """``"w/a"`` → ``(weight_bits, act_bits)``, each an int in 1..16."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--bits entries must look like W/A with integers in 1..16 (e.g. 2/2 4/8); got {text!r}")
    w, a = (int(p) for p in parts)
    if not (1 <= w <= 16 and 1 <= a <= 16):
        raise ValueError(f"--bits entries must have both numbers in 1..16; got {text!r}")
    return w, a


def expand_methods(names: list[str], known: tuple[str, ...]) -> list[str]:
    """``all`` → every method of companion.nn.METHODS; unknown names raise naming ``--methods``."""
    if "all" in names:
        return list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--methods must be 'all' or among {', '.join(known)}; got {', '.join(unknown)}")
    return list(dict.fromkeys(names))


def cell_key(dataset: str, model: str, bits: str, method: str, seed: int) -> str:
    return f"{dataset}/{model}/{bits}/{method}/seed{seed}"


def plan_cells(datasets, models, epochs, bits_list, methods, seeds) -> list[dict]:
    """The cells of a run, in order: per (dataset, model) and seed, fp first, then bits × methods.

    Seeds are the outer loop so that an interrupted study already holds a
    complete comparison for its first seeds.
    """
    cells = []
    for dataset, model, n_epochs in zip(datasets, models, epochs):
        configs = [(FP_BITS, None, None, "fp")] if "fp" in methods else []
        configs += [(b, *parse_bits(b), m) for b in bits_list for m in methods if m != "fp"]
        for seed in seeds:
            for bits, w, a, method in configs:
                cells.append(dict(dataset=dataset, model=model, bits=bits, weight_bits=w, act_bits=a,
                                  method=method, seed=seed, epochs=n_epochs, key=cell_key(dataset, model, bits, method, seed)))
    return cells


# ----------------------------------------------------------------------------- results file
@contextmanager
def _sigint_deferred():
    """Hold a Ctrl-C until the block ends, so a results file is never left half-replaced."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _raise_on_sigterm():
    """Treat SIGTERM (kill, a batch scheduler) and SIGINT like Ctrl-C: finished cells are saved, the run is
    marked interrupted.  SIGINT is set explicitly because a run started in the background by a
    non-interactive shell inherits it *ignored*, and ``kill -INT`` would then do nothing."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        return None


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def new_results() -> dict:
    return {"format": FORMAT, "cells": {}, "runs": []}


def load_results(path) -> dict:
    """Read a results file (a new empty one when ``path`` does not exist)."""
    path = Path(path)
    if not path.exists():
        return new_results()
    results = read_json(path)
    if results.get("format") != FORMAT:
        raise ValueError(f"--out {path} is not a training results file (format {results.get('format')!r}, expected {FORMAT!r})")
    return results


def save_results(path, results: dict) -> None:
    with _sigint_deferred():
        atomic_write_json(path, results)


# ----------------------------------------------------------------------------- one cell
def vgg_small(*, weight_bits=None, act_bits=None, method="ste", in_channels=3, num_classes=10, image_size=32,
              width=128, **quantizer_kwargs) -> torch.nn.Sequential:
    """RQ's CIFAR-10 VGG at a chosen width: 2×wC3-MP2-2×2wC3-MP2-2×4wC3-MP2-8wFC-classes.

    ``width=128`` is the paper's net (2×128C3-MP2-2×256C3-MP2-2×512C3-MP2-1024FC).
    Built only from companion.nn layers, ReLU, MaxPool2d and Flatten.
    """
    from ..nn import QuantConv2d, QuantLinear

    q = dict(weight_bits=weight_bits, act_bits=act_bits, method=method, **quantizer_kwargs)
    layers, channels = [], in_channels
    for out in (width, 2 * width, 4 * width):
        for _ in range(2):
            layers += [QuantConv2d(channels, out, 3, padding=1, **q), torch.nn.ReLU()]
            channels = out
        layers.append(torch.nn.MaxPool2d(2))
    side = image_size // 8
    layers += [torch.nn.Flatten(), QuantLinear(channels * side * side, 8 * width, **q), torch.nn.ReLU(),
               QuantLinear(8 * width, num_classes, **q)]
    return torch.nn.Sequential(*layers)


def build_model(name: str, ds: data.Dataset, weight_bits, act_bits, method: str, local_radius=None,
                tails: str = "truncate") -> torch.nn.Module:
    """The network for ``--model name`` sized to the dataset ``ds``.

    ``local_radius`` (units of σ) restricts the noisy categorical methods to
    RQ's local grid (eqs. 6–7); without it an 8-bit categorical has 256 cells
    per value and a step costs ~100× more.
    """
    from .. import nn as qnn

    q = dict(weight_bits=weight_bits, act_bits=act_bits, method=method, local_radius=local_radius, tails=tails)
    channels, side = ds.image_shape[0], ds.image_shape[-1]
    if name == "mlp":
        return qnn.mlp(ds.in_features, MLP_HIDDEN, ds.num_classes, **q)
    if name == "lenet5":
        return qnn.lenet5(in_channels=channels, num_classes=ds.num_classes, image_size=side, **q)
    return vgg_small(in_channels=channels, num_classes=ds.num_classes, image_size=side, **q)


def reach_target(history: dict, target: float) -> dict:
    """First epoch (1-based) with validation accuracy ≥ target, and training time until then."""
    for k, acc in enumerate(history["val_acc"]):
        if acc >= target:
            return {"val_acc": target, "epochs": k + 1, "wall_time": float(sum(history["epoch_time"][: k + 1]))}
    return {"val_acc": target, "epochs": None, "wall_time": None}


def _mean_step_time(history: dict) -> float:
    steps = history["step_time"]
    flat = [t for item in steps for t in (item if isinstance(item, (list, tuple)) else [item])]
    return float(statistics.median(flat))


def run_cell(cell: dict, ds: data.Dataset, *, device: str, batch_size: int, lr: float, target: float | None,
             eval_samples: int, local_radius=None, tails: str = "per-method", on_epoch=None,
             quantizer_lr: float | None = QUANTIZER_LR) -> dict:
    """Train and evaluate one cell; returns the JSON record.  ``target`` None: the dataset's :data:`TARGETS`."""
    from .. import train as qtrain

    start = time.perf_counter()
    torch.manual_seed(cell["seed"])
    target = TARGETS.get(cell["dataset"], 0.0) if target is None else target
    cell_tails = tails_for(cell["method"], tails)
    model = build_model(cell["model"], ds, cell["weight_bits"], cell["act_bits"], cell["method"],
                        local_radius, cell_tails).to(device)
    train_xy = tuple(t.to(device) for t in ds.train)
    val_xy = tuple(t.to(device) for t in ds.val)
    history = qtrain.fit(model, train_xy, epochs=cell["epochs"], batch_size=batch_size, lr=lr, seed=cell["seed"],
                         val=val_xy, progress=False, on_epoch=on_epoch, quantizer_lr=quantizer_lr)
    x_test, y_test = (t.to(device) for t in ds.test)
    test = qtrain.evaluate(model, x_test, y_test, samples=eval_samples, seed=cell["seed"])
    history = {k: [float(v) if not isinstance(v, (list, tuple)) else [float(u) for u in v] for v in vals]
               for k, vals in history.items()}
    record = {k: cell[k] for k in ("dataset", "model", "bits", "weight_bits", "act_bits", "method", "seed", "epochs")}
    record.update(
        batch_size=batch_size, lr=lr, quantizer_lr=quantizer_lr, local_radius=local_radius, tails=cell_tails,
        device=device, sizes=ds.sizes(),
        test={"stochastic": float(test["stochastic"]),
              "deterministic": {rule: float(acc) for rule, acc in test["deterministic"].items()}},
        history=history,
        time_per_step=_mean_step_time(history),
        time_per_epoch=float(statistics.mean(history["epoch_time"])),
        target=reach_target(history, target),
        wall_time=time.perf_counter() - start,
        metadata=run_metadata(cell["seed"]),
    )
    return record


def _quick_view(ds: data.Dataset) -> data.Dataset:
    n, m = QUICK["train"], QUICK["eval"]
    return data.Dataset(ds.name, tuple(t[:n] for t in ds.train), tuple(t[:m] for t in ds.val),
                        tuple(t[:m] for t in ds.test), ds.num_classes, ds.image_shape, ds.source + " (quick subset)")


# ----------------------------------------------------------------------------- train command
def _paired(name: str, values: list, count: int) -> list:
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise ValueError(f"{name} takes one value or one per --dataset ({count}); got {len(values)}")
    return values


def _load_dataset(name: str, model: str, args) -> data.Dataset:
    try:
        ds = data.load(name, root=args.data_root, download=args.download, flatten=(model == "mlp"))
    except ModuleNotFoundError as error:
        raise ValueError(f"--dataset {name}: {error}") from error
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--dataset {name} (--data-root {args.data_root}): {error}") from error
    return _quick_view(ds) if args.quick else ds


def cmd_train(args) -> int:
    from tqdm import tqdm

    from ..nn import METHODS

    args.quick = args.quick or quick_mode()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine; use --device cpu")
    if args.fused:
        from ..perf import FUSED_ENV, use_fused_kernels

        os.environ[FUSED_ENV] = "1"  # for --jobs workers too
        use_fused_kernels(True)
    methods = expand_methods(args.methods, METHODS)
    for b in args.bits:
        parse_bits(b)
    datasets = args.dataset
    models = _paired("--model", args.model, len(datasets))
    if args.epochs is not None and min(args.epochs) < 1:
        raise ValueError(f"--epochs must be ≥ 1; got {args.epochs}")
    epochs = _paired("--epochs", args.epochs or [None], len(datasets))
    epochs = [QUICK["epochs"] if args.quick else (e or EPOCHS[d]) for e, d in zip(epochs, datasets)]
    cells = plan_cells(datasets, models, epochs, args.bits, methods, args.seeds)

    out = Path(args.out)
    results = load_results(out)
    run = {"argv": sys.argv[1:], "quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "cells_planned": len(cells), "cells_trained": 0, "interrupted": False, "metadata": run_metadata(None)}
    results["runs"].append(run)
    todo = [c for c in cells if args.redo or c["key"] not in results["cells"]]
    recorded = {"epochs": None, "batch_size": args.batch_size, "lr": args.lr, "local_radius": args.local_radius,
                "quantizer_lr": args.quantizer_lr}  # what a resumed file's cells must have been trained with
    for c in cells:
        done = results["cells"].get(c["key"])
        if done is None or args.redo:
            continue
        for name, value in dict(recorded, epochs=c["epochs"], tails=tails_for(c["method"], args.tails)).items():
            if done.get(name) != value:
                raise ValueError(f"--out {out} already holds {c['key']} trained with {name} {done.get(name)}, not "
                                 f"{value}; use another --out or pass --redo")
    loaded = {(c["dataset"], c["model"]): None for c in todo}
    for ds_key in loaded:
        loaded[ds_key] = _load_dataset(*ds_key, args)
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already in {out}, {len(todo)} to train", file=sys.stderr)

    start = time.perf_counter()
    previous_term = _raise_on_sigterm()
    bar = tqdm(todo, desc="cells", unit="cell", disable=None if not args.no_progress else True)

    def keep(record, key):
        results["cells"][key] = record
        run["cells_trained"] += 1
        run["wall_time"] = time.perf_counter() - start
        save_results(out, results)
        bar.set_postfix_str(f"{key} test={record['test']['stochastic']:.4f}")

    settings = _cell_settings(args)
    pool = None
    try:
        if args.jobs == 1:
            for cell in bar:
                bar.set_postfix_str(cell["key"])
                with tqdm(total=cell["epochs"], desc="  epochs", unit="ep", leave=False,
                          disable=None if not args.no_progress else True) as epoch_bar:

                    def on_epoch(epoch, history, epoch_bar=epoch_bar):
                        epoch_bar.update(1)
                        epoch_bar.set_postfix(val_acc=f"{history['val_acc'][-1]:.4f}")

                    record = run_cell(cell, loaded[(cell["dataset"], cell["model"])], on_epoch=on_epoch, **settings)
                keep(record, cell["key"])
        else:
            pool = multiprocessing.get_context("spawn").Pool(args.jobs, initializer=_worker_init,
                                                             initargs=(args.threads or 1,))
            jobs = [(cell, settings, _loader_args(args)) for cell in todo]
            for key, record in pool.imap_unordered(_worker_cell, jobs):
                bar.update(1)
                keep(record, key)
            pool.close()
            pool.join()
    except KeyboardInterrupt:
        if pool is not None:
            pool.terminate()
            pool.join()
        run["interrupted"] = True
        run["wall_time"] = time.perf_counter() - start
        save_results(out, results)
        bar.close()
        print(f"interrupted: {run['cells_trained']} cell(s) finished and kept in {out}; "
              "rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        _restore_sigterm(previous_term)
    bar.close()
    run["wall_time"] = time.perf_counter() - start
    save_results(out, results)
    print(f"wrote {out}: {run['cells_trained']} cell(s) trained in {run['wall_time']:.1f} s", file=sys.stderr)
    return 0


def _cell_settings(args) -> dict:
    return dict(device=args.device, batch_size=args.batch_size, lr=args.lr, target=args.target,
                eval_samples=args.eval_samples, local_radius=args.local_radius, tails=args.tails,
                quantizer_lr=args.quantizer_lr)


def _loader_args(args) -> dict:
    return dict(data_root=args.data_root, download=args.download, quick=args.quick)


_WORKER_DATA: dict = {}


def _worker_init(threads: int) -> None:
    """A --jobs worker: Ctrl-C is the parent's to handle (it terminates the pool); ``threads`` torch threads."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    from ..perf import keep_freed_memory

    keep_freed_memory()


def _worker_cell(job):
    """Train one cell in a --jobs worker (datasets loaded once per worker); returns (key, record)."""
    cell, settings, loader = job
    ds_key = (cell["dataset"], cell["model"])
    if ds_key not in _WORKER_DATA:
        _WORKER_DATA[ds_key] = _load_dataset(*ds_key, argparse.Namespace(**loader))
    return cell["key"], run_cell(cell, _WORKER_DATA[ds_key], **settings)


# ----------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def _fmt(values, scale=100.0, digits=2) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def group_cells(results: dict) -> dict:
    """``{(dataset, model): {(method, bits): [cell, ...]}}`` in file order."""
    groups: dict = {}
    for cell in results["cells"].values():
        groups.setdefault((cell["dataset"], cell["model"]), {}).setdefault((cell["method"], cell["bits"]), []).append(cell)
    return groups


def _bits_order(bits: str):
    return (1, 0, 0) if bits == FP_BITS else (0, *parse_bits(bits))


def summary_markdown(results: dict, rule: str = "round") -> str:
    """Markdown tables of a results file: accuracy by method × bits, extraction rules, cost."""
    from ..nn import METHODS

    lines = []
    for (dataset, model), group in group_cells(results).items():
        bits_cols = sorted({b for _, b in group}, key=_bits_order)
        methods = [m for m in METHODS if any(m == k[0] for k in group)]
        seeds = sorted({c["seed"] for cells in group.values() for c in cells})
        epochs = sorted({c["epochs"] for cells in group.values() for c in cells})
        target = next(iter(group.values()))[0]["target"]["val_acc"]
        lines += [f"## {dataset} / {model} — seeds {', '.join(map(str, seeds))}; "
                  f"epochs {', '.join(map(str, epochs))}; mean ± std over seeds", ""]
        for title, get in (
            (f"test accuracy (%) of the deterministic model (rule {rule!r})", lambda c: c["test"]["deterministic"][rule]),
            ("test accuracy (%) of the stochastic model", lambda c: c["test"]["stochastic"]),
        ):
            lines += [f"**{title}**", "", "| method | " + " | ".join(bits_cols) + " |",
                      "|---|" + "---|" * len(bits_cols)]
            for m in methods:
                row = [_fmt([get(c) for c in group.get((m, b), [])]) for b in bits_cols]
                lines.append(f"| {m} | " + " | ".join(row) + " |")
            lines.append("")
        rules = sorted({r for cells in group.values() for c in cells for r in c["test"]["deterministic"]})
        lines += ["**deterministic extraction rules, test accuracy (%)**", "",
                  "| method | bits | stochastic | " + " | ".join(rules) + " |", "|---|---|---|" + "---|" * len(rules)]
        for m in methods:
            for b in bits_cols:
                cells = group.get((m, b), [])
                if cells:
                    row = [_fmt([c["test"]["stochastic"] for c in cells])]
                    row += [_fmt([c["test"]["deterministic"][r] for c in cells]) for r in rules]
                    lines.append(f"| {m} | {b} | " + " | ".join(row) + " |")
        lines += ["", f"**cost: time per step (ms), per epoch (s); epochs and training seconds to "
                      f"validation accuracy {100 * target:.0f} % (reached in k of n seeds)**", "",
                  "| method | bits | ms/step | s/epoch | epochs to target | s to target | reached |",
                  "|---|---|---|---|---|---|---|"]
        for m in methods:
            for b in bits_cols:
                cells = group.get((m, b), [])
                if cells:
                    reached = [c for c in cells if c["target"]["epochs"] is not None]
                    lines.append(
                        f"| {m} | {b} | {_fmt([c['time_per_step'] for c in cells], 1000.0, 1)} | "
                        f"{_fmt([c['time_per_epoch'] for c in cells], 1.0, 2)} | "
                        f"{_fmt([c['target']['epochs'] for c in reached], 1.0, 1)} | "
                        f"{_fmt([c['target']['wall_time'] for c in reached], 1.0, 1)} | {len(reached)}/{len(cells)} |")
        lines.append("")
    if not lines:
        return "(no finished cells)\n"
    return "\n".join(lines)


def cmd_summary(args) -> int:
    from ..nn import DETERMINISTIC_RULES

    path = Path(args.results)
    if not path.exists():
        raise FileNotFoundError(f"results file {path} does not exist; run the train subcommand first")
    if args.rule not in DETERMINISTIC_RULES:
        raise ValueError(f"--rule must be one of {', '.join(DETERMINISTIC_RULES)}; got {args.rule!r}")
    print(summary_markdown(load_results(path), rule=args.rule))
    return 0


# ----------------------------------------------------------------------------- parsers
def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers; got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="train quantized networks with every method; write results/*.json",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", nargs="+", default=["digits"], choices=data.DATASETS, metavar="NAME",
                   help=f"one or more of {', '.join(data.DATASETS)} (default digits)")
    p.add_argument("--model", nargs="+", default=["mlp"], choices=MODELS, metavar="MODEL",
                   help=f"{', '.join(MODELS)}; one, or one per --dataset (default mlp)")
    p.add_argument("--bits", nargs="+", default=["2/2", "4/4", "8/8"], metavar="W/A",
                   help="weight/activation bits, e.g. 2/2 4/4 8/8 (method fp ignores them)")
    p.add_argument("--methods", nargs="+", default=["all"], metavar="METHOD",
                   help="training methods (companion.nn.METHODS) or all")
    p.add_argument("--seeds", nargs="+", type=_seed, default=[0], metavar="SEED")
    p.add_argument("--epochs", nargs="+", type=int, default=None, metavar="N",
                   help=f"one, or one per --dataset (default per dataset: {EPOCHS})")
    p.add_argument("--batch-size", type=_positive_int, default=128)
    p.add_argument("--lr", type=_positive_float, default=1e-3)
    p.add_argument("--quantizer-lr", type=_positive_float, default=QUANTIZER_LR,
                   help=f"learning rate of the quantizers' parameters, log α, β/α, log σ (default {QUANTIZER_LR}; "
                        "see companion.train.QUANTIZER_LR)")
    p.add_argument("--target", type=_positive_float, default=None,
                   help=f"validation accuracy for epochs-to-target (default per dataset: {TARGETS})")
    p.add_argument("--eval-samples", type=_positive_int, default=8, help="sampled forwards for the stochastic test accuracy")
    p.add_argument("--local-radius", type=_positive_float, default=LOCAL_RADIUS,
                   help=f"local grid radius in units of σ for the noisy categorical methods (RQ eqs. 6–7; "
                        f"default {LOCAL_RADIUS})")
    p.add_argument("--tails", choices=TAILS_CHOICES, default="per-method",
                   help="noise tails of the quantizers: per-method (default: truncate for rq/rq-st as in RQ eq. 4, "
                        "clamp for the others), or clamp/truncate for all")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's; 1 per worker with --jobs > 1)")
    p.add_argument("--fused", action="store_true",
                   help="fused elementwise kernels for the moment layers of ap/ap1 (torch.compile, needs a C++ "
                        "compiler; see companion.perf); results agree with the default to float round-off")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="cells trained side by side in worker processes (default 1); a cell's numbers depend on "
                        "its thread count, not on --jobs")
    p.add_argument("--data-root", default=None, help="torchvision data folder for mnist, fashion-mnist, cifar10")
    p.add_argument("--download", action="store_true", help="let torchvision download missing full-size data")
    p.add_argument("--quick", action="store_true", help="tiny run: 1 epoch on a subset (also COMPANION_QUICK=1)")
    p.add_argument("--redo", action="store_true", help="retrain cells already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON file (created or resumed)")
    p.set_defaults(func=cmd_train)

    s = subparsers.add_parser("summary", help="print the comparison tables (markdown) of a train results file")
    s.add_argument("results", nargs="?", default=str(DEFAULT_OUT), help="results JSON file")
    s.add_argument("--rule", default="round", help="deterministic extraction rule of the first table")
    s.set_defaults(func=cmd_summary)
