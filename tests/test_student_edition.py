"""The student edition: solutions replaced by stubs, outputs cleared, the rest unchanged."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

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
    assert out.cells[3].source == se.RESULT_PROMPT      # it reads the solution code just above
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


# --- sphinx-exercise directives: gates removed, exercises rendered as plain markdown ---------

EXERCISE_CELL = """\
## Exercises

Two exercises.

```{exercise} Implement q_sample
:label: ex-q

Write `q_sample`, then run the check.
```

```{solution-start} ex-q
:class: dropdown
```"""

NESTED = """\
````{exercise} With code
:label: ex-nested
:class: hard

Run this:

```python
x = 1
```
````"""


def _exercise_notebook():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md("# A chapter\n\n```python\nnot = 'a directive'\n```"),        # 0: kept as it is
        md(EXERCISE_CELL),                                                # 1: exercise + solution-start
        code(SOLUTION, metadata={"tags": ["solution"]}),                  # 2
        md("```{solution-end}\n```"),                                     # 3: dropped
        code("report = check_q_sample(q_sample)"),                        # 4
        md(":::{exercise} Predict\n:label: ex-p\nWhat will happen?\n:::"),  # 5: colon fence
        md("```{solution-start} ex-p\n:class: dropdown\n```"),            # 6: dropped
        md("It converges.", metadata={"tags": ["solution"]}),             # 7
        md("```{solution-end}\n```\n\nText after the gate."),             # 8: gate cut out
        md("```{exercise-start} Gated\n:label: ex-g\n```\n\nThe body.\n\n```{exercise-end}\n```"),  # 9
        md(NESTED),                                                       # 10
    ]
    return nb


def test_gate_cells_are_dropped_and_stubs_stay_in_place():
    nb = _exercise_notebook()
    out = se.student_edition(nb, "01_demo")
    assert len(out.cells) == len(nb.cells) - 2
    kept = [0, 1, 2, 4, 5, 7, 8, 9, 10]                                  # the original cells, in order
    assert [c.cell_type for c in out.cells] == [nb.cells[i].cell_type for i in kept]
    assert [c.metadata.get("tags", []) for c in out.cells] == \
        [[], [], ["student"], [], [], ["student"], [], [], []]
    assert out.cells[0].source == nb.cells[0].source
    assert out.cells[3].source == nb.cells[4].source
    assert out.cells[5].source == se.ANSWER_PROMPT     # a prediction: no solution code before it
    assert out.cells[6].source == "Text after the gate."
    assert se.leftovers(out) == []
    assert nb.cells[3].source == "```{solution-end}\n```"                  # the original is untouched


def test_solution_start_sharing_the_exercise_cell_is_cut_out():
    out = se.student_edition(_exercise_notebook(), "01_demo")
    assert out.cells[1].source == ("## Exercises\n\nTwo exercises.\n\n**Exercise: Implement q_sample**\n\n"
                                   "Write `q_sample`, then run the check.")
    # the stub names the exercise by its title, found through the gate's label
    assert 'raise NotImplementedError("Exercise \'Implement q_sample\': write the body of q_sample' \
        in out.cells[2].source


def test_exercises_become_plain_markdown():
    out = se.student_edition(_exercise_notebook(), "01_demo")
    assert out.cells[4].source == "**Exercise: Predict**\n\nWhat will happen?"
    assert out.cells[7].source == "**Exercise: Gated**\n\nThe body."
    assert out.cells[8].source == "**Exercise: With code**\n\nRun this:\n\n```python\nx = 1\n```"
    assert se.student_markdown("```{exercise}\n:label: ex-x\nNo title.\n```") == "**Exercise**\n\nNo title."
    for cell in out.cells:
        assert "{exercise" not in cell.source and ":label:" not in cell.source and "{solution" not in cell.source


def test_leftovers_and_build_refuse_a_visible_solution(tmp_path):
    nb = _exercise_notebook()
    assert se.leftovers(nb) == ["cell 1 still contains 'solution-start'",
                                "cell 2 is still tagged 'solution'",
                                "cell 3 still contains 'solution-end'",
                                "cell 6 still contains 'solution-start'",
                                "cell 7 is still tagged 'solution'",
                                "cell 8 still contains 'solution-end'"]
    nb.cells.append(nbformat.v4.new_markdown_cell("```{solution} ex-p\nAn ungated answer.\n```"))
    nbformat.write(nb, tmp_path / "01_demo.ipynb")
    with pytest.raises(ValueError, match=r"01_demo.ipynb: the student edition would show a solution: "
                                         r"cell 9 still contains '\{solution\}'"):
        se.build([tmp_path / "01_demo.ipynb"], tmp_path / "student")


def test_student_editions_of_the_chapters_hide_every_solution():
    """Every chapter: no gate, no ``solution`` tag, no exercise fence left; one stub per solution."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        out = se.student_edition(nb, path.stem)
        assert se.leftovers(out) == [], path.name
        for cell in out.cells:
            assert "solution-start" not in cell.source and "solution-end" not in cell.source, path.name
            assert "solution" not in cell.metadata.get("tags", []), path.name
            assert not se.EXERCISE.search(cell.source), path.name
        n_solutions = sum("solution" in c.metadata.get("tags", []) for c in nb.cells)
        assert sum("student" in c.metadata.get("tags", []) for c in out.cells) == n_solutions, path.name
        # the other code cells are all there, in order and unchanged
        others = [c.source for c in nb.cells
                  if c.cell_type == "code" and "solution" not in c.metadata.get("tags", [])]
        assert [c.source for c in out.cells
                if c.cell_type == "code" and "student" not in c.metadata.get("tags", [])] == others, path.name


