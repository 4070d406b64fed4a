"""The clamp-tail noisy quantizer through its exceedance events, summed over a window of thresholds.

With clamped tails x̂ = g_0 + α·N, N = #{k : X + ε > b_k}, over the K - 1 thresholds
b_k = α(k_min + k + 1/2) + β, k = 0..K-2 (THEORY.md §3).  The events are nested, so

    E N = Σ_k p_k,   E N² = Σ_k (2k + 1) p_k,   p_k = P(X + ε > b_k) = F((μ - b_k)/r),

for an input X ~ N(μ, v) (v = 0: a given x) and logistic (F = S, the sigmoid) or Gaussian
(F = Φ) noise of scale t, with the effective scale r = sqrt(t² + c·v): for Gaussian noise
c = 1 and this is exact; for logistic noise c is that of the logistic approximation of
THEORY.md §6 (exact at v = 0).

Only the W thresholds within z·r of μ are evaluated, z = 3 - log(machine epsilon) (19 in
float32, 39 in float64): the p_k below the window equal 1 and those above equal 0 to
working precision.  With j_0 thresholds below the window and i = 0..W-1 inside it,
N = j_0 + N', E N' = A = Σ_i p_i, E N'² = B = Σ_i (2i + 1) p_i and Var N = B - A²
(no j_0² to cancel).  At 8 bits a value meets tens of thresholds, not 255.  Tensors are
laid out thresholds first, [W, ...], so the sums are matrix products.  (For wide windows in
float32 the variance is summed in a cancellation-free form, see :func:`count_moments`.)

Two autograd functions share the forward sums and the closed-form backward pass:

* :func:`threshold_moments`: (E x̂, Var x̂) for a Gaussian input, the clamp-tail quantizer
  layer of moment propagation (AP2, ``companion.moments``);
* :func:`threshold_straight_through`: "noisy-st" with clamp tails, a sample x̂ = round-and-clip
  of x + ε in the forward pass and the derivative of E[x̂|x] in the backward pass
  (Shekhovtsov & Yanush's principled straight-through; ``companion.estimators``).

Both are tested against autograd of ``companion.rounding.quantized_moments``, which shares
no code with them.
"""
from __future__ import annotations

import math

import torch

from .grids import UniformGrid
from .noise import Gaussian, Logistic, Noise, normal_pdf
from .perf import fusable
from .rounding import round_to_grid


U_LIMIT = 1e30
STEP_LIMIT = 1e35
"""u_0 is limited to ±1e30 and α/r to 1e35, so that u_i stays finite in float32 for astronomic x or a
vanishing noise scale (beyond these p_i is 0 or 1 and q_i = 0, so u_0·S_n is 0, not inf·0)."""


CANCELLATION = 1e-5
"""The largest relative rounding error W²·eps accepted from Var N' = B - A² (float32: windows up to 9 thresholds)."""


def window_z(dtype) -> float:
    """z = 3 - log(machine epsilon): beyond z effective scales every p_k is 0 or 1 to working precision."""
    return 3.0 - math.log(torch.finfo(dtype).eps)


@torch.no_grad()
def window(mean: torch.Tensor, half: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, level_range):
    """(j_0, i): the first threshold of each value's window (shape of ``mean``, or a 0-d zero when the
    window is the whole grid) and i = 0..W-1 as a [W, 1, ...] tensor, W ≤ K - 1.

    The W = ceil(2·max(half)/α) + 2 thresholds starting at j_0 cover mean ± half for every value.
    """
    k_min, k_max = level_range
    count_all = k_max - k_min  # K - 1 thresholds
    width = int(math.ceil(2 * float(half.max()) / float(alpha.min()))) + 2 if half.numel() else count_all
    shape = (-1,) + (1,) * mean.dim()
    if width >= count_all:
        return (torch.zeros((), dtype=mean.dtype, device=mean.device),
                torch.arange(count_all, dtype=mean.dtype, device=mean.device).reshape(shape))
    first = alpha * (k_min + 0.5) + beta  # b_0
    start = torch.floor((mean - half - first) / alpha).clamp(0, count_all - width)
    return start, torch.arange(width, dtype=mean.dtype, device=mean.device).reshape(shape)


