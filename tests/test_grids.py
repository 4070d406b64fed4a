"""UniformGrid: points, bit widths, learnable parameters, validation."""
import math

import pytest
import torch

from companion.grids import UniformGrid


@pytest.mark.parametrize("bits", [1, 2, 3, 8])
def test_signed_points_are_alpha_k_plus_beta(bits):
    grid = UniformGrid(bits, scale=0.25, offset=0.1)
    k = list(range(-(2 ** (bits - 1)), 2 ** (bits - 1)))
    expected = torch.tensor([0.25 * i + 0.1 for i in k])
    assert grid.num_points == 2**bits == len(k)
    torch.testing.assert_close(grid.points, expected)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_unsigned_points_start_at_zero(bits):
    grid = UniformGrid(bits, scale=0.5, signed=False)
    torch.testing.assert_close(grid.points, 0.5 * torch.arange(2**bits, dtype=torch.float32))
    assert grid.level_range == (0, 2**bits - 1)


def test_binary_grid_is_plus_minus_magnitude():
    grid = UniformGrid.binary(0.7)
    torch.testing.assert_close(grid.points, torch.tensor([-0.7, 0.7]))
    assert math.isclose(float(grid.scale), 1.4)


def test_sixteen_bits_has_65536_points():
    assert UniformGrid(16).points.shape == (65536,)


def test_learnable_scale_and_offset_receive_gradients():
    scale = torch.tensor(0.5, requires_grad=True)
    offset = torch.tensor(0.2, requires_grad=True)
    grid = UniformGrid(2, scale=scale, offset=offset)
    grid.points.sum().backward()
    # d/dα Σ(α k + β) = Σ k = -2 - 1 + 0 + 1 = -2; d/dβ = K = 4
    assert scale.grad.item() == pytest.approx(-2.0)
    assert offset.grad.item() == pytest.approx(4.0)


def test_points_like_follows_dtype():
    grid = UniformGrid(3, scale=0.1)
    assert grid.points_like(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(bits=0), ValueError, "bits"),
        (dict(bits=17), ValueError, "1..16"),
        (dict(bits=2.0), TypeError, "bits"),
        (dict(bits=True), TypeError, "bits"),
        (dict(bits=2, scale=0.0), ValueError, "scale"),
        (dict(bits=2, scale=-1.0), ValueError, "scale"),
        (dict(bits=2, scale=float("nan")), ValueError, "scale"),
        (dict(bits=2, scale=float("inf")), ValueError, "scale"),
        (dict(bits=2, scale="1"), TypeError, "scale"),
        (dict(bits=2, offset=float("nan")), ValueError, "offset"),
        (dict(bits=2, scale=torch.ones(3)), ValueError, "scale"),
        (dict(bits=2, signed="yes"), TypeError, "signed"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, error, words):
    with pytest.raises(error, match=words):
        UniformGrid(**kwargs)


def test_binary_rejects_nonpositive_magnitude():
    with pytest.raises(ValueError, match="magnitude"):
        UniformGrid.binary(0.0)
