"""companion: a teaching companion for stochastic quantization and binarization of neural networks.

Modules: grids, noise, rounding (chapters 01–03), relaxed and estimators
(04–05), binary (06), moments (07), nn, train, data and experiments (08),
figures (the registry behind ``make figures``).
"""
__version__ = "0.1.0"
