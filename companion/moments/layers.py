"""Moment-propagation layers: each maps (mean, var) of its input to (mean, var) of its output.

Assumed-density filtering (Shekhovtsov & Flach, ICLR 2019, "Feed-forward
propagation in probabilistic neural networks with categorical and max
layers"; THEORY.md §6): every activation is summarised by a mean and a
variance, units are treated as independent, and each layer returns the exact
(or, where stated, approximated) first two moments of its output when its
input is Gaussian with those moments.

Numerical care (DESIGN.md, pitfalls): standard deviations are computed from
``var.clamp_min(VAR_FLOOR)``; ratios μ/σ are limited to ±RATIO_LIMIT without
dividing a huge mean by a tiny σ (so neither values nor gradients overflow);
variances are written in shift-free forms (no E[x²] - E[x]² of two large
numbers) and clamped at zero.  Shapes: every ``mean``/``var`` pair has the
same shape; outputs have the layer's output shape.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import thresholds
from .._checks import check_choice, check_int, check_tensor
from ..grids import UniformGrid
from ..noise import Gaussian, Logistic, Noise, Uniform
from ..noise import normal_pdf as _pdf
from ..perf import fusable, fused_kernels_enabled
from ..rounding import TAILS, grid_probabilities

VAR_FLOOR = 1e-10
RATIO_LIMIT = 1e6
APPROXIMATIONS = ("probit", "variance")
LOGISTIC_VARIANCE = math.pi**2 / 3  # σ_S², the variance of the standard logistic


# -- helpers ------------------------------------------------------------------
_HALF_TYPES = (torch.float16, torch.bfloat16)


def half_in_float32(function):
    """Run ``function`` in float32 when a tensor argument is float16/bfloat16, and round its tensor outputs back.

    The variance floor (1e-10), φ, Φ and their ratios underflow or overflow in
    half precision; float32 keeps every value and gradient finite.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        half = next((a.dtype for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dtype in _HALF_TYPES),
                    None)
        if half is None:
            return function(*args, **kwargs)

        def up(a):
            return a.float() if isinstance(a, torch.Tensor) and a.dtype in _HALF_TYPES else a

        out = function(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
        if isinstance(out, tuple):
            return tuple(o.to(half) if isinstance(o, torch.Tensor) and o.is_floating_point() else o for o in out)
        return out.to(half) if isinstance(out, torch.Tensor) else out

    return wrapper


def _pair(mean, var, name: str = "mean"):
    check_tensor(name, mean)
    check_tensor("var", var)
    if mean.shape != var.shape:
        raise ValueError(f"var must have the shape of {name} {tuple(mean.shape)}, got {tuple(var.shape)}")
    if bool((var.detach() < 0).any()):
        raise ValueError("var must be >= 0")
    return mean, var


def _std(var: torch.Tensor) -> torch.Tensor:
    """σ = sqrt(max(var, VAR_FLOOR)): finite, with a finite gradient, at var = 0."""
    return var.clamp_min(VAR_FLOOR).sqrt()


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den limited to ±RATIO_LIMIT, computed so that a huge num never meets a tiny den."""
    bound = RATIO_LIMIT * den
    return torch.maximum(torch.minimum(num, bound), -bound) / den


def _check_approximation(approximation: str) -> float:
    """The constant c of E[S(X)] ≈ S(μ/sqrt(1 + c·v)), X ~ N(μ, v)."""
    check_choice("approximation", approximation, APPROXIMATIONS)
    return math.pi / 8 if approximation == "probit" else 1 / LOGISTIC_VARIANCE


def _check_noise(noise) -> Noise | None:
    if noise is not None and not isinstance(noise, Noise):
        raise TypeError(f"noise must be None or a companion.noise Logistic, Gaussian or Uniform, got {type(noise).__name__}")
    return noise


def _cdf_pair(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Φ(a), Φ(-a)), each accurate where it is tiny.

    Eager: two evaluations of Φ.  Inside a fused kernel (torch.compile): one, of the smaller
    tail t = Φ(-|a|), and the other as 1 - t (rounding 1 - t loses nothing: it lies in [1/2, 1]);
    the two ways agree to round-off.
    """
    if not torch.compiler.is_compiling():
        return torch.special.ndtr(a), torch.special.ndtr(-a)
    tail = torch.special.ndtr(-a.abs())
    positive = a > 0
    return torch.where(positive, 1 - tail, tail), torch.where(positive, tail, 1 - tail)


# -- linear maps --------------------------------------------------------------
def _weight_pair(weight, weight_var):
    check_tensor("weight", weight)
    if weight_var is not None:
        check_tensor("weight_var", weight_var)
        if weight_var.shape != weight.shape:
            raise ValueError(f"weight_var must have the shape of weight {tuple(weight.shape)}, got {tuple(weight_var.shape)}")


@half_in_float32
def linear(mean, var, weight, bias=None, weight_var=None):
    """y = W x + b with independent random x (and W): THEORY.md §6.

    μ_y = μ_W μ_x + b,   Var y_j = Σ_i (v_W v_x + v_W μ_x² + μ_W² v_x)_ji

    Shapes: mean, var [..., in]; weight, weight_var [out, in]; bias [out]
    (deterministic).  ``weight_var=None`` means deterministic weights (σ'² = W² σ²).
    Three matrix products with random weights, two without.
    """
    _pair(mean, var)
    _weight_pair(weight, weight_var)
    if weight.dim() != 2 or weight.shape[1] != mean.shape[-1]:
        raise ValueError(f"weight must have shape [out, {mean.shape[-1]}] to match mean [..., {mean.shape[-1]}], "
                         f"got {tuple(weight.shape)}")
    return _linear(mean, var, weight, bias, weight_var)


def _linear(mean, var, weight, bias=None, weight_var=None):
    """As :func:`linear`; ``var=None`` is a deterministic input (skips a product), and the output
    variance is None (exactly zero) when the weights are deterministic too."""
    out_mean = F.linear(mean, weight, bias)
    if var is None:
        if weight_var is None:
            return out_mean, None
        return out_mean, F.linear(mean * mean, weight_var)
    out_var = F.linear(var, weight * weight)
    if weight_var is not None:
        out_var = out_var + F.linear(var + mean * mean, weight_var)
    return out_mean, out_var


@half_in_float32
def conv2d(mean, var, weight, bias=None, weight_var=None, stride=1, padding=0):
    """The convolution form of :func:`linear`: same formulas, F.conv2d for the products.

    Shapes: mean, var [N, C_in, H, W]; weight, weight_var [C_out, C_in, k, k]; bias [C_out].
    """
    _pair(mean, var)
    _weight_pair(weight, weight_var)
    return _conv2d(mean, var, weight, bias, weight_var, stride, padding)


def _conv2d(mean, var, weight, bias=None, weight_var=None, stride=1, padding=0):
    """As :func:`conv2d`; ``var=None`` is a deterministic input (skips a product), and the output
    variance is None (exactly zero) when the weights are deterministic too."""
    out_mean = F.conv2d(mean, weight, bias, stride=stride, padding=padding)
    if var is None:
        if weight_var is None:
            return out_mean, None
        return out_mean, F.conv2d(mean * mean, weight_var, stride=stride, padding=padding)
    out_var = F.conv2d(var, weight * weight, stride=stride, padding=padding)
    if weight_var is not None:
        out_var = out_var + F.conv2d(var + mean * mean, weight_var, stride=stride, padding=padding)
    return out_mean, out_var


@half_in_float32
def batch_norm(mean, var, running_mean, running_var, weight=None, bias=None, eps=1e-5):
    """Batch normalisation in eval form, an affine map per channel (dim 1).

    y = γ (x - m)/sqrt(v_run + ε) + β  →  μ_y = γ(μ - m)/sqrt(v_run + ε) + β,  Var y = γ² Var x/(v_run + ε).
    Shapes: mean, var [N, C, ...]; running_mean, running_var, weight, bias [C].
    """
    _pair(mean, var)
    if mean.dim() < 2:
        raise ValueError(f"mean must have a channel dimension (shape [N, C, ...]), got shape {tuple(mean.shape)}")
    view = (1, -1) + (1,) * (mean.dim() - 2)
    scale = torch.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return mean * scale.view(view) + shift.view(view), var * (scale * scale).view(view)


# -- nonlinearities -----------------------------------------------------------
@half_in_float32
def relu(mean, var):
    """Rectified Gaussian: X ~ N(μ, σ²), Y = max(X, 0), a = μ/σ (S&F 2019, §6 of THEORY.md).

    E Y = μΦ(a) + σφ(a);  Var Y = σ² h(a),
    h(a) = a²Φ(a)Φ(-a) + Φ(a) + aφ(a)(Φ(-a) - Φ(a)) - φ(a)²
    (= ((a² + 1)Φ(a) + aφ(a) - (aΦ(a) + φ(a))²), written without cancellation for large a).
    """
    _pair(mean, var)
    return _relu(mean, var)


def _relu(mean, var):
    return _Relu.apply(mean, var)


class _Relu(torch.autograd.Function):
    """Rectified-Gaussian moments with closed-form derivatives (fewer saved tensors than autograd):

    ∂m/∂μ = Φ(a), ∂m/∂v = φ(a)/(2σ); with E[Y²]: ∂/∂μ = 2m, ∂/∂v = Φ(a) (Price's theorem),
    so ∂Var/∂μ = 2mΦ(-a), ∂Var/∂v = Φ(a) - mφ(a)/σ.
    """

    @staticmethod
    def forward(ctx, mean, var):
        out_mean, out_var, *saved = _relu_forward(mean, var)
        ctx.save_for_backward(out_mean, *saved)
        return out_mean, out_var

    @staticmethod
    def backward(ctx, grad_mean, grad_var):
        return _relu_backward(grad_mean, grad_var, *ctx.saved_tensors)


@fusable
def _relu_forward(mean, var):
    """→ E Y, Var Y, and Φ(a), Φ(-a), φ(a)/σ for the backward pass."""
    s = _std(var)
    a = _ratio(mean, s)
    cdf, cdf_neg = _cdf_pair(a)
    pdf = _pdf(a)
    out_mean = mean * cdf + s * pdf
    h = a * a * cdf * cdf_neg + cdf + a * pdf * (cdf_neg - cdf) - pdf * pdf
    return out_mean, s * s * h.clamp_min(0), cdf, cdf_neg, pdf / s


@fusable
def _relu_backward(grad_mean, grad_var, m, cdf, cdf_neg, pdf_over_s):
    grad_mu = grad_mean * cdf + grad_var * 2 * m * cdf_neg
    grad_v = grad_mean * 0.5 * pdf_over_s + grad_var * (cdf - m * pdf_over_s)
    return grad_mu, grad_v


def _relu_input_gradients(grad_mean, grad_var, mean, var):
    """:func:`_relu_backward` from the layer's input, recomputing the forward pass's terms (inside the
    fused ReLU-and-pool kernel of :func:`_pool_entry_gradients`)."""
    out_mean, _, *saved = _relu_forward.eager(mean, var)
    return _relu_backward.eager(grad_mean, grad_var, out_mean, *saved)


@half_in_float32
def max2(mean1, var1, mean2, var2):
    """Clark's (1961) moments of max(X1, X2) for independent Gaussians.

    s = sqrt(σ1² + σ2²), d = μ1 - μ2, a = d/s:
    E max = μ2 + dΦ(a) + sφ(a)  (= μ1Φ(a) + μ2Φ(-a) + sφ(a)),
    Var max = Φ(a)(σ1² + e1²) + Φ(-a)(σ2² + e2²) + (e1 + e2) s φ(a),  e_i = μ_i - E max,
    which is E[max²] - (E max)² of THEORY.md §6 centred at the mean (stable for huge means).
    """
    _pair(mean1, var1, "mean1")
    _pair(mean2, var2, "mean2")
    return _max2(*torch.broadcast_tensors(mean1, var1, mean2, var2))


def _max2(mean1, var1, mean2, var2):
    return _Max2.apply(mean1, var1, mean2, var2)


class _Max2(torch.autograd.Function):
    """Clark's max with closed-form derivatives (D = X1 - X2 ~ N(d, s²), e_i = μ_i - m, Q = Φ(-a)):

    ∂m/∂μ1 = Φ, ∂m/∂μ2 = Q, ∂m/∂v_i = φ/(2s);
    ∂Var/∂μ1 = 2Φe1 + 2v1φ/s,  ∂Var/∂μ2 = 2Qe2 + 2v2φ/s,
    ∂Var/∂v1 = Φ + (φ/s)(e1 - v1 a/s),  ∂Var/∂v2 = Q + (φ/s)(e2 + v2 a/s)
    (from ∂E[M²]/∂μ1 = 2E[X1 1{D>0}] and, by Price's theorem, ∂E[M²]/∂v1 = Φ + E[X1 δ(D)]).
    """

    @staticmethod
    def forward(ctx, mean1, var1, mean2, var2):
        out_mean, out_var, *saved = _max2_forward(mean1, var1, mean2, var2)
        ctx.save_for_backward(var1, var2, *saved)
        return out_mean, out_var

    @staticmethod
    def backward(ctx, grad_mean, grad_var):
        return _max2_backward(grad_mean, grad_var, *ctx.saved_tensors)


@fusable
def _max2_forward(mean1, var1, mean2, var2):
    """→ E max, Var max, and s, a, Φ(a), Φ(-a), φ(a), e1, e2 for the backward pass."""
    s = _std(var1 + var2)
    d = mean1 - mean2
    a = _ratio(d, s)
    cdf, cdf_neg = _cdf_pair(a)
    pdf = _pdf(a)
    above2 = d * cdf + s * pdf  # E max - μ2
    e1, e2 = d - above2, -above2
    out_var = cdf * (var1 + e1 * e1) + cdf_neg * (var2 + e2 * e2) + (e1 + e2) * s * pdf
    return mean2 + above2, out_var.clamp_min(0), s, a, cdf, cdf_neg, pdf, e1, e2


@fusable
def _max2_backward(grad_mean, grad_var, var1, var2, s, a, cdf, cdf_neg, pdf, e1, e2):
    pdf_s = pdf / s
    half = grad_mean * 0.5 * pdf_s
    grad_mu1 = grad_mean * cdf + grad_var * 2 * (cdf * e1 + var1 * pdf_s)
    grad_mu2 = grad_mean * cdf_neg + grad_var * 2 * (cdf_neg * e2 + var2 * pdf_s)
    a_s = a / s
    grad_v1 = half + grad_var * (cdf + pdf_s * (e1 - var1 * a_s))
    grad_v2 = half + grad_var * (cdf_neg + pdf_s * (e2 + var2 * a_s))
    return grad_mu1, grad_v1, grad_mu2, grad_v2


@half_in_float32
def max_pool2d(mean, var, k, stride=None):
    """Max pooling of independent Gaussians by Clark's max applied pairwise (a balanced tree).

    Shapes: [N, C, H, W] → [N, C, H_out, W_out] as ``F.max_pool2d(x, k, stride)``
    (no padding).  The pairwise result is an approximation: the max of two
    Gaussians is not Gaussian, and correlations inside a window are ignored.
    """
    _pair(mean, var)
    if mean.dim() != 4:
        raise ValueError(f"mean must have shape [N, C, H, W], got {tuple(mean.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    stride = k if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int or None, got {stride!r}")
    h, w = mean.shape[-2:]
    if k > min(h, w):
        raise ValueError(f"k={k} is larger than the input ({h}x{w})")
    return _max_pool2d(mean, var, k, stride)


def _max_pool2d(mean, var, k, stride):
    if fused_kernels_enabled() and stride == k:
        return _FusedMaxPool.apply(mean, var, k, False)
    h, w = mean.shape[-2:]
    h_out, w_out = (h - k) // stride + 1, (w - k) // stride + 1
    nodes = list(zip(_window_entries(mean, k, stride, h_out, w_out), _window_entries(var, k, stride, h_out, w_out)))
    for left, right in _tree_merges(len(nodes)):
        nodes.append(_max2(*nodes[left], *nodes[right]))
    return nodes[-1]


def _tree_merges(count):
    """Clark's pairwise (balanced) tree over ``count`` window entries: [(left, right)] in merge order.

    Nodes are numbered entries first (row-major window order), then one per merge in order; each level
    merges neighbours and carries an odd last node up.  The last merge gives the pool's output.
    """
    merges, level = [], list(range(count))
    while len(level) > 1:
        merged = []
        for left, right in zip(level[0::2], level[1::2]):
            merges.append((left, right))
            merged.append(count + len(merges) - 1)
        level = merged + level[len(level) - len(level) % 2 :]
    return merges


def _window_entries(x, k, stride, h_out, w_out):
    """The k² entries of every pooling window, each [N, C, h_out, w_out], in row-major window order.

    Non-overlapping windows (stride = k) come from :func:`_windows` split by ``unbind``, whose backward
    pass is one stack; strided slices would each send a zero-filled input-sized gradient back.
    """
    if stride != k:
        return [x[:, :, i : i + stride * h_out : stride, j : j + stride * w_out : stride]
                for i in range(k) for j in range(k)]
    return _windows(x, k, h_out, w_out).unbind(0)


def _windows(x, k, h_out, w_out):
    """Non-overlapping k×k windows' entries as one contiguous [k², N, C, h_out, w_out] tensor (one copy)."""
    if x.shape[-2:] != (k * h_out, k * w_out):
        x = x[:, :, : k * h_out, : k * w_out]
    n, c = x.shape[:2]
    return x.reshape(n, c, h_out, k, w_out, k).permute(3, 5, 0, 1, 2, 4).reshape(k * k, n, c, h_out, w_out)


def _pool_tree(entries, rectify=False):
    """The tree of :func:`_tree_merges` over the window entries [(μ, v)]; with ``rectify`` the entries
    pass the rectified Gaussian first.

    Returns every merge as (left, right, terms of :func:`_max2_forward`) and the nodes [(μ, v)]
    (the (rectified) entries, then one per merge); the last node is the pool's output.
    """
    nodes = [_relu_forward.eager(m, v)[:2] for m, v in entries] if rectify else list(entries)
    merges = []
    for left, right in _tree_merges(len(nodes)):
        out_mean, out_var, *terms = _max2_forward.eager(*nodes[left], *nodes[right])
        merges.append((left, right, terms))
        nodes.append((out_mean, out_var))
    return merges, nodes


@fusable
def _pool_forward(windows_mean, windows_var, rectify):
    """(μ, v) of the pool from the window entries [k², N, C, H_out, W_out] (contiguous, so the fused loop
    vectorises); with ``rectify``, of the pool of the rectified entries (ReLU then pool in one loop)."""
    return _pool_tree(zip(windows_mean, windows_var), rectify)[1][-1]


@fusable
def _pool_entry_gradients(grad_mean, grad_var, windows_mean, windows_var, rectify):
    """The chain rule through :func:`_pool_tree`, root to entries (and through the rectified Gaussian
    with ``rectify``): the gradients of the window entries' means and variances, each [k², N, C, H_out, W_out]."""
    entries = list(zip(windows_mean, windows_var))
    merges, nodes = _pool_tree(entries, rectify)
    grads = {len(nodes) - 1: (grad_mean, grad_var)}
    for offset, (left, right, terms) in enumerate(reversed(merges)):
        g_mean, g_var = grads.pop(len(nodes) - 1 - offset)
        g_mu1, g_v1, g_mu2, g_v2 = _max2_backward.eager(g_mean, g_var, nodes[left][1], nodes[right][1], *terms)
        grads[left], grads[right] = (g_mu1, g_v1), (g_mu2, g_v2)
    if rectify:
        grads = {e: _relu_input_gradients(*grads[e], *entries[e]) for e in range(len(entries))}
    return (torch.stack([grads[e][0] for e in range(len(entries))]),
            torch.stack([grads[e][1] for e in range(len(entries))]))


def _lay_out_windows(windows, shape, k):
    """Window entries [k², N, C, H_out, W_out] back into the input's layout ``shape`` = [N, C, H, W] (zero
    in the rows and columns no window reads): the inverse of :func:`_windows`."""
    _, n, c, h_out, w_out = windows.shape
    cropped = tuple(shape[-2:]) != (k * h_out, k * w_out)
    out = (windows.new_zeros if cropped else windows.new_empty)(shape)
    out[:, :, : k * h_out, : k * w_out].view(n, c, h_out, k, w_out, k).copy_(
        windows.view(k, k, n, c, h_out, w_out).permute(2, 3, 4, 0, 5, 1))
    return out


class _FusedMaxPool(torch.autograd.Function):
    """:func:`_max_pool2d` with non-overlapping windows (after the rectified Gaussian with ``rectify``) as
    two fused kernels: the tree forward, and its chain rule recomputing the tree from the saved window
    entries (no intermediate is written to memory)."""

    @staticmethod
    def forward(ctx, mean, var, k, rectify):
        h_out, w_out = mean.shape[-2] // k, mean.shape[-1] // k
        windows = [_windows(x, k, h_out, w_out) for x in (mean, var)]
        ctx.save_for_backward(*windows)
        ctx.config = (k, mean.shape, rectify)
        return _pool_forward(*windows, rectify)

    @staticmethod
    def backward(ctx, grad_mean, grad_var):
        k, shape, rectify = ctx.config
        grad_means, grad_vars = _pool_entry_gradients(grad_mean, grad_var, *ctx.saved_tensors, rectify)
        return _lay_out_windows(grad_means, shape, k), _lay_out_windows(grad_vars, shape, k), None, None


def _relu_max_pool2d(mean, var, k, stride):
    """:func:`_max_pool2d` of :func:`_relu`, the two layers in one pair of fused kernels when fused
    kernels are on and the windows do not overlap (the same formulas, so the same numbers to round-off)."""
    if fused_kernels_enabled() and stride == k:
        return _FusedMaxPool.apply(mean, var, k, True)
    return _max_pool2d(*_relu(mean, var), k, stride)


# -- noise-injected thresholds and quantizers -----------------------------------
def _effective_scale(var, noise, c):
    """X + ε ≈ μ + r·Z with Z standard normal (None, Gaussian) or standard logistic (Logistic).

    None: r = σ; Gaussian(τ): r = sqrt(σ² + τ²) (exact); Logistic(s): r = sqrt(s² + c·σ²), the
    logistic approximation with c = π/8 (MacKay's probit) or 1/σ_S² = 3/π² (variance matching).
    """
    if noise is None:
        return _std(var)
    t = noise.scale_like(var)
    if isinstance(noise, Gaussian):
        return thresholds.effective_scale(t, var, 1.0, VAR_FLOOR)
    return thresholds.effective_scale(t, var, c)


def _uniform_exceed(m, var, width):
    """P(X + U > 0) exactly, X ~ N(m, σ²), U ~ U[-w/2, w/2]:

    (1/w)∫Φ((m + u)/σ) du = [relu(m + w/2) - relu(m - w/2) + σ(G(-|z1|) - G(-|z2|))]/w,
    z = (m ± w/2)/σ, G(z) = zΦ(z) + φ(z) (so G(z) = relu(z) + G(-|z|): no division by σ).
    """
    s = _std(var)

    def tail(z):
        z = -z.abs()
        return z * torch.special.ndtr(z) + _pdf(z)

    hi, lo = m + width / 2, m - width / 2
    value = F.relu(hi) - F.relu(lo) + s * (tail(_ratio(hi, s)) - tail(_ratio(lo, s)))
    return (value / width).clamp(0, 1)


@half_in_float32
def exceed_probability(mean, var, noise=None, approximation="probit"):
    """P(X + ε > 0) for X ~ N(μ, σ²) and injected noise ε (None: no noise).

    None, Gaussian: Φ(μ/r) exactly; Logistic(s): S(μ/sqrt(s² + cσ²)) (approximation, see
    :func:`_effective_scale`; exact at σ = 0); Uniform(w): the exact closed form of :func:`_uniform_exceed`.
    """
    _pair(mean, var)
    _check_noise(noise)
    return _exceed(mean, var, noise, _check_approximation(approximation))


def _exceed(mean, var, noise, c):
    if isinstance(noise, Uniform):
        return _uniform_exceed(mean, var, noise.scale_like(var))
    z = _ratio(mean, _effective_scale(var, noise, c))
    return torch.sigmoid(z) if isinstance(noise, Logistic) else torch.special.ndtr(z)


@half_in_float32
def heaviside(mean, var, noise=None, approximation="probit"):
    """Y = 1[X + ε > 0]: p = P(Y = 1) (:func:`exceed_probability`), E Y = p, Var Y = p(1 - p).

    1 - p is computed as P(-X - ε > 0) (symmetric noise), not by subtraction.
    """
    p = exceed_probability(mean, var, noise, approximation)
    q = _exceed(-mean, var, noise, _check_approximation(approximation))
    return p, p * q


@half_in_float32
def sign(mean, var, noise=None, approximation="probit"):
    """Y = sign(X + ε) ∈ {-1, +1} (the stochastic binary unit, sign(0) := +1, a null event here).

    E Y = p - q = 2p - 1, Var Y = 1 - (E Y)² = 4pq, p = P(X + ε > 0), q = 1 - p.
    Without noise and for a Gaussian X: E Y = 2Φ(μ/σ) - 1 (THEORY.md §6).
    """
    p = exceed_probability(mean, var, noise, approximation)
    q = _exceed(-mean, var, noise, _check_approximation(approximation))
    return p - q, 4 * p * q


@functools.lru_cache(maxsize=8)
def _hermite(nodes: int):
    """Gauss–Hermite nodes t_q and weights w_q/√π: E f(X) ≈ Σ_q w_q f(μ + √2 σ t_q), X ~ N(μ, σ²)."""
    t, w = np.polynomial.hermite.hermgauss(nodes)
    return torch.from_numpy(t), torch.from_numpy(w / math.sqrt(math.pi))


@half_in_float32
def quantizer_probabilities(mean, var, grid, noise=None, tails="clamp", approximation="probit", nodes=8):
    """P(x̂ = g_i) for x̂ = Q(X + ε), X ~ N(μ, σ²): shape [..., K].

    clamp (the end cells reach ∓∞): P(x̂ ≥ g_{k+1}) = P(X + ε > b_k), b_k = g_k + α/2;
    exact for no noise, Gaussian and uniform noise, the logistic approximation otherwise
    (THEORY.md §6: S((μ - b_k)/sqrt(cσ² + s²))).
    truncate (RQ eq. 4): the categorical given x renormalises the noise inside
    (g_0 - α/2, g_{K-1} + α/2] separately for every x, so no Gaussian convolution
    applies; P_i = E_X[P(x̂ = g_i | X)] by ``nodes``-point Gauss–Hermite quadrature of
    ``companion.rounding.grid_probabilities`` (accurate while σ is not much larger than
    the noise scale; tested against Monte Carlo).  Without noise both tails are the same.
    """
    _pair(mean, var)
    if not isinstance(grid, UniformGrid):
        raise TypeError(f"grid must be a companion.grids.UniformGrid, got {type(grid).__name__}")
    _check_noise(noise)
    check_choice("tails", tails, TAILS)
    c = _check_approximation(approximation)
    nodes = check_int("nodes", nodes, 1, 64)
    return _quantizer_probabilities(mean, var, grid, noise, tails, c, nodes)


def _quantizer_probabilities(mean, var, grid, noise, tails, c, nodes=8):
    m, v = mean.unsqueeze(-1), var.unsqueeze(-1)
    if tails == "truncate" and noise is not None:
        t, w = (u.to(dtype=mean.dtype, device=mean.device) for u in _hermite(nodes))
        x = m + math.sqrt(2) * _std(v) * t  # [..., Q]
        return (w.unsqueeze(-1) * grid_probabilities(x, grid, noise, tails="truncate")).sum(-2)
    thresholds = grid.points_like(mean)[:-1] + grid.scale_like(mean) / 2
    up, down = _exceed(m - thresholds, v, noise, c), _exceed(thresholds[:1] - m, v, noise, c)
    inner = (up[..., :-1] - up[..., 1:]).clamp_min(0)
    return torch.cat([down, inner, up[..., -1:]], dim=-1)


@half_in_float32
def noisy_quantize(mean, var, grid, noise=None, tails="clamp", approximation="probit", nodes=8):
    """Moments of the noisy quantizer x̂ = Q_G(X + ε) for a Gaussian input X ~ N(μ, σ²).

    E x̂ = Σ_i P_i g_i,  Var x̂ = Σ_i P_i (g_i - E x̂)²,  P = :func:`quantizer_probabilities`.
    With clamp tails E x̂ = g_0 + α Σ_k P(X + ε > b_k) (THEORY.md §3, §6).  At σ = 0 this is
    ``companion.rounding.quantized_moments``.  ``nodes``: quadrature points for truncate tails.  Shapes: mean, var [...] → [...].
    """
    p = quantizer_probabilities(mean, var, grid, noise, tails, approximation, nodes)
    if tails == "clamp" or noise is None:
        return _noisy_quantize_clamp(mean, var, grid, noise, _check_approximation(approximation))
    return _moments_on_grid(p, grid.points_like(mean))


def _noisy_quantize_clamp(mean, var, grid, noise, c):
    """Clamp tails from the K - 1 exceedance probabilities p_k = P(x̂ > g_k) alone:

    N = #{k: X + ε > b_k} has E N = Σ_k p_k and E N² = Σ_k (2k + 1) p_k (nested events), so
    E x̂ = g_0 + α E N and Var x̂ = α² Var N: no K-vector of cell masses is formed, and only
    the thresholds within z effective scales of the mean are evaluated (:mod:`companion.thresholds`).
    Logistic and Gaussian noise with a per-tensor grid take
    :func:`companion.thresholds.threshold_moments` (a closed-form backward pass); uniform noise
    and no noise are differentiated by autograd over the same window.
    """
    if thresholds.supports(mean, grid, noise):
        return thresholds.threshold_moments(mean, var, grid, noise, c)
    k_min, _ = grid.level_range
    alpha, beta = grid.scale_like(mean), grid.offset_like(mean)
    with torch.no_grad():
        z = thresholds.window_z(mean.dtype)
        if isinstance(noise, Uniform):
            half = z * _std(var) + noise.scale_like(var) / 2
        else:
            half = z * _effective_scale(var, noise, c)
    start, i = thresholds.window(mean, half, alpha, beta, grid.level_range)
    above = mean - (alpha * (k_min + start + i + 0.5) + beta)  # μ - b_i, [W, ...]
    p = _exceed(above, var, noise, c)
    count, var_count = thresholds.count_moments(p, lambda: _exceed(-above, var, noise, c))  # symmetric noise
    return alpha * (k_min + start + count) + beta, alpha * alpha * var_count.clamp_min(0)


def _moments_on_grid(p, points):
    out_mean = (p * points).sum(-1)
    out_var = (p * (points - out_mean.unsqueeze(-1)) ** 2).sum(-1)
    return out_mean, out_var


# -- output layer -------------------------------------------------------------
@half_in_float32
def softmax_mean(mean, var, approximation="probit"):
    """E[softmax(X)] = P(argmax(X + Gumbel) = k), X ~ N(μ, diag σ²), linear cost (S&F 2019).

    p ≈ softmax(a), a_k = μ_k / sqrt(1 + c(σ_k² + σ̄²_{-k})), σ̄²_{-k} = (Σ_j σ_j² - σ_k²)/(n - 1),
    c = π/8 (probit) or 3/π² = 1/σ_S² (variance matching): the pairwise difference
    X_k - X_j + logistic is matched to a logistic, the other classes' variances averaged.
    THEORY.md §6 writes the denominator without the "1 +" (the Gumbel difference's own
    logistic variance): at σ = 0 that would be an argmax instead of softmax(μ).
    Returns (p, p(1 - p)), the moments of the one-hot argmax indicator.  Shapes [..., n].
    """
    _pair(mean, var)
    c = _check_approximation(approximation)
    n = mean.shape[-1]
    if n < 2:
        raise ValueError(f"mean must have at least 2 classes in its last dimension, got {n}")
    return _softmax_mean(mean, var, c)


def _softmax_mean(mean, var, c):
    n = mean.shape[-1]
    others = (var.sum(-1, keepdim=True) - var) / (n - 1)
    p = torch.softmax(mean / torch.sqrt(1 + c * (var + others)), dim=-1)
    return p, p * (1 - p)


@half_in_float32
def expected_cross_entropy(mean, var, y):
    """Batch mean of E[-log softmax(X)_y], X ~ N(μ, diag σ²), to second order (delta method):

    E[-log softmax(X)_y] ≈ logsumexp(μ) - μ_y + ½ Σ_j σ_j² p_j(1 - p_j),  p = softmax(μ)

    (the Hessian of logsumexp is diag(p) - pp^T).  Exact at σ = 0 (equals F.cross_entropy);
    accurate while σ² is small against the logit gaps.  Shapes: mean, var [N, n]; y [N] (int64).
    """
    _pair(mean, var)
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
        raise TypeError("y must be an int64 (or int32) tensor of class indices")
    if mean.dim() != 2 or y.shape != mean.shape[:1]:
        raise ValueError(f"mean must be [N, n] and y [N]; got {tuple(mean.shape)} and {tuple(y.shape)}")
    return _expected_cross_entropy(mean, var, y)


def _expected_cross_entropy(mean, var, y):
    log_p = torch.log_softmax(mean, dim=-1)
    p = log_p.exp()
    curvature = 0.5 * (var * p * (1 - p)).sum(-1)
    return F.nll_loss(log_p, y.long()) + curvature.mean()
