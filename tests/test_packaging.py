"""diffnb installs as a package (pip install "diffnb @ git+URL" on Colab) carrying every module it needs."""

from __future__ import annotations

import subprocess
import sys
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
