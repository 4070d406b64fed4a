"""Reproducibility: the same seeded command gives the same results JSON (timing fields aside)."""
import json

import torch

from companion.experiments import gradient_accuracy as ga

TIMING_KEYS = {"metadata", "wall_time_s", "cost", "seconds"}  # versions, git revision, seconds: not results


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
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
