"""Relaxed Quantization (Louizos, Reisser, Blankevoort, Gavves, Welling, ICLR 2019).

Notation as in :mod:`companion.rounding`: x the real input, grid points
g_i = α·k_i + β (i = 0..K-1), noise ε of scale σ, and the noisy-quantization
categorical p_i = P(x̂ = g_i | x) (RQ eqs. 3–4).

* **ε guard** (RQ Algorithm 1).  RQ forms π_i = (c_{i+1} - c_i + ε) /
  (c_{K+1} - c_1 + Kε) from the cdf values c and takes log π, so that a cell of
  zero mass does not give log 0 = -inf and a NaN gradient a few steps later.
  Here p is already computed in log space (finite for any x), and the fuzz is
  applied to the *normalised* probabilities, π_i = (p_i + ε)/(1 + Kε).  Adding
  ε to the raw masses instead, as Algorithm 1 does, makes π nearly uniform
  when x is far outside the grid (every raw mass ≈ 0, ε dominates), which is
  not what the noise model says.
* **Concrete relaxation** (RQ eq. 5; Maddison et al. 2017, Jang et al. 2017):
  u_i ~ Gumbel(0, 1), z = softmax((log π + u)/λ), x̂ = Σ_i z_i g_i.
* **RQ-ST**: the forward value is the hard categorical sample g_{argmax(log π + u)}
  (the same Gumbels), the backward is the concrete gradient.
* **Local grid** (RQ eqs. 6–7): only the grid points within ``local_radius``·σ
  of round(x) are kept and renormalised.  With r = ⌈local_radius·σ/α⌉ levels
  each side, a window of W = 2r + 1 ≤ 2K - 1 levels around round(x) is gathered,
  so the cost is O(W) per element instead of O(K): an 8-bit grid costs what a
  2-bit grid costs when σ/α is the same.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_generator, check_positive, check_tensor
from .grids import UniformGrid
from .noise import Logistic, Noise, log1mexp
from .rounding import TAILS, _check_grid, _check_noise, log_grid_probabilities, log_normalize

RQ_EPSILON = 1e-6
"""Default fuzz ε of RQ Algorithm 1 (added to the normalised probabilities)."""


def check_local_radius(local_radius):
    """None, or a finite number > 0 (the radius in units of the noise scale σ)."""
    if local_radius is None:
        return None
    return float(check_positive("local_radius", local_radius))


def window_radius(grid: UniformGrid, noise: Noise, local_radius: float) -> int:
    """r = ⌈local_radius·σ/α⌉, at least 1 and at most K - 1 (a window of 2r + 1 levels)."""
    ratio = float(local_radius) * _value(noise.scale) / _value(grid.scale)
    return int(min(max(math.ceil(ratio - 1e-9), 1), grid.num_points - 1))


def _value(t) -> float:
    return float(t.detach()) if isinstance(t, torch.Tensor) else float(t)


def logistic_log_cell_mass(t_lo: torch.Tensor, width) -> torch.Tensor:
    """log(S(t_lo + w) - S(t_lo)) for logistic noise in standard units (S the sigmoid, w = α/σ > 0).

    Uses S(b) - S(a) = S(b)·S(-a)·(1 - e^{a-b}): two log-sigmoids per cell and
    one constant log(1 - e^{-w}) for the whole uniform grid; finite for any
    t_lo, with finite gradients.  Equal to ``Logistic.log_cell_mass`` (tested)
    at a fraction of its cost: the fast path of :func:`local_log_probabilities`.
    """
    return F.logsigmoid(t_lo + width) + F.logsigmoid(-t_lo) + log1mexp(-width)


def local_log_probabilities(
    x: torch.Tensor, grid: UniformGrid, noise: Noise, tails: str = "truncate", local_radius=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(log p, points, valid): the noisy-quantization categorical over the full or the local grid.

    Full grid (``local_radius=None``): log p as
    :func:`companion.rounding.log_grid_probabilities`, shape [..., K]; points
    the K grid points, shape [K]; valid None.

    Local grid (RQ eqs. 6–7): levels k = round((x - β)/α) + j, j = -r..r,
    r = :func:`window_radius`; log p and points have shape [..., 2r + 1] and
    ``valid`` marks the levels inside the grid (the others get log p = -inf).
    The kept cells are those of the full grid (with ``tails="clamp"`` the end
    cells still extend to ∓∞) and their masses are renormalised over the
    window.  Logistic noise takes the fast path :func:`logistic_log_cell_mass`.
    Gradients flow to x, α, β and σ.
    """
    check_tensor("x", x)
    _check_grid(grid)
    _check_noise(noise)
    check_choice("tails", tails, TAILS)
    local_radius = check_local_radius(local_radius)
    log_p, k, valid = levels_first_log_probabilities(x, grid, noise, tails, local_radius)
    points = grid.scale_like(x) * k + grid.offset_like(x)
    if local_radius is None:
        return log_p.movedim(0, -1), points.reshape(-1), None
    return log_p.movedim(0, -1), points.movedim(0, -1), valid.movedim(0, -1)


