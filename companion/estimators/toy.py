"""The toy Bernoulli problem: every gradient estimator against its closed form.

Minimise E[(z - t)²] over the logit φ, z ~ Bernoulli(p), p = σ(φ).  With
f(z) = (z - t)² the true gradient is

    g = dE/dφ = p(1-p)·(f(1) - f(0)) = (1 - 2t)·p(1-p)           (THEORY.md §5)

:func:`gradient_samples` draws n independent single-sample estimates ĝ (one
random draw each); :func:`moments` gives E[ĝ] and Var[ĝ] exactly (closed
forms, or a 1-D integral over the logistic noise for the relaxed methods).

======================  ==========================================================
method                  single-sample estimate ĝ
======================  ==========================================================
``"exact"``             g (no randomness)
``"reinforce"``         f(z)·(z - p)      score function, ∂φ log p(z) = z - p (Williams 1992)
``"st"``                f'(z)·σ'(φ) = 2(z - t)·p(1-p)   straight-through (Bengio et al. 2013)
``"arm"``               [f(1[u > σ(-φ)]) - f(1[u < σ(φ)])]·(u - ½), u ~ U(0,1)  (Yin & Zhou 2019, eq. 5)
``"disarm"``            ½[f(b) - f(b̃)]·(-1)^b̃·1[b ≠ b̃]·σ(|φ|), b = 1[u < p], b̃ = 1[1-u < p]
                        (Dong, Mnih & Tucker 2020, eq. 7)
``"concrete"``          d/dφ f(z̃), z̃ = σ((φ + L)/τ), L ~ Logistic(0,1)  (Maddison et al. 2017)
``"st-gumbel"``         forward z = 1[φ + L > 0], backward the concrete slope: 2(z - t)·z̃(1-z̃)/τ
                        (Jang et al. 2017, "straight-through Gumbel-softmax")
======================  ==========================================================

Only REINFORCE, ARM and DisARM are unbiased.  ST's mean is 2(p - t)p(1-p): it
vanishes at p = t, a spurious fixed point (the optimum is p = 0 for t < ½).
"""
from __future__ import annotations

import math

import torch

from .._checks import check_choice, check_finite, check_generator, check_int, check_positive

METHODS = ("exact", "reinforce", "st", "arm", "disarm", "concrete", "st-gumbel")


def _f(z, t):
    return (z - t) ** 2


def _uniform(n, generator):
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    eps = torch.finfo(torch.float64).eps
    return u.clamp(eps, 1 - eps)


def _exact(phi, t, tau, n, generator):
    p = torch.sigmoid(phi)
    return ((1 - 2 * t) * p * (1 - p)).expand(n).clone()


def _reinforce(phi, t, tau, n, generator):
    p = torch.sigmoid(phi)
    z = (_uniform(n, generator) < p).double()
    return _f(z, t) * (z - p)


def _st(phi, t, tau, n, generator):
    p = torch.sigmoid(phi)
    z = (_uniform(n, generator) < p).double()
    return 2 * (z - t) * p * (1 - p)


def _arm(phi, t, tau, n, generator):
    u = _uniform(n, generator)
    z1 = (u > torch.sigmoid(-phi)).double()
    z2 = (u < torch.sigmoid(phi)).double()
    return (_f(z1, t) - _f(z2, t)) * (u - 0.5)


def _disarm(phi, t, tau, n, generator):
    u = _uniform(n, generator)
    p = torch.sigmoid(phi)
    b, b_tilde = (u < p).double(), (1 - u < p).double()
    sign = 1 - 2 * b_tilde  # (-1)^b̃
    return 0.5 * (_f(b, t) - _f(b_tilde, t)) * sign * (b != b_tilde).double() * torch.sigmoid(phi.abs())


def _logistic(n, generator):
    u = _uniform(n, generator)
    return torch.log(u) - torch.log1p(-u)


def _concrete(phi, t, tau, n, generator):
    y = (phi + _logistic(n, generator)) / tau
    z_soft = torch.sigmoid(y)
    return 2 * (z_soft - t) * torch.sigmoid(y) * torch.sigmoid(-y) / tau


def _st_gumbel(phi, t, tau, n, generator):
    y = (phi + _logistic(n, generator)) / tau
    z = (y > 0).double()
    return 2 * (z - t) * torch.sigmoid(y) * torch.sigmoid(-y) / tau


_SAMPLERS = {
    "exact": _exact,
    "reinforce": _reinforce,
    "st": _st,
    "arm": _arm,
    "disarm": _disarm,
    "concrete": _concrete,
    "st-gumbel": _st_gumbel,
}


