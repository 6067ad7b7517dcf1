"""Conventions every chapter keeps (see the README): no stored outputs, a parameters cell, the bootstrap cell."""

from __future__ import annotations

import re

import nbformat
import pytest
import yaml

from conftest import ROOT, build

NOTEBOOKS = build.notebooks()
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    for cell in code_cells(path):
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_bootstrap_cell_installs_diffnb_from_the_configured_repository(path):
    first = code_cells(path)[0].source
    assert 'find_spec("diffnb") is None' in first, "the first code cell must install diffnb only when missing"
    url = CONFIG["repository"]["url"]
    assert f"diffnb @ git+{url}" in first, f"bootstrap must install from {url}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(path):
    cells = code_cells(path)
    assert "parameters" in cells[1].metadata.get("tags", []), "the second code cell must be tagged 'parameters'"
    src = cells[1].source
    for line in ('device = "auto"', 'profile = "full"', "seed = 0"):
        assert line in src, f"parameters cell lacks {line!r}"
    tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_hard_coded_device(path):
    for cell in code_cells(path)[2:]:
        assert not re.search(r"""["'](cuda|mps)["']|\.cuda\(""", cell.source), \
            f"{path.name}: devices come from the parameters cell only:\n{cell.source[:200]}"


CODE_WIDTH = 79   # characters; _static/code.css sizes the book's code blocks to show them


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_lines_fit_the_books_code_blocks(path):
    """A longer line hides its end behind a scroll bar in the rendered book."""
    long = [(i, line) for i, cell in enumerate(nbformat.read(path, as_version=4).cells)
            if cell.cell_type == "code" for line in cell.source.splitlines() if len(line) > CODE_WIDTH]
    assert not long, f"{path.name}: {len(long)} code lines over {CODE_WIDTH} characters, first in cell " \
                     f"{long[0][0]}: {long[0][1]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_kernelspec(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_links_to_the_books_pages_work_in_a_chapter_opened_alone(path):
    """Colab opens a chapter without the rest of the repository, and shows Sphinx roles as
    typed: a chapter links to a page of the book by its address in the repository, which the
    build makes relative (``build.book_links``)."""
    pages = build.repository_pages() + "book/"
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "markdown":
            continue
        assert "{doc}`" not in cell.source, f"{path.name}: a {{doc}} role shows as typed outside the book"
        for target in re.findall(r"\]\(([^)#]+)", cell.source):
            assert target.startswith("https://"), f"{path.name}: relative link {target!r}"
            if "book/" in target and "/blob/" in target:
                assert target.startswith(pages) and (ROOT / "book" / target[len(pages):]).is_file(), target


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_directives_use_colon_fences_so_their_text_reads_as_markdown_in_colab(path):
    """Colab and Jupyter know no MyST directives: inside a backtick fence an exercise's
    statement shows as a code block with its maths as raw TeX, inside a colon fence it
    renders as Markdown and only the fence lines show as typed."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            found = re.findall(r"^`{3,}[ \t]*(\{[\w-]+\}[^\n]*)", cell.source, re.M)
            assert not found, f"{path.name}: write {found[0]!r} as a ::: fence"


def test_toc_lists_every_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in toc


def test_teachers_page_heads_each_chapter_with_its_title_in_order():
    heads = re.findall(r"^### \[(.+)\]\(\.\./notebooks/(\w+)\.ipynb\)$",
                       (ROOT / "book" / "teachers.md").read_text(), flags=re.M)
    titles = []
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        title = next(line for c in cells if c.cell_type == "markdown"
                     for line in c.source.splitlines() if line.startswith("# "))
        titles.append((title[2:], path.stem))
    assert heads == titles


def test_colab_launch_buttons_enabled():
    assert CONFIG["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
