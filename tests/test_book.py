"""The book builds from the executed chapters with warnings as errors, and the pages work offline."""

from __future__ import annotations

import re

import pytest

from conftest import build


@pytest.fixture(scope="module")
def html(executed_quick, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("book")
    src = build.stage(sorted(executed_quick.values()), tmp / "src")
    result = build.render(src, tmp / "html", tmp / "doctrees")
    assert result.returncode == 0, f"book build failed:\n{result.stdout}\n{result.stderr}"
    assert "WARNING" not in result.stderr, result.stderr
    return tmp / "html"


def test_pages_exist(html):
    assert (html / "index.html").is_file()
    for stem in ("01_two_moons",):
        assert (html / "notebooks" / f"{stem}.html").is_file()


def test_mathjax_is_served_locally(html):
    page = (html / "notebooks" / "01_two_moons.html").read_text()
    src = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, flags=re.I)
    assert src, "no MathJax script on the chapter page"
    assert all(not s.startswith(("http:", "https:", "//")) for s in src), src
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_no_page_loads_scripts_from_a_cdn(html):
    for page in html.rglob("*.html"):
        remote = re.findall(r'<script[^>]+src="((?:https?:)?//[^"]+)"', page.read_text())
        assert not remote, f"{page.name} loads {remote}"


def test_chapter_shows_figures_numbers_and_progress(html, executed_quick):
    import diffnb

    page = (html / "notebooks" / "01_two_moons.html").read_text()
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
    assert len(images) >= 8, f"only {len(images)} figures on the page"
    for img in images:
        assert (html / "notebooks" / img).resolve().is_file(), img
    # a number quoted in the prose through glue is the one the run recorded
    results = diffnb.read_results(executed_quick["01_two_moons"])
    assert f"{results['energy_distance']:.5f}" in page
    # progress bars render as their final text line, not as empty widget boxes
    assert "100%|" in page
    assert "widget-view" not in page
    # equations are present for MathJax to typeset
    assert r"\bar\alpha_t" in page


def test_colab_launch_button_points_at_the_source_notebook(html):
    page = (html / "notebooks" / "01_two_moons.html").read_text()
    assert "colab.research.google.com/github/diffnb/diffusion-book/blob/main/notebooks/01_two_moons.ipynb" in page


def test_teachers_page_shows_the_measured_chapter_times(html, executed_quick):
    page = (html / "book" / "teachers.html").read_text()
    assert "quick profile: measured on CPU" in page
    for stem in executed_quick:
        assert f"notebooks/{stem}.html" in page
    assert "No GPU run has been timed" in page
    # every exercise is folded away in the chapters: a solution never shows unfolded
    for stem in executed_quick:
        chapter = (html / "notebooks" / f"{stem}.html").read_text()
        assert chapter.count('class="solution dropdown') >= 3, stem
        assert chapter.count('class="exercise') >= 3, stem


def test_times_table_names_profiles_devices_and_gaps(tmp_path):
    import json
    quick, gpu = tmp_path / "quick", tmp_path / "gpu"
    quick.mkdir()
    gpu.mkdir()
    stem = build.notebooks()[0].stem
    entry = dict(profile="quick", device="CPU, 2 cores", seconds=75.4, date="2026-11-22")
    (quick / build.TIMES).write_text(json.dumps({stem: entry}))
    table = build.times_table([quick])
    assert f"{{doc}}`../notebooks/{stem}` | 1 min 15 s | not measured |" in table
    assert "full profile: not run" in table and "No GPU run has been timed" in table
    (gpu / build.TIMES).write_text(json.dumps({stem: dict(entry, profile="full", device="NVIDIA H100")}))
    table = build.times_table([quick, gpu])
    assert "| 1 min 15 s | 1 min 15 s |" in table and "measured on NVIDIA H100" in table
    assert "No GPU run" not in table


def test_speed_page_shows_every_recorded_benchmark(html):
    import json
    page = (html / "book" / "speed.html").read_text()
    results = [json.loads(p.read_text()) for p in sorted(build.BENCHMARKS.glob("*.json"))]
    assert results, "benchmarks/ holds no result of python -m diffnb.bench"
    for r in results:
        assert r["device_name"] in page and r["versions"]["torch"] in page
        first = r["rows"][0]
        assert f"{first['train_images_per_second']:,.0f}" in page
    if not any(r["device"] == "cuda" for r in results):
        assert "No GPU has run the benchmark" in page


def test_speed_results_are_generated_from_the_json_files(tmp_path):
    assert "No benchmark result has been recorded yet." in build.speed_results(tmp_path)
