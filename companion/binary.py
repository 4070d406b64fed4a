"""Stochastic binary units and networks, and their gradient estimators.

**Unit** (Shekhovtsov & Yanush 2021, §2; THEORY.md §4).  With a noise Z of
symmetric cdf F,

    x = sign(a - Z),   P(x = +1) = F(a),   E[x | a] = 2F(a) - 1,

and the exact derivative of an expectation is ∂_a E f(x) = F'(a)[f(+1) - f(-1)].
Convention: sign(0) = +1 (a - Z = 0 has probability zero for continuous Z,
but a deterministic sign(0) must pick a side; torch.sign(0) = 0 is not a
binary value).

**Straight-through as the derivative of the mean**: forward the sample,
backward ∂E[x|a]/∂a = 2F'(a).  Logistic noise gives 2σ'(a), the slope of
tanh(a/2); U[-1, 1] noise gives 1[|a| ≤ 1], the hardtanh STE of BinaryNet;
the identity STE (slope 1 everywhere) is the mean of no noise distribution.

**Network** (:class:`StochasticNet`): real weights, stochastic layers
h_k = Q(W_k h_{k-1} + b_k - Z) (Q = sign, or round-to-grid for a multi-level
grid with the noisy-quantization categorical of THEORY.md §3, clamped tails),
a linear head and the NLL.  Optionally the weights are stochastic binary too,
w = sign(η - Z) with latent real η.

**Estimators** (:data:`ESTIMATORS`, a registry of small functions): each
returns a *surrogate* scalar whose autograd gradient is one single-sample
estimate of ∇_θ E[NLL]; :func:`gradient_estimate` evaluates it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_generator, check_int, check_positive, check_tensor
from .grids import UniformGrid
from .noise import Noise, Uniform, make_noise
from .rounding import _check_noise, log_grid_probabilities, quantized_moments, round_to_grid

SIGN_AT_ZERO = 1.0


# ---------------------------------------------------------------- single units
def sign(t: torch.Tensor) -> torch.Tensor:
    """sign(t) ∈ {-1, +1} with sign(0) = +1."""
    return torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))


def binary_sample(a: torch.Tensor, noise: Noise, generator: torch.Generator | None = None) -> torch.Tensor:
    """x = sign(a - Z), Z ~ noise, elementwise; P(x = +1) = F(a)."""
    check_tensor("a", a)
    _check_noise(noise)
    check_generator("generator", generator)
    return sign(a - noise.sample(a.shape, generator=generator, dtype=a.dtype, device=a.device))


def binary_mean(a: torch.Tensor, noise: Noise) -> torch.Tensor:
    """E[x | a] = 2F(a) - 1 (tanh(a/2) for Logistic(1))."""
    check_tensor("a", a)
    return 2 * _check_noise(noise).cdf(a) - 1


def st_slope(a: torch.Tensor, noise: Noise) -> torch.Tensor:
    """The principled straight-through slope ∂E[x|a]/∂a = 2F'(a)."""
    check_tensor("a", a)
    return 2 * _check_noise(noise).pdf(a)


# ---------------------------------------------------------------- network
def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h Wᵀ + b, also for replicated parameters: h [..., N, i], W [..., o, i], b [..., o] → [..., N, o]."""
    return torch.matmul(h, w.transpose(-1, -2)) + b.unsqueeze(-2)


def nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point NLL -log softmax(logits)[y]: logits [..., N, C], y [N] int64 → [..., N]."""
    onehot = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
    return -(F.log_softmax(logits, dim=-1) * onehot).sum(-1)


