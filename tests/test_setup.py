"""The one-command set-up stays consistent: pyproject, environment.yml, Makefile, README, CI."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_torch_is_pinned_to_the_cpu_friendly_release():
    deps = pyproject()["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    for dep in deps + sum(pyproject()["project"]["optional-dependencies"].values(), []):
        assert "==" in dep, f"{dep} is not pinned to a tested release"


def test_environment_yml_reuses_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"], "conda-forge only: PyTorch left the pytorch channel after 2.5"
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    python = next(d for d in conda_deps if d.startswith("python="))
    assert python == "python=3.11"
    assert re.match(r">=3\.11", pyproject()["project"]["requires-python"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert len(pip) == 1, "Python packages are declared once, in pyproject.toml"
    extras = re.fullmatch(r"-e \.\[(.*)\]", pip[0]).group(1).split(",")
    assert set(extras) == set(pyproject()["project"]["optional-dependencies"])
    # nothing in environment.yml may duplicate a pip dependency under another pin
    names = {re.split(r"[=<>]", d)[0] for d in pyproject()["project"]["dependencies"]}
    assert not names & {d.split("=")[0] for d in conda_deps}


def test_make_targets_and_readme_commands():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup", "figures", "test", "lab", "clean"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    # make test and make figures set up .venv themselves on a fresh clone
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M) and re.search(r"^figures: \$\(STAMP\)", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    first_commands = re.findall(r"^make \w+", readme, re.M)[:2]
    assert first_commands == ["make test", "make figures"] or first_commands == ["make figures", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
