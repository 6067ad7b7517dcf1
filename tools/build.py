"""Build the book: execute every chapter once with papermill, then render the HTML.

    python tools/build.py [--profile full|quick] [--device auto|cpu|cuda|mps] [--only 01_two_moons]

Steps (each a function the tests reuse):

1. ``execute``: run each notebook of ``notebooks/`` with papermill, passing
   ``device``, ``profile`` and ``seed`` as parameters, into
   ``_build/executed/<profile>/`` (the sources stay without outputs);
2. ``stage``: assemble the book's sources in ``_build/src/``, with the executed
   copies in place of ``notebooks/`` (so launch buttons still point at
   ``notebooks/NAME.ipynb`` in the repository);
3. ``render``: turn ``_config.yml`` into Sphinx's ``conf.py`` with jupyter-book
   and build the HTML into ``_build/html/`` with warnings as errors.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "references.bib", "book", "_static")


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The chapters, in order; ``only`` filters by stem (e.g. ``01_two_moons``)."""
    found = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if only:
        unknown = set(only) - {p.stem for p in found}
        if unknown:
            raise SystemExit(f"unknown notebook(s) {sorted(unknown)}; known: {[p.stem for p in found]}")
        found = [p for p in found if p.stem in only]
    return found


def execute(paths: list[Path], out_dir: Path, *, profile: str, device: str, seed: int = 0,
            timeout: int = 1800) -> list[Path]:
    """Execute each notebook with papermill into ``out_dir``; return the executed copies.

    Each runs in a fresh, empty working folder, as a chapter opened alone on Colab does.
    Stream outputs are coalesced with carriage returns applied, so a progress bar is
    stored as its last state; the cell papermill injects is tagged ``remove-cell``
    (the book shows the notebook's own ``parameters`` cell instead). A notebook
    that declares an ``interactive`` parameter gets ``interactive=False``: a static
    page cannot run a widget, and executing widget cells headless can hang nbclient.
    """
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for src in paths:
        dst = out_dir / src.name
        start = time.perf_counter()
        params = dict(device=device, profile=profile, seed=seed)
        if "interactive" in papermill.inspect_notebook(str(src)):
            params["interactive"] = False
        with tempfile.TemporaryDirectory() as cwd:
            papermill.execute_notebook(
                str(src), str(dst), parameters=params,
                cwd=cwd, kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                coalesce_streams=True)
        nb = nbformat.read(dst, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbformat.write(nb, dst)
        print(f"executed {src.name} ({profile}, {device}) in {time.perf_counter() - start:.1f} s", flush=True)
        done.append(dst)
    return done


def stage(executed: list[Path], src_dir: Path) -> Path:
    """Copy the book's sources to ``src_dir`` with the executed notebooks in ``notebooks/``."""
    if src_dir.exists():
        shutil.rmtree(src_dir)
    src_dir.mkdir(parents=True)
    for name in BOOK_SOURCES:
        path = ROOT / name
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, src_dir / name)
    (src_dir / "notebooks").mkdir()
    for nb in executed:
        shutil.copy2(nb, src_dir / "notebooks" / nb.name)
    return src_dir


def render(src_dir: Path, html_dir: Path, doctree_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Sphinx HTML build of a staged book, warnings as errors (``-W -n --keep-going``)."""
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "jupyter-book"), "config", "sphinx", str(src_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    if html_dir.exists():
        shutil.rmtree(html_dir)
    doctree_dir = doctree_dir or src_dir.parent / "doctrees"
    return subprocess.run(
        [str(bindir / "sphinx-build"), "-b", "html", "-W", "-n", "--keep-going", "-q",
         "-d", str(doctree_dir), str(src_dir), str(html_dir)],
        capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=("quick", "full"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="execute only these notebooks (by stem)")
    args = parser.parse_args(argv)

    executed_dir = BUILD / "executed" / args.profile
    executed = execute(notebooks(args.only), executed_dir, profile=args.profile, device=args.device, seed=args.seed)
    if args.only:  # keep the other chapters' earlier executed copies, if any
        executed = sorted({p.name: p for p in [*executed_dir.glob("*.ipynb"), *executed]}.values())
    result = render(stage(executed, BUILD / "src"), BUILD / "html")
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode:
        print(f"book build failed (exit {result.returncode}); see the warnings above", file=sys.stderr)
        return result.returncode
    print(f"book written to {BUILD / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