def _check_args(method, logit, target, temperature):
    check_choice("method", method, METHODS)
    logit = float(check_finite("logit", logit))
    target = float(check_finite("target", target))
    temperature = float(check_positive("temperature", temperature))
    return logit, target, temperature


def gradient_samples(method: str, logit, target, n: int, temperature=1.0, generator: torch.Generator | None = None):
    """n single-sample estimates of d/dφ E[(z - target)²], z ~ Bernoulli(σ(φ)), φ = ``logit``.

    Args:
        method: one of :data:`METHODS`.
        logit: φ (float).
        target: t (float; the literature uses t ∈ {0.45, 0.49, 0.499}).
        n: number of independent estimates (1..10**8).
        temperature: τ > 0 of "concrete" and "st-gumbel" (ignored by the others).
        generator: torch.Generator for reproducible draws.

    Returns:
        float64 tensor of shape [n].
    """
    logit, target, temperature = _check_args(method, logit, target, temperature)
    check_int("n", n, 1, 10**8)
    check_generator("generator", generator)
    phi = torch.tensor(logit, dtype=torch.float64)
    return _SAMPLERS[method](phi, target, temperature, n, generator)


def true_gradient(logit, target) -> float:
    """g = (1 - 2t)·σ(φ)(1 - σ(φ))."""
    p = _sigmoid(float(check_finite("logit", logit)))
    return (1 - 2 * float(check_finite("target", target))) * p * (1 - p)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def moments(method: str, logit, target, temperature=1.0) -> tuple[float, float]:
    """(E[ĝ], Var[ĝ]) of one estimate of ``method``, exactly.

    Closed forms (p = σ(φ), d = f(1) - f(0) = 1 - 2t, g = d·p(1-p), c = |p - ½|):

    * exact:     (g, 0)
    * reinforce: (g, p(1-p)[(1-p)(1-t)⁴ + p t⁴] - g²); at φ = 0: ((1-t)⁴ + t⁴)/8 - g²
    * st:        (2(p - t)p(1-p), 4p³(1-p)³); at φ = 0 the variance is 1/16
    * arm:       ĝ = d·|u - ½|·1[|u - ½| > c], so (g, d²(1/12 - 2c³/3) - g²); (1-2t)²/48 at φ = 0
    * disarm:    ĝ = ½dσ(|φ|)·1[b ≠ b̃], P(b ≠ b̃) = q = 2 min(p, 1-p): (g, (½dσ(|φ|))² q(1-q)); 0 at φ = 0
    * concrete, st-gumbel: E[h(L)] and Var by numerical integration over the
      logistic density (scipy.integrate.quad, split at the kink L = -φ); at
      τ = 1, φ = 0 the concrete mean is (1 - 2t)/6 = (2/3)g.
    """
    logit, t, tau = _check_args(method, logit, target, temperature)
    p = _sigmoid(logit)
    d = 1 - 2 * t
    g = d * p * (1 - p)
    if method == "exact":
        return g, 0.0
    if method == "reinforce":
        return g, p * (1 - p) * ((1 - p) * (1 - t) ** 4 + p * t**4) - g**2
    if method == "st":
        return 2 * (p - t) * p * (1 - p), 4 * (p * (1 - p)) ** 3
    if method == "arm":
        c = abs(p - 0.5)
        return g, d**2 * (1 / 12 - 2 * c**3 / 3) - g**2
    if method == "disarm":
        q = 2 * min(p, 1 - p)
        return g, (0.5 * d * _sigmoid(abs(logit))) ** 2 * q * (1 - q)
    return _relaxed_moments(method, logit, t, tau)


def _relaxed_moments(method, phi, t, tau):
    from scipy import integrate

    def estimate(l):
        y = (phi + l) / tau
        s = _sigmoid(y)
        z = s if method == "concrete" else float(y > 0)
        return 2 * (z - t) * s * (1 - s) / tau

    def density(l):
        s = _sigmoid(l)
        return s * (1 - s)

    def expect(h):
        kink = -phi
        left = integrate.quad(lambda l: h(l) * density(l), -math.inf, kink, limit=200, epsabs=1e-13)[0]
        right = integrate.quad(lambda l: h(l) * density(l), kink, math.inf, limit=200, epsabs=1e-13)[0]
        return left + right

    mean = expect(estimate)
    second = expect(lambda l: estimate(l) ** 2)
    return mean, max(second - mean**2, 0.0)
