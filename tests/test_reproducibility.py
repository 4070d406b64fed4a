"""Reproducibility: the same seeded command gives the same results JSON (timing fields aside)."""
import json

import torch

from companion.experiments import gradient_accuracy as ga

TIMING_KEYS = {"metadata", "wall_time_s", "cost", "seconds"}  # versions, git revision, seconds: not results


def _without_timing(obj, keys=TIMING_KEYS):
    if isinstance(obj, dict):
        return {k: _without_timing(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_without_timing(v, keys) for v in obj]
    return obj


def test_gradient_accuracy_quick_run_is_identical_twice(tmp_path):
    torch.set_num_threads(1)
    outputs = []
    for run in ("a", "b"):
        ga.run(quick=True, out_dir=tmp_path / run, epochs=(1, 2), samples=40, multilevel_samples=20,
               cost_repeats=1, progress=False)
        outputs.append({name: json.loads((tmp_path / run / name).read_text())
                        for name in ("gradient_accuracy.json", "gradient_accuracy_multilevel.json")})
    first, second = (_without_timing(o) for o in outputs)
    assert first == second
    # and the comparison is not vacuous: the runs hold estimator results
    assert first["gradient_accuracy.json"]["checkpoints"][0]["methods"]["reinforce"]["layers"]["all"]["rel_rmse"]


TRAIN_TIMING_KEYS = {"metadata", "wall_time", "time_per_step", "time_per_epoch", "epoch_time", "step_time", "runs"}


def test_quick_train_run_is_identical_twice(tmp_path):
    # Seeded end to end: data split, initialisation, shuffling and every quantizer's sampling, for a
    # deterministic (ste), a sampling (noisy-st) and a moment-propagation (ap) method.
    from companion.experiments.__main__ import main

    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run / "train.json"
        assert main(["train", "--dataset", "digits", "--model", "mlp", "--bits", "2/2", "--seeds", "0", "--quick",
                     "--no-progress", "--threads", "1", "--methods", "ste", "noisy-st", "ap", "--out", str(out)]) == 0
        outputs.append(_without_timing(json.loads(out.read_text()), TRAIN_TIMING_KEYS))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]["cells"]) == 3 and outputs[0]["cells"]["digits/mlp/2/2/ap/seed0"]["history"]["loss"]


def test_figures_cli_twice_gives_byte_identical_pngs(tmp_path):
    # Two separate processes, as `make figures` twice: a foundation figure, a computed one and one drawn
    # from the committed results.
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    names = ["sr_probabilities", "local_grid_truncation", "train_accuracy_vs_bits"]
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-m", "companion.figures", *names, "--out", str(tmp_path / run)], cwd=root,
                       env=dict(os.environ, MPLBACKEND="Agg"), check=True, capture_output=True, timeout=300)
    for name in names:
        first, second = (tmp_path / run / f"{name}.png" for run in ("a", "b"))
        assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert first.read_bytes() == second.read_bytes(), name
