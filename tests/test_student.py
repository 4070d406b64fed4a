"""Student copies: no solution left, no output left, and each chapter still runs up to its first exercise."""
from pathlib import Path

import nbformat
import pytest

from companion import student

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _synthetic():
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("x = 1\nx", execution_count=3,
                                  outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=3)]),
        nbformat.v4.new_markdown_cell("## Exercises\n1. Show that x = 1."),
        nbformat.v4.new_code_cell("# your answer", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("x == 1", metadata={"tags": ["solution"]}, execution_count=4),
        nbformat.v4.new_markdown_cell("The proof.", metadata={"tags": ["remove-input", "solution"]}),
    ]
    return nb


def test_student_copy_of_a_synthetic_notebook():
    nb = _synthetic()
    copy = student.student_copy(nb)
    assert [c.source for c in copy.cells] == ["# A chapter", "x = 1\nx", "## Exercises\n1. Show that x = 1.", "# your answer"]
    assert all(c.outputs == [] and c.execution_count is None for c in copy.cells if c.cell_type == "code")
    assert "widgets" not in copy.metadata
    assert len(nb.cells) == 6 and nb.cells[1].outputs  # the original is untouched
    assert student.first_exercise_index(copy) == 2
    nbformat.validate(copy)


@pytest.mark.parametrize("heading, found", [
    ("## Exercises", True), ("### Exercise 3 (derivation)", True), ("**Exercise 1.** Derive", True),
    ("# Exercises for chapter 2", True), ("Text first.\n\n## Exercises\n**1.**", True),
    ("Some exercises follow", False), ("## Exercised muscles", False), ("See **exercise 2** below", False),
])
def test_exercise_heading(heading, found):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(heading)])
    assert (student.first_exercise_index(nb) == 0) is found


def test_cli_writes_copies(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    nbformat.write(_synthetic(), src / "09_test.ipynb")
    assert student.main(["--src", str(src), "--out", str(tmp_path / "out")]) == 0
    assert "09_test.ipynb: 2 solution cell(s) removed" in capsys.readouterr().out
    copy = nbformat.read(tmp_path / "out" / "09_test.ipynb", as_version=4)
    assert not any(student.is_solution(c) for c in copy.cells)
    with pytest.raises(SystemExit) as error:
        student.main(["--src", str(tmp_path / "missing")])
    assert error.value.code == 2


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {path.name: path for path, _ in student.write_student_copies(ROOT / "notebooks", out)}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_copy_is_clean(chapter, copies):
    original = nbformat.read(chapter, as_version=4)
    copy = nbformat.read(copies[chapter.name], as_version=4)
    assert not any(student.is_solution(c) for c in copy.cells), "a solution cell was left"
    assert all(not c.outputs and c.execution_count is None for c in copy.cells if c.cell_type == "code")
    kept = [c.source for c in original.cells if not student.is_solution(c)]
    assert [c.source for c in copy.cells] == kept
    assert any(student.is_solution(c) for c in original.cells), f"{chapter.name} has no cell tagged 'solution'"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_copy_runs_to_first_exercise(chapter, copies, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("COMPANION_QUICK", "1")  # the kernel inherits it: CI's quick mode

    copy = nbformat.read(copies[chapter.name], as_version=4)
    first = student.first_exercise_index(copy)
    assert first is not None, f"{chapter.name} has no markdown cell starting with an 'Exercises' heading"
    copy.cells = copy.cells[:first]
    client = NotebookClient(copy, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
