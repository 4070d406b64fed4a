"""Deterministic rounding, stochastic rounding and the noisy-quantization categorical.

Notation (THEORY.md): x is the real input, x̃ = x + ε the continuous noisy
input, x̂ = round_G(x̃) the discrete grid value, g_0 < ... < g_{K-1} the grid
points with spacing α = δ, and b_k = g_k + α/2 the decision thresholds.
"""
from __future__ import annotations

import torch

from ._checks import check_choice, check_generator, check_positive, check_tensor
from .grids import UniformGrid
from .noise import Noise

TAILS = ("clamp", "truncate")
OPERATORS = ("floor", "round")


def _check_grid(grid) -> UniformGrid:
    if not isinstance(grid, UniformGrid):
        raise TypeError(f"grid must be a companion.grids.UniformGrid, got {type(grid).__name__}")
    return grid


def _check_noise(noise) -> Noise:
    if not isinstance(noise, Noise):
        raise TypeError(
            f"noise must be a companion.noise.Logistic, Gaussian or Uniform, got {type(noise).__name__}"
        )
    return noise


def round_to_grid(x: torch.Tensor, grid: UniformGrid) -> torch.Tensor:
    """Round to the nearest grid point, ties to even, clipped to [g_0, g_{K-1}].

    x̂ = α·clip(round((x - β)/α), k_min, k_max) + β   (RQ Algorithm 2)

    For β = -z·α with integer z this equals
    ``torch.fake_quantize_per_tensor_affine(x, α, z, k_min, k_max)``.
    Shapes: x [...] → x̂ [...].  The gradient is zero almost everywhere (use
    ``companion.estimators`` for straight-through gradients).
    """
    check_tensor("x", x)
    _check_grid(grid)
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    k_min, k_max = grid.level_range
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad or beta.requires_grad):
        k = torch.round((x - beta) / alpha).clamp(k_min, k_max)
        return alpha * k + beta
    # no graph to keep: the same operations in place on one buffer (at 1e7 values the allocations dominate)
    return (x - beta).div_(alpha).round_().clamp_(k_min, k_max).mul_(alpha).add_(beta)


def round_up_probability(x: torch.Tensor, grid: UniformGrid) -> torch.Tensor:
    """P(stochastic rounding goes up) = t = frac((x - β)/α), 0 above the top and below the bottom point.

    Writing x = β + α(⌊(x-β)/α⌋ + t) with t ∈ [0, 1), stochastic rounding picks
    the upper neighbour with probability t and the lower one with 1 - t.
    (RQ eq. 8 writes P(down) = ⌈x/α⌉ - x/α, which is 0 instead of 1 on a grid
    point; 1 - t is right.)
    """
    check_tensor("x", x)
    _check_grid(grid)
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    k_min, k_max = grid.level_range
    y = ((x - beta) / alpha).clamp(k_min, k_max)
    return y - torch.floor(y)


