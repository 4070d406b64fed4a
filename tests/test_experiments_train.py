"""The train/summary CLI: a quick end-to-end run, resume after Ctrl-C, summary tables, figures, errors."""
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from companion.experiments.__main__ import main
from companion.experiments import train as T

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "digits", "--model", "mlp", "--bits", "2/2", "--seeds", "0", "--quick", "--no-progress",
         "--threads", "1"]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "results.json"
    assert main(["train", *QUICK, "--methods", "fp", "ste", "sr", "--out", str(out)]) == 0
    return out


def test_quick_run_writes_a_valid_results_file(quick_results):
    results = json.loads(quick_results.read_text())
    assert results["format"] == T.FORMAT
    assert sorted(results["cells"]) == ["digits/mlp/2/2/sr/seed0", "digits/mlp/2/2/ste/seed0",
                                        "digits/mlp/fp/fp/seed0"]
    for key, cell in results["cells"].items():
        assert key == T.cell_key(cell["dataset"], cell["model"], cell["bits"], cell["method"], cell["seed"])
        assert cell["epochs"] == T.QUICK["epochs"] and cell["sizes"]["train"] == T.QUICK["train"]
        assert 0.0 <= cell["test"]["stochastic"] <= 1.0
        assert set(cell["test"]["deterministic"]) == {"round", "mode", "mean-round"}
        history = cell["history"]
        assert all(len(history[k]) == cell["epochs"] for k in ("loss", "train_acc", "val_acc", "epoch_time"))
        assert cell["time_per_step"] > 0 and cell["time_per_epoch"] > 0
        assert cell["metadata"]["seed"] == 0 and "torch" in cell["metadata"]["versions"]
        assert "git_revision" in cell["metadata"]
    fp = results["cells"]["digits/mlp/fp/fp/seed0"]
    assert fp["weight_bits"] is None and fp["act_bits"] is None
    # A full-precision model has no randomness: every extraction rule equals the stochastic accuracy.
    for acc in fp["test"]["deterministic"].values():
        assert acc == pytest.approx(fp["test"]["stochastic"], abs=1e-12)
    run = results["runs"][-1]
    assert run["cells_trained"] == 3 and not run["interrupted"] and run["quick"]


def test_rerun_resumes_without_retraining(quick_results, capsys):
    before = json.loads(quick_results.read_text())
    assert main(["train", *QUICK, "--methods", "fp", "ste", "sr", "--out", str(quick_results)]) == 0
    after = json.loads(quick_results.read_text())
    assert after["cells"] == before["cells"]  # wall times and metadata unchanged: nothing retrained
    assert len(after["runs"]) == len(before["runs"]) + 1 and after["runs"][-1]["cells_trained"] == 0
    assert "3 already in" in capsys.readouterr().err


def test_reach_target_by_hand():
    history = {"val_acc": [0.5, 0.85, 0.92, 0.95], "epoch_time": [1.0, 2.0, 3.0, 4.0]}
    assert T.reach_target(history, 0.9) == {"val_acc": 0.9, "epochs": 3, "wall_time": 6.0}
    assert T.reach_target(history, 0.99) == {"val_acc": 0.99, "epochs": None, "wall_time": None}


def test_mean_std_is_the_sample_std():
    values = [0.91, 0.935, 0.9]
    mean, std = T.mean_std(values)
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert T.mean_std([0.5]) == (0.5, None)


def test_summary_prints_markdown_tables(quick_results, capsys):
    assert main(["summary", str(quick_results)]) == 0
    text = capsys.readouterr().out
    cells = json.loads(quick_results.read_text())["cells"]
    ste = cells["digits/mlp/2/2/ste/seed0"]
    assert "## digits / mlp" in text
    assert "| method | 2/2 | fp |" in text
    assert f"| ste | {100 * ste['test']['deterministic']['round']:.2f} | – |" in text
    assert f"| fp | – | {100 * cells['digits/mlp/fp/fp/seed0']['test']['stochastic']:.2f} |" in text


def test_summary_mean_and_std_over_seeds(tmp_path):
    cell = {"dataset": "d", "model": "m", "bits": "2/2", "method": "ste", "epochs": 1,
            "test": {"stochastic": 0.0, "deterministic": {"round": 0.0}}, "time_per_step": 0.01,
            "time_per_epoch": 1.0, "target": {"val_acc": 0.9, "epochs": None, "wall_time": None}}
    accs = [0.80, 0.85, 0.87]
    results = T.new_results()
    for seed, acc in enumerate(accs):
        results["cells"][f"k{seed}"] = dict(cell, seed=seed, test={"stochastic": acc, "deterministic": {"round": acc}})
    text = T.summary_markdown(results)
    expected = f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
    assert f"| ste | {expected} |" in text


