"""Moment propagation through whole companion.nn models, and training with AP2."""
import pytest
import torch

from companion import moments as M
from companion import nn as cnn
from companion.rounding import quantized_moments


def _mlp(tails="clamp", seed=0):
    torch.manual_seed(seed)
    return cnn.mlp(16, [12], 4, weight_bits=2, act_bits=2, method="ap", tails=tails)


def test_zero_noise_free_model_matches_forward():
    # A full-precision model: propagate with var 0 is the plain forward pass.
    torch.manual_seed(0)
    model = cnn.lenet5(method="fp", image_size=16)
    x = torch.randn(3, 1, 16, 16)
    mean, var = M.propagate(model, x)
    torch.testing.assert_close(mean, model(x), atol=1e-4, rtol=1e-4)
    assert float(var.detach().abs().max()) < 1e-6


@pytest.mark.parametrize("tails", ["clamp", "truncate"])
def test_mlp_layers_against_monte_carlo(tails):
    # 2-bit MLP 16-12-4, 4 inputs, 20,000 samples of the stochastic network (fresh weights and
    # activation noise per sample).  MC noise: relative SE of a variance ≈ 1 %.  Loose bound
    # (the factorised Gaussian assumption, not sampling, dominates): 10 % in mean and variance.
    model = _mlp(tails)
    x = 3 * torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    rows = M.layer_errors(model, x, 20000, chunk=2000, generator=torch.Generator().manual_seed(2))
    assert [r["layer"] for r in rows] == ["QuantLinear", "ReLU", "QuantLinear"]
    for r in rows:
        assert r["mean_error"] < 0.10 and r["var_error"] < 0.10, r


def test_monte_carlo_reference_detects_a_wrong_variance():
    # The reference is sharp enough to fail a wrong rule: dropping the weight variance
    # (σ'² = μ_W² σ² only) errs by far more than the bound used above.
    model = _mlp()
    x = 3 * torch.rand(4, 16, generator=torch.Generator().manual_seed(1))
    ref_mean, ref_var = M.sample_layers(model, x, 20000, chunk=2000, generator=torch.Generator().manual_seed(2))[0]
    layer = model[0]
    w_mean, _ = quantized_moments(layer.weight, layer.weight_quantizer.grid, layer.weight_quantizer.noise, tails="clamp")
    wrong = M.linear(x, torch.zeros_like(x), w_mean, layer.bias)[1]
    assert M.relative_error(wrong, ref_var) > 0.5


def test_ap_loss_finite_with_finite_gradients():
    model = _mlp()
    x, y = 50 * torch.randn(8, 16), torch.randint(0, 4, (8,))
    for method in ("ap", "ap1"):
        cnn.set_method(model, method)
        loss = M.ap_loss(model, x, y)
        assert torch.isfinite(loss)
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)
    cnn.set_method(model, "ap")
    assert M.ap_loss(model, x, y).item() != pytest.approx(M.ap_loss(model, x, y, method="ap1").item())


