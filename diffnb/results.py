"""Key numbers of a chapter: recorded in the notebook, read back by tests and tools.

``record`` stores a value with myst-nb's ``glue`` (so the prose can quote it
with ``{glue:text}`name:.3f```): the rendered book shows it in the text, while a chapter
run in Colab or Jupyter, whose Markdown shows the role as typed, prints it; ``read_results``
collects every recorded value from an executed notebook. ``write_json`` writes
the JSON files that tools and commands keep (benchmarks, run summaries, times),
named with ``slug`` where a device names them.
"""

from __future__ import annotations

import ast
import json
import numbers
import os
import re
from pathlib import Path

import numpy as np
import torch


def _plain(value):
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"can only record a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"can record a number or a string, got {type(value).__name__}")


# set to 1 by the book's build (tools/build.py) while it executes the chapters
BOOK_BUILD = "DIFFNB_BOOK_BUILD"
_explained = False      # whether this process has printed what the printed lines are


def record(name: str, value) -> None:
    """Record ``value`` (a number or string) under ``name`` in the running notebook.

    Outside the book's build (``BOOK_BUILD`` unset) it also prints ``name = value``: in Colab
    or Jupyter the text shows ``{glue:text}`name``` where the book shows the number, so the
    reader finds the number under the cell that computed it. The first line printed says so.
    """
    from myst_nb import glue

    value = _plain(value)
    glue(name, value, display=False)
    if os.environ.get(BOOK_BUILD) != "1":
        global _explained
        if not _explained:
            print("(The text quotes each number a cell records by its name, as {glue:text}`name`, "
                  "where the rendered book shows the number; here each is printed as name = value.)")
            _explained = True
        print(f"{name} = {format(value, '.6g') if isinstance(value, float) else value}")


def read_results(path: str | Path) -> dict:
    """Every value ``record``-ed in the executed notebook at ``path``, as {name: value}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no executed notebook at {str(path)!r}")
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            text = out.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain")
            if isinstance(text, list):
                text = "".join(text)
            found[meta["name"]] = _parse(text)
    return found


def _parse(text: str):
    """The value whose repr is ``text``; nan and inf (which have no literal) included."""
    if text in ("nan", "inf", "-inf"):
        return float(text)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def write_json(path: str | Path, data, *, indent: int = 2, sort_keys: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file beside it, then a
    rename), so that a run stopped mid-write leaves the previous file whole; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
    return path


def slug(text: str) -> str:
    """``text`` as a file name: lower case, runs of other characters as one ``-``
    ("NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