def test_parallel_jobs_give_the_numbers_of_one_process(quick_results, tmp_path):
    # --jobs 2 trains the cells in two worker processes with one thread each, like --threads 1 in one process.
    out = tmp_path / "jobs.json"
    assert main(["train", *QUICK, "--methods", "fp", "ste", "sr", "--jobs", "2", "--out", str(out)]) == 0
    one, two = (json.loads(path.read_text())["cells"] for path in (quick_results, out))
    assert sorted(one) == sorted(two)
    for key in one:
        assert two[key]["test"] == one[key]["test"], key
        assert two[key]["history"]["loss"] == one[key]["history"]["loss"], key


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_interrupted_run_keeps_finished_cells_and_resumes(tmp_path, jobs):
    out = tmp_path / "interrupted.json"
    # Sixteen cells, so that the run is still going when the first one has been written (a quick digits
    # cell takes well under a second; with three cells the run could finish before the signal arrived).
    # With --jobs 2 the interrupt stops the worker processes too.
    args = [*QUICK, "--bits", "2/2", "4/4", "8/8", "--methods", "fp", "ste", "lsq", "sr", "noisy-st", "mean",
            "--jobs", jobs, "--out", str(out)]
    total = 1 + 3 * 5
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "companion.experiments", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and json.loads(out.read_text())["cells"]:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "rerun the same command to resume" in err
    kept = json.loads(out.read_text())  # still a valid file
    assert kept["runs"][-1]["interrupted"]
    finished = kept["cells"]
    assert 1 <= len(finished) < total
    assert main(["train", *args]) == 0
    done = json.loads(out.read_text())
    assert len(done["cells"]) == total
    for key, cell in finished.items():
        assert done["cells"][key] == cell  # not redone
    assert done["runs"][-1]["cells_trained"] == total - len(finished)


def _error_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    return lines


@pytest.mark.parametrize("extra, needle", [
    (["--bits", "3"], "--bits"),
    (["--bits", "2/0"], "--bits"),
    (["--methods", "nope"], "--methods"),
    (["--epochs", "0"], "--epochs"),
])
def test_cli_errors_name_the_argument(capsys, tmp_path, extra, needle):
    argv = ["train", "--dataset", "digits", "--quick", "--out", str(tmp_path / "x.json"), *extra]
    lines = _error_line(capsys, argv)
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_cli_missing_full_size_data_names_the_flags(capsys, tmp_path):
    lines = _error_line(capsys, ["train", "--dataset", "mnist", "--model", "lenet5", "--data-root", str(tmp_path),
                                 "--quick", "--out", str(tmp_path / "x.json")])
    assert len(lines) == 1 and "--dataset mnist" in lines[0] and "--download" in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_cuda_unavailable(capsys, tmp_path):
    lines = _error_line(capsys, ["train", "--device", "cuda", "--quick", "--out", str(tmp_path / "x.json")])
    assert len(lines) == 1 and "--device cuda" in lines[0]


def test_cli_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--dataset", "imagenet"])
    assert info.value.code == 2 and "--dataset" in capsys.readouterr().err


def test_resume_with_other_epochs_is_refused(quick_results, capsys, monkeypatch):
    monkeypatch.setenv("COMPANION_QUICK", "0")
    lines = _error_line(capsys, ["train", "--dataset", "digits", "--bits", "2/2", "--methods", "fp", "--epochs", "2",
                                 "--out", str(quick_results)])
    assert len(lines) == 1 and "--redo" in lines[0]


def test_vgg_small_is_rqs_vgg_at_width_128():
    from companion.nn import QuantConv2d, QuantLinear

    model = T.vgg_small(weight_bits=2, act_bits=2, method="ste", width=4)
    assert model(torch.rand(3, 3, 32, 32)).shape == (3, 10)
    full = T.vgg_small(width=128)
    convs = [m.out_channels for m in full if isinstance(m, QuantConv2d)]
    fcs = [(m.in_features, m.out_features) for m in full if isinstance(m, QuantLinear)]
    assert convs == [128, 128, 256, 256, 512, 512] and fcs == [(512 * 4 * 4, 1024), (1024, 10)]


def test_figures_render_from_results(quick_results):
    from matplotlib.figure import Figure

    from companion.plots import experiments as P

    for func in (P.accuracy_vs_bits, P.training_curves, P.time_per_step, P.extraction_rules, P.time_to_target):
        assert isinstance(func(path=quick_results), Figure)
    with pytest.raises(FileNotFoundError, match="run the default study"):
        P.accuracy_vs_bits(path=quick_results.with_name("absent.json"))
