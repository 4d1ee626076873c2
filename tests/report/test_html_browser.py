"""The HTML report rendered from real training runs, loaded in real headless Chromium:
it draws, it raises no JavaScript error, its controls work, hostile names stay text.

Chromium is required: without it these tests fail (CI installs it), they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chromium import (
    CHROMIUM_CANDIDATES,
    MISSING_MESSAGE,
    Chromium,
    find_chromium,
    png_distinct_colors,
)
from synthetic import HOSTILE, SCRIPT_BREAK, hostile_diagnosis, layered_diagnosis

from lossdoctor.diagnosis import Diagnosis, diagnose
from lossdoctor.report.html import Report, render_html, write_html_report
from lossdoctor.sources import load

BLANK_MAX_COLORS = 8  # a page that drew nothing has one or two colours


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.fail(MISSING_MESSAGE.format(", ".join(CHROMIUM_CANDIDATES)), pytrace=False)
    with Chromium(width=1280, height=2000) as chromium:
        yield chromium


def _diagnoses(run_dir: Path) -> list[Diagnosis]:
    return [diagnose(i.run) for i in load(run_dir) if i.run is not None]


@pytest.fixture(scope="module")
def reports(torch_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("html")
    out = {}
    for name in ("healthy", "overfitting", "nan"):
        out[name] = write_html_report(_diagnoses(torch_runs[name] / "tb"), [],
                                      folder / f"{name}.html")
    many = [d for run_dir in torch_runs.values() for d in _diagnoses(run_dir)]
    out["many"] = write_html_report([*many, layered_diagnosis(), hostile_diagnosis()], [],
                                    folder / "many.html")
    out["hostile"] = write_html_report([hostile_diagnosis()], [], folder / "hostile.html")
    return out


def _open(browser: Chromium, path: Path) -> None:
    browser.errors.clear()
    browser.load(path)
    browser.after_paint()


def _assert_no_errors(browser: Chromium) -> None:
    browser.drain()
    assert browser.errors == [], browser.errors


@pytest.mark.parametrize("name", ["healthy", "overfitting", "nan", "many"])
def test_report_draws_without_errors(browser: Chromium, reports: dict[str, Path],
                                     name: str) -> None:
    _open(browser, reports[name])
    figures = browser.evaluate("document.querySelectorAll('figure.ld-fig svg').length")
    sections = browser.evaluate("document.querySelectorAll('section.ld-run').length")
    assert sections >= 1 and figures >= 2 * sections  # loss and accuracy at least
    paths = browser.evaluate(
        "Array.from(document.querySelectorAll('path.ld-line')).filter("
        "p => p.getAttribute('d').length > 20).length")
    assert paths >= 2 * sections
    # The first screen shows plots: far more colours than a blank page.
    assert png_distinct_colors(browser.screenshot(scale=0.25)) > BLANK_MAX_COLORS
    _assert_no_errors(browser)


def test_findings_are_marked_on_the_loss_plot(browser: Chromium,
                                              reports: dict[str, Path]) -> None:
    _open(browser, reports["overfitting"])
    markers = browser.evaluate(
        "Array.from(document.querySelectorAll('[data-plot=loss] a.ld-marker title'))"
        ".map(t => t.textContent)")
    findings = browser.evaluate("document.querySelectorAll('.ld-finding').length")
    assert len(markers) == findings >= 2
    assert any("overfitting" in m for m in markers)
    # A marker links to its finding's card.
    href = browser.evaluate("document.querySelector('a.ld-marker').getAttribute('href')")
    assert browser.evaluate(f"!!document.querySelector({href!r})")


def test_nan_report_shades_the_nonfinite_stretch(browser: Chromium,
                                                 reports: dict[str, Path]) -> None:
    _open(browser, reports["nan"])
    labels = browser.evaluate(
        "Array.from(document.querySelectorAll('[data-plot=loss] .ld-spanlabel'))"
        ".map(t => t.textContent)")
    assert "train loss NaN" in labels
    assert browser.evaluate("document.querySelector('.ld-signature code').textContent"
                            ).startswith("loss = nan from")


def test_scale_toggle_switches_between_linear_and_log(browser: Chromium,
                                                      reports: dict[str, Path]) -> None:
    _open(browser, reports["healthy"])
    shown = ("(() => { const f = document.querySelector('[data-plot=loss]');"
             " return [getComputedStyle(f.querySelector('.ld-lin')).display,"
             " getComputedStyle(f.querySelector('.ld-log')).display]; })()")
    before = browser.evaluate(shown)
    browser.evaluate("document.querySelector('[data-plot=loss] .ld-scale').click()")
    after = browser.evaluate(shown)
    assert sorted(before) == sorted(after) == ["inline", "none"]
    assert before != after
    _assert_no_errors(browser)


def test_many_runs_table_sorts_filters_and_links(browser: Chromium,
                                                 reports: dict[str, Path]) -> None:
    _open(browser, reports["many"])
    rows = browser.evaluate("document.querySelectorAll('.ld-runs tbody tr').length")
    sections = browser.evaluate("document.querySelectorAll('section.ld-run').length")
    assert rows == sections > 10
    # Every row links to its run's section.
    assert browser.evaluate(
        "Array.from(document.querySelectorAll('.ld-runs tbody a')).every("
        "a => !!document.getElementById(a.getAttribute('href').slice(1)))")
    browser.evaluate("(() => { const f = document.querySelector('.ld-filter');"
                     " f.value = 'overfitting'; f.dispatchEvent(new Event('input')); })()")
    visible = browser.evaluate(
        "Array.from(document.querySelectorAll('.ld-runs tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.textContent)")
    assert 0 < len(visible) < rows and all("overfitting" in t for t in visible)
    browser.evaluate("(() => { const f = document.querySelector('.ld-filter');"
                     " f.value = ''; f.dispatchEvent(new Event('input')); })()")
    browser.evaluate("document.querySelector('th[data-sort] button').click()")  # by #
    order = browser.evaluate(
        "Array.from(document.querySelectorAll('.ld-runs tbody tr'))"
        ".map(r => +r.cells[0].dataset.v)")
    assert order == sorted(order)
    _assert_no_errors(browser)


def test_hostile_names_stay_inert_text(browser: Chromium, reports: dict[str, Path]) -> None:
    _open(browser, reports["hostile"])
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    assert browser.evaluate("document.querySelectorAll('script').length") == 2  # data + ours
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    text = browser.evaluate("document.body.innerText")
    assert HOSTILE in text and SCRIPT_BREAK in text
    data = browser.evaluate(
        "JSON.parse(document.getElementById('lossdoctor-data').textContent)")
    assert data["runs"][0]["run"] == f"run {HOSTILE}"
    assert data["runs"][0]["source"] == f"/logs/{SCRIPT_BREAK}"
    _assert_no_errors(browser)


def test_page_loads_nothing_from_outside() -> None:
    html = render_html([hostile_diagnosis()])
    assert "http://" not in html and "https://" not in html
    assert "default-src 'none'" in html


def test_jupyter_fragment_works_inside_another_page(browser: Chromium,
                                                    tmp_path: Path) -> None:
    report = Report([layered_diagnosis(), hostile_diagnosis()])
    fragment = report._repr_html_()
    assert "<html" not in fragment and "<body" not in fragment
    page = tmp_path / "notebook.html"
    # Two outputs in one notebook: each report's controls act on itself only.
    page.write_text(f"<!DOCTYPE html><html><body><h1>notebook</h1>{fragment}<hr>{fragment}"
                    "</body></html>", encoding="utf-8")
    _open(browser, page)
    assert browser.evaluate("document.querySelectorAll('.ld-report[data-ld-ready]').length") == 2
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    count = "document.querySelectorAll('.ld-fig.ld-show-log').length"
    before = browser.evaluate(count)
    browser.evaluate("document.querySelector('.ld-scale').click()")
    assert abs(browser.evaluate(count) - before) == 1  # one figure, toggled once
    browser.evaluate("document.querySelector('.ld-scale').click()")
    assert browser.evaluate(count) == before
    _assert_no_errors(browser)


def test_preflight_page_shows_findings_and_stays_inert(browser: Chromium,
                                                      tmp_path: Path) -> None:
    from lossdoctor.checks._report import CheckReport
    from lossdoctor.findings import make_finding

    report = CheckReport(framework="torch", model=f"Net {HOSTILE}", samples=64)
    report.findings = [
        make_finding("label-problem", evidence={"max_label": 12, "classes": 10},
                     title=f"labels reach 12 but the model has 10 outputs {HOSTILE}"),
        make_finding("initial-loss-mismatch", evidence={"first_loss": 9.1, "expected": 2.3}),
    ]
    report.passed = ["inputs", "gradients"]
    path = report.save_html(tmp_path / "preflight.html")
    _open(browser, path)
    assert browser.evaluate("document.querySelectorAll('li.ld-finding').length") == 2
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
    text = browser.evaluate("document.body.innerText")
    assert "label-problem" in text and HOSTILE in text and "gradients" in text
    _assert_no_errors(browser)
    with pytest.raises(FileExistsError):
        report.save_html(path)
