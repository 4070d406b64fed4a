"""Self-checks for the chapters' exercises: ``check_<topic>(answer)`` says what is wrong, in words.

Each check computes the right answer from the package (``companion.rounding``,
``companion.noise``, ``companion.binary``, ``companion.estimators.toy``), and
when the student's answer differs it compares it with the typical wrong
answers of that exercise, each with its own hint ("biased by +δ/2: did you
pair round() with U[0,1)?").  A check prints its message and returns a
:class:`CheckResult` (``ok``, ``message``), which is truthy when the answer is
right::

    from companion import exercises
    exercises.check_logistic_std(0.5 * math.pi / math.sqrt(3), scale=0.5)

========================  ====================================================
check                     the exercise
========================  ====================================================
check_sr_sampler          write a stochastic-rounding sampler (Monte Carlo:
                          unbiased, Var = δ²t(1-t))
check_sr_probabilities    P(x̂ = g_i | x) of SR from the noisy categorical
check_logistic_std        the std of Logistic(scale s) is sπ/√3, not s
check_tail_probabilities  the categorical with clamped and truncated tails
check_expected_slope      d/dx E[x̂|x] for logistic noise (principled ST)
check_toy_st_gradient     ST's single-sample gradient of E[(z - t)²]
check_binary_st_slope     the binary unit's ST slope 2F'(a) for a noise
========================  ====================================================
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._checks import check_int, check_positive, check_tensor
from .binary import st_slope
from .estimators import toy
from .grids import UniformGrid
from .noise import Logistic, Noise, Uniform
from .rounding import _check_grid, _check_noise, grid_probabilities, quantized_moments, round_to_grid, round_up_probability

__all__ = [
    "CheckResult",
    "check_sr_sampler",
    "check_sr_probabilities",
    "check_logistic_std",
    "check_tail_probabilities",
    "check_expected_slope",
    "check_toy_st_gradient",
    "check_binary_st_slope",
]

RTOL, ATOL = 1e-4, 1e-5  # loose enough for float32 answers


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a self-check: ``ok`` and the message that was printed."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok


class _Unusable(Exception):
    """The answer cannot be compared (wrong type, shape, NaN); the message says why."""


def _report(ok: bool, message: str) -> CheckResult:
    text = ("✓ " if ok else "✗ ") + message
    print(text)
    return CheckResult(ok, text)


def _as_answer(name: str, answer, shape) -> torch.Tensor:
    """The answer as a float64 tensor of ``shape``, or :class:`_Unusable` saying what is wrong."""
    if callable(answer):
        raise _Unusable(f"{name} should be numbers (a tensor), not a function: call your function first")
    try:
        value = torch.as_tensor(answer, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise _Unusable(f"{name} should be a tensor of numbers, got {type(answer).__name__} ({error})") from None
    if value.shape != torch.Size(shape):
        if value.numel() == math.prod(shape):
            value = value.reshape(shape)
        else:
            raise _Unusable(f"{name} should have shape {tuple(shape)}, got {tuple(value.shape)}")
    if bool(torch.isnan(value).any()):
        raise _Unusable(f"{name} contains NaN at {int(torch.isnan(value).sum())} place(s): look for 0/0 or log(0)")
    return value


def _close(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> bool:
    if mask is not None:
        a, b = a[mask], b[mask]
    return bool(torch.allclose(a, b.to(a.dtype), rtol=RTOL, atol=ATOL))


def _first_difference(answer: torch.Tensor, reference: torch.Tensor, mask=None) -> str:
    diff = (answer - reference).abs()
    if mask is not None:
        diff = torch.where(mask, diff, torch.zeros_like(diff))
    index = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
    where = f" at index {index}" if index else ""
    return f"expected {float(reference[index]):.6g}, got {float(answer[index]):.6g}{where}"


def _mismatch(answer, reference, typical: list[tuple[torch.Tensor, str]], wrong: str = "not the expected values",
              mask=None, prefix: str = "") -> str | None:
    """None when right; else the hint of the matching typical wrong answer, or the largest error."""
    if _close(answer, reference, mask):
        return None
    for candidate, hint in typical:
        if _close(answer, candidate, mask):
            return prefix + hint
    return f"{prefix}{wrong}: {_first_difference(answer, reference, mask)}."


def _diagnose(answer, reference, typical: list[tuple[torch.Tensor, str]], right: str, wrong: str, mask=None):
    """Report right, or the hint of a typical wrong answer, or the largest error."""
    problem = _mismatch(answer, reference, typical, wrong, mask)
    return _report(problem is None, right if problem is None else problem)


def _float_tensor(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x, dtype=torch.float64)
    return check_tensor(name, x).detach().to(torch.float64)


# ------------------------------------------------------------------ chapter 02
# x = δ(k + t) with t ∈ {0.1, 0.25, 0.6, 0.85} and k of both signs: the typical
# wrong samplers have biases (+δ/2, -δ/2, δ(1 - 2t), -tδ) that differ on these rows.
_SR_POSITIONS = (-2.9, -0.75, 0.1, 0.25, 1.6, 2.85)


def check_sr_sampler(sampler: Callable, step: float = 0.5, samples: int = 20_000, seed: int = 0) -> CheckResult:
    """Check a stochastic-rounding sampler ``sampler(x, step, generator) -> x̂`` by seeded Monte Carlo.

    The sampler gets x of shape [6, samples] (each row one value x = δ(k + t))
    and must return grid values δ·k of the same shape with E[x̂] = x and
    Var[x̂] = δ²t(1 - t).  The reference moments are
    ``companion.rounding.quantized_moments`` with ``Uniform(width=δ)``.
    Tolerance: 5 Monte Carlo standard errors of the row mean (sample size
    ``samples``), 5 SEs + 1e-3·δ² for the variance.
    """
    step = float(check_positive("step", step))
    samples = check_int("samples", samples, 1000, 10**7)
    check_int("seed", seed, 0, 2**63 - 1)
    xs = torch.tensor(_SR_POSITIONS, dtype=torch.float64) * step
    x = xs.unsqueeze(1).expand(-1, samples).contiguous()
    try:
        out = sampler(x.clone(), step, generator=torch.Generator().manual_seed(seed))
    except Exception as error:  # the student's code: report, do not crash the notebook
        return _report(False, f"your sampler raised {type(error).__name__}: {error}. "
                              "It must accept (x, step, generator=...) and return a tensor shaped like x.")
    try:
        out = _as_answer("the sampler's output", out, x.shape)
    except _Unusable as error:
        return _report(False, str(error))

    levels = out / step
    if bool(((out.mean(1) - xs / step).abs() < 0.05).all()) and _close(out, torch.round(out)):
        return _report(False, "your values are the integer levels k (their mean is x/δ), not grid values δ·k: "
                              "multiply by δ at the end.")
    if not _close(levels, torch.round(levels)):
        return _report(False, "your values are not on the grid δ·k: divide x by δ, add the uniform, apply "
                              "floor (or round), then multiply back by δ.")

    grid = UniformGrid(8, scale=step)  # ±128δ: no clipping for these x
    ref_mean, ref_var = quantized_moments(xs, grid, Uniform(width=step))
    t = round_up_probability(xs, grid)
    mean, var = out.mean(1), out.var(1)
    bias = mean - xs
    se_mean = (ref_var / samples).sqrt()
    se_var = (t * (1 - t) * (1 - 2 * t) ** 2 / samples).sqrt() * step**2
    tol_mean, tol_var = 5 * se_mean + 1e-9, 5 * se_var + 1e-3 * step**2

    def bias_is(expected: torch.Tensor) -> bool:
        return bool(((bias - expected).abs() <= torch.maximum(tol_mean, 0.02 * step * torch.ones_like(bias))).all())

    if bool((var == 0).all()):
        if _close(out[:, 0], round_to_grid(xs, grid)):
            return _report(False, "your sampler is deterministic round-to-nearest: no noise, biased by round(x/δ)δ - x. "
                                  "Add u ~ U[0,1) to x/δ and take the floor.")
        if _close(out[:, 0], torch.floor(xs / step) * step):
            return _report(False, "your sampler always rounds down (floor without noise): add u ~ U[0,1) before the floor.")
        return _report(False, "every sample of the same x is identical: did you draw one u for the whole tensor? "
                              "Draw one per element: torch.rand(x.shape, generator=generator).")
    if bias_is(torch.full_like(xs, step / 2)):
        return _report(False, f"biased by +δ/2: did you pair round() with U[0,1)? Use floor with U[0,1), "
                              f"or round with U[-1/2,1/2) (measured mean bias {float(bias.mean()):+.4f}, δ = {step:g}).")
    if bias_is(torch.full_like(xs, -step / 2)):
        return _report(False, f"biased by -δ/2: did you pair floor() with U[-1/2,1/2)? Use floor with U[0,1), "
                              f"or round with U[-1/2,1/2) (measured mean bias {float(bias.mean()):+.4f}, δ = {step:g}).")
    if bias_is(step * (1 - 2 * t)):
        return _report(False, "you round up with probability 1 - t instead of t = frac(x/δ) (the slip of RQ eq. 8): "
                              "the closer x is to the upper neighbour, the likelier it must go up.")
    low = torch.floor(xs / step).unsqueeze(1)
    if bool(((levels < low - 1e-6) | (levels > low + 1 + 1e-6)).any()):
        return _report(False, "some samples leave the two neighbours ⌊x/δ⌋δ and (⌊x/δ⌋ + 1)δ: stochastic rounding "
                              "only ever picks one of them (is your noise wider than U[0,1)?).")
    worst = int((bias.abs() - tol_mean).argmax())
    if bool((bias.abs() > tol_mean).any()):
        return _report(False, f"biased: E[x̂] - x = {float(bias[worst]):+.4f} at x = {float(xs[worst]):g} "
                              f"(Monte Carlo error ±{float(tol_mean[worst]):.4f}); stochastic rounding must be unbiased.")
    if bool(((var - ref_var).abs() > tol_var).any()):
        i = int(((var - ref_var).abs() - tol_var).argmax())
        return _report(False, f"unbiased, but Var[x̂] = {float(var[i]):.4f} at x = {float(xs[i]):g} instead of "
                              f"δ²t(1-t) = {float(ref_var[i]):.4f}.")
    return _report(True, f"unbiased (largest |bias| {float(bias.abs().max()):.4f}) with variance δ²t(1-t), "
                         f"within Monte Carlo error ({samples} samples per x, δ = {step:g}).")


def check_sr_probabilities(answer, x, grid: UniformGrid) -> CheckResult:
    """Check P(x̂ = g_i | x) of stochastic rounding, shape [..., K], derived from the noisy categorical.

    Reference: ``grid_probabilities(x, grid, Uniform(width=δ))``, the hats
    max(0, 1 - |x - g_i|/δ) inside the grid range.
    """
    x = _float_tensor("x", x)
    grid = _check_grid(grid)
    step = float(grid.scale)
    reference = grid_probabilities(x, grid, Uniform(width=step))
    shape = (*x.shape, grid.num_points)
    try:
        answer = _as_answer("answer", answer, shape)
    except _Unusable as error:
        return _report(False, str(error))
    on_point = round_up_probability(x, grid) == 0
    eq8 = reference.clone()
    if bool(on_point.any()):  # P(down) = ⌈y⌉ - y = 0 on a grid point: all mass one level up
        up = torch.roll(reference, 1, dims=-1)
        up[..., 0] = 0
        up[..., -1] += reference[..., -1]
        eq8 = torch.where(on_point.unsqueeze(-1), up, reference)
    typical = [
        (1 - reference, "each p_i falls as x approaches g_i: you computed 1 - p_i. The SR probability of g_i is "
                        "the hat max(0, 1 - |x - g_i|/δ), which peaks at g_i."),
        (grid_probabilities(x, grid, Uniform(width=2 * step)),
         "these are the probabilities for noise of width 2δ: stochastic rounding is uniform noise of width exactly δ."),
        (grid_probabilities(x, grid, Uniform(width=step / 2)),
         "these are the probabilities for noise of width δ/2: stochastic rounding is uniform noise of width exactly δ."),
        (grid_probabilities(x - step / 2, grid, Uniform(width=step)),
         "your cells are shifted by δ/2: x̂ = g_i when x̃ = x + ε lies in the cell (g_i - δ/2, g_i + δ/2] centred on g_i."),
        (grid_probabilities(x + step / 2, grid, Uniform(width=step)),
         "your cells are shifted by δ/2: x̂ = g_i when x̃ = x + ε lies in the cell (g_i - δ/2, g_i + δ/2] centred on g_i."),
    ]
    if bool(on_point.any()):
        typical.append((eq8, "on a grid point x = g_j all mass must stay on g_j: P(down) = 1 - t, not ⌈x/δ⌉ - x/δ "
                             "(the slip of RQ eq. 8, which is 0 there)."))
    sums = answer.sum(-1)
    if not _close(answer, reference) and not _close(sums, torch.ones_like(sums)) and not any(
            _close(answer, c) for c, _ in typical):
        return _report(False, f"the probabilities of each x must sum to 1 over the K = {grid.num_points} grid points; "
                              f"yours sum to {float(sums.flatten()[int((sums - 1).abs().argmax())]):.4g}.")
    return _diagnose(answer, reference, typical,
                     right="these are the hats max(0, 1 - |x - g_i|/δ): stochastic rounding is noisy quantization "
                           "with uniform noise of width δ.",
                     wrong="not the SR probabilities F(g_i + δ/2 - x) - F(g_i - δ/2 - x) with F the cdf of U[-δ/2, δ/2]")


# ------------------------------------------------------------------ chapter 03
def check_logistic_std(answer, scale) -> CheckResult:
    """Check the standard deviation of Logistic(scale s): sπ/√3 (``companion.noise.Logistic(s).std``)."""
    s = float(check_positive("scale", scale))
    try:
        value = _as_answer("answer", answer, ())
    except _Unusable as error:
        return _report(False, str(error))
    reference = torch.tensor(Logistic(s).std, dtype=torch.float64)
    typical = [
        (torch.tensor(s), "that is the scale s itself. RQ calls σ a standard deviation but uses it as the logistic "
                          "scale: the variance is s²π²/3."),
        (torch.tensor(s**2 * math.pi**2 / 3), "that is the variance s²π²/3: take its square root."),
        (torch.tensor(s * math.sqrt(3) / math.pi), "you inverted the factor: the std is s·π/√3, not s·√3/π."),
        (torch.tensor(s * math.pi / 3), "the factor is π/√3 ≈ 1.814, not π/3: the variance is s²π²/3."),
    ]
    return _diagnose(value, reference, typical,
                     right=f"the std of Logistic(scale {s:g}) is sπ/√3 = {float(reference):.4f}.",
                     wrong="not the logistic std sπ/√3")


def check_tail_probabilities(clamp, truncate, x, grid: UniformGrid, noise: Noise) -> CheckResult:
    """Check the noisy-quantization categorical with both tail conventions, each of shape [..., K].

    Reference: ``grid_probabilities(x, grid, noise, tails="clamp")`` (end cells
    extend to ∓∞) and ``tails="truncate"`` (RQ eq. 4: the density of x̃
    truncated to (g_0 - α/2, g_{K-1} + α/2] and renormalised).
    """
    x = _float_tensor("x", x)
    grid, noise = _check_grid(grid), _check_noise(noise)
    ref_clamp = grid_probabilities(x, grid, noise, tails="clamp")
    ref_trunc = grid_probabilities(x, grid, noise, tails="truncate")
    shape = (*x.shape, grid.num_points)
    try:
        clamp = _as_answer("clamp", clamp, shape)
        truncate = _as_answer("truncate", truncate, shape)
    except _Unusable as error:
        return _report(False, str(error))
    if _close(clamp, ref_trunc) and _close(truncate, ref_clamp) and not _close(ref_clamp, ref_trunc):
        return _report(False, "you swapped the two: clamp gives the end points all the tail mass (on {-1, +1}, "
                              "P(+1) = F(x)); truncate cuts the density at the outer cell edges and renormalises.")
    points = grid.points_like(x)
    half = grid.scale_like(x) / 2
    raw = torch.exp(noise.log_cell_mass(points - half - x.unsqueeze(-1), points + half - x.unsqueeze(-1)))

    def typical(tails: str) -> list[tuple[torch.Tensor, str]]:
        found = [(raw, "these are the raw cell masses F(g_i + α/2 - x) - F(g_i - α/2 - x), which sum to less than 1: "
                       "with clamp the first and last cells extend to -∞ and +∞; with truncate divide by the "
                       "mass of (g_0 - α/2, g_{K-1} + α/2].")]
        if isinstance(noise, Logistic):
            as_std = Logistic(float(noise.scale) * math.sqrt(3) / math.pi)
            found.append((grid_probabilities(x, grid, as_std, tails=tails),
                          "you used σ as the logistic's standard deviation (scale σ√3/π); in RQ and in "
                          "companion.noise.Logistic σ is the scale: F(t) = sigmoid(t/σ)."))
        return found

    checks = [_mismatch(answer, reference, typical(tails), prefix=f"{tails}: ")
              for answer, reference, tails in ((clamp, ref_clamp, "clamp"), (truncate, ref_trunc, "truncate"))]
    problems = [c for c in checks if c]
    if problems:
        return _report(False, " ".join(problems))
    gap = float((ref_clamp - ref_trunc).abs().max())
    return _report(True, f"both right; the two conventions differ by up to {gap:.4f} here "
                         "(clamp puts the tail mass on the end points, truncate renormalises it away).")


def check_expected_slope(answer, x, grid: UniformGrid, scale) -> CheckResult:
    """Check d/dx E[x̂|x] for logistic noise of scale s and clamped tails, shape of x.

    E[x̂|x] = g_0 + α Σ_k σ((x - b_k)/s) with thresholds b_k = g_k + α/2, so the
    slope (the principled straight-through backward) is (α/s) Σ_k σ'((x - b_k)/s).
    Reference: autograd through ``companion.rounding.quantized_moments``.
    """
    x = _float_tensor("x", x)
    grid = _check_grid(grid)
    s = float(check_positive("scale", scale))
    noise = Logistic(s)
    alpha = float(grid.scale)

    def slope(at: torch.Tensor, tails: str = "clamp") -> torch.Tensor:
        at = at.clone().requires_grad_(True)
        mean, _ = quantized_moments(at, grid, noise, tails=tails)
        (grad,) = torch.autograd.grad(mean.sum(), at)
        return grad.detach()

    try:
        answer = _as_answer("answer", answer, x.shape)
    except _Unusable as error:
        return _report(False, str(error))
    reference = slope(x)
    inside = ((x >= grid.points_like(x)[0]) & (x <= grid.points_like(x)[-1])).to(torch.float64)
    typical = [
        (reference * s, "missing the 1/s of the chain rule: d/dx σ((x - b_k)/s) = σ'((x - b_k)/s)/s."),
        (reference / alpha, "missing the factor α: E[x̂|x] = g_0 + α Σ_k σ((x - b_k)/s), each threshold adds one step α."),
        (torch.ones_like(x), "slope 1 everywhere is the identity STE: it is not the derivative of the mean of any "
                             "noisy quantizer. Differentiate E[x̂|x]."),
        (inside, "that is the clipped identity 1[g_0 ≤ x ≤ g_{K-1}]: the exact slope for uniform noise of width α "
                 "(stochastic rounding), not for logistic noise."),
        (slope(x, "truncate"), "you differentiated the mean with truncated tails; this exercise uses clamped tails "
                               "(the end cells extend to ∓∞)."),
        (slope(x + alpha / 2), "your thresholds sit on the grid points; the decision thresholds are the midpoints "
                               "b_k = g_k + α/2."),
        (slope(x - alpha / 2), "your thresholds sit on the grid points; the decision thresholds are the midpoints "
                               "b_k = g_k + α/2."),
    ]
    return _diagnose(answer, reference, typical,
                     right="this is (α/s) Σ_k σ'((x - b_k)/s), the derivative of E[x̂|x]: the principled "
                           "straight-through slope.",
                     wrong="not (α/s) Σ_k σ'((x - b_k)/s)")


# ------------------------------------------------------------------ chapter 05
_TOY_CASES = [(z, phi, t) for z in (0.0, 1.0) for phi in (-2.0, 0.0, 1.5) for t in (0.45, 0.49)]


def _st_reference(z: float, phi: float, t: float) -> float:
    """f'(z)·dσ(φ)/dφ by autograd, f(z) = (z - t)²: the definition of ST, not its closed form."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    (fz,) = torch.autograd.grad((zt - t) ** 2, zt)
    ph = torch.tensor(phi, dtype=torch.float64, requires_grad=True)
    (dp,) = torch.autograd.grad(torch.sigmoid(ph), ph)
    return float(fz * dp)


