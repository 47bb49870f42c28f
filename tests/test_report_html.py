"""report.html opened from disk in a real browser (Debian's chromium, driven by Selenium)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import tiny_experiment

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser():
    """Headless Chromium; in CI a missing browser fails the test instead of skipping it."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("selenium is not installed (pip install -e '.[test]')")
        pytest.skip("selenium is not installed")
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed (.ci/run installs them)")
        pytest.skip("chromium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, phantom_root) -> Path:
    from typer.testing import CliRunner

    from odirkit.cli import app

    work = tmp_path_factory.mktemp("html")
    extra = (
        '\n[[explain]]\nname = "gradcam"\nmax_images = 8\n'
        "[variants.plain]\n[variants.faster]\ntrain = { lr = 0.01 }\n"
    )
    (work / "exp.toml").write_text(tiny_experiment(phantom_root, epochs=2, extra=extra))
    result = CliRunner().invoke(app, ["run", str(work / "exp.toml"), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (work / "runs").glob("*/*")
    return run


def test_the_report_is_one_page_that_needs_no_network(report_run):
    page = (report_run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert page.count("data:image/png;base64,") >= 10
    from odirkit.files import FILE_MODE

    # written atomically, yet with the permissions of any new file (not a temporary's 0600)
    assert stat.S_IMODE((report_run / "report.html").stat().st_mode) == FILE_MODE


def test_the_report_works_in_a_real_browser(report_run, tmp_path):
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.get((report_run / "report.html").as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert len(loaded) >= 10 and all(loaded), loaded
        for section in (
            "verdicts",
            "results",
            "curves",
            "variants",
            "variant-plain",
            "variant-faster",
            "explanations-plain",
            "operating-points-faster",
        ):
            assert driver.find_elements(By.ID, section), f"no section #{section}"
        assert "b vs a" not in driver.page_source and "faster vs plain" in driver.page_source

        table = driver.find_element(By.ID, "results-table")
        headers = [h.text for h in table.find_elements(By.TAG_NAME, "th")]
        column = headers.index("auc_macro")

        def values() -> list[float]:
            rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
            cells = [r.find_elements(By.TAG_NAME, "td")[column] for r in rows]
            return [float(c.get_attribute("data-value") or "nan") for c in cells]

        header = table.find_elements(By.TAG_NAME, "th")[column]
        header.click()
        ascending = values()
        assert ascending == sorted(ascending)
        header.click()
        descending = values()
        assert descending == sorted(descending, reverse=True) and descending != ascending

        per_class = driver.find_element(By.ID, "per-class-plain")
        first = per_class.find_elements(By.TAG_NAME, "th")[0]
        first.click()
        labels = [
            r.find_elements(By.TAG_NAME, "td")[0].text
            for r in per_class.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        assert labels == sorted(labels)
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_report_rebuilds_the_report_of_an_interrupted_run(cli, report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    for name in ("report.html", "report.md", "comparison.csv"):
        (copy / name).unlink()
    (copy / "faster" / "metrics.json").unlink()  # as if it had been stopped after epoch 2
    result = cli("report", copy)
    assert result.exit_code == 0, result.output
    page = (copy / "report.html").read_text()
    markdown = (copy / "report.md").read_text()
    assert "variant-plain" in page and "variant-faster" not in page
    assert "faster: stopped after epoch 2" in markdown
    assert f"odirkit run --resume {copy}" in page
