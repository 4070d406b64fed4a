"""A small, seeded training loop for quantized models, and their evaluation.

:func:`fit` trains with Adam on mini-batches (cross-entropy of one sampled
forward pass, or ``companion.moments.ap_loss`` for moment-propagation methods
"ap"/"ap1"); :func:`evaluate` scores the stochastic model (accuracy averaged
over sampled forward passes) and its deterministic extractions
(:func:`companion.nn.to_deterministic`).
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ._checks import check_choice, check_int, check_positive, check_tensor
from .nn import DETERMINISTIC_RULES, quantizers, to_deterministic

AP_METHODS = ("ap", "ap1")
EVAL_BATCH = 1024
QUANTIZER_LR = 1e-2
"""Default learning rate of the quantizers' own parameters (log α, β/α and log σ), whatever ``lr``.

They live in log space: Adam moves each parameter by about its learning rate per step, so at the
network's lr = 10⁻³ log α would change by at most 0.1 % per step, while the weights move by ~10⁻³
in absolute terms, several percent of a small grid's range: on the digits MLP
(15 epochs, 165 steps) the weights outgrew the grid fixed at their initial 99 % quantile, and
after training 14 % of the first layer's and 57 % of the second layer's weights lay beyond the
grid's end points, clipped, at every bit width (8-bit nets 1.9 points below full precision).
With the quantizer parameters at 10⁻² (network at 10⁻³), measured on that MLP (3 seeds, test
accuracy of the rounded model): ste 2/2 93.4 → 95.2 %, 8/8 93.9 → 95.8 % (= full precision);
noisy-st 2/2 92.4 → 95.8 %, 8/8 93.8 → 95.1 %; 3·10⁻² was worse for noisy-st at 4/4 (92.2 %).
On mnist5k/LeNet-5 2/2 (seed 0): ste 96.2 → 96.9 %, sr 95.8 → 97.1 %, noisy-st 95.0 → 96.4 %,
rq-st 95.0 → 96.7 %, ap 95.7 → 96.5 % (full precision 96.6 %)."""


def _check_pair(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise TypeError(f"{name} must be an (x, y) pair of tensors")
    x, y = pair
    check_tensor(f"{name}[0]", x, allow_empty=False)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != x.shape[:1]:
        raise ValueError(f"{name}[1] must be a long tensor of class labels of shape {tuple(x.shape[:1])}")
    return x, y


@contextlib.contextmanager
def seeded_sampling(model: nn.Module, seed: int):
    """Inside the block every Quantizer without its own generator samples from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    free = [q for q in quantizers(model) if q.generator is None]
    for q in free:
        q.generator = generator
    try:
        yield generator
    finally:
        for q in free:
            q.generator = None


def loss_function(model: nn.Module):
    """``loss(x, y) -> (loss, logits)``: cross-entropy of one sampled forward pass and its logits,
    or for methods "ap"/"ap1" ``companion.moments.ap_loss`` and the logits of a separate sampled pass."""
    if any(q.method in AP_METHODS for q in quantizers(model)):
        try:
            from .moments import ap_loss
        except ImportError as error:
            raise ImportError(
                "moment propagation is not available: methods 'ap'/'ap1' need companion.moments.ap_loss"
            ) from error

        def moment_loss(x, y):
            with torch.no_grad():
                logits = model(x)
            return ap_loss(model, x, y), logits

        return moment_loss

    def sampled_loss(x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), logits.detach()

    return sampled_loss


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            logits = model(x[start:start + EVAL_BATCH])
            correct += int((logits.argmax(-1) == y[start:start + EVAL_BATCH]).sum())
    return correct / len(x)


def parameter_groups(model: nn.Module, lr: float, quantizer_lr: float | None = QUANTIZER_LR) -> list[dict]:
    """Adam parameter groups: the network's parameters at ``lr``, the quantizers' at ``quantizer_lr`` (None: ``lr``)."""
    quantizer_params = {id(p) for q in quantizers(model) for p in q.parameters(recurse=False)}
    groups = [{"params": [p for p in model.parameters() if id(p) not in quantizer_params], "lr": lr},
              {"params": [p for p in model.parameters() if id(p) in quantizer_params],
               "lr": lr if quantizer_lr is None else quantizer_lr}]
    return [g for g in groups if g["params"]]