def check_toy_st_gradient(estimate: Callable) -> CheckResult:
    """Check ``estimate(z, logit, target)``, ST's single-sample gradient of E[(z - t)²] w.r.t. φ.

    z ∈ {0, 1} is the sample, p = σ(φ): ST forwards z and back-propagates
    f'(z) through p, ĝ = 2(z - t)·p(1 - p).  Checked at z ∈ {0, 1},
    φ ∈ {-2, 0, 1.5}, t ∈ {0.45, 0.49}; the mean and variance it implies are
    compared with ``companion.estimators.toy.moments("st", ...)``.
    """
    if not callable(estimate):
        return _report(False, "pass your function itself, estimate(z, logit, target) -> float, not a number.")
    try:
        values = torch.tensor([float(estimate(z, phi, t)) for z, phi, t in _TOY_CASES], dtype=torch.float64)
    except Exception as error:  # the student's code
        return _report(False, f"your function raised {type(error).__name__}: {error}. "
                              "It must take (z, logit, target) as floats and return a number.")
    zs, phis, ts = (torch.tensor(c, dtype=torch.float64) for c in zip(*_TOY_CASES))
    p = torch.sigmoid(phis)
    reference = torch.tensor([_st_reference(*case) for case in _TOY_CASES], dtype=torch.float64)
    f = lambda z: (z - ts) ** 2  # noqa: E731
    typical = [
        ((1 - 2 * ts) * p * (1 - p), "that is the true gradient (1 - 2t)p(1 - p), which has no sample in it: ST uses "
                                     "the sample, f'(z)·σ'(φ)."),
        (2 * (p - ts) * p * (1 - p), "that is ST's mean E[ĝ] = 2(p - t)p(1 - p): the single-sample estimate uses the "
                                     "sample z, not p."),
        (2 * (zs - ts), "missing σ'(φ) = p(1 - p): the chain rule through p = σ(φ)."),
        ((zs - ts) * p * (1 - p), "missing the factor 2 of f'(z) = 2(z - t)."),
        (-reference, "the sign is flipped: f'(z) = 2(z - t)."),
        (2 * (zs - ts) * p, "the derivative of σ(φ) is p(1 - p), not p."),
        (f(zs) * (zs - p), "that is the score-function (REINFORCE) estimator f(z)(z - p), not straight-through."),
    ]
    problem = _mismatch(values, reference, typical, wrong="not 2(z - t)·p(1 - p)")
    if problem:
        return _report(False, problem)
    mean_ok = var_ok = True
    for phi in (-2.0, 0.0, 1.5):
        for t in (0.45, 0.49):
            ref_mean, ref_var = toy.moments("st", phi, t)
            pp = 1 / (1 + math.exp(-phi))
            g1, g0 = float(estimate(1.0, phi, t)), float(estimate(0.0, phi, t))
            mean_ok &= math.isclose(pp * g1 + (1 - pp) * g0, ref_mean, rel_tol=1e-6, abs_tol=1e-9)
            var_ok &= math.isclose(pp * (1 - pp) * (g1 - g0) ** 2, ref_var, rel_tol=1e-6, abs_tol=1e-9)
    if not (mean_ok and var_ok):
        return _report(False, "right values, but the mean and variance they imply disagree with "
                              "companion.estimators.toy.moments('st'): please report this.")
    return _report(True, "ĝ = 2(z - t)·p(1 - p); its mean 2(p - t)p(1 - p) and variance 4p³(1 - p)³ agree with "
                         "companion.estimators.toy.moments('st'). Note the mean vanishes at p = t, not at the optimum.")


