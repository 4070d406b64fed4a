"""Additive noise families of the noisy quantizer x̃ = x + ε.

Each family is symmetric around zero and is parametrised the way the
literature parametrises it, which is *not* always by its standard deviation:

=========  ===========  ==============================  ==================
family     parameter    cdf F(t)                        std
=========  ===========  ==============================  ==================
Logistic   scale s      σ(t/s) (the sigmoid)            s·π/√3
Gaussian   std σ        Φ(t/σ)                          σ
Uniform    width w      clip(t/w + 1/2, 0, 1)           w/√12
=========  ===========  ==============================  ==================

Relaxed Quantization (Louizos et al. 2019, §2.1) calls its logistic σ a
standard deviation but uses it as the scale s: its true std is σπ/√3.
Uniform noise of width equal to the grid spacing turns noisy quantization into
stochastic rounding (THEORY.md §2).

The parameter may be a learnable tensor (one element).  Besides ``cdf``,
``pdf`` and ``sample`` each family gives ``log_cdf`` and
``log_cell_mass(lo, hi) = log(F(hi) - F(lo))``, computed without the
cancellation that would make far-away cells exactly zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_generator, check_positive


class Noise:
    """Base class: a zero-mean symmetric noise with a positive scale parameter."""

    name = "noise"
    parameter_name = "scale"

    def __init__(self, scale):
        if isinstance(scale, torch.Tensor) and scale.numel() != 1:
            raise ValueError(f"{self.parameter_name} must be a scalar (one element), got shape {tuple(scale.shape)}")
        self.scale = check_positive(self.parameter_name, scale)

    # -- standardised forms, z = t / scale -------------------------------
    def _std_cdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _std_log_cdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _std_pdf(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _std_sample(self, shape, generator, dtype, device) -> torch.Tensor:
        raise NotImplementedError

    _std_std: float

    # -- public API ------------------------------------------------------
    def scale_like(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(self.scale, torch.Tensor):
            return self.scale.reshape(()).to(dtype=t.dtype, device=t.device)
        return torch.tensor(self.scale, dtype=t.dtype, device=t.device)

    def cdf(self, t: torch.Tensor) -> torch.Tensor:
        """F(t) = P(ε ≤ t), elementwise."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, torch.Tensor) else t
        return self._std_cdf(t / self.scale_like(t))

    def log_cdf(self, t: torch.Tensor) -> torch.Tensor:
        """log F(t), accurate in the far left tail."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, torch.Tensor) else t
        return self._std_log_cdf(t / self.scale_like(t))

    def pdf(self, t: torch.Tensor) -> torch.Tensor:
        """F'(t), elementwise."""
        t = torch.as_tensor(t, dtype=torch.get_default_dtype()) if not isinstance(t, torch.Tensor) else t
        s = self.scale_like(t)
        return self._std_pdf(t / s) / s

    def sample(self, shape, generator: torch.Generator | None = None, dtype=None, device=None) -> torch.Tensor:
        """Draw ε of the given shape (reproducible with ``generator``)."""
        check_generator("generator", generator)
        shape = tuple(shape) if not isinstance(shape, int) else (shape,)
        dtype = dtype or torch.get_default_dtype()
        z = self._std_sample(shape, generator, dtype, device)
        return z * self.scale_like(z)

    @property
    def std(self) -> float:
        """The standard deviation of ε (a float)."""
        scale = self.scale.detach() if isinstance(self.scale, torch.Tensor) else self.scale
        return float(scale) * self._std_std

    def log_cell_mass(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """log P(lo < ε ≤ hi) = log(F(hi) - F(lo)) for finite lo < hi.

        For cells right of zero it uses the survival function, F(hi) - F(lo) =
        F(-lo) - F(-hi) by symmetry, so both branches read log F(b) +
        log(1 - exp(log F(a) - log F(b))) with a ≤ 0: no cancellation near 1 and
        no underflow in the tails.
        """
        s = self.scale_like(lo)
        z_lo, z_hi = lo / s, hi / s
        right = z_lo > 0
        a = torch.where(right, -z_hi, z_lo)
        b = torch.where(right, -z_lo, z_hi)
        log_fa, log_fb = self._std_log_cdf(a), self._std_log_cdf(b)
        return log_fb + log1mexp(log_fa - log_fb)

    def __repr__(self) -> str:
        scale = self.scale.detach() if isinstance(self.scale, torch.Tensor) else self.scale
        return f"{type(self).__name__}({self.parameter_name}={float(scale):g})"


def normal_pdf(z: torch.Tensor) -> torch.Tensor:
    """φ(z) = exp(-z²/2)/√(2π), the standard normal density."""
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(d)) for d < 0 (Mächler 2012), finite gradient; d is kept below -tiny."""
    d = d.clamp(max=-torch.finfo(d.dtype).tiny)
    near = d > -math.log(2.0)
    d_near = torch.where(near, d, torch.full_like(d, -1.0))
    d_far = torch.where(near, torch.full_like(d, -1.0), d)
    return torch.where(near, torch.log(-torch.expm1(d_near)), torch.log1p(-torch.exp(d_far)))


class _LogNdtr(torch.autograd.Function):
    """log Φ(z) with a gradient φ(z)/Φ(z) that stays finite for any z.

    torch's own backward of ``log_ndtr`` overflows in float32 for z ≲ -2e6;
    here the inverse Mills ratio is computed in float64, and for z < -37 from
    its asymptotic series φ/Φ = t / (1 - 1/t² + 3/t⁴ - 15/t⁶), t = -z.
    """

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return torch.special.log_ndtr(z)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        z64 = z.double()
        direct_z = z64.clamp(min=-37.0)
        direct = torch.exp(-0.5 * direct_z**2 - torch.special.log_ndtr(direct_z)) / math.sqrt(2 * math.pi)
        t = (-z64).clamp(min=37.0)
        series = t / (1 - t**-2 + 3 * t**-4 - 15 * t**-6)
        ratio = torch.where(z64 < -37.0, series, direct)
        return grad * ratio.to(z.dtype)


_HALF_TYPES = (torch.float16, torch.bfloat16)


def log_ndtr(z: torch.Tensor) -> torch.Tensor:
    """log Φ(z), the Gaussian log-cdf, with a finite gradient everywhere.

    float16 and bfloat16 are computed in float32 (torch has no half-precision
    kernel for it on the CPU) and rounded back.
    """
    if z.dtype in _HALF_TYPES:
        return _LogNdtr.apply(z.float()).to(z.dtype)
    return _LogNdtr.apply(z)


def _uniform_open(shape, generator, dtype, device) -> torch.Tensor:
    """U(0, 1) kept away from 0 and 1 so that logs stay finite."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    tiny = torch.finfo(dtype).eps
    return u.clamp(tiny, 1 - tiny)