def test_lenet_ap_loss_and_gradient_finite():
    torch.manual_seed(0)
    model = cnn.lenet5(weight_bits=2, act_bits=2, method="ap", image_size=16, tails="clamp")
    x, y = torch.rand(4, 1, 16, 16), torch.randint(0, 10, (4,))
    loss = M.ap_loss(model, x, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_training_with_ap_improves_accuracy():
    from companion import data, train

    x, y = data.load("digits", flatten=True).train
    x, y = x[:400], y[:400]
    torch.manual_seed(0)
    model = cnn.mlp(64, [32], 10, weight_bits=2, act_bits=2, method="ap", tails="clamp")
    before = train.evaluate(model, x, y, samples=2, rules=())["stochastic"]
    train.fit(model, (x, y), epochs=3, batch_size=50, lr=1e-2, seed=0, progress=False)
    after = train.evaluate(model, x, y, samples=2, rules=())["stochastic"]
    assert after > before + 0.3, (before, after)


def test_errors():
    model = _mlp()
    with pytest.raises(ValueError, match="method must be one of 'ap', 'ap1'"):
        M.ap_loss(model, torch.zeros(2, 16), torch.zeros(2, dtype=torch.long), method="ste")
    with pytest.raises(TypeError, match="nn.Sequential"):
        M.propagate(model[0], torch.zeros(2, 16))
    with pytest.raises(ValueError, match="cannot propagate moments through Tanh"):
        M.propagate(torch.nn.Sequential(torch.nn.Tanh()), torch.zeros(2, 16))


def test_moments_explorer_redraws():
    from companion.widgets import moments_explorer

    widget = moments_explorer(samples=500)
    widget.update()
    first = widget.result.axes[0].lines[1].get_ydata().copy()  # ReLU variance curve
    widget.children[0].value = 2.0
    widget.update()
    second = widget.result.axes[0].lines[1].get_ydata()
    assert not (first == second).all()


def test_ap1_is_the_forward_pass_of_the_mean_weights_and_activations():
    # AP1 carries means only: every quantizer is replaced by its mean E[x̂|x] (computed here by
    # companion.rounding.quantized_moments, independent code), ReLU and max-pool act on the means.
    torch.manual_seed(3)
    model = cnn.lenet5(weight_bits=2, act_bits=2, method="ap1", tails="clamp", image_size=16)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    model = model.double()
    mean, var = M.propagate(model, x, means_only=True)
    h = x
    for layer in model:
        if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
            for name, q in (("act", layer.act_quantizer), ("weight", layer.weight_quantizer)):
                if q is not None and not bool(q.initialized):
                    q.init_from(h)
            if layer.act_quantizer is not None:
                h = quantized_moments(h, layer.act_quantizer.grid, layer.act_quantizer.noise, "clamp")[0]
            q = layer.weight_quantizer
            w = quantized_moments(layer.weight, q.grid, q.noise, "clamp")[0]
            h = (torch.nn.functional.conv2d(h, w, layer.bias) if isinstance(layer, torch.nn.Conv2d)
                 else torch.nn.functional.linear(h, w, layer.bias))
        else:
            h = layer(h)
    torch.testing.assert_close(mean, h, rtol=1e-9, atol=1e-9)
    assert float(var.detach().abs().max()) == 0.0


def test_pool_first_is_the_same_network_another_approximation():
    # pool_first propagates ReLU → MaxPool2d as MaxPool2d → ReLU (max(relu a, relu b) = relu max(a, b)):
    # without noise both orders give the plain forward pass; with noise both yield at the pool's index,
    # stay finite, and differ (the ADF approximation is applied to other variables).
    torch.manual_seed(5)
    fp = cnn.lenet5(method="fp", image_size=16).double()
    x = torch.randn(3, 1, 16, 16, dtype=torch.float64)
    for pool_first in (False, True):
        torch.testing.assert_close(M.propagate(fp, x, pool_first=pool_first)[0], fp(x), rtol=1e-12, atol=1e-12)
    model = cnn.lenet5(weight_bits=2, act_bits=2, method="ap", tails="clamp", image_size=16).double()
    layers = {flag: {i: (m, v) for i, _, m, v in M.propagate_layers(model, x, pool_first=flag)} for flag in (False, True)}
    relu_before_pool = [i for i in range(len(model) - 1)
                        if isinstance(model[i], torch.nn.ReLU) and isinstance(model[i + 1], torch.nn.MaxPool2d)]
    assert relu_before_pool and all(i not in layers[True] and i in layers[False] for i in relu_before_pool)
    assert set(layers[True]) == set(layers[False]) - set(relu_before_pool)
    for i in relu_before_pool:
        m_late, v_late = layers[False][i + 1]
        m_first, v_first = layers[True][i + 1]
        assert torch.isfinite(m_first).all() and torch.isfinite(v_first).all() and (v_first >= 0).all()
        assert not torch.allclose(m_first, m_late)
