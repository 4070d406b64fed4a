"""The figure registry: names and chapters, determinism, the CLI, atomic writes,
and the foundation figures' data against closed forms and scipy (not the package)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from companion import figures, io

ROOT = Path(__file__).resolve().parent.parent
FOUNDATION = {
    "quantization_staircase": "01_quantization_grids",
    "sr_probabilities": "02_stochastic_rounding",
    "sr_samplers": "02_stochastic_rounding",
    "sr_moments": "02_stochastic_rounding",
    "noisy_categorical": "03_noisy_quantization",
    "expected_quantizer": "03_noisy_quantization",
    "quantized_variance": "03_noisy_quantization",
}
SPECS = figures.load_all()


def lines(ax) -> dict:
    """The labelled lines of an axes as {label: (x, y)} numpy arrays."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def logistic_categorical(x, points, alpha, s):
    """Clamp-tail categorical with logistic noise from scipy: P(g_i) = S((b_i - x)/s) - S((b_{i-1} - x)/s)."""
    edges = np.concatenate([[-np.inf], points[:-1] + alpha / 2, [np.inf]])
    cdf = stats.logistic.cdf((edges[None, :] - x[:, None]) / s)
    return np.diff(cdf, axis=1)


# -- registry ------------------------------------------------------------------------


def test_foundation_figures_are_registered_in_their_chapters():
    assert {name: SPECS[name].chapter for name in FOUNDATION if name in SPECS} == FOUNDATION


@pytest.mark.parametrize("name", list(SPECS))
def test_every_figure_names_a_chapter_and_a_title(name):
    spec = SPECS[name]
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", spec.chapter), spec.chapter
    assert spec.title.strip()


@pytest.mark.parametrize("chapter", sorted(set(FOUNDATION.values())))
def test_foundation_chapters_are_notebooks(chapter):
    assert (ROOT / "notebooks" / f"{chapter}.ipynb").is_file()


def test_render_rejects_unknown_names_listing_the_known_ones():
    with pytest.raises(ValueError, match="quantization_staircase"):
        figures.render("no_such_figure")


# -- determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_png_is_byte_identical_on_rerun(name):
    first = figures.figure_bytes(figures.render(name), "png")
    second = figures.figure_bytes(figures.render(name), "png")
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first == second


def test_pdf_is_byte_identical_on_rerun():
    first = figures.figure_bytes(figures.render("sr_probabilities"), "pdf")
    second = figures.figure_bytes(figures.render("sr_probabilities"), "pdf")
    assert first.startswith(b"%PDF") and first == second