def window_mean(x: torch.Tensor, grid: UniformGrid, noise: Noise, tails: str = "truncate", local_radius=None):
    """E[x̂|x] = Σ_i p_i g_i under the categorical of :func:`local_log_probabilities` (RQ's renormalised local
    window when ``local_radius`` is given), shape of x.  Unlike ``quantize(..., "mean")``, never replaced by
    the full-grid closed form: this is the mean the local grid itself gives."""
    log_p, points, _ = local_log_probabilities(x, grid, noise, tails, local_radius)
    return (log_p.exp() * points).sum(-1)


def levels_first_log_probabilities(x, grid: UniformGrid, noise: Noise, tails: str, local_radius):
    """:func:`local_log_probabilities` (arguments already checked) with the levels on the *first* axis.

    Returns log p [W, ...], the levels k [W, ...] (local grid) or [K, 1, ..., 1]
    (full grid, broadcastable against x; the points are α·k + β) and valid
    [W, ...] or None.  Every reduction over the levels is then a sum of W
    contiguous slices, which vectorises; over a last axis of 3 or 4 entries it
    does not (torch's softmax over [N, 4] costs about 20 times its cost over
    [4, N] on a CPU).  The levels carry no gradient.
    """
    logistic = isinstance(noise, Logistic)
    trailing = (1,) * x.dim()
    if local_radius is None and not logistic:
        log_p = log_grid_probabilities(x, grid, noise, tails).movedim(-1, 0).contiguous()
        return log_p, grid.levels(x.dtype, x.device).reshape(-1, *trailing), None
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    k_min, k_max = grid.level_range
    if local_radius is None:
        r, valid = None, None
        k = grid.levels(x.dtype, x.device).reshape(-1, *trailing)
    else:
        r = window_radius(grid, noise, local_radius)
        k0 = torch.round((x.detach() - beta.detach()) / alpha.detach()).clamp(k_min, k_max)
        k = k0 + torch.arange(-r, r + 1, dtype=x.dtype, device=x.device).reshape(-1, *trailing)  # [W, ...]
        valid = (k >= k_min) & (k <= k_max)
        k = k.clamp(k_min, k_max)
    if logistic:
        s = noise.scale_like(x)
        width = alpha / s
        t_lo = (beta - x) / s + width * (k - 0.5)  # (g_k - α/2 - x)/σ
        log_mass = logistic_log_cell_mass(t_lo, width)
        if tails == "clamp":
            log_mass = torch.where(k == k_min, F.logsigmoid(t_lo + width), log_mass)
            log_mass = torch.where(k == k_max, F.logsigmoid(-t_lo), log_mass)
    else:
        lo = alpha * (k - 0.5) + beta - x
        hi = lo + alpha
        log_mass = noise.log_cell_mass(lo, hi)
        if tails == "clamp":
            log_mass = torch.where(k == k_min, noise.log_cdf(hi), log_mass)
            log_mass = torch.where(k == k_max, noise.log_cdf(-lo), log_mass)
    if valid is not None:
        log_mass = log_mass + valid_bias(valid, x.dtype)
    if not logistic:
        empty = torch.isneginf(log_mass).all(dim=0)
        if bool(empty.any()):  # bounded noise whose support misses every kept cell: take round(x)
            centre = torch.zeros_like(log_mass, dtype=torch.bool)
            centre[r] = True
            log_mass = torch.where(empty & centre, torch.zeros_like(log_mass), log_mass)
    return log_normalize(log_mass, 0), k, valid


def valid_bias(valid: torch.Tensor, dtype) -> torch.Tensor:
    """log 1[valid]: 0 for a valid level, -inf for one outside the grid (added to log-probabilities).

    -inf rather than the most negative float: on a CPU, torch.exp of arguments below about -87
    (float32) takes a slow path, about 8 times slower than for -inf or ordinary arguments, and
    the logsumexp, softmax and logaddexp over the levels all evaluate exp.
    """
    return torch.where(valid, 0.0, -math.inf).to(dtype)


def argmax_first(t: torch.Tensor) -> torch.Tensor:
    """argmax over the first axis, [W, ...] → [...] (int64; the last maximum on ties).

    Loops over the W slices with torch.maximum: on a CPU, ``t.argmax(0)`` over a
    short first axis, and even ``torch.where``, are far slower than these
    elementwise passes.  t must not hold NaN.
    """
    best = t[0]
    for i in range(1, t.shape[0]):
        best = torch.maximum(best, t[i])
    index = torch.zeros(t.shape[1:], dtype=torch.int64, device=t.device)
    for i in range(1, t.shape[0]):
        index = torch.maximum(index, (t[i] == best) * i)
    return index


