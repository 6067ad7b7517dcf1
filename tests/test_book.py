"""The book builds from the executed chapters with warnings as errors, and the pages work offline."""

from __future__ import annotations

import json
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


def test_chapters_link_to_the_books_pages_within_the_book(html):
    def link(page, target):     # a link in the text, not the sidebar's
        return re.search(rf'href="\.\./book/{target}\.html"><span class="std std-doc">', page)

    for stem in ("01_two_moons", "04_training_images"):
        page = (html / "notebooks" / f"{stem}.html").read_text()
        assert link(page, "teachers"), stem
        assert "github.com/diffnb/diffusion-book/blob/main/book/" not in page, stem
    assert link((html / "notebooks" / "04_training_images.html").read_text(), "speed")


def test_contents_sidebars_show_titles_not_document_paths(html):
    """A heading made of a bare {doc} role shows its target path in the page's contents."""
    for page in html.rglob("*.html"):
        entries = re.findall(r'class="reference internal nav-link" href="#[^"]*">(.*?)</a>', page.read_text())
        raw = [e for e in entries if "../" in e or ".ipynb" in e]
        assert not raw, f"{page.relative_to(html)}: contents entries {raw}"


def test_teachers_page_shows_the_measured_chapter_times(html, executed_quick):
    page = (html / "book" / "teachers.html").read_text()
    assert "quick profile: measured on CPU" in page
    for stem in executed_quick:
        assert f"notebooks/{stem}.html" in page
    recorded = {e["device"] for f in build.RECORDED_TIMES.glob("*.json")
                for r in json.loads(f.read_text()).values() for e in r.values()}
    for device in recorded:          # times kept from GPU runs show beside this build's
        assert f"Measured on {device}" in page
    assert ("No GPU run has been timed" in page) == all(d.startswith("CPU") for d in recorded)
    # every exercise is folded away in the chapters: a solution never shows unfolded
    for stem in executed_quick:
        chapter = (html / "notebooks" / f"{stem}.html").read_text()
        assert chapter.count('class="solution dropdown') >= 3, stem
        assert chapter.count('class="exercise') >= 3, stem


def test_times_table_names_profiles_devices_and_gaps(tmp_path):
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


def test_recorded_times_merge_per_device_and_show_beside_the_build(tmp_path):
    stems = [nb.stem for nb in build.notebooks()]
    run, kept = tmp_path / "run", tmp_path / "kept"
    run.mkdir()
    gpu = dict(profile="full", device="NVIDIA H100 80GB HBM3", seconds=135.5, date="2026-11-22")
    (run / build.TIMES).write_text(json.dumps({stems[0]: gpu}))
    path = build.record_times(run, kept)
    assert path == kept / "nvidia-h100-80gb-hbm3.json"
    (run / build.TIMES).write_text(json.dumps({stems[1]: dict(gpu, profile="quick", seconds=23.1)}))
    assert build.record_times(run, kept) == path
    assert json.loads(path.read_text()) == {"full": {stems[0]: gpu},        # the first run is kept
                                            "quick": {stems[1]: dict(gpu, profile="quick", seconds=23.1)}}
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / build.TIMES).write_text(json.dumps({stems[0]: dict(gpu, device="CPU, 2 cores", seconds=75.4)}))
    table = build.times_table([cpu], kept)
    assert "Measured on NVIDIA H100 80GB HBM3 (2026-11-22) and kept in the repository:" in table
    assert f"{{doc}}`../notebooks/{stems[0]}` | not measured | 2 min 16 s |" in table
    assert f"{{doc}}`../notebooks/{stems[1]}` | 23 s | not measured |" in table
    assert "No GPU run" not in table
    assert "kept in the repository" not in build.times_table([run], kept)   # this build ran there
    (run / build.TIMES).write_text(json.dumps({stems[0]: gpu, stems[1]: dict(gpu, device="CPU, 2 cores")}))
    with pytest.raises(ValueError, match="mixes devices"):
        build.record_times(run, kept)
    build.record_times(run, kept, stems=[stems[0]])       # only the chapters this run executed
    assert json.loads(path.read_text())["full"] == {stems[0]: gpu}


def test_speed_page_shows_every_recorded_benchmark(html):
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