# ------------------------------------------------------------------ chapter 06
def check_binary_st_slope(answer, a, noise: Noise) -> CheckResult:
    """Check the binary unit's principled ST slope ∂E[x|a]/∂a = 2F'(a) at the points ``a``.

    x = sign(a - Z): E[x|a] = 2F(a) - 1.  Logistic(1) gives 2σ'(a) (the slope
    of tanh(a/2)); Uniform(width 2) = U[-1, 1] gives the hardtanh indicator
    1[|a| ≤ 1].  Reference: ``companion.binary.st_slope``.  For uniform noise
    the jump points |a| = w/2 are not compared.
    """
    a = _float_tensor("a", a)
    noise = _check_noise(noise)
    try:
        answer = _as_answer("answer", answer, a.shape)
    except _Unusable as error:
        return _report(False, str(error))
    mask = None
    if isinstance(noise, Uniform):
        mask = (a.abs() - float(noise.scale) / 2).abs() > 1e-9
    reference = st_slope(a, noise)
    unit = type(noise)(1.0)
    typical = [
        (noise.pdf(a), "missing the factor 2: E[x|a] = 2F(a) - 1, so the slope is 2F'(a)."),
        (noise.cdf(a), "that is F(a) = P(x = +1), not a slope: differentiate E[x|a] = 2F(a) - 1."),
        (2 * noise.cdf(a) - 1, "that is the mean E[x|a] = 2F(a) - 1 itself; the ST slope is its derivative 2F'(a)."),
        (torch.ones_like(a), "slope 1 everywhere is the identity STE, the derivative of the mean of no noise "
                             "distribution: use 2F'(a)."),
        (1 - torch.tanh(a) ** 2, "that is the slope of tanh(a); with Logistic(1) noise the mean is tanh(a/2), "
                                 "whose slope is 2σ'(a) = (1 - tanh²(a/2))/2."),
    ]
    if not isinstance(noise, Logistic):
        typical.append((2 * Logistic(1.0).pdf(a), f"that is the logistic slope 2σ'(a); for {noise!r} use its own "
                                                  "density: 2F'(a)."))
    if not (isinstance(noise, Uniform) and float(noise.scale) == 2.0):
        typical.append(((a.abs() <= 1).to(torch.float64), f"that is the hardtanh STE 1[|a| ≤ 1], the slope for "
                                                          f"U[-1, 1] noise only; for {noise!r} use 2F'(a)."))
    if float(noise.scale) != 1.0:
        typical.append((st_slope(a, unit), f"you ignored the noise scale: for scale s the slope is (2/s)F₁'(a/s) "
                                           f"with F₁ the cdf at scale 1 (here s = {float(noise.scale):g})."))
    return _diagnose(answer, reference, typical,
                     right=f"2F'(a) for {noise!r}: the derivative of the mean E[x|a] = 2F(a) - 1, the principled ST slope.",
                     wrong="not 2F'(a)", mask=mask)
