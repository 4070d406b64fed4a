"""Pathwise quantizers: one entry point, :func:`quantize`, for every straight-through-style method.

Each method is a pair (forward value, backward surrogate): the forward pass
returns a grid value (or, for "rq" and "mean", a point between grid values);
the backward pass returns the gradient of a smooth surrogate, with respect to
x and to the grid's scale α and offset β and the noise scale σ when those are
learnable tensors.  Notation as in :mod:`companion.rounding`: grid points
g_i = α·k_i + β, i = 0..K-1, k_min ≤ k ≤ k_max.

=========  ==================================  ==========================================
method     forward x̂                          backward (gradient of)
=========  ==================================  ==========================================
ste        round_G(x) (RQ Algorithm 2)         clip(x, g_0, g_{K-1}): clipped identity,
                                               1 on the closed range [g_0, g_{K-1}]
lsq        round_G(x)                          LSQ (Esser et al. 2020, eq. 3): ∂x̂/∂x = 1 if
                                               round((x-β)/α) ∈ [k_min, k_max], else 0;
                                               ∂x̂/∂α = round(s) - s inside, k_min or k_max
                                               outside, times grad_factor 1/√(n·Q_P)
sr         stochastic rounding                 E[x̂|x] = clip(x, g_0, g_{K-1}) (exact mean)
noisy-st   x̂ ~ p(x̂|x), any noise family       E[x̂|x] = Σ_i p_i g_i (RQ eq. 3 categorical)
rq         concrete sample Σ_i z_i g_i         itself (RQ eq. 5)
rq-st      hard categorical sample             the concrete sample (RQ "ST" variant)
mean       E[x̂|x] = Σ_i p_i g_i               itself: a smooth deterministic surrogate
=========  ==================================  ==========================================

"noisy-st" is the multi-level principled straight-through estimator of
Shekhovtsov & Yanush (2021): forward a sample, backward the derivative of its
mean; with clamped tails that derivative is (α/σ) Σ_k F'((x - b_k)/σ)
(THEORY.md §3).  "sr" is its special case with uniform noise of width α, whose
mean is exactly clip(x, g_0, g_{K-1}): the clipped-identity STE is the exact
mean-derivative estimator for stochastic rounding.
"""
from __future__ import annotations

import math

import torch

from .. import thresholds
from .._checks import check_choice, check_generator, check_positive, check_tensor
from ..grids import UniformGrid
from ..noise import Logistic, Noise
from ..relaxed import (
    check_local_radius,
    argmax_first,
    gumbel,
    levels_first_log_probabilities,
    pick_level,
    relaxed_quantize,
    straight_through,
    window_radius,
)
from .logistic_st import logistic_mean, logistic_straight_through
from ..rounding import TAILS, _check_grid, _check_noise, round_to_grid, stochastic_round

PATHWISE_METHODS = ("ste", "lsq", "sr", "noisy-st", "rq", "rq-st", "mean")
NOISY_METHODS = ("noisy-st", "rq", "rq-st", "mean")
"""The methods that use the noise model (the others ignore ``noise``, ``tails`` and ``local_radius``)."""


class _GradScale(torch.autograd.Function):
    """y = t in the forward pass; ∂y/∂t = factor in the backward pass (LSQ's gradient scale)."""

    @staticmethod
    def forward(ctx, t, factor):
        ctx.factor = factor
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class _ClippedIdentity(torch.autograd.Function):
    """Forward a given hard value; backward the gradients of clip(x, g_0, g_{K-1}) = α·clip(s, k_min, k_max) + β.

    With s = (x - β)/α and m = 1[k_min ≤ s ≤ k_max] (closed, so the gradient is
    1 also exactly at g_0 and g_{K-1}):  ∂/∂x = m,  ∂/∂α = clip(s) - m·s
    (0 inside, k_min or k_max outside; computed as clip(s)·(1 - m), finite even where
    s overflows, as in float16),  ∂/∂β = 1 - m.  Written as one
    function so that the backward pass costs a few elementwise passes.
    """

    @staticmethod
    def forward(ctx, hard, x, alpha, beta, k_min, k_max):
        ctx.save_for_backward(x, alpha, beta)
        ctx.levels = (k_min, k_max)
        return hard.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        x, alpha, beta = ctx.saved_tensors
        k_min, k_max = ctx.levels
        s = (x - beta) / alpha
        inside = (s >= k_min) & (s <= k_max)
        grad_x = grad * inside
        grad_alpha = grad_beta = None
        if ctx.needs_input_grad[2]:
            grad_alpha = (grad * (s.clamp(k_min, k_max) * ~inside)).sum()  # clip(s) - s is 0 inside
        if ctx.needs_input_grad[3]:
            grad_beta = grad.sum() - grad_x.sum()
        return None, grad_x, grad_alpha, grad_beta, None, None