class Logistic(Noise):
    """Logistic noise with scale s: F(t) = σ(t/s), pdf σ'(t/s)/s, std sπ/√3."""

    name = "logistic"
    parameter_name = "scale"
    _std_std = math.pi / math.sqrt(3.0)

    def _std_cdf(self, z):
        return torch.sigmoid(z)

    def _std_log_cdf(self, z):
        return F.logsigmoid(z)

    def _std_pdf(self, z):
        p = torch.sigmoid(z)
        return p * (1 - p)

    def _std_sample(self, shape, generator, dtype, device):
        u = _uniform_open(shape, generator, dtype, device)
        return torch.log(u) - torch.log1p(-u)


class Gaussian(Noise):
    """Gaussian noise with standard deviation σ: F(t) = Φ(t/σ)."""

    name = "gaussian"
    parameter_name = "std"
    _std_std = 1.0

    def __init__(self, std):
        super().__init__(std)

    def _std_cdf(self, z):
        return torch.special.ndtr(z)

    def _std_log_cdf(self, z):
        return log_ndtr(z)

    def _std_pdf(self, z):
        return normal_pdf(z)

    def _std_sample(self, shape, generator, dtype, device):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)


class Uniform(Noise):
    """Uniform noise on [-w/2, w/2]: F(t) = clip(t/w + 1/2, 0, 1), std w/√12.

    With w equal to the grid spacing, noisy quantization is stochastic rounding.
    """

    name = "uniform"
    parameter_name = "width"
    _std_std = 1.0 / math.sqrt(12.0)

    def __init__(self, width):
        super().__init__(width)

    def _std_cdf(self, z):
        return (z + 0.5).clamp(0.0, 1.0)

    def _std_log_cdf(self, z):
        return _safe_log(self._std_cdf(z))

    def _std_pdf(self, z):
        return ((z >= -0.5) & (z <= 0.5)).to(z.dtype)

    def _std_sample(self, shape, generator, dtype, device):
        return torch.rand(shape, generator=generator, dtype=dtype, device=device) - 0.5

    def log_cell_mass(self, lo, hi):
        # Piecewise linear cdf: the plain difference is exact enough and may be 0.
        return _safe_log(self.cdf(hi) - self.cdf(lo))


def _safe_log(p: torch.Tensor) -> torch.Tensor:
    """log p with log 0 = -inf and a zero (not NaN) gradient there."""
    positive = p > 0
    return torch.where(positive, torch.log(torch.where(positive, p, torch.ones_like(p))), torch.full_like(p, -math.inf))


NOISE_FAMILIES = {"logistic": Logistic, "gaussian": Gaussian, "uniform": Uniform}


def make_noise(family: str, scale) -> Noise:
    """Build a noise by name: 'logistic' (scale), 'gaussian' (std), 'uniform' (width)."""
    from ._checks import check_choice

    check_choice("family", family, NOISE_FAMILIES)
    return NOISE_FAMILIES[family](scale)