def supports(x: torch.Tensor, grid: UniformGrid, noise: Noise | None) -> bool:
    """Whether the closed forms here apply: logistic or Gaussian noise, float32/64, per-tensor α, β and noise scale."""
    return (isinstance(noise, (Logistic, Gaussian)) and x.dtype in (torch.float32, torch.float64)
            and all(t.numel() == 1 for t in (grid.scale_like(x), grid.offset_like(x), noise.scale_like(x))))


def _weighted_sums(values, *weights):
    """Σ_i w_i values_i over the leading axis for each weight vector w [W]: values [W, ...] → tuple of [N].

    One matrix-vector product per weight vector (faster on CPU than one [k, W]·[W, N] product when W is small).
    """
    flat = values.reshape(len(values), -1).t()
    return tuple(torch.mv(flat, w) for w in weights)


def _forward_sums(mean, r, alpha, beta, level_range, gaussian, variance=True):
    """The window's exceedance probabilities and their sums.

    Returns (j_0, u_0, step, p, A, V): u_i = u_0 - i·step with u_0 = (μ - b_{j_0})/r and step = α/r,
    p_i = F(u_i) [W, ...], and (A, V) from :func:`count_moments` (V None unless ``variance``).
    """
    k_min, _ = level_range
    start, i = window(mean, window_z(mean.dtype) * r, alpha, beta, level_range)
    u0 = ((mean - (alpha * (k_min + start + 0.5) + beta)) / r).clamp(-U_LIMIT, U_LIMIT)
    step = (alpha / r).clamp_max(STEP_LIMIT)
    u = torch.addcmul(u0, i, step, value=-1.0)  # [W, ...]
    cdf = torch.special.ndtr if gaussian else torch.sigmoid
    p = cdf(u)
    if not variance:
        return start, u0, step, p, p.sum(0), None
    A, V = count_moments(p, lambda: cdf(u.neg_()))
    return start, u0, step, p, A, V


