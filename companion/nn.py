"""Quantized layers and models with a ``method=`` switch, and deterministic extraction.

A :class:`Quantizer` owns one grid (bits, signedness, learnable scale α > 0 and
offset β) and one noise model (family, learnable scale σ > 0) and quantizes
its input with :func:`companion.estimators.quantize`.  :class:`QuantLinear` and
:class:`QuantConv2d` quantize their latent real weights and/or their input
activations; :func:`mlp` and :func:`lenet5` build ``nn.Sequential`` models
from them (plus ReLU, MaxPool2d and Flatten only, so that
``companion.moments.propagate`` can walk them).  :func:`to_deterministic`
turns a trained stochastic model into one deterministic quantized model.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_int, check_positive, check_tensor
from .estimators.pathwise import quantize
from .grids import UniformGrid
from .noise import NOISE_FAMILIES, make_noise
from .relaxed import check_local_radius
from .rounding import TAILS, log_grid_probabilities, quantized_moments, round_to_grid

METHODS = ("fp", "ste", "lsq", "sr", "noisy-st", "rq", "rq-st", "mean", "ap", "ap1")
"""Training methods of a quantized model: "fp" full precision, the pathwise
quantizers of :data:`companion.estimators.PATHWISE_METHODS`, and "ap"/"ap1"
(moment propagation, ``companion.moments``; their sampling forward is "noisy-st")."""

DETERMINISTIC_RULES = ("round", "mode", "mean-round")

SAMPLING_FORWARD = {"ap": "noisy-st", "ap1": "noisy-st"}
"""The pathwise forward used by methods that are not pathwise themselves."""

EVAL_FORWARD = {"rq": "rq-st"}
"""In eval mode an RQ quantizer draws hard samples: the stochastic *quantized* network."""

NOISE_TO_SCALE = 1.0 / 3.0
"""Initial σ/α when ``noise_scale`` is None (RQ initialises σ at α/3) [recalled]."""

INIT_QUANTILE = 0.99
"""α is initialised so that the grid reaches the 99 % quantile of |x| (robust to outliers)."""

_DETERMINISTIC_CHUNK = 1 << 16


class Quantizer(nn.Module):
    """Quantize a tensor onto a learnable b-bit grid with a chosen pathwise method.

    Parameters (all learnable), scale-free so that one optimizer step changes
    α, β and σ by a small *relative* amount whatever their size:
    ``raw_scale`` with α = exp(raw_scale) > 0, ``raw_offset`` with β = α·raw_offset
    (initially 0), ``raw_noise_scale`` with σ = exp(raw_noise_scale) > 0.
    (With β itself as the parameter, as before, each Adam step moved it by about
    lr = 1e-3, a tenth of the spacing of a small activation grid (α ≈ 0.01): on
    LeNet-5 the offsets drifted by two grid steps within 24 steps.  α and σ were
    softplus of their parameters, which is scale-free only for small values.)

    Args:
        bits: 1..16.
        signed: levels -2^{b-1}..2^{b-1}-1 (weights) or 0..2^b-1 (activations after ReLU).
        method: one of :data:`METHODS` (settable later; "fp" returns x unchanged).
        noise: the noise family, "logistic" (RQ), "gaussian" or "uniform".
        noise_scale: initial σ; None sets σ = α/3 when α is initialised.
        temperature, tails, local_radius: see :func:`companion.estimators.quantize`.

    α is set from data by :meth:`init_from`; an activation quantizer that was
    never initialised does it on its first forward pass.  ``.generator`` (a
    torch.Generator or None for the global RNG) drives the sampling.
    """

    def __init__(self, bits: int, *, signed: bool = True, method: str = "ste", noise: str = "logistic",
                 noise_scale=None, temperature=1.0, tails: str = "truncate", local_radius=None):
        super().__init__()
        self.bits = check_int("bits", bits, 1, 16)
        if not isinstance(signed, bool):
            raise TypeError(f"signed must be True or False, got {signed!r}")
        self.signed = signed
        self.method = method
        self.noise_family = check_choice("noise", noise, NOISE_FAMILIES)
        self.temperature = float(check_positive("temperature", temperature))
        self.tails = check_choice("tails", tails, TAILS)
        self.local_radius = check_local_radius(local_radius)
        self._fixed_noise_scale = None if noise_scale is None else float(check_positive("noise_scale", noise_scale))
        self.raw_scale = nn.Parameter(torch.tensor(0.0))
        self.raw_offset = nn.Parameter(torch.tensor(0.0))
        self.raw_noise_scale = nn.Parameter(torch.tensor(math.log(self._fixed_noise_scale or NOISE_TO_SCALE)))
        self.register_buffer("initialized", torch.tensor(False))
        self.generator: torch.Generator | None = None

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice("method", value, METHODS)

    @property
    def scale(self) -> torch.Tensor:
        """α = exp(raw_scale) > 0."""
        return torch.exp(self.raw_scale)

    @property
    def offset(self) -> torch.Tensor:
        """β = α·raw_offset (the grid's offset in units of its spacing)."""
        return self.scale * self.raw_offset

    @property
    def noise_scale(self) -> torch.Tensor:
        """σ = exp(raw_noise_scale) > 0."""
        return torch.exp(self.raw_noise_scale)

    @property
    def grid(self) -> UniformGrid:
        """The grid α·k + β with the current (learnable) α and β."""
        return UniformGrid(self.bits, scale=self.scale, offset=self.offset, signed=self.signed)

    @property
    def noise(self):
        """The noise model with the current (learnable) scale σ."""
        return make_noise(self.noise_family, self.noise_scale)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> "Quantizer":
        """Set α (and β) from data: q = the 99 % quantile of |x| (of x for unsigned grids).

        * unsigned grids (activations after ReLU): α = q / k_max, β = 0, so 0 is a grid point;
        * signed grids (weights): β = α/2 and α = q / (k_max + 1/2).  A signed b-bit grid
          has levels -2^{b-1}..2^{b-1}-1, one more below zero than above; shifted by
          half a step its points ±α/2, ±3α/2, ... are symmetric about 0 and reach ±q.
          Without the shift the asymmetric grid biases E[ŵ] of symmetric weights
          negative (for 2 bits, levels -2..1, the positive side clips), and summed
          over hundreds of inputs that kills the ReLUs after LeNet-5's second
          convolution under the noisy methods.

        σ = α/3 unless ``noise_scale`` was given.
        """
        check_tensor("x", x, allow_empty=False)
        values = x.detach().flatten().float()
        values = values.abs() if self.signed else values.clamp(min=0)
        if values.numel() > 1 << 20:
            values = values[:: values.numel() // (1 << 20) + 1]
        q = torch.quantile(values, INIT_QUANTILE).item()
        if not q > 0:
            q = values.max().item() if values.max().item() > 0 else 1.0
        k_min, k_max = self.grid.level_range
        half = 0.5 if self.signed else 0.0
        alpha = q / (k_max + half)
        self.raw_scale.fill_(math.log(alpha))
        self.raw_offset.fill_(half)
        sigma = self._fixed_noise_scale or NOISE_TO_SCALE * alpha
        self.raw_noise_scale.fill_(math.log(sigma))
        self.initialized.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method == "fp":
            return x
        if not bool(self.initialized):
            self.init_from(x)
        method = SAMPLING_FORWARD.get(self.method, self.method)
        if not self.training:
            method = EVAL_FORWARD.get(method, method)
        return quantize(x, self.grid, method, noise=self.noise, temperature=self.temperature, tails=self.tails,
                        local_radius=self.local_radius, generator=self.generator)

    def extra_repr(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return f"bits={self.bits}, {kind}, method={self.method!r}, noise={self.noise_family!r}, tails={self.tails!r}"


def _make_quantizer(bits, signed, method, kwargs) -> Quantizer | None:
    return None if bits is None else Quantizer(bits, signed=signed, method=method, **kwargs)


class _QuantizedLayer:
    """What QuantLinear and QuantConv2d share: a weight and an input quantizer (each None = full precision)."""

    def _attach_quantizers(self, weight_bits, act_bits, act_signed: bool, method: str, quantizer_kwargs) -> None:
        self.weight_quantizer = _make_quantizer(weight_bits, True, method, quantizer_kwargs)
        self.act_quantizer = _make_quantizer(act_bits, act_signed, method, quantizer_kwargs)
        if self.weight_quantizer is not None:
            self.weight_quantizer.init_from(self.weight)

    def quantized_weight(self) -> torch.Tensor:
        return self.weight if self.weight_quantizer is None else self.weight_quantizer(self.weight)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.act_quantizer is None else self.act_quantizer(x)


class QuantLinear(_QuantizedLayer, nn.Linear):
    """y = x̂ Ŵᵀ + b with x̂ = act_quantizer(x), Ŵ = weight_quantizer(W) (each None = full precision).

    ``weight`` and ``bias`` are the latent real parameters; the bias is not
    quantized.  The weight quantizer's α is initialised from the initial weights.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, weight_bits=None, act_bits=None,
                 act_signed: bool = False, method: str = "ste", **quantizer_kwargs):
        super().__init__(in_features, out_features, bias=bias)
        self._attach_quantizers(weight_bits, act_bits, act_signed, method, quantizer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)


class QuantConv2d(_QuantizedLayer, nn.Conv2d):
    """2-D convolution with quantized weights and/or quantized input activations (see :class:`QuantLinear`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True, *,
                 weight_bits=None, act_bits=None, act_signed: bool = False, method: str = "ste", **quantizer_kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self._attach_quantizers(weight_bits, act_bits, act_signed, method, quantizer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)


def mlp(in_features: int, hidden, num_classes: int, *, weight_bits=None, act_bits=None, method: str = "ste",
        **quantizer_kwargs) -> nn.Sequential:
    """in → hidden... → classes with ReLUs; all weights quantized, and the (post-ReLU, unsigned)
    inputs of every layer but the first (the first layer sees the data).

    ``hidden``: an int or a sequence of ints (one per hidden layer).
    """
    check_choice("method", method, METHODS)
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    widths = [in_features, *sizes, num_classes]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(QuantLinear(n_in, n_out, weight_bits=weight_bits, act_bits=act_bits if i else None,
                                  method=method, **quantizer_kwargs))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def lenet5(*, weight_bits=None, act_bits=None, method: str = "ste", in_channels: int = 1, num_classes: int = 10,
           image_size: int = 28, **quantizer_kwargs) -> nn.Sequential:
    """RQ's LeNet-5: 32C5-MP2-64C5-MP2-512FC-10, quantized like :func:`mlp` (the input image is not)."""
    check_choice("method", method, METHODS)
    check_int("in_channels", in_channels, 1, 4096)
    check_int("num_classes", num_classes, 1, 100000)
    check_int("image_size", image_size, 1, 4096)
    side = ((image_size - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError(f"image_size must be at least 16 for two 5x5 convolutions and pools, got {image_size}")
    q = dict(weight_bits=weight_bits, method=method, **quantizer_kwargs)
    return nn.Sequential(
        QuantConv2d(in_channels, 32, 5, **q), nn.ReLU(), nn.MaxPool2d(2),
        QuantConv2d(32, 64, 5, act_bits=act_bits, **q), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        QuantLinear(64 * side * side, 512, act_bits=act_bits, **q), nn.ReLU(),
        QuantLinear(512, num_classes, act_bits=act_bits, **q),
    )


def quantizers(model: nn.Module) -> list[Quantizer]:
    """Every Quantizer in the model, in module order."""
    return [m for m in model.modules() if isinstance(m, Quantizer)]


def set_method(model: nn.Module, method: str) -> nn.Module:
    """Set ``method`` on every Quantizer of the model (in place); returns the model."""
    check_choice("method", method, METHODS)
    for q in quantizers(model):
        q.method = method
    return model


def deterministic_weight(weight: torch.Tensor, quantizer: Quantizer, rule: str) -> torch.Tensor:
    """Grid values for the latent weights by ``rule`` (computed in chunks, no gradient):

    * "round": round-to-nearest of the latent weight (RQ Algorithm 2);
    * "mode": the most probable grid point under the noisy categorical p(x̂|w);
    * "mean-round": round-to-nearest of E[x̂|w].
    """
    check_choice("rule", rule, DETERMINISTIC_RULES)
    with torch.no_grad():
        grid, noise = quantizer.grid, quantizer.noise
        flat = weight.detach().flatten()
        out = torch.empty_like(flat)
        for start in range(0, flat.numel(), _DETERMINISTIC_CHUNK):
            w = flat[start:start + _DETERMINISTIC_CHUNK]
            if rule == "round":
                value = round_to_grid(w, grid)
            elif rule == "mode":
                value = grid.points_like(w)[log_grid_probabilities(w, grid, noise, quantizer.tails).argmax(-1)]
            else:
                value = round_to_grid(quantized_moments(w, grid, noise, quantizer.tails)[0], grid)
            out[start:start + _DETERMINISTIC_CHUNK] = value
        return out.view_as(weight)


def to_deterministic(model: nn.Module, rule: str = "round") -> nn.Module:
    """A deep copy whose quantized weights hold grid values chosen by ``rule`` and whose quantizers round to nearest.

    Every Quantizer of the copy uses method "ste" (its forward is the
    deterministic round-to-nearest of RQ Algorithm 2), so weight quantizers
    leave the grid values unchanged and activation quantizers are deterministic.
    Rules: :data:`DETERMINISTIC_RULES` (see :func:`deterministic_weight`).
    """
    check_choice("rule", rule, DETERMINISTIC_RULES)
    result = copy.deepcopy(model)
    for layer in result.modules():
        quantizer = getattr(layer, "weight_quantizer", None)
        if isinstance(quantizer, Quantizer) and quantizer.method != "fp":
            layer.weight.data.copy_(deterministic_weight(layer.weight, quantizer, rule))
    for q in quantizers(result):
        if q.method != "fp":
            q.method = "ste"
    return result
