"""A shared check for the tests: samples of a noisy quantizer at one input follow its categorical."""
import torch
from scipy import stats

from companion.rounding import grid_probabilities


def assert_samples_follow_grid_probabilities(y, x0, grid, noise, tails, p_value=1e-3):
    """y [n]: samples of x̂ at x = x0.  Every sample is a grid point, none falls in a cell of mass < 1e-9,
    and the counts pass a chi-square goodness-of-fit test against ``grid_probabilities`` (float64)
    unless p < ``p_value``."""
    points = grid.points_like(y)
    counts = torch.stack([(y == p).sum() for p in points]).double()
    assert counts.sum().item() == len(y), "every sample is a grid point"
    p = grid_probabilities(torch.tensor([x0], dtype=torch.float64), grid, noise, tails)[0]
    keep = p > 1e-9
    assert counts[~keep].sum().item() == 0, x0
    expected = p[keep] / p[keep].sum() * len(y)
    if keep.sum() > 1:
        assert stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue > p_value, x0
