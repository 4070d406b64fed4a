"""A tiny run of the gradient-accuracy experiment writes valid, sensible JSON."""
import json

import torch

from companion.experiments import gradient_accuracy as ga
from companion.experiments.__main__ import SUBCOMMAND_MODULES, build_parser


def test_tiny_run(tmp_path):
    torch.set_num_threads(1)
    binary, multilevel = ga.run(quick=True, out_dir=tmp_path, epochs=(1, 3), samples=100, multilevel_samples=50,
                                cost_repeats=2, progress=False)
    on_disk = json.loads((tmp_path / "gradient_accuracy.json").read_text())
    assert on_disk["quick"] is True and on_disk["metadata"]["seed"] == 0 and on_disk["wall_time_s"] > 0
    assert on_disk["group_sizes"] == [1, 2, 5, 10]
    assert [c["epoch"] for c in on_disk["checkpoints"]] == [1, 3]
    layers = {"hidden1", "hidden2", "hidden3", "output", "all"}
    for checkpoint in on_disk["checkpoints"]:
        assert set(checkpoint["methods"]) == set(ga.BINARY_METHODS)
        for result in checkpoint["methods"].values():
            assert set(result["layers"]) == layers
            for row in result["layers"].values():
                assert len(row["rel_rmse"]) == 4 and all(q15 <= q85 for q15, q85 in zip(row["rel_err_q15"], row["rel_err_q85"]))
                assert all(-1 - 1e-12 <= c <= 1 + 1e-12 for c in row["cos_q50"])
        # an unbiased estimator's error shrinks with averaging; AP1 is deterministic (flat)
        reinforce = checkpoint["methods"]["reinforce"]["layers"]["all"]["rel_rmse"]
        assert reinforce[-1] < 0.5 * reinforce[0]
        ap1 = checkpoint["methods"]["ap1"]["layers"]["all"]["rel_rmse"]
        assert max(ap1) - min(ap1) < 1e-9
    assert set(on_disk["cost"]["relative"]) == set(ga.BINARY_METHODS)
    ml = json.loads((tmp_path / "gradient_accuracy_multilevel.json").read_text())
    assert set(ml["nets"]) == set(ga.MULTILEVEL_NETS)
    assert set(ml["nets"]["uniform-sr"]["checkpoints"][0]["methods"]) == {"reinforce", "sr", "ap1", "ap2"}


def test_group_sizes():
    assert ga.group_sizes(20000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    assert ga.group_sizes(9) == []


def test_cli_is_registered():
    assert "companion.experiments.gradient_accuracy" in SUBCOMMAND_MODULES
    args = build_parser().parse_args(["gradient-accuracy", "--quick", "--out", "x"])
    assert args.quick and str(args.out) == "x"