def fit(model: nn.Module, train, *, epochs: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0, val=None,
        progress: bool = True, on_epoch=None, quantizer_lr: float | None = QUANTIZER_LR) -> dict:
    """Train ``model`` in place with Adam; returns the history.

    Args:
        train, val: (x, y) pairs; y holds class labels (long).
        epochs, batch_size: ints ≥ 1.  lr > 0.
        quantizer_lr: > 0, the learning rate of the quantizers' parameters (:data:`QUANTIZER_LR`,
            10⁻²); None trains them at ``lr``.
        seed: seeds the shuffling and the quantizers' sampling (those with no generator of their own).
        progress: show a tqdm bar (quiet when not attached to a terminal or notebook).
        on_epoch: called as ``on_epoch(epoch, history)`` after every epoch.

    Returns:
        {"epoch", "loss" (mean training loss), "train_acc" (accuracy of the
        sampled forward passes during the epoch), "val_acc" (one sampled
        forward pass in eval mode, None without ``val``), "epoch_time" (s),
        "step_time" (median seconds per optimisation step)}, one entry per epoch.
    """
    x, y = _check_pair("train", train)
    if val is not None:
        val = _check_pair("val", val)
    check_int("epochs", epochs, 1, 10**6)
    check_int("batch_size", batch_size, 1, 10**9)
    lr = float(check_positive("lr", lr))
    if quantizer_lr is not None:
        quantizer_lr = float(check_positive("quantizer_lr", quantizer_lr))
    check_int("seed", seed, 0, 2**63 - 1)
    loss_of = loss_function(model)
    optimizer = torch.optim.Adam(parameter_groups(model, lr, quantizer_lr), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    history = {key: [] for key in ("epoch", "loss", "train_acc", "val_acc", "epoch_time", "step_time")}
    with seeded_sampling(model, seed + 1):
        bar = tqdm(range(1, epochs + 1), desc="fit", unit="epoch", disable=None if progress else True)
        for epoch in bar:
            model.train()
            start = time.perf_counter()
            total_loss, correct, steps = 0.0, 0, []
            for batch in torch.randperm(len(x), generator=shuffle).split(batch_size):
                step_start = time.perf_counter()
                xb, yb = x[batch], y[batch]
                loss, logits = loss_of(xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps.append(time.perf_counter() - step_start)
                total_loss += loss.item() * len(batch)
                correct += int((logits.argmax(-1) == yb).sum())
            model.eval()
            train_acc = correct / len(x)
            val_acc = _accuracy(model, *val) if val is not None else None
            history["epoch"].append(epoch)
            history["loss"].append(total_loss / len(x))
            history["train_acc"].append(train_acc)
            history["val_acc"].append(val_acc)
            history["epoch_time"].append(time.perf_counter() - start)
            history["step_time"].append(float(torch.tensor(steps).median()))
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", val=f"{val_acc:.3f}" if val_acc is not None else "-")
            if on_epoch is not None:
                on_epoch(epoch, history)
    model.eval()
    return history


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, samples: int = 8, seed: int = 0,
             rules=DETERMINISTIC_RULES) -> dict:
    """Accuracy of the stochastic model and of its deterministic extractions.

    Returns {"stochastic": mean accuracy over ``samples`` sampled forward passes
    (eval mode: RQ quantizers draw hard samples), "deterministic": {rule:
    accuracy of :func:`companion.nn.to_deterministic` (model, rule)}}.
    """
    x, y = _check_pair("(x, y)", (x, y))
    check_int("samples", samples, 1, 10**6)
    check_int("seed", seed, 0, 2**63 - 1)
    for rule in rules:
        check_choice("rules", rule, DETERMINISTIC_RULES)
    was_training = model.training
    model.eval()
    with seeded_sampling(model, seed):
        stochastic = sum(_accuracy(model, x, y) for _ in range(samples)) / samples
    deterministic = {rule: _accuracy(to_deterministic(model, rule).eval(), x, y) for rule in rules}
    model.train(was_training)
    return {"stochastic": stochastic, "deterministic": deterministic}