def clipped_identity(hard: torch.Tensor, x: torch.Tensor, grid: UniformGrid) -> torch.Tensor:
    """``hard`` in the forward pass, the gradients of clip(x, g_0, g_{K-1}) in the backward pass.

    ∂/∂x is 1 on the *closed* range [g_0, g_{K-1}] (also exactly at the end
    points) and 0 outside; outside, ∂/∂α = k_min or k_max and ∂/∂β = 1.
    """
    return _ClippedIdentity.apply(hard, x, grid.scale_like(x), grid.offset_like(x), *grid.level_range)


def lsq_surrogate(x: torch.Tensor, grid: UniformGrid) -> torch.Tensor:
    """The surrogate whose gradients are LSQ's (Esser et al. 2020, eq. 3), as torch implements them.

    With s = (x - β)/α and q = round(s) (ties to even): inside (k_min ≤ q ≤ k_max)
    ∂x̂/∂x = 1, ∂x̂/∂α = (q - s)·g, ∂x̂/∂β = 0; outside ∂x̂/∂x = 0,
    ∂x̂/∂α = clip(q)·g, ∂x̂/∂β = 1; g = 1/√(x.numel()·Q_P), Q_P = max(k_max, 1)
    (k_max = 0 for a 1-bit signed grid).  Inside/outside is decided on the
    rounded q, like ``torch._fake_quantize_learnable_per_tensor_affine``.
    """
    k_min, k_max = grid.level_range
    factor = 1.0 / math.sqrt(x.numel() * max(k_max, 1))
    alpha = _GradScale.apply(grid.scale_like(x), factor)
    beta = grid.offset_like(x)
    s = (x - beta) / alpha
    q = torch.round(s.detach())
    inside = (q >= k_min) & (q <= k_max)
    return torch.where(inside, x + alpha * (q - s.detach()), alpha * q.clamp(k_min, k_max) + beta)


def noisy_level(log_p: torch.Tensor, k: torch.Tensor, generator=None) -> torch.Tensor:
    """The level of a sample x̂ ~ p (Gumbel-max: k_{argmax(log p + u)}), levels first: log p [W, ...] → [...]."""
    u = gumbel(log_p.shape, generator, log_p.dtype, log_p.device)
    return pick_level(k, argmax_first(log_p.detach() + u))


def categorical_mean(log_p: torch.Tensor, k: torch.Tensor, grid: UniformGrid) -> torch.Tensor:
    """E[x̂|x] = Σ_i p_i g_i = α Σ_i p_i k_i + β over the first (levels) axis (as :func:`companion.rounding.quantized_moments`)."""
    return grid.scale_like(log_p) * (torch.exp(log_p) * k).sum(0) + grid.offset_like(log_p)


def _closed_form(x, grid: UniformGrid, noise: Noise, tails: str, local_radius) -> str | None:
    """Which closed form "noisy-st" and "mean" take, if any.

    "thresholds" (:mod:`companion.thresholds`): clamp tails with logistic or Gaussian noise, whatever
    ``local_radius``: its window of z effective scales is exact to working precision, where RQ's local
    grid truncates the categorical at ``local_radius``·σ, so the local grid would only lose accuracy.
    "logistic" (:mod:`.logistic_st`): truncated tails and logistic noise, where a local grid would not be
    smaller than the K - 1 thresholds (or none is asked for).  None: the categorical route.
    """
    if tails == "clamp" and thresholds.supports(x, grid, noise):
        return "thresholds"
    if local_radius is not None and grid.num_points - 1 > 2 * window_radius(grid, noise, local_radius) + 1:
        return None
    return "logistic" if tails == "truncate" and isinstance(noise, Logistic) else None