def pick_level(k: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """k[index[...], ...]: the chosen level per element (k [W, ...] or [K, 1, ..., 1]) → [...]."""
    return torch.gather(k.expand(k.shape[0], *index.shape), 0, index.unsqueeze(0)).squeeze(0)


def fuzzed_log_probabilities(log_p: torch.Tensor, valid: torch.Tensor | None = None, epsilon: float = RQ_EPSILON,
                             dim: int = -1, normalize: bool = True):
    """log π, π_i = (p_i + ε)/(1 + K'ε), K' the number of valid entries (RQ Algorithm 1's ε guard).

    Shapes: log_p [..., W] (levels on axis ``dim``), valid None (all valid) or a bool mask like log_p;
    invalid entries (levels outside the grid) stay at -inf.  Computed as
    logaddexp(log p, log ε) followed by a log-normalisation, so log π ≥ log ε -
    log(1 + K'ε) is finite and its gradient is bounded.  ``normalize=False`` skips the
    normalisation: log(p_i + ε), which differs by a constant that cancels in a softmax or argmax.
    """
    epsilon = float(check_positive("epsilon", epsilon))
    log_pi = torch.logaddexp(log_p, torch.full_like(log_p, math.log(epsilon)))
    if valid is not None:
        log_pi = log_pi + valid_bias(valid, log_pi.dtype)
    return log_normalize(log_pi, dim) if normalize else log_pi


def gumbel(shape, generator: torch.Generator | None = None, dtype=None, device=None) -> torch.Tensor:
    """Standard Gumbel draws -log(-log u), u ~ U(0, 1) clamped to [tiny, 1 - eps] so both logs stay finite."""
    check_generator("generator", generator)
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    info = torch.finfo(dtype)
    return u.clamp_(info.tiny, 1 - info.eps).log_().neg_().log_().neg_()


class StraightThrough(torch.autograd.Function):
    """y = hard in the forward pass; ∂y/∂surrogate = 1 in the backward pass.

    Unlike ``surrogate + (hard - surrogate).detach()`` the forward value is
    exactly ``hard`` (no rounding error), so hard samples lie exactly on the grid.
    """

    @staticmethod
    def forward(ctx, hard, surrogate):
        return hard.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def straight_through(hard: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """Forward ``hard``, backward the gradient of ``surrogate`` (same shapes)."""
    return StraightThrough.apply(hard, surrogate)


def relaxed_quantize(
    x: torch.Tensor,
    grid: UniformGrid,
    noise: Noise,
    temperature=1.0,
    hard: bool = False,
    local_radius=None,
    generator: torch.Generator | None = None,
    *,
    tails: str = "truncate",
    epsilon: float = RQ_EPSILON,
) -> torch.Tensor:
    """Relaxed Quantization (``hard=False``) or RQ-ST (``hard=True``) of x, shape [...] → [...].

    log π = fuzzed log p (RQ Algorithm 1, the ε guard), u_i ~ Gumbel(0, 1) i.i.d.,

        z = softmax((log π + u)/λ),   x̂ = Σ_i z_i g_i          (RQ eq. 5)

    and with ``hard=True`` the forward value is g_{argmax_i(log π_i + u_i)}, an
    exact sample of the categorical π, while the gradient is that of the
    concrete x̂ (RQ §2.3, "RQ ST").  ``local_radius`` (units of σ) restricts
    the categorical to the local grid (RQ eqs. 6–7).  Gradients flow to x, the
    grid's α and β and the noise scale when they are learnable tensors.

    Args:
        temperature: λ > 0, finite (float or one-element tensor).
        tails: "truncate" (RQ eq. 4) or "clamp", see :func:`companion.rounding.grid_probabilities`.
        epsilon: the fuzz ε > 0.
    """
    temperature = check_positive("temperature", temperature)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be True or False, got {hard!r}")
    check_tensor("x", x)
    _check_grid(grid)
    _check_noise(noise)
    check_choice("tails", tails, TAILS)
    local_radius = check_local_radius(local_radius)
    check_positive("epsilon", epsilon)
    log_p, k, valid = levels_first_log_probabilities(x, grid, noise, tails, local_radius)
    log_pi = fuzzed_log_probabilities(log_p, valid, epsilon, dim=0, normalize=False)  # constant cancels below
    perturbed = log_pi + gumbel(log_pi.shape, generator, log_pi.dtype, log_pi.device)
    z = torch.softmax(perturbed / temperature, dim=0)
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    soft = alpha * (z * k).sum(0) + beta  # Σ_i z_i g_i with Σ_i z_i = 1
    if not hard:
        return soft
    return straight_through(alpha.detach() * pick_level(k, argmax_first(perturbed.detach())) + beta.detach(), soft)
