"""The principled straight-through for logistic noise and truncated tails, fused: "noisy-st" in a few passes.

Shekhovtsov & Yanush (2021): forward a sample x̂ ~ p(x̂|x), backward the
derivative of E[x̂|x].  For logistic noise of scale s and RQ's truncated tails
(eq. 4: x̃ truncated to L < x̃ ≤ U, L = g_0 - α/2, U = g_{K-1} + α/2) both have
closed forms over the K - 1 thresholds b_j = β + α·m_j, m_j = k_min + j + 1/2
(j = 0..K-2).  With u_j = (x - b_j)/s, u_L = (x - L)/s, S the sigmoid, w = α/s
and F(b) - F(a) = S(b)·S(-a)·(1 - e^{a-b}) for the logistic cdf,

    P(x̂ > g_j | x) = (F(U - x) - F(b_j - x)) / (F(U - x) - F(L - x)) = c_j·R_j,
    R_j = exp(log S(u_j) - log S(u_L)),  c_j = (1 - e^{-w(K-1-j)}) / (1 - e^{-wK}),
    E[x̂|x] = g_0 + α Σ_j c_j R_j.

Both passes work from the exceedance probabilities P_j = P(x̂ > g_j | x),
a [K-1, N] tensor with the levels first.  The forward pass draws the sample
from the nested events {x̂ > g_j}: with one uniform r per element, x̂ =
g_J, J = #{j : r < P_j} (P_j decreases in j, so P(J > j) = P_j exactly).  The
backward pass evaluates the derivatives of E for x, α, β and s in closed
form (:func:`mean_backward`) from the tensors the forward pass kept.  No
K-vector of cell probabilities with its autograd graph is built, which is
what makes the categorical route of :func:`companion.estimators.quantize`
several times slower.  (Clamped tails, E[x̂|x] = g_0 + α Σ_j S(u_j), take
:mod:`companion.thresholds`, which also serves Gaussian noise and moment
propagation.)  The formulas are tested against autograd of
:func:`companion.rounding.quantized_moments`, which shares no code with them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..grids import UniformGrid
from ..noise import Logistic
from ..rounding import truncation_reach


def _levels(grid: UniformGrid, x: torch.Tensor):
    """(m, k_min, k_max): m_j = k_min + j + 1/2, j = 0..K-2, a [K-1] tensor."""
    k_min, k_max = grid.level_range
    return torch.arange(k_min, k_max, dtype=x.dtype, device=x.device) + 0.5, k_min, k_max


def _clamp_to(x, alpha, beta, reach, k_min, k_max):
    """(x clamped to [L - reach, U + reach], inside mask), L = g_0 - α/2, U = g_{K-1} + α/2."""
    low = beta + alpha * (k_min - 0.5) - reach
    high = beta + alpha * (k_max + 0.5) + reach
    return torch.minimum(torch.maximum(x, low), high), (x >= low) & (x <= high)


def truncation_constants(w, count: int):
    """(c, dc/dw), each [K-1]: c_j = (1 - e^{-w(K-1-j)}) / (1 - e^{-wK}), j = 0..K-2 (count = K - 1),

    dc_j/dw = c_j [(K-1-j)/(e^{w(K-1-j)} - 1) - K/(e^{wK} - 1)].
    """
    a = torch.arange(count, 0, -1, dtype=w.dtype, device=w.device)  # K-1-j
    K = count + 1
    c = torch.expm1(-w * a) / torch.expm1(-w * K)
    return c, c * (a / torch.expm1(w * a) - K / torch.expm1(w * K))


def exceedance(x, grid: UniformGrid, noise: Logistic):
    """P(x̂ > g_j | x) = c_j R_j for j = 0..K-2, shape [K-1, *x.shape] (levels first), and the intermediates of the backward pass.

    Returns (P, state); ``state`` holds what :func:`mean_backward` needs (u_0, u, u_L, R, dc/dw and
    the mask of x within :func:`companion.rounding.truncation_reach` of the grid, where x is clamped).
    """
    alpha, beta, s = grid.scale_like(x), grid.offset_like(x), noise.scale_like(x)
    m, k_min, k_max = _levels(grid, x)
    m = m.reshape(-1, *(1,) * x.dim())
    x, inside = _clamp_to(x, alpha, beta, truncation_reach(s, alpha), k_min, k_max)
    w = alpha / s
    u0 = (x - beta) / s
    u = u0 - w * m  # [K-1, ...]
    u_low = u0 - w * (k_min - 0.5)
    c, dc = truncation_constants(w, k_max - k_min)
    ratio = torch.exp(F.logsigmoid(u) - F.logsigmoid(u_low))
    prob = c.reshape(m.shape) * ratio
    return prob, {"u0": u0, "u": u, "u_low": u_low, "ratio": ratio, "dc": dc, "inside": inside}


def sample_from_exceedance(prob, grid: UniformGrid, x, generator=None):
    """x̂ = g_J, J = #{j : r < P_j}, r ~ U[0, 1) per element: an exact sample when P_j = P(x̂ > g_j) decreases in j."""
    alpha, beta = grid.scale_like(x), grid.offset_like(x)
    k_min, _ = grid.level_range
    r = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    count = (r < prob).sum(0, dtype=x.dtype)
    return alpha * (k_min + count) + beta