# -- command line and atomic writes -------------------------------------------------


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "companion.figures", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_lists_every_registered_figure_with_its_chapter(capsys):
    assert figures.main(["--list"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.strip()}
    assert listed == {name: spec.chapter for name, spec in SPECS.items()}


def test_cli_writes_png_and_pdf_that_match_an_in_process_save(tmp_path):
    """``python -m companion.figures NAME --out DIR`` in a fresh process: same bytes as here, no temp files."""
    out = tmp_path / "cli"
    result = run_cli("sr_probabilities", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sr_probabilities.pdf", "sr_probabilities.png"]
    here = figures.save("sr_probabilities", tmp_path / "here")
    for path in here:
        assert (out / path.name).read_bytes() == path.read_bytes()  # same bytes across processes
    assert not list(tmp_path.rglob("*.tmp"))


def test_cli_rejects_an_unknown_figure(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        figures.main(["no_such_figure", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown figure" in err and "--list" in err
    assert not any(tmp_path.iterdir())


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    io.atomic_write_bytes(target, b"old")
    io.atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    io.atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


# -- what the foundation figures show, against independent references ---------------


def test_sr_probabilities_are_hats_peaked_at_the_grid_points():
    fig = figures.render("sr_probabilities", step=0.5, bits=2)
    ax, ax_slip = fig.axes
    points = np.array([-1.0, -0.5, 0.0, 0.5])
    curves = lines(ax)
    assert len(curves) == 4
    for i, g in enumerate(points):
        x, p = curves[f"$p_{i}$, $g_{i}$ = {g:g}"]
        hat = np.maximum(0.0, 1.0 - np.abs(x - g) / 0.5)
        if i == 0:  # clamp tails: the end cells keep the mass beyond the range
            hat = np.where(x < g, 1.0, hat)
        if i == 3:
            hat = np.where(x > g, 1.0, hat)
        np.testing.assert_allclose(p, hat, atol=1e-12)
        if 0 < i < 3:
            assert x[np.argmax(p)] == pytest.approx(g, abs=1e-9)  # the peak is at g_i, not a dip
    slip = lines(ax_slip)
    x, correct = slip["$p_1$ (correct hat)"]
    _, wrong = slip["$1 - p_1$ (the published curve)"]
    np.testing.assert_allclose(wrong, 1 - correct, atol=1e-12)
    assert wrong[np.argmin(np.abs(x + 0.5))] == pytest.approx(0.0, abs=1e-9)


def test_sr_samplers_show_bias_zero_and_plus_minus_half_step():
    step = 0.5
    fig = figures.render("sr_samplers", step=step, samples=4000, seed=0)
    curves = list(lines(fig.axes[0]).values())
    assert len(curves) == 4
    # 4000 samples per x: std of a mean ≤ δ/2/√4000 ≈ 0.004; 0.025 is > 6 std for the worst x,
    # and the average over 161 x values has std ≈ 0.0003, so 0.004 is > 10 std.
    for (x, bias), expected in zip(curves, (0.0, 0.0, step / 2, -step / 2)):
        assert np.max(np.abs(bias - expected)) < 0.025
        assert abs(np.mean(bias) - expected) < 0.004


def test_sr_moments_match_the_closed_form_and_monte_carlo():
    step = 0.5
    fig = figures.render("sr_moments", step=step, samples=4000, seed=0)
    ax_m, ax_v = fig.axes
    means, variances = lines(ax_m), lines(ax_v)
    x, mean = means[r"$E[\hat x\mid x]$ (noisy model, uniform noise)"]
    np.testing.assert_allclose(mean, x, atol=1e-12)  # x inside the 3-bit grid [-2, 1.5]
    x, var = variances[r"$\mathrm{Var}[\hat x\mid x] = \delta^2 t(1-t)$"]
    t = np.mod(x / step, 1.0)
    np.testing.assert_allclose(var, step**2 * t * (1 - t), atol=1e-12)
    # Monte Carlo, 4000 samples per x: mean within 0.025 (> 6 std); variance of a two-point
    # law has relative std ≤ ~2.5 % away from t ∈ {0, 1}, so an absolute 0.01 (> 6 std of δ²/4 · 2.5 %)
    x_mc, mc_mean = means["Monte Carlo (4000 samples)"]
    _, mc_var = variances["Monte Carlo"]
    t_mc = np.mod(x_mc / step, 1.0)
    assert np.max(np.abs(mc_mean - x_mc)) < 0.025
    assert np.max(np.abs(mc_var - step**2 * t_mc * (1 - t_mc))) < 0.01


def test_noisy_categorical_panels_match_scipy():
    fig = figures.render("noisy_categorical", bits=2, logistic_scale=0.15)
    axes = np.array(fig.axes).reshape(2, 3)
    alpha = 2 / 3
    points = np.array([-1.0, -1 / 3, 1 / 3, 1.0])
    edges = np.concatenate([points - alpha / 2, [points[-1] + alpha / 2]])
    s = 0.15
    std = s * np.pi / np.sqrt(3)
    for col, dist in enumerate((stats.logistic(scale=s), stats.norm(scale=std), stats.uniform(-alpha / 2, alpha))):
        for row, tails in enumerate(("clamp", "truncate")):
            curves = list(lines(axes[row, col]).values())
            x = curves[0][0]
            if tails == "clamp":
                inner = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
                expected = np.diff(dist.cdf(inner[None, :] - x[:, None]), axis=1)
            else:
                mass = np.diff(dist.cdf(edges[None, :] - x[:, None]), axis=1)
                total = mass.sum(1, keepdims=True)
                inside = total[:, 0] > 1e-12  # uniform noise can miss the range; that case has its own rule
                expected = np.where(inside[:, None], mass / np.where(total > 0, total, 1.0), np.nan)
            got = np.stack([y for _, y in curves], axis=1)
            keep = ~np.isnan(expected).any(1)
            np.testing.assert_allclose(got[keep], expected[keep], atol=1e-9)


def test_expected_quantizer_mean_and_slope_match_the_closed_form():
    fig = figures.render("expected_quantizer", bits=2, scales=(0.1, 0.4))
    ax_m, ax_d = fig.axes
    alpha = 2 / 3
    b = np.array([-1.0, -1 / 3, 1 / 3]) + alpha / 2  # thresholds b_k = g_k + α/2
    for s in (0.1, 0.4):
        x, mean = lines(ax_m)[f"logistic, scale $s$ = {s:g}"]
        _, slope = lines(ax_d)[f"$s$ = {s:g}"]
        z = (x[:, None] - b[None, :]) / s
        np.testing.assert_allclose(mean, -1.0 + alpha * stats.logistic.cdf(z).sum(1), atol=1e-9)
        np.testing.assert_allclose(slope, (alpha / s) * stats.logistic.pdf(z).sum(1), atol=1e-9)
    x, mean = lines(ax_m)[r"uniform, width $\alpha$: clip$(x)$"]
    np.testing.assert_allclose(mean, np.clip(x, -1, 1), atol=1e-12)
    _, slope = lines(ax_d)[r"uniform: $1[g_0 \leq x \leq g_{K-1}]$"]
    away = np.abs(np.abs(x) - 1) > 1e-6
    np.testing.assert_allclose(slope[away], (np.abs(x[away]) < 1).astype(float), atol=1e-9)


def test_quantized_variance_matches_enumeration_and_sr_formula():
    fig = figures.render("quantized_variance", bits=2, scales=(0.2,))
    curves = lines(fig.axes[0])
    alpha = 2 / 3
    points = np.array([-1.0, -1 / 3, 1 / 3, 1.0])
    x, var = curves["logistic, scale $s$ = 0.2"]
    p = logistic_categorical(x, points, alpha, 0.2)
    mean = p @ points
    np.testing.assert_allclose(var, p @ points**2 - mean**2, atol=1e-9)
    x, var = curves[r"uniform, width $\alpha$: $\alpha^2 t(1-t)$"]
    t = np.mod((np.clip(x, -1, 1) + 1) / alpha, 1.0)
    np.testing.assert_allclose(var, alpha**2 * t * (1 - t), atol=1e-9)