def count_moments(p: torch.Tensor, below) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, V) = (E N', Var N') of the number N' of the window's thresholds exceeded, from p [W, ...] → [...].

    A = Σ p_i and V = B - A², B = Σ (2i + 1) p_i.  B - A² cancels up to W² in the level units (a
    relative error of W²·eps): above :data:`CANCELLATION` V is summed instead in the cancellation-free
    form of nested events, V = Σ_i p_i (2 Q_i - q̄_i), q̄_i = 1 - p_i = ``below()`` [W, ...] (computed
    only then, and accurately where p_i ≈ 1), Q_i = Σ_{k ≤ i} q̄_k (= Σ_i p_i q̄_i + 2 Σ_{k<i} p_i q̄_k,
    all terms ≥ 0).  Differentiable: the generic (autograd) path of ``companion.moments`` uses it too.
    """
    w = len(p)
    if w * w * torch.finfo(p.dtype).eps <= CANCELLATION:
        i = torch.arange(w, dtype=p.dtype, device=p.device)
        A, B = (s.reshape(p.shape[1:]) for s in _weighted_sums(p, torch.ones_like(i), 2 * i + 1))
        return A, B - A * A
    q = below()
    return p.sum(0), (p * (2 * q.cumsum(0) - q)).sum(0)


def _backward(grad_m, grad_v, alpha, t, r, start, u0, step, p, A, V, k_min, gaussian, needs):
    """Gradients (μ, r, α, β, t) of Σ[g_m·m + g_V·Var] for m = α(k_min + j_0 + A) + β, Var = α²V, V = B - A².

    ∂/∂p_i = a_0 + a_1 i with a_0 = g_m α + g_V α²(1 - 2A), a_1 = 2 g_V α²;  dp_i = q_i du_i with
    q = p(1 - p) (logistic) or φ(u) (Gaussian), du_i = (dμ - db_i - u_i dr)/r.  With
    S_n = Σ_i i^n q_i and T_n = Σ_i i^n q_i u_i = u_0 S_n - step·S_{n+1} (u_i = u_0 - i·step):

        ∂/∂μ = (a_0 S_0 + a_1 S_1)/r,   ∂/∂r = -(a_0 T_0 + a_1 T_1)/r,   ∂/∂β = Σ g_m - Σ ∂/∂μ,
        ∂/∂α = Σ [g_m (k_min + j_0 + A) + 2 g_V α V] - Σ [(k_min + j_0 + 1/2) ∂/∂μ + (a_0 S_1 + a_1 S_2)/r],
        ∂/∂t = t Σ (∂/∂r)/r.

    ``needs``: which of (α, β, t) need a gradient (the others are returned as None).  ``grad_v`` None:
    the mean alone (the straight-through estimator); r and step may then be one scale for all values.
    """
    w = len(p)
    i = torch.arange(w, dtype=p.dtype, device=p.device)
    if gaussian:
        q = normal_pdf(torch.addcmul(u0, i.reshape((-1,) + (1,) * u0.dim()), step, value=-1.0))
    else:
        q = torch.addcmul(p, p, p, value=-1.0)  # S' = S(1 - S)
    powers = (torch.ones_like(i), i, i * i)
    S = _weighted_sums(q, *powers[:2 if grad_v is None else 3])
    g_m, A_f, u0_f = grad_m.reshape(-1), A.reshape(-1), u0.reshape(-1)
    r_f, step_f = r.reshape(-1), step.reshape(-1)
    grad_r = grad_alpha = grad_beta = grad_t = None
    if grad_v is None:
        grad_mu, grad_r, slope_0 = _mean_gradients(g_m, alpha, r_f, u0_f, step_f, *S, needs[2])
    else:
        grad_mu, grad_r, slope_0, slope_1 = _moment_gradients(g_m, grad_v.reshape(-1), alpha, r_f, u0_f, step_f, A_f, *S)
    if needs[0]:
        level = k_min + start.reshape(-1) + 0.5
        grad_alpha = (g_m * (level + A_f - 0.5)).sum() - (level * grad_mu).sum() - slope_0.sum()
        if grad_v is not None:
            grad_alpha = grad_alpha + 2 * alpha * torch.dot(grad_v.reshape(-1), V.reshape(-1)) - slope_1.sum()
        grad_alpha = grad_alpha.reshape(alpha.shape)
    if needs[1]:
        grad_beta = (g_m.sum() - grad_mu.sum()).reshape(alpha.shape)
    if needs[2]:
        grad_t = (t * (grad_r / r_f).sum()).reshape(t.shape)
    return grad_mu.reshape(grad_m.shape), grad_r, grad_alpha, grad_beta, grad_t


@fusable
def _mean_gradients(g_m, alpha, r, u0, step, S0, S1, need_r):
    """The mean's per-value terms of :func:`_backward` (a_1 = 0): ∂/∂μ, ∂/∂r (None unless ``need_r``)
    and a_0 S_1/r."""
    a0 = g_m * alpha
    grad_r = -(a0 * (u0 * S0 - step * S1)) / r if need_r else None
    return a0 * S0 / r, grad_r, a0 * S1 / r


@fusable
def _moment_gradients(g_m, g_v, alpha, r, u0, step, A, S0, S1, S2):
    """The per-value terms of :func:`_backward` for mean and variance: ∂/∂μ, ∂/∂r, a_0 S_1/r and a_1 S_2/r."""
    alpha2 = alpha * alpha
    a0 = g_m * alpha + g_v * alpha2 * (1 - 2 * A)
    a1 = 2 * alpha2 * g_v
    T0, T1 = u0 * S0 - step * S1, u0 * S1 - step * S2
    return (a0 * S0 + a1 * S1) / r, -(a0 * T0 + a1 * T1) / r, a0 * S1 / r, a1 * S2 / r


def effective_scale(t, var, slope, var_floor=0.0):
    """r = sqrt(max(t² + slope·v, var_floor)), never below the smallest normal number (so 1/r is finite).

    X + ε ≈ μ + r·Z for X ~ N(μ, v) and noise of scale t (THEORY.md §6): Gaussian noise, slope 1, Z
    standard normal (exact); logistic noise, slope c, Z standard logistic (the logistic approximation).
    """
    return torch.sqrt((t * t + slope * var.clamp_min(0)).clamp_min(var_floor)).clamp_min(torch.finfo(var.dtype).tiny)


class _ThresholdMoments(torch.autograd.Function):
    """(E x̂, Var x̂) = (α(k_min + j_0 + A) + β, α²(B - A²)) with the backward pass of :func:`_backward`."""

    @staticmethod
    def forward(ctx, mean, var, alpha, beta, t, level_range, gaussian, c):
        slope = 1.0 if gaussian else c
        r = effective_scale(t, var, slope)
        start, u0, step, p, A, V = _forward_sums(mean, r, alpha, beta, level_range, gaussian)
        ctx.save_for_backward(alpha, t, r, start, u0, step, p, A, V)
        ctx.config = (level_range[0], gaussian, slope)
        return alpha * (level_range[0] + start + A) + beta, alpha * alpha * V.clamp_min(0)

    @staticmethod
    def backward(ctx, grad_m, grad_v):
        alpha, t, r, start, u0, step, p, A, V = ctx.saved_tensors
        k_min, gaussian, slope = ctx.config
        needs = ctx.needs_input_grad
        grad_mu, grad_r, grad_alpha, grad_beta, grad_t = _backward(
            grad_m, grad_v, alpha, t, r, start, u0, step, p, A, V, k_min, gaussian, needs[2:5])
        grad_var = (grad_r * (0.5 * slope) / r.reshape(-1)).reshape(grad_m.shape) if needs[1] else None
        return grad_mu, grad_var, grad_alpha, grad_beta, grad_t, None, None, None


def threshold_moments(mean, var, grid: UniformGrid, noise: Noise, c: float):
    """(E x̂, Var x̂) of the clamp-tail noisy quantizer for X ~ N(mean, var); shapes [...] → ([...], [...]).

    ``c``: the logistic approximation's constant (logistic noise only; see the module docstring).
    Requires :func:`supports`.
    """
    return _ThresholdMoments.apply(mean, var, grid.scale_like(mean), grid.offset_like(mean), noise.scale_like(mean),
                                   grid.level_range, isinstance(noise, Gaussian), c)


class _ThresholdStraightThrough(torch.autograd.Function):
    """Forward: round-and-clip of x + ε (an exact sample with clamped tails).  Backward: ∂E[x̂|x] (x, α, β, t)."""

    @staticmethod
    def forward(ctx, x, alpha, beta, t, grid, noise, generator):
        ctx.save_for_backward(x, alpha, beta, t)
        ctx.config = (grid.level_range, isinstance(noise, Gaussian))
        return round_to_grid(x + noise.sample(x.shape, generator=generator, dtype=x.dtype, device=x.device), grid)

    @staticmethod
    def backward(ctx, grad):
        x, alpha, beta, t = ctx.saved_tensors
        level_range, gaussian = ctx.config
        r = t.reshape(())  # one scale for all values (broadcast)
        start, u0, step, p, A, _ = _forward_sums(x, r, alpha, beta, level_range, gaussian, variance=False)
        needs = ctx.needs_input_grad
        grad_x, _, grad_alpha, grad_beta, grad_t = _backward(
            grad.contiguous(), None, alpha, t, r, start, u0, step, p, A, None, level_range[0], gaussian, needs[1:4])
        return grad_x if needs[0] else None, grad_alpha, grad_beta, grad_t, None, None, None


def threshold_straight_through(x, grid: UniformGrid, noise: Noise, generator=None) -> torch.Tensor:
    """"noisy-st" with clamp tails: x̂ = round-and-clip(x + ε) forward, ∂E[x̂|x] backward.  Requires :func:`supports`."""
    return _ThresholdStraightThrough.apply(x, grid.scale_like(x), grid.offset_like(x), noise.scale_like(x),
                                           grid, noise, generator)


def threshold_mean(x, grid: UniformGrid, noise: Noise) -> torch.Tensor:
    """E[x̂|x] = g_0 + α Σ_k F((x - b_k)/t) with clamp tails, differentiable in closed form.  Requires :func:`supports`."""
    return threshold_moments(x, torch.zeros_like(x), grid, noise, 0.0)[0]
