"""diffnb installs as a package (pip install "diffnb @ git+URL" on Colab) carrying every module it needs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile

from conftest import ROOT


def test_wheel_carries_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("diffnb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "diffnb"
    expected = {p.relative_to(ROOT).as_posix() for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    missing = expected - names
    assert not missing, f"the wheel lacks {sorted(missing)}"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_diffnb_imports_at_load_time_is_a_declared_dependency():
    """`pip install diffnb` must bring everything `import diffnb` needs: a module imported at
    the top of a diffnb file has to come from a distribution pyproject.toml names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_canonical(re.match(r"[A-Za-z0-9_.-]+", d).group()) for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = {}
    for path in sorted((ROOT / "diffnb").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__":
                    continue
                dists = {_canonical(d) for d in providers.get(top, [top])}
                if not dists & declared:
                    undeclared.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"
