"""companion.nn: Quantizer, quantized layers and models, deterministic extraction."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.nn import (
    DETERMINISTIC_RULES,
    METHODS,
    QuantConv2d,
    QuantLinear,
    Quantizer,
    lenet5,
    mlp,
    quantizers,
    set_method,
    to_deterministic,
)
from companion.rounding import round_to_grid


def test_quantizer_parameters_stay_positive_and_init_from_data():
    q = Quantizer(2, signed=True)
    x = torch.linspace(-1, 1, 1001)
    q.init_from(x)
    # 99 % quantile of |x| = 0.99; a signed 2-bit grid (levels -2..1) shifted by α/2 is ±α/2, ±3α/2: 3α/2 = 0.99.
    assert q.scale.item() == pytest.approx(0.99 / 1.5, rel=1e-5)
    assert q.noise_scale.item() == pytest.approx(0.99 / 4.5, rel=1e-5)  # σ = α/3
    points = q.grid.points.detach()
    torch.testing.assert_close(points, -points.flip(0))  # symmetric about 0
    assert points[-1].item() == pytest.approx(0.99, rel=1e-5)
    with torch.no_grad():
        q.raw_scale.fill_(-50.0)
        q.raw_noise_scale.fill_(-50.0)
    assert q.scale.item() > 0 and q.noise_scale.item() > 0
    assert q.grid.scale.item() > 0 and q.noise.scale.item() > 0  # valid objects (the constructors check)


def test_unsigned_init_and_fixed_noise_scale():
    q = Quantizer(2, signed=False, noise_scale=0.05).init_from(torch.linspace(0, 3, 301))
    assert q.grid.level_range == (0, 3)
    assert q.scale.item() == pytest.approx(torch.quantile(torch.linspace(0, 3, 301), 0.99).item() / 3, rel=1e-5)
    assert q.noise_scale.item() == pytest.approx(0.05, rel=1e-5)


def test_method_is_validated_and_settable():
    q = Quantizer(3)
    with pytest.raises(ValueError, match="'rq-st'"):
        q.method = "relaxed"
    for method in METHODS:
        q.method = method
    with pytest.raises(ValueError, match="bits"):
        Quantizer(0)
    with pytest.raises(ValueError, match="temperature"):
        Quantizer(2, temperature=0.0)


@pytest.mark.parametrize("method", ["noisy-st", "rq", "rq-st", "mean"])
def test_gradients_reach_alpha_beta_and_sigma(method):
    q = Quantizer(2, method=method).init_from(torch.randn(100))
    q.generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, requires_grad=True)
    (q(x) * torch.linspace(-1, 1, 64)).sum().backward()
    for p in (q.raw_scale, q.raw_offset, q.raw_noise_scale, x):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_quantizer_fp_is_identity_and_activation_init_is_lazy():
    q = Quantizer(2, signed=False, method="fp")
    x = torch.rand(5)
    assert q(x) is x and not bool(q.initialized)
    q.method = "ste"
    q(x * 4)
    assert bool(q.initialized)


def test_quant_linear_and_conv_equal_functional_ops_on_rounded_tensors():
    torch.manual_seed(0)
    layer = QuantLinear(6, 4, weight_bits=3, act_bits=2, method="ste")
    x = torch.rand(5, 6) * 2
    y = layer(x)
    w = round_to_grid(layer.weight, layer.weight_quantizer.grid)
    xq = round_to_grid(x, layer.act_quantizer.grid)
    torch.testing.assert_close(y, F.linear(xq, w, layer.bias))
    conv = QuantConv2d(2, 3, 3, padding=1, weight_bits=2, method="ste")
    img = torch.randn(1, 2, 5, 5)
    w = round_to_grid(conv.weight, conv.weight_quantizer.grid)
    torch.testing.assert_close(conv(img), F.conv2d(img, w, conv.bias, padding=1))
    assert conv.act_quantizer is None
    full = QuantLinear(3, 2)
    assert full.weight_quantizer is None and full.act_quantizer is None


def test_models_use_only_walkable_modules_and_have_the_right_shapes():
    allowed = (QuantLinear, QuantConv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
    net = lenet5(weight_bits=2, act_bits=2, method="ste")
    assert all(isinstance(m, allowed) for m in net)
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    channels = [m.out_channels for m in net if isinstance(m, QuantConv2d)]
    features = [m.out_features for m in net if isinstance(m, QuantLinear)]
    assert channels == [32, 64] and features == [512, 10]  # 32C5-MP2-64C5-MP2-512FC-10
    small = mlp(64, [32, 16], 10, weight_bits=2, act_bits=2)
    assert all(isinstance(m, allowed) for m in small)
    layers = [m for m in small if isinstance(m, QuantLinear)]
    assert layers[0].act_quantizer is None and all(m.act_quantizer is not None for m in layers[1:])
    assert small(torch.rand(3, 64)).shape == (3, 10)
    assert lenet5(in_channels=3, image_size=32)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_set_method_changes_every_quantizer():
    net = mlp(8, 8, 3, weight_bits=2, act_bits=2, method="ste")
    set_method(net, "rq-st")
    assert {q.method for q in quantizers(net)} == {"rq-st"}
    with pytest.raises(ValueError, match="method"):
        set_method(net, "bogus")


@pytest.mark.parametrize("rule", DETERMINISTIC_RULES)
def test_to_deterministic_gives_grid_weights_and_deterministic_activations(rule):
    torch.manual_seed(0)
    net = mlp(8, 16, 3, weight_bits=2, act_bits=2, method="rq", tails="clamp")
    for q in quantizers(net):
        q.generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            q.raw_noise_scale.add_(1.0)  # a broad noise, so that the rules differ
    x = torch.rand(20, 8)
    net(x)  # initialise the activation quantizers
    before = [p.clone() for p in net.parameters()]
    det = to_deterministic(net, rule)
    for layer in det:
        if isinstance(layer, QuantLinear):
            assert torch.isin(layer.weight, layer.weight_quantizer.grid.points.detach()).all()
    assert {q.method for q in quantizers(det)} == {"ste"}
    assert torch.equal(det(x), det(x))
    for layer in det:
        if isinstance(layer, QuantLinear) and layer.act_quantizer is not None:
            h = torch.rand(10, 16) * 3
            assert torch.isin(layer.act_quantizer(h), layer.act_quantizer.grid.points.detach()).all()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # original untouched
    assert {q.method for q in quantizers(net)} == {"rq"}


def test_deterministic_rules_against_brute_force():
    q = Quantizer(2, tails="clamp", noise_scale=0.6)
    with torch.no_grad():
        q.raw_scale.fill_(math.log(0.7))  # α = 0.7
    layer = QuantLinear(50, 1, weight_bits=2)
    layer.weight_quantizer = q
    w = torch.linspace(-2.5, 2.5, 50, dtype=torch.float32).reshape(1, 50)
    with torch.no_grad():
        layer.weight.copy_(w)
    grid, points = q.grid, q.grid.points.detach().double()
    b = points[:-1] + grid.scale.item() / 2
    # Clamped logistic categorical from its cdf differences (float64, no log space).
    cdf = torch.sigmoid((b - w.double().reshape(-1, 1)) / 0.6)
    edges = torch.cat([torch.zeros(50, 1, dtype=torch.float64), cdf, torch.ones(50, 1, dtype=torch.float64)], 1)
    p = edges[:, 1:] - edges[:, :-1]
    expected = {
        "round": round_to_grid(w.double(), grid).reshape(-1),
        "mode": points[p.argmax(1)],
        "mean-round": round_to_grid((p * points).sum(1), grid),
    }
    assert not torch.equal(expected["mode"], expected["round"])  # the rules really differ here
    for rule, want in expected.items():
        got = to_deterministic(nn.Sequential(layer), rule)[0].weight.detach().double().reshape(-1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_eval_mode_rq_draws_hard_samples():
    q = Quantizer(2, method="rq").init_from(torch.randn(100))
    q.generator = torch.Generator().manual_seed(0)
    x = torch.randn(200)
    points = q.grid.points.detach()
    assert not torch.isin(q(x).detach(), points).all()
    q.eval()
    assert torch.isin(q(x).detach(), points).all()


def test_to_deterministic_copies_models_with_generators():
    net = mlp(4, 4, 2, weight_bits=2, act_bits=2, method="sr")
    for q in quantizers(net):
        q.generator = torch.Generator().manual_seed(0)
    det = to_deterministic(net, "round")
    assert isinstance(det, nn.Sequential) and det is not net
