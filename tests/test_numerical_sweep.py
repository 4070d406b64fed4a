"""Numerical sweep (hypothesis): every quantizer, estimator and moment layer, in float16, bfloat16, float32 and float64.

Outputs and gradients (for x and for the learnable grid scale, offset and
noise scale, or for the input moments) must be finite over the ranges a user
reaches: |x| ≤ 1e4, grid scale 1e-3..1e3 (1e-2..1e2 in half precision),
noise scale 1e-3..1e2 times the grid scale (1e-2..1e2 in half precision),
bits 1-8, both tails, the three noise families, every method, local grids,
temperatures 0.05-10; for the moment layers |mean| ≤ 1e4 and variances 0 or
1e-8..1e4.  Half precision is supported throughout: the pathwise quantizers
and the moment layers compute in float32 and round their outputs back.  One
limit is real and not a bug: the derivative of a moment with respect to a
variance grows like 1/σ as the variance goes to 0 (the float32 floor of 1e-10
caps it near 1e5), which float16 (max 65504) cannot hold; half-precision
moment gradients are swept for variances ≥ 1e-2, and the linear and
convolution moments (squares of means and weights) for |mean|, weights ≤ 10.
"""
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from companion import moments as M
from companion.estimators import PATHWISE_METHODS, quantize
from companion.grids import UniformGrid
from companion.noise import make_noise

HALF = (torch.float16, torch.bfloat16)
dtype_s = hs.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])
family_s = hs.sampled_from(["logistic", "gaussian", "uniform"])
x_s = hs.lists(hs.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=6)


def _finite(*tensors) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


@settings(max_examples=300, deadline=None)
@given(method=hs.sampled_from(PATHWISE_METHODS), family=family_s, tails=hs.sampled_from(["clamp", "truncate"]),
       dtype=dtype_s, bits=hs.integers(1, 8), signed=hs.booleans(), log_scale=hs.floats(-3, 3),
       log_ratio=hs.floats(-3, 2), offset=hs.floats(-1, 1), xs=x_s,
       local_radius=hs.sampled_from([None, 1.0, 3.0]), temperature=hs.sampled_from([0.05, 0.5, 1.0, 10.0]))
def test_every_pathwise_method_is_finite(method, family, tails, dtype, bits, signed, log_scale, log_ratio, offset, xs,
                                         local_radius, temperature):
    if dtype in HALF:
        log_scale, log_ratio = max(min(log_scale, 2), -2), max(log_ratio, -2)
    scale = 10.0**log_scale
    alpha = torch.tensor(scale, dtype=dtype, requires_grad=True)
    beta = torch.tensor(offset * scale, dtype=dtype, requires_grad=True)
    sigma = torch.tensor(scale * 10.0**log_ratio, dtype=dtype, requires_grad=True)
    x = torch.tensor(xs, dtype=dtype, requires_grad=True)
    grid = UniformGrid(bits, scale=alpha, offset=beta, signed=signed)
    y = quantize(x, grid, method, noise=make_noise(family, sigma), tails=tails, local_radius=local_radius,
                 temperature=temperature, generator=torch.Generator().manual_seed(0))
    assert y.dtype == dtype and y.shape == x.shape
    weights = torch.linspace(-1, 1, len(xs), dtype=dtype)
    grads = torch.autograd.grad((y * weights).sum(), (x, alpha, beta, sigma), allow_unused=True)
    assert _finite(y, *grads), (y, grads)


mean_s = hs.lists(hs.floats(-1e4, 1e4, allow_nan=False), min_size=4, max_size=4)
var_s = hs.lists(hs.one_of(hs.just(0.0), hs.floats(1e-8, 1e4)), min_size=4, max_size=4)


def _pair(means, variances, dtype):
    mean = torch.tensor(means, dtype=dtype).reshape(1, 1, 2, 2).requires_grad_()
    var = torch.tensor(variances, dtype=dtype).reshape(1, 1, 2, 2).requires_grad_()
    return mean, var


def _check_layer(outputs, inputs):
    outputs = [o for o in outputs if o is not None]
    assert _finite(*outputs), outputs
    total = sum((o.float() * (1 + torch.arange(o.numel()).reshape(o.shape))).sum() for o in outputs)
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    assert _finite(*grads), grads


@settings(max_examples=200, deadline=None)
@given(means=mean_s, variances=var_s, dtype=dtype_s, family=hs.sampled_from(["none", "logistic", "gaussian", "uniform"]),
       tails=hs.sampled_from(["clamp", "truncate"]), approximation=hs.sampled_from(["probit", "variance"]),
       bits=hs.integers(1, 4), log_scale=hs.floats(-2, 2))
def test_every_moment_layer_is_finite(means, variances, dtype, family, tails, approximation, bits, log_scale):
    if dtype in HALF:  # see the module docstring: ∂/∂var ∝ 1/σ at var → 0 leaves float16's range
        variances = [max(v, 1e-2) for v in variances]
    mean, var = _pair(means, variances, dtype)
    noise = None if family == "none" else make_noise(family, 10.0**log_scale / 3)
    grid = UniformGrid(bits, scale=10.0**log_scale)
    _check_layer(M.relu(mean, var), (mean, var))
    _check_layer(M.max_pool2d(mean, var, 2), (mean, var))
    _check_layer(M.max2(mean[..., 0], var[..., 0], mean[..., 1], var[..., 1]), (mean, var))
    _check_layer(M.sign(mean, var, noise, approximation), (mean, var))
    _check_layer(M.heaviside(mean, var, noise, approximation), (mean, var))
    _check_layer(M.noisy_quantize(mean, var, grid, noise, tails=tails, approximation=approximation), (mean, var))
    flat_mean, flat_var = mean.reshape(1, 4), var.reshape(1, 4)
    _check_layer(M.softmax_mean(flat_mean, flat_var, approximation), (mean, var))
    _check_layer([M.expected_cross_entropy(flat_mean, flat_var, torch.tensor([2]))], (mean, var))


@settings(max_examples=100, deadline=None)
@given(means=mean_s, variances=var_s, dtype=dtype_s, weight_scale=hs.floats(1e-3, 1e2), random_weights=hs.booleans())
def test_linear_and_convolution_moments_are_finite(means, variances, dtype, weight_scale, random_weights):
    if dtype in HALF:  # products of squares: μ²·v_w must stay below float16's 65504
        means = [max(min(m, 10.0), -10.0) for m in means]
        variances, weight_scale = [min(v, 10.0) for v in variances], min(weight_scale, 10.0)
    mean, var = _pair(means, variances, dtype)
    g = torch.Generator().manual_seed(0)
    weight = (torch.randn(3, 1, 2, 2, generator=g) * weight_scale).to(dtype).requires_grad_()
    weight_var = (torch.rand(3, 1, 2, 2, generator=g) * weight_scale**2).to(dtype) if random_weights else None
    if dtype in HALF:  # no half-precision convolution or matrix product on every CPU build: compare in float32 then
        return _check_layer(M.conv2d(mean.float(), var.float(), weight.float(),
                                     weight_var=None if weight_var is None else weight_var.float()), (mean, var, weight))
    _check_layer(M.conv2d(mean, var, weight, weight_var=weight_var), (mean, var, weight))
    _check_layer(M.linear(mean.reshape(1, 4), var.reshape(1, 4), weight.reshape(3, 4),
                          weight_var=None if weight_var is None else weight_var.reshape(3, 4)), (mean, var, weight))
