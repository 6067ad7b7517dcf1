"""Make the student edition of the chapters: the same notebooks with the solutions removed.

    python tools/student_edition.py [--out student/]

In a chapter, a solution is a cell tagged ``solution``, between sphinx-exercise's
two "gate" directives: a ``{solution-start} ex-label`` fence (in a markdown cell of
its own, or appended to the exercise's cell) and a ``{solution-end}`` fence.
In the student edition:

- a solution *code* cell keeps its imports and the signature and docstring of
  every function it defines, with the body replaced by
  ``raise NotImplementedError(...)`` naming the exercise; its other statements
  become a comment asking for the student's code.
  The chapter still runs from top to bottom, and each checker reports the missing
  solution plainly ("not implemented yet") instead of crashing;
- a solution *markdown* cell (a written answer) becomes a prompt to write one: to
  compare with what the next cell shows, or, right after a solution code cell, to
  read the student's own results;
  either kind stays where the solution was, tagged ``student`` instead;
- the gate directives are removed: a cell that holds only gates is dropped, and a
  gate that shares a cell with other text is cut out of it (fence and options);
- each ``{exercise} Title`` block (or ``{exercise-start}``/``{exercise-end}`` pair),
  which plain Jupyter and Colab would show as a code block, becomes plain markdown:
  "**Exercise: Title**" followed by its text, the option lines (``:label:``) dropped;
- every output is cleared; all other cells stay exactly as they are.

``build`` refuses to write an edition in which a cell is still tagged ``solution``
or still holds a solution directive (see ``leftovers``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAG = "solution"
ANSWER_PROMPT = "*Write your answer here, then compare it with what the next cell shows.*"
# a written answer that follows the student's own code: the reading of their experiment
RESULT_PROMPT = "*Write here what your results show.*"

# A MyST directive fence at the start of a line (``` or ::: , three or more), its
# argument, option lines (":key: value"), and, for the directives with a body, the
# body up to the closing fence of the same length.
_OPEN = r"^(?P<fence>`{3,}|:{3,})[ \t]*\{(?P<name>%s)\}[ \t]*(?P<arg>[^\n]*)\n"
_OPTIONS = r"(?P<options>(?:[ \t]*:[\w-]+:[^\n]*\n)*)"
_CLOSE = r"(?P=fence)[ \t]*(?:\n|\Z)"
# solution-start / solution-end: removed with the blank lines after them
GATE = re.compile(_OPEN % "solution-start|solution-end" + _OPTIONS + _CLOSE + r"\n*", re.M)
# exercise: "**Exercise: Title**" and the body
EXERCISE = re.compile(_OPEN % "exercise" + _OPTIONS + r"(?P<body>.*?)^" + _CLOSE, re.M | re.S)
# exercise-start: the heading; exercise-end: removed (both with the blank lines after them)
EXERCISE_GATE = re.compile(_OPEN % "exercise-start|exercise-end" + _OPTIONS + _CLOSE + r"\n*", re.M)
_LABEL = re.compile(r"^[ \t]*:label:[ \t]*(\S+)", re.M)


def _heading(title: str) -> str:
    title = title.strip()
    return f"**Exercise: {title}**" if title else "**Exercise**"


def exercise_titles(source: str) -> dict[str, str]:
    """{label: title} of the exercise directives in a markdown cell."""
    titles = {}
    for pattern in (EXERCISE, EXERCISE_GATE):
        for m in pattern.finditer(source):
            label = _LABEL.search(m["options"])
            if label and m["name"] != "exercise-end":
                titles[label[1]] = m["arg"].strip()
    return titles


def student_markdown(source: str) -> str:
    """A markdown cell with its exercise directives rendered and its solution gates removed.

    A cell without such directives comes back unchanged; one that held nothing
    else comes back empty.
    """
    new = GATE.sub("", source)
    new = EXERCISE.sub(lambda m: f"{_heading(m['arg'])}\n\n{m['body'].strip(chr(10))}\n", new)
    new = EXERCISE_GATE.sub(lambda m: "" if m["name"] == "exercise-end" else f"{_heading(m['arg'])}\n\n", new)
    return source if new == source else new.rstrip()


def leftovers(nb: nbformat.NotebookNode) -> list[str]:
    """What would give a solution away in a student edition: one line per offending cell."""
    found = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            found.append(f"cell {i} is still tagged {SOLUTION_TAG!r}")
        for word in ("solution-start", "solution-end", "{solution}"):
            if word in cell.source:
                found.append(f"cell {i} still contains {word!r}")
    return found


def stub_source(source: str, exercise: str) -> str:
    """The student's version of a solution code cell (see the module docstring)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            body = node.body[0]
            if body.lineno == node.lineno:
                raise SyntaxError(f"put the body of {node.name} on its own line")
            has_doc = isinstance(body, ast.Expr) and isinstance(body.value, ast.Constant) \
                and isinstance(body.value.value, str)
            # keep decorators, the (possibly multi-line) signature and the docstring
            keep_to = body.end_lineno if has_doc else body.lineno - 1
            indent = " " * (body.col_offset)
            out += lines[first - 1:keep_to]
            message = f"{exercise}: write the body of {node.name}, then run the check below"
            out.append(f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
            out.append("")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):   # not part of the answer
            out += lines[node.lineno - 1:node.end_lineno]
        elif not out or out[-1] != "# your code here":
            out.append("# your code here")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def student_edition(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` as the student edition (see the module docstring)."""
    nb = copy.deepcopy(nb)
    n_solutions = 0
    titles: dict[str, str] = {}      # exercise label -> title, as the chapter goes
    current = None                   # the exercise whose solution gate is open
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "markdown" and SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
            titles.update(exercise_titles(cell.source))
            for gate in GATE.finditer(cell.source):
                current = gate["arg"].strip() if gate["name"] == "solution-start" else None
            source = student_markdown(cell.source)
            if not source.strip() and cell.source.strip():    # the cell held only gates
                continue
            cell.source = source
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            n_solutions += 1
            if "exercise" in cell.metadata:
                label = cell.metadata["exercise"]
            elif current:
                label = f"Exercise {titles[current]!r}" if titles.get(current) else f"Exercise {current}"
            else:
                label = f"{name}, solution {n_solutions}"
            if cell.cell_type == "code":
                try:
                    cell.source = stub_source(cell.source, label)
                except SyntaxError as err:
                    raise ValueError(f"{name}: solution cell {i} is not valid Python ({err})") from None
            else:
                prev = cells[-1] if cells else None
                after_code = prev is not None and prev.cell_type == "code" \
                    and "student" in prev.metadata.get("tags", [])
                cell.source = RESULT_PROMPT if after_code else ANSWER_PROMPT
            cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG] + ["student"]
        cells.append(cell)
    nb.cells = cells
    return nb


def build(paths: list[Path], out_dir: Path) -> list[Path]:
    """Write the student edition of each notebook into ``out_dir``; return the new paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        dst = out_dir / path.name
        student = student_edition(nb, path.stem)
        problems = leftovers(student)
        if problems:
            raise ValueError(f"{path.name}: the student edition would show a solution: " + "; ".join(problems))
        nbformat.write(student, dst)
        written.append(dst)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "student",
                        help="folder for the student notebooks (default: student/)")
    args = parser.parse_args()
    for path in build(sorted((ROOT / "notebooks").glob("*.ipynb")), args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