class StochasticNet(nn.Module):
    """Layered stochastic network with a linear head; binary units by default.

    Args:
        sizes: (n_0, n_1, ..., n_L): input size, then the widths of the stochastic layers.
        num_outputs: C, the number of classes (logits of the head).
        grid: the unit levels; default ``UniformGrid.binary()`` = {-1, +1}.
        noise: "logistic", "gaussian" or "uniform"; ``noise_scale`` its scale / std / width.
        stochastic_weights: also sample the hidden weights, w = sign(η - Z) (binary grid only).
        init_gain: W ~ N(0, init_gain²/n_in), b = 0, drawn with ``generator``.

    Shapes: x [N, n_0] → logits [N, C]; float64 throughout.  The computations
    take the parameters explicitly as ``theta`` = [(W_1, b_1), ..., (W_L, b_L),
    (W_out, b_out)], each optionally with a leading replica axis R, so that R
    independent single-sample estimates come out of one backward pass.
    """

    def __init__(self, sizes: Sequence[int], num_outputs: int, *, grid: UniformGrid | None = None,
                 noise: str = "logistic", noise_scale=1.0, stochastic_weights: bool = False,
                 init_gain: float = 2.0, generator: torch.Generator | None = None):
        super().__init__()
        if isinstance(sizes, (str, bytes)) or len(sizes) < 2:
            raise ValueError(f"sizes must list the input size and at least one stochastic layer, got {sizes!r}")
        sizes = [check_int("sizes[i]", s, 1, 4096) for s in sizes]
        check_int("num_outputs", num_outputs, 1, 100000)
        check_positive("init_gain", init_gain)
        check_generator("generator", generator)
        self.grid = UniformGrid.binary() if grid is None else grid
        if not isinstance(self.grid, UniformGrid):
            raise TypeError(f"grid must be a UniformGrid or None, got {type(self.grid).__name__}")
        self.noise = make_noise(noise, noise_scale)
        self.stochastic_weights = bool(stochastic_weights)
        if self.stochastic_weights and not self.is_binary:
            raise ValueError("stochastic_weights=True needs the binary grid (grid=None)")
        self.widths = sizes[1:]
        self.hidden = nn.ModuleList(nn.Linear(i, o, dtype=torch.float64) for i, o in zip(sizes[:-1], sizes[1:]))
        self.output = nn.Linear(sizes[-1], num_outputs, dtype=torch.float64)
        with torch.no_grad():
            for layer in [*self.hidden, self.output]:
                std = init_gain / math.sqrt(layer.in_features)
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64) * std)
                layer.bias.zero_()

    @property
    def is_binary(self) -> bool:
        return self.grid.num_points == 2

    def theta(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W_k, b_k) for the stochastic layers] + [(W_out, b_out)]: the module's own parameters."""
        return [(layer.weight, layer.bias) for layer in [*self.hidden, self.output]]

    # -- the enumerable-network interface of companion.estimators.exact ---------
    def levels(self) -> torch.Tensor:
        return self.grid.points_like(torch.empty(0, dtype=torch.float64))

    def layer_probabilities(self, k: int, h_prev: torch.Tensor) -> torch.Tensor:
        """p(h_k = g_i | h_{k-1}): [B, n_{k-1}] → [B, n_k, K] (clamped tails; binary: [F(-a), F(a)])."""
        if self.stochastic_weights:
            raise ValueError("exact enumeration does not cover stochastic weights (their states are shared by all data)")
        return torch.exp(log_grid_probabilities(self.hidden[k](h_prev), self.grid, self.noise, tails="clamp"))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.output(h)

    # -- units ---------------------------------------------------------------
    def sample_units(self, a: torch.Tensor, generator=None) -> torch.Tensor:
        """A hard sample: sign(a - Z) (binary) or round_G(a - Z) (multi-level, clamped), no gradient."""
        a = a.detach()
        if self.is_binary:
            return binary_sample(a, self.noise, generator)
        z = self.noise.sample(a.shape, generator=generator, dtype=a.dtype, device=a.device)
        return round_to_grid(a - z, self.grid)

    def unit_mean(self, a: torch.Tensor) -> torch.Tensor:
        """E[h | a]: 2F(a) - 1 (binary) or Σ_i p_i g_i (clamped tails)."""
        if self.is_binary:
            return binary_mean(a, self.noise)
        return quantized_moments(a, self.grid, self.noise, tails="clamp")[0]

    def unit_log_prob(self, a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """log p(h | a) elementwise, h a grid value (binary: log F(h·a), F symmetric)."""
        if self.is_binary:
            return self.noise.log_cdf(h * a)
        log_p = log_grid_probabilities(a, self.grid, self.noise, tails="clamp")
        k_min = self.grid.level_range[0]
        index = torch.round((h - self.grid.offset_like(h)) / self.grid.scale_like(h)).long() - k_min
        return log_p.gather(-1, index.unsqueeze(-1)).squeeze(-1)

    def weight(self, w: torch.Tensor, rule: Callable | None = None, generator=None) -> torch.Tensor:
        """The weight a layer uses: the latent η itself, or (stochastic weights) a sample / rule of η."""
        if not self.stochastic_weights:
            return w
        return self.sample_units(w, generator) if rule is None else rule(self, w, generator)

    @torch.no_grad()
    def sample_forward(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """Logits of one sampled path (no gradient): [N, n_0] → [N, C]."""
        *layers, (w_out, b_out) = self.theta()
        h = x
        for w, b in layers:
            h = self.sample_units(linear(h, self.weight(w, None, generator), b), generator)
        return linear(h, w_out, b_out)

    def mean_forward(self, x: torch.Tensor, theta=None) -> torch.Tensor:
        """AP1 mean-field logits: propagate E[h|a] only (tanh(a/2) for Logistic(1) binary units)."""
        *layers, (w_out, b_out) = self.theta() if theta is None else theta
        h = x
        for w, b in layers:
            h = self.unit_mean(linear(h, self.unit_mean(w) if self.stochastic_weights else w, b))
        return linear(h, w_out, b_out)


# ---------------------------------------------------------------- pathwise unit rules
# A rule maps pre-activations a to unit values h: the forward value is a
# sample (or a relaxation), the a-gradient is the estimator's.

def _rule_st(net, a, generator):
    """Principled ST: forward the sample, backward ∂E[h|a]/∂a (2F'(a) for binary units)."""
    mean = net.unit_mean(a)
    return net.sample_units(a, generator) + mean - mean.detach()


def _rule_hardtanh_st(net, a, generator):
    """Forward the sample, backward 1[g_0 ≤ a ≤ g_{K-1}] (hardtanh for ±1; clipped identity)."""
    points = net.grid.points_like(a)
    clipped = torch.where(a < points[0], points[0], torch.where(a > points[-1], points[-1], a))
    return net.sample_units(a, generator) + clipped - clipped.detach()


def _rule_identity_st(net, a, generator):
    """Forward the sample, backward 1: the identity STE (no noise has this mean)."""
    return net.sample_units(a, generator) + a - a.detach()


def _rule_mean(net, a, generator):
    """AP1: no sample, the mean E[h|a] itself."""
    return net.unit_mean(a)


def _rule_concrete(temperature):
    def rule(net, a, generator):
        """Binary Concrete: 2σ((a - Z)/(sτ)) - 1, → sign(a - Z) as τ → 0 (Maddison et al. 2017)."""
        z = net.noise.sample(a.shape, generator=generator, dtype=a.dtype, device=a.device)
        return 2 * torch.sigmoid((a - z) / (net.noise.scale_like(a) * temperature)) - 1
    return rule


def _rule_quantize(method):
    """A rule from companion.estimators.quantize (helper B): "rq", "rq-st", "noisy-st", "sr"."""
    def factory(temperature):
        def rule(net, a, generator):
            from .estimators.pathwise import quantize

            if method == "sr" and not (isinstance(net.noise, Uniform) and float(net.noise.scale) == float(net.grid.scale)):
                raise ValueError("method 'sr' needs a net with noise='uniform' of width equal to the grid spacing")
            return quantize(a, net.grid, method, noise=net.noise, temperature=temperature, tails="clamp",
                            generator=generator)
        return rule
    return factory


def _pathwise(rule_factory):
    """Surrogate of a pathwise estimator: the NLL of the forward pass built from the rule."""
    def surrogate(net, theta, x, y, temperature, generator):
        rule = rule_factory(temperature)
        *layers, (w_out, b_out) = theta
        h = x
        for w, b in layers:
            h = rule(net, linear(h, net.weight(w, rule, generator), b), generator)
        return nll(linear(h, w_out, b_out), y).mean(-1).sum()
    return surrogate


def _ap2(net, theta, x, y, temperature, generator):
    """AP2 (Shekhovtsov & Flach 2019; THEORY.md §6): propagate the mean and variance of every unit, no sample.

    Layer k: a ~ N(Wμ + b, W²v) (independent units), then the unit's moments
    (μ, v) = ``companion.moments.noisy_quantize(a, grid, noise, tails="clamp")``
    (exact for Gaussian and uniform noise, the logistic approximation otherwise);
    the loss is the expected cross-entropy of the Gaussian logits to second order
    (``companion.moments.expected_cross_entropy``).  Deterministic weights only.
    """
    from .moments.layers import expected_cross_entropy, noisy_quantize

    *layers, (w_out, b_out) = theta
    mean, var = x, torch.zeros_like(x)
    for w, b in layers:
        a_mean, a_var = linear(mean, w, b), torch.matmul(var, (w * w).transpose(-1, -2))
        mean, var = noisy_quantize(a_mean, a_var, net.grid, net.noise, tails="clamp")
    logits = linear(mean, w_out, b_out)
    logits_var = torch.matmul(var, (w_out * w_out).transpose(-1, -2))
    replicas = logits.numel() // (y.numel() * logits.shape[-1])
    classes = logits.shape[-1]
    return replicas * expected_cross_entropy(logits.reshape(-1, classes), logits_var.reshape(-1, classes),
                                             y.repeat(replicas))


# ---------------------------------------------------------------- score-function family
def _sample_path(net, theta, x, generator):
    """Hard sample [x, h_1, ..., h_L] (no gradient)."""
    path = [x]
    with torch.no_grad():
        for w, b in theta[:-1]:
            path.append(net.sample_units(linear(path[-1], w, b), generator))
    return path


def _downstream_loss(net, theta, h, k, y, generator):
    """NLL after sampling layers k+1..L from h = h_k (no gradient), per point."""
    with torch.no_grad():
        for w, b in theta[k + 1:-1]:
            h = net.sample_units(linear(h, w, b), generator)
        return nll(linear(h, *theta[-1]), y)


def _reinforce(net, theta, x, y, temperature, generator):
    """Score function with a leave-one-out baseline (Williams 1992):

        ĝ = ∇_θ ℓ_n(h) + (ℓ_n - b_n)·∇_θ Σ_k log p(h_k | h_{k-1}),   b_n = mean_{m ≠ n} ℓ_m,

    averaged over the N points.  b_n uses the other points' independent samples: no bias.
    """
    path = _sample_path(net, theta, x, generator)
    log_p = sum(net.unit_log_prob(linear(path[k], w, b), path[k + 1]).sum(-1) for k, (w, b) in enumerate(theta[:-1]))
    loss = nll(linear(path[-1], *theta[-1]), y)
    N = loss.shape[-1]
    baseline = (loss.sum(-1, keepdim=True) - loss) / (N - 1) if N > 1 else torch.zeros_like(loss)
    return (loss + (loss - baseline).detach() * log_p).mean(-1).sum()


def _logit(net, a):
    """φ = log F(a) - log F(-a), the Bernoulli logit of P(h = +1) (= a/s for logistic noise)."""
    return net.noise.log_cdf(a) - net.noise.log_cdf(-a)


def _arm(net, theta, x, y, temperature, generator):
    """ARM for layered binary networks (Yin & Zhou 2019, eq. 5, applied layer by layer as in their §3.2).

    For layer k with the shared path h_{<k}: u ~ U(0,1)^{n_k}, h^(1) = ±1 at
    [u > σ(-φ)], h^(2) = ±1 at [u < σ(φ)]; each continues with its own sample
    of the later layers; ĝ_φ = (ℓ(h^(1)) - ℓ(h^(2)))·(u - ½).  Unbiased;
    costs 2(L - k) extra layer passes for layer k.
    """
    path = _sample_path(net, theta, x, generator)
    total = nll(linear(path[-1], *theta[-1]), y).mean(-1).sum()  # the head's pathwise gradient
    for k, (w, b) in enumerate(theta[:-1]):
        phi = _logit(net, linear(path[k], w, b))
        u = torch.rand(phi.shape, generator=generator, dtype=phi.dtype)
        with torch.no_grad():
            h1 = 2 * (u > torch.sigmoid(-phi)).to(phi.dtype) - 1
            h2 = 2 * (u < torch.sigmoid(phi)).to(phi.dtype) - 1
            diff = _downstream_loss(net, theta, h1, k, y, generator) - _downstream_loss(net, theta, h2, k, y, generator)
            g_phi = diff.unsqueeze(-1) * (u - 0.5)
        total = total + (g_phi * phi).sum(-1).mean(-1).sum()
    return total


def _flip_shifts(h, w):
    """Change of the next pre-activation when unit i of h is set to +1 / -1: h [..., N, n], W [..., m, n] → 2 × [..., N, n, m]."""
    wt = w.transpose(-1, -2).unsqueeze(-3)  # [..., 1, n, m]
    return (1 - h).unsqueeze(-1) * wt, (-1 - h).unsqueeze(-1) * wt


def _psa(net, theta, x, y, temperature, generator):
    """Path Sample-Analytic (Shekhovtsov, Yanush & Flach 2020, §3).

    Sample one path.  At the last layer the effect of flipping unit j is exact,
    Δ^L_j = ℓ(h_j = +1) - ℓ(h_j = -1).  Going down, flipping h^k_i changes the
    next layer's probabilities q = F(a) exactly, and the downstream loss is
    linearised in them:

        Δ^k_i = Σ_j [q^{k+1}_j(h^k_i = +1) - q^{k+1}_j(h^k_i = -1)] · Δ^{k+1}_j,
        ĝ_θ = Σ_k Σ_i ∂_θ F(a^k_i) · Δ^k_i   (+ the head's pathwise gradient).

    Unbiased with one stochastic layer; linearising Δq and Δ^L gives ST.
    """
    path = _sample_path(net, theta, x, generator)
    L = len(theta) - 1
    with torch.no_grad():
        w_out, b_out = theta[-1]
        logits = linear(path[-1], w_out, b_out)
        up, down = _flip_shifts(path[-1], w_out)  # [..., N, n_L, C]
        onehot_y = y.unsqueeze(-1)
        deltas = [None] * L
        deltas[-1] = nll(logits.unsqueeze(-2) + up, onehot_y.expand(-1, up.shape[-2])) \
            - nll(logits.unsqueeze(-2) + down, onehot_y.expand(-1, up.shape[-2]))
        for k in range(L - 2, -1, -1):
            w, b = theta[k + 1]
            a = linear(path[k + 1], w, b).unsqueeze(-2)  # [..., N, 1, n_{k+2}]
            up, down = _flip_shifts(path[k + 1], w)
            dq = net.noise.cdf(a + up) - net.noise.cdf(a + down)
            deltas[k] = (dq * deltas[k + 1].unsqueeze(-2)).sum(-1)
    total = nll(linear(path[-1], w_out, b_out), y).mean(-1).sum()  # the head's pathwise gradient
    for k, (w, b) in enumerate(theta[:-1]):
        q = net.noise.cdf(linear(path[k], w, b))
        total = total + (q * deltas[k]).sum(-1).mean(-1).sum()
    return total


# ---------------------------------------------------------------- registry
@dataclass(frozen=True)
class Estimator:
    surrogate: Callable
    """(net, theta, x, y, temperature, generator) -> scalar whose θ-gradient is the estimate."""
    unbiased: bool
    binary_only: bool
    stochastic_weights: bool
    """Whether it supports stochastic binary weights."""
    description: str


ESTIMATORS: dict[str, Estimator] = {
    "reinforce": Estimator(_reinforce, True, False, False, "score function with a leave-one-out baseline"),
    "arm": Estimator(_arm, True, True, False, "ARM, per-layer antithetic pairs (Yin & Zhou 2019)"),
    "concrete": Estimator(_pathwise(_rule_concrete), False, True, True, "binary Concrete / Gumbel relaxation, temperature τ"),
    "st": Estimator(_pathwise(lambda tau: _rule_st), False, False, True, "principled ST: backward dE[h|a]/da = 2F'(a)"),
    "hardtanh-st": Estimator(_pathwise(lambda tau: _rule_hardtanh_st), False, False, True,
                             "ST with backward 1[|a| ≤ 1] (clipped identity)"),
    "identity-st": Estimator(_pathwise(lambda tau: _rule_identity_st), False, False, True, "ST with backward 1"),
    "psa": Estimator(_psa, False, True, False, "path sample-analytic (Shekhovtsov et al. 2020)"),
    "ap1": Estimator(_pathwise(lambda tau: _rule_mean), False, False, True, "analytic mean field (tanh propagation)"),
    "ap2": Estimator(_ap2, False, False, False, "analytic means and variances (AP2, moment propagation)"),
    "rq": Estimator(_pathwise(_rule_quantize("rq")), False, False, False, "Relaxed Quantization (concrete), temperature τ"),
    "rq-st": Estimator(_pathwise(_rule_quantize("rq-st")), False, False, False, "RQ straight-through"),
    "noisy-st": Estimator(_pathwise(_rule_quantize("noisy-st")), False, False, False,
                          "multi-level principled ST of companion.estimators.quantize"),
    "sr": Estimator(_pathwise(_rule_quantize("sr")), False, False, False, "stochastic rounding, clipped-identity backward"),
}
BINARY_METHODS = ("reinforce", "arm", "concrete", "st", "hardtanh-st", "identity-st", "psa", "ap1", "ap2")
MULTILEVEL_METHODS = ("reinforce", "rq", "rq-st", "noisy-st", "hardtanh-st", "ap1", "ap2")
"""Methods for a multi-level net with logistic noise ("sr" needs uniform noise of width α)."""


def surrogate_loss(net: StochasticNet, x: torch.Tensor, y: torch.Tensor, method: str, *, temperature=1.0,
                   generator: torch.Generator | None = None, theta=None) -> torch.Tensor:
    """A scalar whose gradient w.r.t. θ is one estimate of ∇E[NLL] (one sample per point and replica).

    ``theta`` defaults to the net's parameters; with replicated parameters
    (leading axis R) it is the sum of R independent surrogates.
    """
    check_choice("method", method, ESTIMATORS)
    check_positive("temperature", temperature)
    check_generator("generator", generator)
    if not isinstance(net, StochasticNet):
        raise TypeError(f"net must be a StochasticNet, got {type(net).__name__}")
    estimator = ESTIMATORS[method]
    if estimator.binary_only and not net.is_binary:
        raise ValueError(f"method {method!r} needs binary units; for a {net.grid.num_points}-level grid use one of "
                         f"{', '.join(repr(m) for m, e in ESTIMATORS.items() if not e.binary_only)}")
    if net.stochastic_weights and not estimator.stochastic_weights:
        raise ValueError(f"method {method!r} is implemented for deterministic weights only; with stochastic_weights "
                         f"use one of {', '.join(repr(m) for m, e in ESTIMATORS.items() if e.stochastic_weights)}")
    check_tensor("x", x)
    if y.dtype != torch.long or y.shape != x.shape[:1]:
        raise ValueError(f"y must be int64 class indices of shape [N] = [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
    return estimator.surrogate(net, net.theta() if theta is None else theta, x, y, float(temperature), generator)


def gradient_estimate(net: StochasticNet, x, y, method: str, *, temperature=1.0, generator=None,
                      replicas: int | None = None) -> list[torch.Tensor]:
    """Single-sample estimates of ∇_θ E[NLL], one tensor per parameter in ``net.parameters()`` order.

    With ``replicas=R`` each tensor has a leading axis of R independent
    estimates, computed in one backward pass.
    """
    flat = [t for pair in net.theta() for t in pair]
    if replicas is None:
        leaves = flat
        loss = surrogate_loss(net, x, y, method, temperature=temperature, generator=generator)
    else:
        check_int("replicas", replicas, 1, 10**6)
        leaves = [t.detach().unsqueeze(0).repeat(replicas, *([1] * t.dim())).requires_grad_() for t in flat]
        theta = list(zip(leaves[::2], leaves[1::2]))
        loss = surrogate_loss(net, x, y, method, temperature=temperature, generator=generator, theta=theta)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(leaves, grads)]
