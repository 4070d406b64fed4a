"""Uniform quantization grids.

A b-bit grid has K = 2**b points g_k = α·k + β with integer levels

* signed:   k = -2^{b-1}, ..., 2^{b-1} - 1   (RQ, Louizos et al. 2019, §2)
* unsigned: k = 0, ..., 2^b - 1              (activations after a ReLU)

α (``scale``) is the spacing δ between neighbours and β (``offset``) shifts
the grid.  Both may be learnable tensors; :attr:`points` is recomputed from
them on every access so gradients flow into α and β.
"""
from __future__ import annotations

import torch

from ._checks import check_finite, check_int, check_positive


class UniformGrid:
    """A uniform grid of K = 2**bits points α·k + β.

    Args:
        bits: 1..16.
        scale: spacing α > 0 (float or 0-dim tensor, possibly learnable).
        offset: shift β (float or 0-dim tensor, possibly learnable).
        signed: levels centred on zero (True) or starting at zero (False).

    >>> UniformGrid(2, scale=0.5).points
    tensor([-1.0000, -0.5000,  0.0000,  0.5000])
    """

    def __init__(self, bits: int, scale=1.0, offset=0.0, signed: bool = True):
        self.bits = check_int("bits", bits, 1, 16)
        if not isinstance(signed, bool):
            raise TypeError(f"signed must be True or False, got {signed!r}")
        for name, value in (("scale", scale), ("offset", offset)):
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"{name} must be a scalar (one element), got shape {tuple(value.shape)}")
        self.scale = check_positive("scale", scale)
        self.offset = check_finite("offset", offset)
        self.signed = signed

    @classmethod
    def binary(cls, magnitude=1.0) -> "UniformGrid":
        """The two points {-m, +m}: a 1-bit signed grid with α = 2m, β = m."""
        magnitude = check_positive("magnitude", magnitude)
        return cls(1, scale=2 * magnitude, offset=magnitude, signed=True)

    @property
    def num_points(self) -> int:
        """K = 2**bits."""
        return 2**self.bits

    @property
    def level_range(self) -> tuple[int, int]:
        """(k_min, k_max), the integer range of the levels (torch's quant_min, quant_max)."""
        if self.signed:
            return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1
        return 0, 2**self.bits - 1

    def levels(self, dtype=None, device=None) -> torch.Tensor:
        """The integer levels k as a float tensor of shape [K]."""
        k_min, k_max = self.level_range
        return torch.arange(k_min, k_max + 1, dtype=dtype or torch.get_default_dtype(), device=device)

    def points_like(self, x: torch.Tensor) -> torch.Tensor:
        """Points α·k + β, shape [K], in the dtype and on the device of ``x``."""
        return self.levels(x.dtype, x.device) * self.scale_like(x) + self.offset_like(x)

    def scale_like(self, x: torch.Tensor) -> torch.Tensor:
        return _as_tensor(self.scale, x)

    def offset_like(self, x: torch.Tensor) -> torch.Tensor:
        return _as_tensor(self.offset, x)

    @property
    def points(self) -> torch.Tensor:
        """The K grid points, shape [K]."""
        like = self.scale if isinstance(self.scale, torch.Tensor) else torch.empty(0)
        return self.points_like(like)

    @property
    def lowest(self) -> torch.Tensor:
        return self.points[0]

    @property
    def highest(self) -> torch.Tensor:
        return self.points[-1]

    def __repr__(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return f"UniformGrid(bits={self.bits}, scale={_show(self.scale)}, offset={_show(self.offset)}, {kind})"


def _as_tensor(value, x: torch.Tensor) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.reshape(()).to(dtype=x.dtype, device=x.device)
    return torch.tensor(value, dtype=x.dtype, device=x.device)


def _show(value) -> str:
    return f"{float(value):g}"