def stochastic_round(x: torch.Tensor, grid: UniformGrid, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic rounding onto the grid: x̂ = α·clip(⌊(x - β)/α + u⌋) + β, u ~ U[0, 1).

    Unbiased inside the grid range, E[x̂] = x, with Var[x̂] = α² t(1 - t)
    (Gupta et al. 2015; Croci et al. 2022).  Shapes: x [...] → x̂ [...].
    """
    check_tensor("x", x)
    _check_grid(grid)
    check_generator("generator", generator)
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    k_min, k_max = grid.level_range
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    k = torch.floor((x - beta) / alpha + u).clamp(k_min, k_max)
    return alpha * k + beta


def round_with_uniform(
    x: torch.Tensor,
    step,
    operator: str,
    low: float,
    *,
    uniform: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """δ·op(x/δ + e) with e = low + U, U ~ U[0, 1), op ∈ {floor, round}: the samplers of THEORY.md §2.

    The two correct pairings are the same random variable, pathwise, when they
    share U (then e = U - 1/2 in the second):

    * ``operator="floor", low=0``    : δ·⌊x/δ + U[0,1)⌋
    * ``operator="round", low=-0.5`` : δ·round(x/δ + U[-1/2,1/2))

    Mixing them is wrong: ``round`` with ``low=0`` is biased by +δ/2 and
    ``floor`` with ``low=-0.5`` by -δ/2.  No clipping (an unbounded grid).

    Args:
        uniform: the U[0, 1) draws, shape of x (drawn with ``generator`` if None).
    """
    check_tensor("x", x)
    step = check_positive("step", step)
    check_choice("operator", operator, OPERATORS)
    if low not in (0, 0.0, -0.5):
        raise ValueError(f"low must be 0 (U[0,1)) or -0.5 (U[-1/2,1/2)), got {low!r}")
    check_generator("generator", generator)
    if uniform is None:
        uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    elif uniform.shape != x.shape:
        raise ValueError(f"uniform must have the shape of x {tuple(x.shape)}, got {tuple(uniform.shape)}")
    op = torch.floor if operator == "floor" else torch.round
    return step * op(x / step + low + uniform)


def log_grid_probabilities(
    x: torch.Tensor, grid: UniformGrid, noise: Noise, tails: str = "clamp"
) -> torch.Tensor:
    """log P(x̂ = g_i | x), shape [..., K]; see :func:`grid_probabilities`."""
    check_tensor("x", x)
    _check_grid(grid)
    _check_noise(noise)
    check_choice("tails", tails, TAILS)
    points = grid.points_like(x)
    half = grid.scale_like(x) / 2
    xe = x.unsqueeze(-1)
    if tails == "clamp":
        b = points[:-1] + half  # K-1 thresholds
        first = noise.log_cdf(b[:1] - xe)  # P(x̃ ≤ b_0)
        last = noise.log_cdf(xe - b[-1:])  # P(x̃ > b_{K-2}) = F(x - b) by symmetry
        inner = noise.log_cell_mass(b[:-1] - xe, b[1:] - xe)
        log_p = torch.cat([first, inner, last], dim=-1)
    else:
        xe = _within_reach(xe, points[0] - half, points[-1] + half, noise, 2 * half)
        log_p = noise.log_cell_mass(points - half - xe, points + half - xe)
        empty = torch.isneginf(log_p).all(dim=-1, keepdim=True)
        if bool(empty.any()):  # bounded noise whose support misses the grid range
            nearest = torch.full_like(log_p, float("-inf"))
            above = (x.unsqueeze(-1) > (points[0] + points[-1]) / 2).squeeze(-1)
            nearest[..., 0] = torch.where(above, float("-inf"), 0.0)
            nearest[..., -1] = torch.where(above, 0.0, float("-inf"))
            log_p = torch.where(empty, nearest, log_p)
    return log_normalize(log_p, -1)


def log_normalize(log_mass: torch.Tensor, dim: int) -> torch.Tensor:
    """log_mass - logsumexp(log_mass) along ``dim``, computed from the shift by the maximum.

    (l - m) - log Σ exp(l - m), m = max l: when every l is far in a tail (log-masses of -2000 in
    float32 have an ulp of 2.4e-4) the differences l - m are exact while l - logsumexp(l) would
    carry the rounding of both large numbers (probabilities summing to 1 ± 1e-4).  Entries of -inf
    stay -inf; the maximum gets no gradient of its own (it cancels).
    """
    top = log_mass.detach().amax(dim=dim, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    shifted = log_mass - top
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


REACH = 80.0
"""Truncated tails: x is clamped to within REACH·max(s, s²/α) of the grid's window (see :func:`truncation_reach`)."""


def truncation_reach(s: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """R = REACH·max(s, s²/α): beyond R outside the window the truncated categorical no longer changes."""
    return REACH * torch.maximum(s, s * s / alpha)


def _within_reach(x, low, high, noise: Noise, alpha):
    """Clamp x to [low - R, high + R], R = :func:`truncation_reach` (80·max(s, s²/α)), s the noise scale.

    Beyond R the truncated categorical no longer changes in floating point (the
    logistic tail ratio has converged to its limit, the Gaussian one is
    one-hot, the uniform support misses the window), while x - g would lose
    every digit that tells the cells apart (x = 1e8 in float32 has spacing 8).
    """
    reach = truncation_reach(noise.scale_like(x), alpha)
    return torch.minimum(torch.maximum(x, low - reach), high + reach)


def grid_probabilities(x: torch.Tensor, grid: UniformGrid, noise: Noise, tails: str = "clamp") -> torch.Tensor:
    """The noisy-quantization categorical P(x̂ = g_i | x), shape [..., K].

    x̃ = x + ε, ε ~ noise, x̂ = the grid point whose cell holds x̃ (RQ eq. 3):

        P(x̂ = g_i | x) = F(g_i + α/2 - x) - F(g_i - α/2 - x)

    ``tails`` says what happens to the noise mass outside the grid's cells:

    * ``"clamp"``: the end cells extend to ∓∞ (x̂ = round-and-clip of x̃);
      with the binary grid this is the stochastic binary neuron, P(+1) = F(x).
    * ``"truncate"`` (RQ eq. 4): the density of x̃ is truncated to
      (g_0 - α/2, g_{K-1} + α/2] and renormalised.

    With ``Uniform(width=α)`` and clamp tails this is stochastic rounding,
    the hat max(0, 1 - |x - g_i|/α).  Computed in log space: finite for any x.
    """
    return torch.exp(log_grid_probabilities(x, grid, noise, tails))


def quantized_moments(
    x: torch.Tensor, grid: UniformGrid, noise: Noise, tails: str = "clamp"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(E[x̂|x], Var[x̂|x]) of the noisy quantizer, each of the shape of x.

    E = Σ_i p_i g_i and Var = Σ_i p_i (g_i - E)², p = :func:`grid_probabilities`.
    For clamp tails E[x̂|x] = g_0 + α Σ_k F(x - b_k) (THEORY.md §3); its
    derivative is the principled straight-through slope.  With uniform noise
    of width α it is clip(x, g_0, g_{K-1}) and Var = α² t(1 - t).
    """
    p = grid_probabilities(x, grid, noise, tails)
    points = grid.points_like(x)
    mean = (p * points).sum(-1)
    var = (p * (points - mean.unsqueeze(-1)) ** 2).sum(-1)
    return mean, var
