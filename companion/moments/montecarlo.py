"""Monte Carlo reference for moment propagation: sample the stochastic network, layer by layer.

Every sample draws fresh quantized weights (from the noisy-quantization
categorical of ``companion.rounding`` for each latent weight) and fresh
activation noise, exactly the independence that AP2 assumes between inputs
of a layer but without its Gaussian and factorisation approximations.  It
shares no formula with :mod:`companion.moments.layers`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_generator, check_int, check_tensor
from ..rounding import grid_probabilities, round_to_grid


def _sample_categorical(cdf: torch.Tensor, points: torch.Tensor, leading: int, generator) -> torch.Tensor:
    """``leading`` independent draws of grid values by the inverse cdf; cdf [K-1, ...] (levels first) → [leading, ...].

    The level index is #{j : u > cdf_j}, summed slice by slice over the K - 1 cdf values.
    """
    u = torch.rand((leading,) + cdf.shape[1:], generator=generator, dtype=cdf.dtype)
    index = torch.zeros(u.shape, dtype=torch.int64)
    for level_cdf in cdf:
        index += u > level_cdf
    return points[index]


def _cdf(x, q):
    """P(x̂ ≤ g_j | x) for j = 0..K-2, levels first: [K-1, ...]."""
    return grid_probabilities(x, q.grid, q.noise, tails=q.tails).cumsum(-1)[..., :-1].movedim(-1, 0).contiguous()


def _active(q) -> bool:
    return q is not None and q.method != "fp"


def _quantize_activations(q, x, generator):
    """x [C, B, ...] → a noisy-quantized sample of every entry."""
    if not _active(q):
        return x
    if not bool(q.initialized):
        q.init_from(x)
    if q.tails == "clamp":  # round-and-clip of the noisy input: the definition of clamp tails
        return round_to_grid(x + q.noise.sample(x.shape, generator=generator, dtype=x.dtype), q.grid)
    return _sample_categorical(_cdf(x, q), q.grid.points_like(x), 1, generator)[0]


def _sample_weights(layer, chunk, weight_cdf, generator):
    q = getattr(layer, "weight_quantizer", None)
    if not _active(q):
        return layer.weight.expand((chunk,) + layer.weight.shape)
    if q.tails == "clamp":  # round-and-clip of the noisy weight: the definition of clamp tails
        w = layer.weight.expand((chunk,) + layer.weight.shape)
        return round_to_grid(w + q.noise.sample(w.shape, generator=generator, dtype=w.dtype), q.grid)
    return _sample_categorical(weight_cdf, q.grid.points_like(layer.weight), chunk, generator)


def _forward(layer, h, weight_cdf, generator):
    """One layer on activations h [C, B, ...] with per-sample weights."""
    c, b = h.shape[:2]
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        h = _quantize_activations(getattr(layer, "act_quantizer", None), h, generator)
        w = _sample_weights(layer, c, weight_cdf, generator)
        if isinstance(layer, nn.Linear):
            out = torch.einsum("cbi,coi->cbo", h, w)
            return out if layer.bias is None else out + layer.bias
        x = h.transpose(0, 1).reshape(b, c * h.shape[2], *h.shape[3:])
        out = F.conv2d(x, w.reshape(-1, *w.shape[2:]), None, layer.stride, layer.padding, groups=c)
        out = out.reshape(b, c, -1, *out.shape[2:]).transpose(0, 1)
        return out if layer.bias is None else out + layer.bias.view(-1, 1, 1)
    flat = layer(h.reshape(c * b, *h.shape[2:]))
    return flat.reshape(c, b, *flat.shape[1:])


@torch.no_grad()
def sample_layers(model: nn.Sequential, x: torch.Tensor, samples: int, *, chunk: int = 64,
                  generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (mean, var) over ``samples`` independent runs of the stochastic network.

    Shapes: x [B, ...] → one (mean, var) pair per layer of ``model``, each [B, ...] of that
    layer's output.  Accumulated in float64 by Chan's pairwise update (no E[x²] - E[x]²).
    """
    check_tensor("x", x)
    check_int("samples", samples, 2, 10**9)
    check_int("chunk", chunk, 1, 10**6)
    check_generator("generator", generator)
    stats: list[list] = [[0, None, None] for _ in model]  # count, mean, M2
    weight_cdfs = [_cdf(layer.weight, q) if _active(q) and q.tails != "clamp" else None
                   for q, layer in ((getattr(layer, "weight_quantizer", None), layer) for layer in model)]
    done = 0
    while done < samples:
        c = min(chunk, samples - done)
        h = x.unsqueeze(0).expand((c,) + x.shape)
        for index, layer in enumerate(model):
            h = _forward(layer, h, weight_cdfs[index], generator)
            _merge(stats[index], h.double())
        done += c
    return [(mean, m2 / (count - 1)) for count, mean, m2 in stats]


def _merge(stat, batch):
    n_b = batch.shape[0]
    mean_b = batch.mean(0)
    m2_b = ((batch - mean_b) ** 2).sum(0)
    n_a, mean_a, m2_a = stat
    if n_a == 0:
        stat[:] = [n_b, mean_b, m2_b]
        return
    n = n_a + n_b
    delta = mean_b - mean_a
    stat[:] = [n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n]


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """‖estimate - reference‖₂ / ‖reference‖₂ over all entries (float64)."""
    reference = reference.detach().double()
    return float((estimate.detach().double() - reference).norm() / reference.norm().clamp_min(1e-300))


def layer_errors(model: nn.Sequential, x: torch.Tensor, samples: int, *, chunk: int = 64,
                 generator: torch.Generator | None = None, **propagate_kwargs) -> list[dict]:
    """Relative error of AP2's mean and variance after every layer against :func:`sample_layers`.

    Returns one dict per layer that AP2 yields (Flatten skipped; with ``pool_first`` a ReLU
    followed by a MaxPool2d yields at the pool only): {"index", "layer", "mean_error", "var_error"}.
    """
    from .propagate import propagate_layers

    reference = sample_layers(model, x, samples, chunk=chunk, generator=generator)
    with torch.no_grad():
        analytic = [(index, m, v) for index, _, m, v in propagate_layers(model, x, **propagate_kwargs)]
    rows = []
    for index, m, v in analytic:  # indices AP2 yields: a fused ReLU + MaxPool2d only at the pool
        layer = model[index]
        if isinstance(layer, nn.Flatten):
            continue
        m_mc, v_mc = reference[index]
        rows.append({"index": index, "layer": type(layer).__name__,
                     "mean_error": relative_error(m, m_mc), "var_error": relative_error(v, v_mc)})
    return rows
