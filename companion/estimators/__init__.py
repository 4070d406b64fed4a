"""Gradient estimators: pathwise quantizers, the toy Bernoulli problem, exact enumeration."""
from .pathwise import PATHWISE_METHODS, quantize

__all__ = ["PATHWISE_METHODS", "quantize"]
