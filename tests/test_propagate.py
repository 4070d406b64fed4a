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
