"""The student edition: solutions replaced by stubs, outputs cleared, the rest unchanged."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import student_edition as se  # noqa: E402  (tools/student_edition.py)

SOLUTION = '''\
import torch


def q_sample(x0, t, noise, alpha_bar):
    """The closed form of q(x_t | x_0)."""
    ab = alpha_bar[t].view(-1, *([1] * (x0.ndim - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


@torch.no_grad()
def schedule(T,
             s=0.008):
    # a comment, no docstring
    return torch.linspace(0, 1, T)

answer = schedule(5).sum()
'''


def _notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        nbformat.v4.new_code_cell("x = 1\nprint(x)", outputs=[nbformat.v4.new_output("stream", text="1\n")],
                                  execution_count=1),
        nbformat.v4.new_code_cell(SOLUTION, metadata={"tags": ["solution"], "exercise": "Exercise 1"},
                                  outputs=[nbformat.v4.new_output("stream", text="hidden\n")]),
        nbformat.v4.new_markdown_cell("The answer is 42.", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("from diffnb.exercises import check_q_sample\n"
                                  "report = check_q_sample(q_sample)"),
    ]
    return nb


def test_solution_code_becomes_stubs_with_signatures_and_docstrings():
    out = se.student_edition(_notebook(), "01_demo")
    src = out.cells[2].source
    assert 'def q_sample(x0, t, noise, alpha_bar):\n    """The closed form of q(x_t | x_0)."""\n    raise ' \
           'NotImplementedError("Exercise 1: write the body of q_sample' in src
    assert "@torch.no_grad()\ndef schedule(T,\n             s=0.008):\n" in src
    assert src.startswith("import torch\n")                # imports are kept
    assert "ab.sqrt()" not in src and "linspace" not in src and "answer =" not in src
    assert src.count("# your code here") == 1          # the statement at the end
    assert out.cells[2].metadata["tags"] == ["student"]


def test_stubs_run_and_raise_not_implemented():
    src = se.student_edition(_notebook(), "01_demo").cells[2].source
    scope: dict = {}
    exec(compile(src, "<student>", "exec"), scope)
    for name, args in (("q_sample", (None, None, None, None)), ("schedule", (3,))):
        with pytest.raises(NotImplementedError, match=f"Exercise 1: write the body of {name}"):
            scope[name](*args)


def test_checker_reports_the_missing_solution_plainly(capsys):
    from diffnb.exercises import check_q_sample
    src = se.student_edition(_notebook(), "01_demo").cells[2].source
    scope: dict = {}
    exec(compile(src, "<student>", "exec"), scope)
    report = check_q_sample(scope["q_sample"])
    assert not report.passed and "not implemented yet" in report.message


def test_markdown_answer_becomes_a_prompt_and_other_cells_are_kept():
    nb = _notebook()
    out = se.student_edition(nb, "01_demo")
    assert out.cells[3].source == se.ANSWER_PROMPT
    for i in (0, 1, 4):
        assert out.cells[i].source == nb.cells[i].source
    assert all(c.outputs == [] and c.execution_count is None for c in out.cells if c.cell_type == "code")
    assert nb.cells[1].outputs and nb.cells[2].source == SOLUTION     # the original is untouched


def test_default_exercise_label_and_bad_solutions():
    nb = _notebook()
    del nb.cells[2].metadata["exercise"]
    assert "01_demo, solution 1: write the body" in se.student_edition(nb, "01_demo").cells[2].source
    nb.cells[2].source = "def f(x): return x\n"
    with pytest.raises(ValueError, match="solution cell 2 is not valid Python .*own line"):
        se.student_edition(nb, "01_demo")
    nb.cells[2].source = "def f(x:\n"
    with pytest.raises(ValueError, match="solution cell 2 is not valid Python"):
        se.student_edition(nb, "01_demo")


def test_build_writes_every_notebook(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        nbformat.write(_notebook(), src / name)
    written = se.build(sorted(src.glob("*.ipynb")), tmp_path / "student")
    assert [p.name for p in written] == ["01_a.ipynb", "02_b.ipynb"]
    again = nbformat.read(written[0], as_version=4)
    assert "NotImplementedError" in again.cells[2].source


def test_chapters_without_solutions_are_unchanged_but_cleared():
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out = se.student_edition(nb, path.stem)
        solutions = [c for c in nb.cells if "solution" in c.get("metadata", {}).get("tags", [])]
        if not solutions:
            assert [c.source for c in out.cells] == [c.source for c in nb.cells]
