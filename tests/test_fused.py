"""Fused elementwise kernels (companion.perf.fusable): the compiled moment layers against the eager ones.

The eager functions are the reference (each is tested elsewhere against scipy, Monte Carlo or
autograd); here the torch.compile'd versions must give the same values and gradients: to 1e-12
relative in float64, 1e-4 in float32 (a fused loop orders its arithmetic differently).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from companion import nn as cnn
from companion import perf, thresholds
from companion.grids import UniformGrid
from companion.moments import ap_loss, max2, max_pool2d, relu
from companion.moments.layers import _relu_max_pool2d, noisy_quantize
from companion.noise import Gaussian, Logistic

needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="fused kernels need a C++ compiler")


@pytest.fixture
def fresh_switch():
    """Restore the fused-kernel switch and forget a compiler failure after the test."""
    saved = dict(perf._fused)
    yield
    perf._fused.clear()
    perf._fused.update(saved)


def _both(compute):
    """compute() eagerly and with fused kernels; asserts the fused run really ran compiled."""
    with perf.fused_kernels(False):
        eager = compute()
    with perf.fused_kernels(True):
        fused = compute()
        assert perf.fused_kernels_enabled(), perf.fused_kernels_failure()
    return eager, fused


def _assert_close(eager, fused, rtol, atol):
    assert len(eager) == len(fused)
    for e, f in zip(eager, fused):
        torch.testing.assert_close(f, e, rtol=rtol, atol=atol)


def _values_and_gradients(function, inputs, weights):
    """function(*inputs) → outputs; returns the outputs and d(Σ_k weights_k · output_k)/d inputs."""
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    outputs = function(*leaves)
    loss = sum((w * o).sum() for w, o in zip(weights, outputs))
    return [o.detach() for o in outputs] + list(torch.autograd.grad(loss, leaves))


def test_switch_rejects_non_bool_and_context_restores(fresh_switch):
    with pytest.raises(TypeError, match="on must be True or False"):
        perf.use_fused_kernels("yes")
    perf.use_fused_kernels(False)
    with perf.fused_kernels(True):
        assert perf._fused["on"] is True
    assert perf._fused["on"] is False


@needs_compiler
@pytest.mark.parametrize("shape, k", [((3, 4, 8, 8), 2), ((2, 3, 9, 7), 2), ((2, 2, 9, 9), 3)])
def test_relu_and_max_pool_match_eager(fresh_switch, shape, k):
    gen = torch.Generator().manual_seed(0)
    mean = 3 * torch.randn(shape, generator=gen, dtype=torch.float64)
    var = torch.rand(shape, generator=gen, dtype=torch.float64) * torch.logspace(-12, 1, shape[-1], dtype=torch.float64)
    out_shape = (*shape[:2], shape[2] // k, shape[3] // k)
    weights = [torch.randn(out_shape, generator=gen, dtype=torch.float64) for _ in range(2)]

    def pool_of_relu(m, v):  # fused: the ReLU's kernels, then the pool's
        return max_pool2d(*relu(m, v), k)

    def relu_pool(m, v):  # fused: one pair of kernels for both layers, as propagate uses them
        return _relu_max_pool2d(m, v, k, k)

    for function in (pool_of_relu, relu_pool):
        eager, fused = _both(lambda: _values_and_gradients(function, (mean, var), weights))
        _assert_close(eager, fused, rtol=1e-12, atol=1e-14)
        assert all(torch.isfinite(t).all() for t in fused)


@needs_compiler
def test_max2_and_overlapping_pool_match_eager(fresh_switch):
    """Clark's max of two Gaussians on its own, and a pool with overlapping windows (k 3, stride 2: the
    per-pair kernels, not the tree kernel)."""
    gen = torch.Generator().manual_seed(4)
    shape = (2, 3, 9, 9)
    m1, m2 = (5 * torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    v1, v2 = (torch.rand(shape, generator=gen, dtype=torch.float64) ** 4 for _ in range(2))
    weights = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    eager, fused = _both(lambda: _values_and_gradients(max2, (m1, v1, m2, v2), weights))
    _assert_close(eager, fused, rtol=1e-12, atol=1e-14)
    pooled = [torch.randn((2, 3, 4, 4), generator=gen, dtype=torch.float64) for _ in range(2)]
    eager, fused = _both(lambda: _values_and_gradients(lambda m, v: max_pool2d(m, v, 3, 2), (m1, v1), pooled))
    _assert_close(eager, fused, rtol=1e-12, atol=1e-14)


@needs_compiler
@pytest.mark.parametrize("noise", [Logistic(0.3), Gaussian(0.05)], ids=["logistic", "gaussian"])
@pytest.mark.parametrize("bits", [2, 8])
def test_threshold_gradients_match_eager(fresh_switch, noise, bits):
    gen = torch.Generator().manual_seed(1)
    grid = UniformGrid(bits, scale=0.25, signed=True)
    mean = 2 * torch.randn(500, generator=gen, dtype=torch.float64)
    var = 0.1 * torch.rand(500, generator=gen, dtype=torch.float64)
    weights = [torch.randn(500, generator=gen, dtype=torch.float64) for _ in range(2)]

    def moments(m, v):
        return noisy_quantize(m, v, grid, noise)

    def straight_through_mean(x):
        return (thresholds.threshold_mean(x, grid, noise),)

    eager, fused = _both(lambda: _values_and_gradients(moments, (mean, var), weights))
    _assert_close(eager, fused, rtol=1e-12, atol=1e-14)
    def straight_through(x):  # the same sample both ways (a fixed generator); the backward pass is ∂E[x̂|x]
        return (thresholds.threshold_straight_through(x, grid, noise, generator=torch.Generator().manual_seed(3)),)

    for function in (straight_through_mean, straight_through):
        eager, fused = _both(lambda: _values_and_gradients(function, (mean,), weights[:1]))
        _assert_close(eager, fused, rtol=1e-12, atol=1e-14)


@needs_compiler
@pytest.mark.parametrize("method", ["ap", "ap1"])
def test_ap_training_loss_and_gradients_match_eager(fresh_switch, method):
    """The whole AP2/AP1 loss of a 2-bit LeNet-5 (16×16 inputs) in float32: loss and every parameter's gradient."""
    torch.manual_seed(0)
    model = cnn.lenet5(weight_bits=2, act_bits=2, method=method, tails="clamp", image_size=16)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(16, 1, 16, 16, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    model(x)  # initialise the quantizers' grids from data, once

    def loss_and_gradients():
        loss = ap_loss(model, x, y)
        return [loss.detach()] + list(torch.autograd.grad(loss, list(model.parameters())))

    eager, fused = _both(loss_and_gradients)
    _assert_close(eager, fused, rtol=1e-4, atol=1e-6)


FAILING_COMPILER = """
import warnings
import torch
import torch._inductor.config as inductor_config
from companion import perf

inductor_config.force_disable_caches = True
inductor_config.cpp.cxx = ("/nonexistent/c++",)
double_plus_one = perf.fusable(lambda x: 2 * x + 1)
x = torch.arange(5.0)
with perf.fused_kernels(True), warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = double_plus_one(x)
assert torch.equal(out, 2 * x + 1), out
assert any("fused kernels are off: compiling" in str(w.message) for w in caught), [str(w.message) for w in caught]
assert perf.fused_kernels_failure() is not None and not perf.fused_kernels_enabled()
print("fell back")
"""


@needs_compiler
def test_compiler_failure_warns_and_runs_eagerly():
    """In a child process: inductor keeps the compiler it found, so a broken one must not leak into other tests."""
    done = subprocess.run([sys.executable, "-c", FAILING_COMPILER], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "fell back" in done.stdout, done.stderr[-3000:]


@needs_compiler
def test_an_error_of_the_function_itself_is_raised(fresh_switch):
    broken = perf.fusable(lambda x: x.no_such_method())
    with perf.fused_kernels(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_method"):
            broken(torch.ones(3))
        assert perf.fused_kernels_enabled()  # the function's own error does not turn fusion off


@needs_compiler
def test_train_cli_fused_agrees_with_eager(fresh_switch, monkeypatch, tmp_path):
    """``train --fused``: the cell records fused kernels, and its loss curve matches the eager run's to round-off."""
    from companion.experiments.__main__ import main

    monkeypatch.setenv(perf.FUSED_ENV, "0")  # restored after the test: --fused sets it for worker processes
    args = ["train", "--dataset", "digits", "--model", "mlp", "--bits", "2/2", "--seeds", "0", "--methods", "ap",
            "--quick", "--no-progress", "--threads", "1"]
    runs = {}
    for name, extra in (("eager", []), ("fused", ["--fused"])):
        out = tmp_path / f"{name}.json"
        assert main([*args, *extra, "--out", str(out)]) == 0
        (cell,) = json.loads(out.read_text())["cells"].values()
        runs[name] = cell
    assert runs["fused"]["metadata"]["fused_kernels"] is True
    assert runs["eager"]["metadata"]["fused_kernels"] is False
    np.testing.assert_allclose(runs["fused"]["history"]["loss"], runs["eager"]["history"]["loss"], rtol=1e-4)
