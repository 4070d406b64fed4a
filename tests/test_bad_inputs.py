"""The bad-input catalogue: every public entry point refuses wrong arguments clearly.

Each case calls one public function, class or CLI subcommand with one wrong
argument and expects ``ValueError``/``TypeError`` (or, for the CLI, exit status
2 with a one-line message) whose text names the parameter.  The catalogue is
a list so that its size is easy to report (``pytest --collect-only``).
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from companion import binary, data, moments
from companion import nn as qnn
from companion import train
from companion.estimators import exact, quantize, toy
from companion.grids import UniformGrid
from companion.noise import Gaussian, Logistic, Uniform, make_noise
from companion.relaxed import relaxed_quantize
from companion.rounding import grid_probabilities, quantized_moments, round_to_grid, stochastic_round

G = UniformGrid(2, scale=0.5)
N = Logistic(0.3)
X = torch.zeros(4)
V = torch.ones(4)
NAN = torch.tensor([0.0, float("nan")])


def tiny_mlp(method="ste"):
    return qnn.mlp(4, [3], 2, weight_bits=2, act_bits=2, method=method)


CASES = [
    # grids and noise
    ("grid bits 0", lambda: UniformGrid(0), ValueError, "bits"),
    ("grid bits 17", lambda: UniformGrid(17), ValueError, "bits"),
    ("grid bits float", lambda: UniformGrid(2.5), TypeError, "bits"),
    ("grid scale 0", lambda: UniformGrid(2, scale=0.0), ValueError, "scale"),
    ("grid scale inf", lambda: UniformGrid(2, scale=float("inf")), ValueError, "scale"),
    ("grid scale vector", lambda: UniformGrid(2, scale=torch.ones(2)), ValueError, "scale"),
    ("grid offset nan", lambda: UniformGrid(2, offset=float("nan")), ValueError, "offset"),
    ("binary magnitude < 0", lambda: UniformGrid.binary(-1.0), ValueError, "magnitude"),
    ("logistic scale 0", lambda: Logistic(0.0), ValueError, "scale"),
    ("gaussian std nan", lambda: Gaussian(float("nan")), ValueError, "std"),
    ("uniform width -1", lambda: Uniform(-1.0), ValueError, "width"),
    ("noise family unknown", lambda: make_noise("laplace", 1.0), ValueError, "family"),
    ("noise generator type", lambda: N.sample(3, generator="seed"), TypeError, "generator"),
    # rounding
    ("round x list", lambda: round_to_grid([0.1], G), TypeError, "x"),
    ("round x int tensor", lambda: round_to_grid(torch.tensor([1]), G), TypeError, "x"),
    ("round x nan", lambda: round_to_grid(NAN, G), ValueError, "x"),
    ("round grid type", lambda: round_to_grid(X, 0.5), TypeError, "grid"),
    ("sr generator type", lambda: stochastic_round(X, G, generator=1), TypeError, "generator"),
    ("probabilities tails", lambda: grid_probabilities(X, G, N, tails="fold"), ValueError, "tails"),
    ("probabilities noise type", lambda: grid_probabilities(X, G, "logistic"), TypeError, "noise"),
    ("moments x nan", lambda: quantized_moments(NAN, G, N), ValueError, "x"),
    # pathwise quantizers and RQ
    ("quantize method", lambda: quantize(X, G, "round"), ValueError, "method"),
    ("quantize no noise", lambda: quantize(X, G, "rq"), TypeError, "noise"),
    ("quantize temperature 0", lambda: quantize(X, G, "rq", noise=N, temperature=0.0), ValueError, "temperature"),
    ("quantize temperature inf", lambda: quantize(X, G, "rq", noise=N, temperature=float("inf")), ValueError, "temperature"),
    ("quantize tails", lambda: quantize(X, G, "rq", noise=N, tails="x"), ValueError, "tails"),
    ("quantize radius 0", lambda: quantize(X, G, "rq-st", noise=N, local_radius=0.0), ValueError, "local_radius"),
    ("quantize radius nan", lambda: quantize(X, G, "rq-st", noise=N, local_radius=float("nan")), ValueError, "local_radius"),
    ("quantize x nan", lambda: quantize(NAN, G, "ste"), ValueError, "x"),
    ("quantize x empty ok, int bad", lambda: quantize(torch.arange(3), G, "ste"), TypeError, "x"),
    ("relaxed temperature -1", lambda: relaxed_quantize(X, G, N, -1.0), ValueError, "temperature"),
    ("relaxed hard not bool", lambda: relaxed_quantize(X, G, N, 1.0, hard="yes"), TypeError, "hard"),
    ("relaxed generator", lambda: relaxed_quantize(X, G, N, 1.0, generator=3), TypeError, "generator"),
    # toy estimators
    ("toy method", lambda: toy.gradient_samples("rebar", 0.0, 0.45, 10), ValueError, "method"),
    ("toy n 0", lambda: toy.gradient_samples("st", 0.0, 0.45, 0), ValueError, "n"),
    ("toy temperature 0", lambda: toy.gradient_samples("concrete", 0.0, 0.45, 10, temperature=0.0), ValueError, "temperature"),
    ("toy logit nan", lambda: toy.gradient_samples("st", float("nan"), 0.45, 10), ValueError, "logit"),
    ("toy generator", lambda: toy.gradient_samples("st", 0.0, 0.45, 10, generator=1), TypeError, "generator"),
    # binary networks and exact enumeration
    ("binary sample noise type", lambda: binary.binary_sample(X, "logistic"), TypeError, "noise"),
    ("net sizes short", lambda: binary.StochasticNet([2], 2), ValueError, "sizes"),
    ("net width 0", lambda: binary.StochasticNet([2, 0], 2), ValueError, "sizes"),
    ("net noise family", lambda: binary.StochasticNet([2, 3], 2, noise="cauchy"), ValueError, "family"),
    ("net estimator", lambda: binary.gradient_estimate(binary.StochasticNet([2, 3], 2), torch.zeros(1, 2, dtype=torch.float64),
                                                       torch.zeros(1, dtype=torch.long), "magic"), ValueError, "method"),
    ("exact too many states", lambda: exact.expected_loss(binary.StochasticNet([2, 13], 2), torch.zeros(1, 2, dtype=torch.float64),
                                                          torch.zeros(1, dtype=torch.long), max_states=4096), ValueError, "max_states"),
    # moment propagation
    ("moments linear shape", lambda: moments.linear(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(4, 5)), ValueError, "weight"),
    ("moments var shape", lambda: moments.relu(torch.zeros(3), torch.ones(4)), ValueError, "var"),
    ("moments negative var", lambda: moments.relu(torch.zeros(3), -torch.ones(3)), ValueError, "var"),
    ("moments nan mean", lambda: moments.relu(NAN, torch.ones(2)), ValueError, "mean"),
    ("moments pool k 0", lambda: moments.max_pool2d(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), 0), ValueError, "k"),
    ("moments quantizer grid", lambda: moments.noisy_quantize(X, V, "grid", N), TypeError, "grid"),
    ("moments approximation", lambda: moments.sign(X, V, N, approximation="guess"), ValueError, "approximation"),
    ("moments labels shape", lambda: moments.expected_cross_entropy(torch.zeros(3, 4), torch.ones(3, 4), torch.zeros(2, dtype=torch.long)), ValueError, "y"),
    ("ap_loss method", lambda: moments.ap_loss(tiny_mlp("ap"), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), method="ap3"), ValueError, "method"),
    ("ap_loss labels dtype", lambda: moments.ap_loss(tiny_mlp("ap"), torch.zeros(2, 4), torch.zeros(2)), ValueError, "y"),
    # networks and training
    ("quantizer bits 0", lambda: qnn.Quantizer(0), ValueError, "bits"),
    ("quantizer method", lambda: qnn.Quantizer(2, method="magic"), ValueError, "method"),
    ("quantizer noise family", lambda: qnn.Quantizer(2, method="noisy-st", noise="cauchy"), ValueError, "noise"),
    ("quantizer temperature", lambda: qnn.Quantizer(2, method="rq", temperature=0.0), ValueError, "temperature"),
    ("quantizer tails", lambda: qnn.Quantizer(2, tails="wrap"), ValueError, "tails"),
    ("mlp bits 0", lambda: qnn.mlp(4, [3], 2, weight_bits=0), ValueError, "bits"),
    ("mlp method", lambda: qnn.mlp(4, [3], 2, method="magic"), ValueError, "method"),
    ("lenet channels 0", lambda: qnn.lenet5(in_channels=0), ValueError, "in_channels"),
    ("set_method unknown", lambda: qnn.set_method(tiny_mlp(), "magic"), ValueError, "method"),
    ("to_deterministic rule", lambda: qnn.to_deterministic(tiny_mlp(), "floor"), ValueError, "rule"),
    ("fit epochs 0", lambda: train.fit(tiny_mlp(), (torch.zeros(4, 4), torch.zeros(4, dtype=torch.long)), epochs=0), ValueError, "epochs"),
    ("fit lr -1", lambda: train.fit(tiny_mlp(), (torch.zeros(4, 4), torch.zeros(4, dtype=torch.long)), epochs=1, lr=-1.0), ValueError, "lr"),
    ("fit mismatched pair", lambda: train.fit(tiny_mlp(), (torch.zeros(4, 4), torch.zeros(3, dtype=torch.long)), epochs=1), ValueError, "train"),
    ("fit train not pair", lambda: train.fit(tiny_mlp(), torch.zeros(4, 4), epochs=1), TypeError, "train"),
    ("evaluate samples 0", lambda: train.evaluate(tiny_mlp(), torch.zeros(4, 4), torch.zeros(4, dtype=torch.long), samples=0), ValueError, "samples"),
    # data
    ("data name", lambda: data.load("imagenet"), ValueError, "name"),
    ("data download type", lambda: data.load("mnist", download="yes"), TypeError, "download"),
]


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_the_parameter_named(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_missing_full_size_dataset_names_the_flag(tmp_path):
    # torchvision may be absent (ModuleNotFoundError says how to install it) or the files missing.
    with pytest.raises((FileNotFoundError, ModuleNotFoundError), match="download|torchvision"):
        data.load("mnist", root=tmp_path)


CLI_CASES = [
    ("no subcommand", []),
    ("unknown subcommand", ["fly"]),
    ("train unknown dataset", ["train", "--dataset", "imagenet", "--quick"]),
    ("train bad bits", ["train", "--dataset", "digits", "--bits", "2-2", "--quick"]),
    ("train unknown method", ["train", "--dataset", "digits", "--methods", "magic", "--quick"]),
    ("train epochs 0", ["train", "--dataset", "digits", "--epochs", "0", "--quick"]),
    ("summary missing file", ["summary", "/nonexistent/results.json"]),
    ("summary unknown rule", ["summary", "--rule", "floor", "results/train_default.json"]),
    ("gradient-accuracy seed not an int", ["gradient-accuracy", "--seed", "abc"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_bad_arguments_with_status_2(argv, tmp_path):
    result = subprocess.run([sys.executable, "-m", "companion.experiments", *argv, *(["--out", str(tmp_path / "r.json")] if argv[:1] == ["train"] else [])],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 2, result.stderr
    message = [line for line in result.stderr.strip().splitlines() if "error" in line]
    assert message, result.stderr


def test_catalogue_size():
    # the reliability sweep asks for 60+ distinct cases
    assert len(CASES) + len(CLI_CASES) + 1 >= 60