def mean_backward(grad, prob, state, grid: UniformGrid, noise: Logistic, params: bool = True):
    """Gradients of Σ_n grad_n·E[x̂|x_n] for x, α, β, s: (grad_x, grad_α, grad_β, grad_s) (the last three None if not ``params``).

    Per element, with u_j = u_0 - w·m_j, u_0 = (x - β)/s, P_j = c_j R_j, q_j = S(-u_j), q_L = S(-u_L),
    m_L = k_min - 1/2, c'_j = dc_j/dw, and ∂E/∂β = 1 - ∂E/∂x:

        ∂E/∂x = w Σ_j P_j (q_j - q_L),
        ∂E/∂α = k_min + Σ_j P_j - w Σ_j P_j (m_j q_j - m_L q_L) + w Σ_j R_j c'_j,
        ∂E/∂s = -w Σ_j P_j (u_j q_j - u_L q_L) - w² Σ_j R_j c'_j.

    The sums over elements are matrix-vector products [K-1, N]·[N]: no
    per-element ∂E/∂α or ∂E/∂s is formed.  ``prob``, ``state``: from :func:`exceedance`.
    """
    alpha, s = grid.scale_like(grad), noise.scale_like(grad)
    m, k_min, _ = _levels(grid, grad)
    w = alpha / s
    shape, g = grad.shape, grad.reshape(-1)
    prob = prob.reshape(len(m), -1)
    u0, inside = state["u0"].reshape(-1), state["inside"].reshape(-1)
    u_low = state["u_low"].reshape(-1)
    q_low = torch.sigmoid(-u_low)
    pq = prob * torch.sigmoid(-state["u"].reshape(len(m), -1))
    total, total_q = prob.sum(0), pq.sum(0)
    grad_x = g * (w * (total_q - q_low * total)) * inside
    if not params:
        return grad_x.reshape(shape), None, None, None
    pq_g, ratio_g = torch.mv(pq, g), torch.mv(state["ratio"].reshape(len(m), -1), g)
    low_term = q_low * total
    dc_ratio = state["dc"] @ ratio_g
    grad_alpha = (k_min * g.sum() + torch.dot(g, total)
                  - w * (m @ pq_g - (k_min - 0.5) * torch.dot(g, low_term)) + w * dc_ratio)
    # Σ_j P_j u_j q_j = u_0 Σ_j P_j q_j - w Σ_j m_j P_j q_j
    grad_s = -w * (torch.dot(g, u0 * total_q) - w * (m @ pq_g) - torch.dot(g, u_low * low_term)) - w * w * dc_ratio
    grad_beta = g.sum() - grad_x.sum()
    return grad_x.reshape(shape), grad_alpha, grad_beta, grad_s


def logistic_mean(x, grid: UniformGrid, noise: Logistic) -> torch.Tensor:
    """E[x̂|x] = g_0 + α Σ_j P(x̂ > g_j | x), from :func:`exceedance` (differentiable; for tests and teaching)."""
    prob, _ = exceedance(x, grid, noise)
    k_min, _ = grid.level_range
    return grid.scale_like(x) * (k_min + prob.sum(0)) + grid.offset_like(x)


def logistic_sample(x, grid: UniformGrid, noise: Logistic, generator=None) -> torch.Tensor:
    """A sample of the noisy quantizer, x̂ ~ p(x̂|x), shape of x, no gradient (:func:`sample_from_exceedance`)."""
    with torch.no_grad():
        prob, _ = exceedance(x, grid, noise)
        return sample_from_exceedance(prob, grid, x, generator)


class _LogisticStraightThrough(torch.autograd.Function):
    """Forward: a sample (:func:`sample_from_exceedance`).  Backward: the closed-form derivatives of E[x̂|x]."""

    @staticmethod
    def forward(ctx, x, alpha, beta, s, grid, noise, generator):
        prob, state = exceedance(x, grid, noise)
        ctx.prob, ctx.state = prob, state
        ctx.config = (grid.bits, grid.signed)
        ctx.save_for_backward(alpha, beta, s)
        return sample_from_exceedance(prob, grid, x, generator)

    @staticmethod
    def backward(ctx, grad):
        alpha, beta, s = ctx.saved_tensors
        bits, signed = ctx.config
        grid = UniformGrid(bits, scale=alpha.detach(), offset=beta.detach(), signed=signed)
        needs = ctx.needs_input_grad
        grads = mean_backward(grad.contiguous(), ctx.prob, ctx.state, grid, Logistic(s.detach()), params=any(needs[1:4]))
        ctx.prob = ctx.state = None
        return (*(g if need else None for g, need in zip(grads, needs[:4])), None, None, None)


def logistic_straight_through(x, grid: UniformGrid, noise: Logistic, generator=None) -> torch.Tensor:
    """"noisy-st" for logistic noise and truncated tails: a sample forward, ∂E[x̂|x] backward (x, α, β, s)."""
    alpha, beta, s = grid.scale_like(x), grid.offset_like(x), noise.scale_like(x)
    return _LogisticStraightThrough.apply(x, alpha, beta, s, grid, noise, generator)