def quantize(
    x: torch.Tensor,
    grid: UniformGrid,
    method: str,
    *,
    noise: Noise | None = None,
    temperature=1.0,
    tails: str = "truncate",
    local_radius=None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantize x onto ``grid`` with the forward value and the gradient of ``method``.

    Shapes: x [...] → x̂ [...].  See the module docstring for each method's
    forward map and its backward surrogate.

    Args:
        x: a floating-point tensor (no NaN); float16 and bfloat16 are computed
            in float32 and the result rounded back to the input's type.
        grid: a :class:`companion.grids.UniformGrid` (α, β may be learnable).
        method: one of :data:`PATHWISE_METHODS`.
        noise: the noise of the noisy quantizer; required by "noisy-st", "rq",
            "rq-st" and "mean", ignored by the others ("sr" is the noisy
            quantizer with ``Uniform(width=α)`` and clamped tails).
        temperature: λ > 0 of the concrete relaxation ("rq", "rq-st").
        tails: "truncate" (RQ eq. 4) or "clamp" for the noisy categorical.
        local_radius: None (full grid) or the local-grid radius in units of σ
            (RQ eqs. 6–7) for the categorical methods; "noisy-st" and "mean" with
            clamp tails and logistic or Gaussian noise ignore it (their closed form
            is exact to working precision over its own window of thresholds).
        generator: a torch.Generator for reproducible samples (None = global RNG).

    Raises:
        ValueError: unknown method (the valid ones are listed), temperature
            ≤ 0 or not finite, bad tails or local_radius, NaN in x.
        TypeError: wrong argument types, or no noise for a method that needs one.
    """
    check_choice("method", method, PATHWISE_METHODS)
    check_tensor("x", x)
    _check_grid(grid)
    check_positive("temperature", temperature)
    check_choice("tails", tails, TAILS)
    local_radius = check_local_radius(local_radius)
    check_generator("generator", generator)
    if method in NOISY_METHODS:
        if noise is None:
            raise TypeError(f"noise is required for method {method!r} (one of {', '.join(NOISY_METHODS)})")
        _check_noise(noise)

    if x.dtype in (torch.float16, torch.bfloat16):  # computed in float32, rounded back (gradients flow through)
        return quantize(x.float(), grid, method, noise=noise, temperature=temperature, tails=tails,
                        local_radius=local_radius, generator=generator).to(x.dtype)
    if method in ("ste", "lsq"):
        with torch.no_grad():
            hard = round_to_grid(x, grid)
        if method == "ste":
            return clipped_identity(hard, x, grid)
        return straight_through(hard, lsq_surrogate(x, grid))
    if method == "sr":
        return clipped_identity(stochastic_round(x.detach(), grid, generator), x, grid)
    if method in ("rq", "rq-st"):
        return relaxed_quantize(
            x, grid, noise, temperature, hard=method == "rq-st", local_radius=local_radius,
            generator=generator, tails=tails,
        )
    closed_form = _closed_form(x, grid, noise, tails, local_radius) if method in ("noisy-st", "mean") else None
    if closed_form == "thresholds":
        if method == "mean":
            return thresholds.threshold_mean(x, grid, noise)
        return thresholds.threshold_straight_through(x, grid, noise, generator)
    if closed_form == "logistic":
        if method == "mean":
            return logistic_mean(x, grid, noise)
        return logistic_straight_through(x, grid, noise, generator)
    log_p, k, _ = levels_first_log_probabilities(x, grid, noise, tails, local_radius)
    mean = categorical_mean(log_p, k, grid)
    if method == "mean":
        return mean
    hard = grid.scale_like(x).detach() * noisy_level(log_p, k, generator) + grid.offset_like(x).detach()
    return straight_through(hard, mean)
