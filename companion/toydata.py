"""The 2-D two-class toy set of the PSA gradient-accuracy protocol (THEORY.md §4).

Shekhovtsov, Yanush & Flach (NeurIPS 2020) score gradient estimators on a
small 2-D problem.  Here it is defined as follows: the rectangle

    R = [-π/2, π/2] × [0, 1]

is split by the curve x₂ = cos x₁ (which runs from 0 at the sides up to 1 in
the middle).  Class +1 (label index 1) is uniform on the part of R strictly
above the curve, {x₂ > cos x₁}, of area π - 2; class -1 (label index 0) is
uniform on the part below, {x₂ < cos x₁}, of area 2.  Each class has
``per_class`` points (100 in the protocol), drawn by rejection from uniform
points of R with a torch.Generator, so a seed fixes the set.  The classes are
separable, but not linearly: a stochastic binary net has to bend a boundary.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_generator, check_int


def cos_boundary_data(per_class: int = 100, generator: torch.Generator | None = None, dtype=torch.float64):
    """(x [2·per_class, 2], y [2·per_class] int64 in {0, 1}); y = 1 means class +1 (above cos x₁).

    Points are ordered: the ``per_class`` points of class -1 first, then class +1.
    """
    check_int("per_class", per_class, 1, 10**6)
    check_generator("generator", generator)
    classes = []
    for above in (False, True):
        kept = torch.empty(0, 2, dtype=dtype)
        while kept.shape[0] < per_class:
            u = torch.rand(4 * per_class, 2, generator=generator, dtype=dtype)
            pts = torch.stack([(u[:, 0] - 0.5) * math.pi, u[:, 1]], dim=1)
            side = pts[:, 1] > torch.cos(pts[:, 0]) if above else pts[:, 1] < torch.cos(pts[:, 0])
            kept = torch.cat([kept, pts[side]])
        classes.append(kept[:per_class])
    x = torch.cat(classes)
    y = torch.cat([torch.zeros(per_class, dtype=torch.long), torch.ones(per_class, dtype=torch.long)])
    return x, y
