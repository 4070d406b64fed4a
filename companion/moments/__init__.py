"""Analytic moment propagation (AP1/AP2) through quantized networks: chapter 07.

Layers (:mod:`companion.moments.layers`) map (mean, var) to (mean, var);
:func:`propagate` walks a ``companion.nn`` model and :func:`ap_loss` is the
AP2 training loss (Shekhovtsov & Flach, ICLR 2019; THEORY.md §6).
"""
from .layers import (
    APPROXIMATIONS,
    VAR_FLOOR,
    batch_norm,
    conv2d,
    exceed_probability,
    expected_cross_entropy,
    heaviside,
    linear,
    max2,
    max_pool2d,
    noisy_quantize,
    quantizer_probabilities,
    relu,
    sign,
    softmax_mean,
)

__all__ = [
    "APPROXIMATIONS", "VAR_FLOOR", "batch_norm", "conv2d", "exceed_probability", "expected_cross_entropy",
    "heaviside", "linear", "max2", "max_pool2d", "noisy_quantize", "quantizer_probabilities", "relu", "sign",
    "softmax_mean",
]

from .propagate import ap_loss, propagate, propagate_layers  # noqa: E402

__all__ += ["ap_loss", "propagate", "propagate_layers"]
from .montecarlo import layer_errors, relative_error, sample_layers  # noqa: E402

__all__ += ["layer_errors", "relative_error", "sample_layers"]