# --- the student edition of every chapter, executed (quick profile, CPU) --------------------

CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RECORD_PASSED = re.compile(r"""record\(\s*["'](exercise_\w+_passed)["']""")


def _defines_a_function(cell) -> bool:
    try:
        tree = ast.parse(cell.source)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body)


def _cell_text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_student_edition_runs_in_the_quick_profile(chapter, tmp_path):
    """CI: the student edition runs top to bottom, and every checker says "not implemented yet"."""
    import build                                     # tools/build.py
    from papermill.exceptions import PapermillExecutionError

    from diffnb.results import read_results

    [student] = se.build([chapter], tmp_path / "student")
    try:
        [executed] = build.execute([student], tmp_path / "executed", profile="quick", device="cpu", timeout=600)
    except PapermillExecutionError as err:
        # name the failing cell by its index in the chapter itself (the edition drops gate cells)
        ran = nbformat.read(tmp_path / "executed" / chapter.name, as_version=4)
        failed = [c.get("id") for c in ran.cells
                  if any(out.get("output_type") == "error" for out in c.get("outputs", []))]
        index = next((i for i, c in enumerate(nbformat.read(chapter, as_version=4).cells)
                      if failed and c.get("id") == failed[0]), "?")
        pytest.fail(f"the student edition of {chapter.name} fails at cell {index} of the chapter: "
                    f"{err.ename}: {err.evalue}\n--- the cell:\n{err.source}", pytrace=False)

    original = nbformat.read(chapter, as_version=4)
    ran = nbformat.read(executed, as_version=4)
    checkers = [c for c in ran.cells if c.cell_type == "code" and RECORD_PASSED.search(c.source)]
    expected = {name for c in checkers for name in RECORD_PASSED.findall(c.source)}
    recorded = {k: v for k, v in read_results(executed).items() if re.fullmatch(r"exercise_\w+_passed", k)}
    assert set(recorded) == expected, f"{chapter.name}: recorded {sorted(recorded)}, expected {sorted(expected)}"
    assert {k: v for k, v in recorded.items() if v is not False} == {}, f"{chapter.name}: a check passed"
    if any("solution" in c.metadata.get("tags", []) and c.cell_type == "code" and _defines_a_function(c)
           for c in original.cells):                 # an implement exercise
        assert recorded, f"{chapter.name} has an implement exercise but records no exercise_*_passed"
    for cell in checkers:
        assert "not implemented yet" in _cell_text(cell), \
            f"{chapter.name}: the checker cell\n{cell.source}\nprinted\n{_cell_text(cell)}"
