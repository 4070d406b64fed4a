"""Gradient estimators: pathwise quantizers, the toy Bernoulli problem, exact enumeration."""
