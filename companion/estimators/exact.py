"""Exact expected loss and exact gradient of a small stochastic network, by enumeration.

The networks are layered: stochastic layers h_1, ..., h_L, each unit taking one
of K levels g_0..g_{K-1} (K = 2 for binary units), independently given the
previous layer, followed by a deterministic head and the NLL:

    L(θ) = (1/N) Σ_n Σ_{h_1..h_L} Π_k p(h_k | h_{k-1}) · NLL(y_n, head(h_L)),   h_0 = x_n.

Every one of the Π_k K^{n_k} joint states is summed, but layer by layer (the
forward algorithm of a Markov chain): with P_1[n, s] = p(h_1 = s | x_n) and
transition matrices T_k[s, s'] = p(h_k = s' | h_{k-1} = s),

    L = (1/N) Σ_n Σ_s (P_1 T_2 ... T_L)[n, s] · NLL(y_n, head(state s)).

The cost is N·K^{n_1} + Σ_k K^{n_{k-1}}·K^{n_k}, so a 2-5-5-5 binary net
(2^15 joint states) takes milliseconds.  The gradient is torch's autograd of
this finite sum, in float64: exact up to rounding.

A network is enumerable if it has these members (duck-typed, see
:class:`EnumerableNet`; :class:`companion.binary.StochasticNet` has them).
"""
from __future__ import annotations

import itertools
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F

from .._checks import check_int

DEFAULT_MAX_STATES = 4096
"""Default limit on K^{n_k}, the number of joint states of the widest stochastic layer."""


class EnumerableNet(Protocol):
    widths: Sequence[int]
    """n_1, ..., n_L: the number of units of each stochastic layer."""

    def levels(self) -> torch.Tensor:
        """The K values a unit can take, shape [K]."""

    def layer_probabilities(self, k: int, h_prev: torch.Tensor) -> torch.Tensor:
        """p(h_k = g_i | h_{k-1}) per unit: [B, n_{k-1}] → [B, n_k, K] (k counts from 0)."""

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of the last stochastic layer's values: [B, n_L] → [B, C]."""

    def parameters(self):
        ...


def layer_states(levels: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All K^width joint states of one layer: (level indices [S, width], values [S, width])."""
    K = levels.numel()
    index = torch.tensor(list(itertools.product(range(K), repeat=width)), dtype=torch.long).reshape(-1, width)
    return index, levels[index]


def state_probabilities(unit_probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Π_u p_u(s_u) for every joint state s: unit_probs [B, n, K], index [S, n] → [B, S]."""
    B, n, _ = unit_probs.shape
    gathered = unit_probs[:, torch.arange(n).unsqueeze(0), index]  # [B, S, n]
    return gathered.prod(-1)


def check_state_count(net: EnumerableNet, max_states: int) -> int:
    """Return K^{max_k n_k}, or raise ValueError if it exceeds ``max_states``."""
    check_int("max_states", max_states, 1, 2**24)
    K = net.levels().numel()
    widest = max(net.widths)
    count = K**widest
    if count > max_states:
        raise ValueError(
            f"the widest stochastic layer has K^n = {K}^{widest} = {count} joint states, more than "
            f"max_states={max_states}; exact enumeration is for small networks (raise max_states if you mean it)"
        )
    return count


def expected_loss(net: EnumerableNet, x: torch.Tensor, y: torch.Tensor, *, max_states: int = DEFAULT_MAX_STATES):
    """The exact E[NLL] averaged over the N data points (a differentiable scalar).

    Args:
        net: an enumerable network (see module docstring).
        x: inputs [N, n_0]; y: class indices [N] (int64).
        max_states: limit on K^{n_k} for the widest layer (ValueError above it).
    """
    check_state_count(net, max_states)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape [N] = [{x.shape[0]}], got {tuple(y.shape)}")
    levels = net.levels()
    marginal, values = None, None
    for k, width in enumerate(net.widths):
        index, states = layer_states(levels, width)
        if k == 0:
            marginal = state_probabilities(net.layer_probabilities(0, x), index)  # [N, S_1]
        else:
            transition = state_probabilities(net.layer_probabilities(k, values), index)  # [S_{k-1}, S_k]
            marginal = marginal @ transition
        values = states
    nll = -F.log_softmax(net.head(values), dim=-1)  # [S_L, C]
    return (marginal * nll[:, y].T).sum(-1).mean()


def exact_gradient(net: EnumerableNet, x, y, *, max_states: int = DEFAULT_MAX_STATES):
    """(exact expected loss as a float, [∂L/∂θ for θ in net.parameters()])."""
    params = [p for p in net.parameters() if p.requires_grad]
    loss = expected_loss(net, x, y, max_states=max_states)
    grads = torch.autograd.grad(loss, params)
    return loss.item(), [g.detach() for g in grads]
