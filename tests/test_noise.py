"""Noise families against scipy.stats and mpmath (independent references)."""
import math

import mpmath
import numpy as np
import pytest
import scipy.stats as st
import torch

from companion.noise import Gaussian, Logistic, Uniform, log_ndtr, make_noise

FAMILIES = [
    (Logistic(0.7), st.logistic(scale=0.7)),
    (Gaussian(0.7), st.norm(scale=0.7)),
    (Uniform(0.7), st.uniform(loc=-0.35, scale=0.7)),
]
T = torch.linspace(-4, 4, 161, dtype=torch.float64)


@pytest.mark.parametrize("noise, ref", FAMILIES, ids=["logistic", "gaussian", "uniform"])
def test_cdf_pdf_std_match_scipy(noise, ref):
    np.testing.assert_allclose(noise.cdf(T).numpy(), ref.cdf(T.numpy()), atol=1e-12)
    inside = (T.abs() - 0.35).abs() > 1e-9  # the uniform pdf jumps at ±w/2
    np.testing.assert_allclose(noise.pdf(T).numpy()[inside], ref.pdf(T.numpy())[inside], atol=1e-12)
    assert noise.std == pytest.approx(ref.std(), rel=1e-12)


def test_logistic_std_is_scale_pi_over_sqrt3():
    # RQ calls its σ a standard deviation but uses it as the logistic scale.
    assert Logistic(0.5).std == pytest.approx(0.5 * math.pi / math.sqrt(3))


@pytest.mark.parametrize("noise, ref", FAMILIES, ids=["logistic", "gaussian", "uniform"])
def test_samples_follow_the_distribution(noise, ref):
    # 50,000 seeded draws; the Kolmogorov–Smirnov test rejects at p < 1e-3 only if the law is wrong.
    g = torch.Generator().manual_seed(1)
    draws = noise.sample(50_000, generator=g, dtype=torch.float64).numpy()
    assert st.kstest(draws, ref.cdf).pvalue > 1e-3
    assert noise.sample((3, 4), generator=g).shape == (3, 4)


def test_samples_are_reproducible_with_a_generator():
    a = Logistic(1.0).sample(10, generator=torch.Generator().manual_seed(5))
    b = Logistic(1.0).sample(10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def _mp_log_mass(family, scale, lo, hi):
    mpmath.mp.dps = 60
    if family == "logistic":
        cdf = lambda t: 1 / (1 + mpmath.exp(-mpmath.mpf(t) / scale))  # noqa: E731
    else:
        cdf = lambda t: mpmath.ncdf(mpmath.mpf(t) / scale)  # noqa: E731
    # mpmath keeps any exponent, so the survival form 1 - F is exact where F rounds to 1.
    sf = lambda t: cdf(-t)  # noqa: E731  (symmetric noise)
    return float(mpmath.log(cdf(hi) - cdf(lo) if hi <= 0 else sf(lo) - sf(hi)))


@pytest.mark.parametrize("family", ["logistic", "gaussian"])
@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (3.0, 4.0), (40.0, 41.0), (-41.0, -40.0), (-1e3, -999.0), (500.0, 500.5)])
def test_log_cell_mass_is_accurate_in_the_tails(family, lo, hi):
    # mpmath at 60 digits is the reference; a naive log(F(hi) - F(lo)) gives -inf for the far cells.
    noise = make_noise(family, 1.0)
    got = noise.log_cell_mass(torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64))
    assert got.item() == pytest.approx(_mp_log_mass(family, 1.0, lo, hi), rel=1e-9)


def test_log_ndtr_gradient_is_the_inverse_mills_ratio_everywhere():
    mpmath.mp.dps = 50
    z = torch.tensor([-1e6, -3.5e6, -1e3, -37.5, -36.5, -5.0, 0.0, 3.0, 1e3], dtype=torch.float32, requires_grad=True)
    log_ndtr(z).sum().backward()
    expected = [float(mpmath.npdf(v) / mpmath.ncdf(v)) for v in z.detach().double().tolist()]
    np.testing.assert_allclose(z.grad.numpy(), np.array(expected, dtype=np.float32), rtol=1e-5, atol=1e-30)
    assert torch.autograd.gradcheck(log_ndtr, torch.linspace(-60, 8, 35, dtype=torch.float64, requires_grad=True))


def test_learnable_scale_gets_gradient():
    s = torch.tensor(0.5, requires_grad=True)
    Logistic(s).cdf(torch.tensor(0.3)).backward()
    # d/ds σ(t/s) = -σ'(t/s) t / s²
    p = 1 / (1 + math.exp(-0.6))
    assert s.grad.item() == pytest.approx(-p * (1 - p) * 0.3 / 0.25, rel=1e-5)


@pytest.mark.parametrize("cls, name", [(Logistic, "scale"), (Gaussian, "std"), (Uniform, "width")])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale_names_the_parameter(cls, name, value):
    with pytest.raises(ValueError, match=name):
        cls(value)


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(ValueError, match="logistic.*gaussian.*uniform"):
        make_noise("cauchy", 1.0)


def test_bad_generator_type():
    with pytest.raises(TypeError, match="generator"):
        Logistic(1.0).sample(3, generator=0)
