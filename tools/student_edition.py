"""Make the student edition of the chapters: the same notebooks with the solutions removed.

    python tools/student_edition.py [--out student/]

In a chapter, a solution is a cell tagged ``solution``. In the student edition:

- a solution *code* cell keeps its imports and the signature and docstring of
  every function it defines, with the body replaced by
  ``raise NotImplementedError(...)`` naming the exercise; its other statements
  become a comment asking for the student's code.
  The chapter still runs from top to bottom, and each checker reports the missing
  solution plainly ("not implemented yet") instead of crashing;
- a solution *markdown* cell (a written answer) becomes a prompt to write one;
- every output is cleared; all other cells stay exactly as they are.
"""

from __future__ import annotations

import argparse
import ast
import copy
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTION_TAG = "solution"
ANSWER_PROMPT = "*Write your answer here, then compare it with what the next cell shows.*"


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
            out.append(f'{indent}raise NotImplementedError("{exercise}: write the body of '
                       f'{node.name}, then run the check below")')
            out.append("")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):   # not part of the answer
            out += lines[node.lineno - 1:node.end_lineno]
        elif not out or out[-1] != "# your code here":
            out.append("# your code here")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def student_edition(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A copy of ``nb`` with its solution cells replaced and all outputs cleared."""
    nb = copy.deepcopy(nb)
    n_solutions = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        n_solutions += 1
        label = cell.metadata.get("exercise", f"{name}, solution {n_solutions}")
        if cell.cell_type == "code":
            try:
                cell.source = stub_source(cell.source, label)
            except SyntaxError as err:
                raise ValueError(f"{name}: solution cell {i} is not valid Python ({err})") from None
        else:
            cell.source = ANSWER_PROMPT
        cell.metadata["tags"] = [t for t in cell.metadata["tags"] if t != SOLUTION_TAG] + ["student"]
    return nb


def build(paths: list[Path], out_dir: Path) -> list[Path]:
    """Write the student edition of each notebook into ``out_dir``; return the new paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        dst = out_dir / path.name
        nbformat.write(student_edition(nb, path.stem), dst)
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
