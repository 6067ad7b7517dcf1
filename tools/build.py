"""Build the book: execute every chapter once with papermill, then render the HTML.

    python tools/build.py [--profile full|quick] [--device auto|cpu|cuda|mps] [--only 01_two_moons]
                          [--no-render] [--record-times]

Steps (each a function the tests reuse):

1. ``execute``: run each notebook of ``notebooks/`` with papermill, passing
   ``device``, ``profile`` and ``seed`` as parameters, into
   ``_build/executed/<profile>/`` (the sources stay without outputs), noting how
   long each took in ``times.json`` there;
2. ``stage``: assemble the book's sources in ``_build/src/``, with the executed
   copies in place of ``notebooks/`` (so launch buttons still point at
   ``notebooks/NAME.ipynb`` in the repository) and their links to the book's pages
   made relative (see ``book_links``), and write the table of chapter
   times that the teachers' page includes, from every ``times.json`` found and the
   times kept from other devices in ``benchmarks/chapters/``, and the
   speed page's tables, from the benchmark results in ``benchmarks/``;
3. ``render``: turn ``_config.yml`` into Sphinx's ``conf.py`` with jupyter-book
   and build the HTML into ``_build/html/`` with warnings as errors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
BOOK_SOURCES = ("_config.yml", "_toc.yml", "references.bib", "book", "_static")
TIMES = "times.json"               # {stem: {profile, device, seconds, date}}, beside the executed copies
TIMES_TABLE = "book/chapter_times.md"
BENCHMARKS = ROOT / "benchmarks"       # JSON written by python -m diffnb.bench
RECORDED_TIMES = BENCHMARKS / "chapters"   # chapter times kept from other devices: {profile: {stem: entry}}
SPEED_RESULTS = "book/speed_results.md"


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
    The kernel runs with ``DIFFNB_BOOK_BUILD=1``, so ``diffnb.record`` does not print the
    numbers that the book's text shows in place.
    """
    import nbformat
    import papermill
    import zmq
    from traitlets.config import Config

    from diffnb.results import BOOK_BUILD

    # Encrypt the kernel's local connection where the kernel and pyzmq support it: ipykernel
    # 7.3 and later print a warning on every start that runs over plain TCP. ("auto" is an
    # error when pyzmq lacks CurveZMQ.)
    kernel_config = Config({"KernelManager": {"transport_encryption": "auto"}} if zmq.has("curve") else {})

    out_dir.mkdir(parents=True, exist_ok=True)
    times_file = out_dir / TIMES
    times = json.loads(times_file.read_text()) if times_file.is_file() else {}
    where = device_label(device)
    done = []
    for src in paths:
        dst = out_dir / src.name
        start = time.perf_counter()
        params = dict(device=device, profile=profile, seed=seed)
        if "interactive" in papermill.inspect_notebook(str(src)):
            params["interactive"] = False
        # the kernel inherits the variable (see the docstring)
        with tempfile.TemporaryDirectory() as cwd, mock.patch.dict(os.environ, {BOOK_BUILD: "1"}):
            papermill.execute_notebook(
                str(src), str(dst), parameters=params,
                cwd=cwd, kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                coalesce_streams=True, config=kernel_config)
        nb = nbformat.read(dst, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags and "remove-cell" not in tags:
                tags.append("remove-cell")
        nbformat.write(nb, dst)
        seconds = time.perf_counter() - start
        times[src.stem] = dict(profile=profile, device=where, seconds=round(seconds, 1),
                               date=datetime.date.today().isoformat())
        times_file.write_text(json.dumps(times, indent=1) + "\n")
        print(f"executed {src.name} ({profile}, {device}) in {seconds:.1f} s", flush=True)
        done.append(dst)
    return done


def device_label(device: str) -> str:
    """What ``device`` resolves to here, in words: "CPU, 2 cores" or the GPU's name."""
    import torch

    import diffnb

    dev = diffnb.get_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "Apple GPU (MPS)" if dev.type == "mps" else f"CPU, {os.cpu_count()} cores"


def _time_rows(runs: dict[str, dict[str, dict]]) -> list[str]:
    """Table rows of chapter times, quick against full, from {profile: {stem: entry}}."""
    def cell(entry):
        if entry is None:
            return "not measured"
        m, s = divmod(round(entry["seconds"]), 60)
        return f"{m} min {s:02d} s" if m else f"{s} s"

    lines = ["| Chapter | quick profile | full profile |", "| --- | --- | --- |"]
    for nb in notebooks():
        row = [runs.get(p, {}).get(nb.stem) for p in ("quick", "full")]
        lines.append(f"| {{doc}}`../notebooks/{nb.stem}` | {cell(row[0])} | {cell(row[1])} |")
    return lines


def _devices(runs: dict[str, dict[str, dict]], key: str = "device") -> set[str]:
    """Every entry's ``key`` (its device, or its date) in {profile: {stem: entry}}."""
    return {e[key] for r in runs.values() for e in r.values()}


def times_table(dirs: list[Path], recorded: Path | None = None) -> str:
    """Markdown tables of chapter times, quick against full: this build's, from the
    ``times.json`` in ``dirs``, then those kept in ``recorded`` (one JSON file per device,
    written by ``record_times``) for devices this build did not run on."""
    runs: dict[str, dict[str, dict]] = {}
    for d in dirs:
        if (d / TIMES).is_file():
            for stem, entry in json.loads((d / TIMES).read_text()).items():
                runs.setdefault(entry["profile"], {})[stem] = entry
    lines = _time_rows(runs) + [""]
    for profile in ("quick", "full"):
        entries = runs.get(profile, {}).values()
        if entries:
            devices = ", ".join(sorted({e["device"] for e in entries}))
            dates = ", ".join(sorted({e["date"] for e in entries}))
            lines.append(f"- {profile} profile: measured on {devices}, {dates}.")
        else:
            lines.append(f"- {profile} profile: not run by the build that made this page.")
    here = _devices(runs)
    kept = [json.loads(f.read_text()) for f in sorted(recorded.glob("*.json"))] if recorded else []
    kept = [k for k in kept if not _devices(k) <= here]
    for k in kept:
        lines += ["", f"Measured on {', '.join(sorted(_devices(k)))} ({', '.join(sorted(_devices(k, 'date')))}) "
                  "and kept in the repository:", "", *_time_rows(k)]
    if all(d.startswith("CPU") for d in here.union(*map(_devices, kept))):
        lines += ["", "No GPU run has been timed for this edition of the book."]
    return "\n".join(lines) + "\n"


def record_times(out_dir: Path, folder: Path = RECORDED_TIMES, stems: list[str] | None = None) -> Path:
    """Keep the chapter times of the build in ``out_dir`` (only the chapters ``stems``, if
    given) in ``folder/<device>.json``, merged with what that file held (other profiles and
    chapters stay), for the teachers' page of builds on other devices. Returns the file."""
    entries = json.loads((out_dir / TIMES).read_text())
    if stems is not None:
        entries = {stem: e for stem, e in entries.items() if stem in stems}
    devices = {e["device"] for e in entries.values()}
    if len(devices) != 1:
        raise ValueError(f"{out_dir / TIMES} mixes devices {sorted(devices)}; record one device at a time")
    from diffnb.results import slug, write_json

    path = folder / f"{slug(devices.pop())}.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    for stem, entry in entries.items():
        kept.setdefault(entry["profile"], {})[stem] = entry
    return write_json(path, kept, indent=1, sort_keys=True)


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
        (src_dir / "notebooks" / nb.name).write_text(book_links(nb.read_text()))
    dirs = {p.parent for p in executed} | {d for d in (BUILD / "executed").glob("*") if d.is_dir()}
    (src_dir / TIMES_TABLE).write_text(times_table(sorted(dirs), RECORDED_TIMES))
    (src_dir / SPEED_RESULTS).write_text(speed_results(BENCHMARKS))
    return src_dir


def repository_pages() -> str:
    """Where the repository shows its files on the web: ``<url>/blob/<branch>/``, from ``_config.yml``."""
    import yaml

    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return f"{repo['url']}/blob/{repo['branch']}/"


def book_links(notebook_json: str) -> str:
    """A notebook's links to the book's pages, made relative for the rendered book.

    The chapters link to pages in ``book/`` by their address in the repository, the one
    link that works wherever a chapter is opened alone (Colab, a student's Jupyter); in
    the book they become links between its pages."""
    return notebook_json.replace(f"]({repository_pages()}book/", "](../book/")


def speed_results(folder: Path) -> str:
    """The speed page's measured tables, from the benchmark's JSON files in ``folder``."""
    from diffnb.bench import results_markdown

    return results_markdown([json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))])


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
    parser.add_argument("--no-render", action="store_true",
                        help="execute (and time) the chapters, but do not build the HTML")
    parser.add_argument("--record-times", action="store_true",
                        help=f"keep this run's chapter times in {RECORDED_TIMES.relative_to(ROOT)}/ "
                             "(for a GPU run: the teachers' page of every later build shows them)")
    args = parser.parse_args(argv)

    executed_dir = BUILD / "executed" / args.profile
    executed = execute(notebooks(args.only), executed_dir, profile=args.profile, device=args.device, seed=args.seed)
    if args.record_times:
        print(f"chapter times kept in {record_times(executed_dir, stems=[p.stem for p in executed])}")
    if args.only:  # keep the other chapters' earlier executed copies, if any
        executed = sorted({p.name: p for p in [*executed_dir.glob("*.ipynb"), *executed]}.values())
    if args.no_render:
        return 0
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
