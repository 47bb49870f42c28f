"""report.html opened from disk in a real browser (Debian's chromium, driven by Selenium)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import tiny_experiment, undeclared

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ROOT = Path(__file__).parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"
#: screenshots of the quickstart's report land here (git-ignored), for a person to look at
ARTIFACTS = Path(os.environ.get("ODIRKIT_TEST_ARTIFACTS", ROOT / "test-artifacts"))


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


@pytest.mark.slow
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


def test_explain_and_predict_take_the_run_folder_and_a_variant(
    cli, report_run, phantom_root, tmp_path
):
    """The README names RUN_DIR: a run folder of several variants with --variant NAME. And
    what predict writes for a two-label run (ID,N,D), score scores, on those labels."""
    explained = cli(
        "explain", report_run, "--variant", "plain", "--max-images", "2", "--out", tmp_path / "x"
    )
    assert explained.exit_code == 0, explained.output
    assert (tmp_path / "x" / "grid.png").exists()
    photographs = phantom_root / "ODIR-5K_Training_Dataset"
    submission = tmp_path / "submission.csv"
    predicted = cli("predict", report_run, photographs, "--variant", "faster", "--out", submission)
    assert predicted.exit_code == 0, predicted.output
    assert submission.read_text().splitlines()[0] == "ID,N,D"
    (workbook,) = phantom_root.glob("*.xlsx")
    scored = cli("score", workbook, submission, "--sort", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["labels"] == ["N", "D"]
    assert "missing: G, C, A, H, M, O" in " ".join(scored.stderr.split())


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


def test_the_report_names_a_damaged_data_or_environment_file(cli, report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    (copy / "plain" / "data.json").write_text('"a string"')
    (copy / "plain" / "environment.json").write_text('{"python": 3}')
    result = cli("report", copy)
    assert result.exit_code == 0, result.output
    page = (copy / "report.html").read_text()
    assert "data.json: damaged (a JSON str, not the object odirkit wrote)" in page
    assert "environment.json: not" in page and "python" in page
    assert "(no data.json)" not in page


def test_every_document_the_run_wrote_reads_and_writes_back_byte_for_byte(report_run, tmp_path):
    # (the records' test, on this module's run): each record declares every key its writer
    # gives (a key renamed in a writer would be kept as an extra), and a file read and
    # written again is the same text
    from odirkit.runs import RunDirectory
    from odirkit.runs.records import DataReport, Environment, RunMetrics, VariantConfig

    for vdir in RunDirectory(report_run).variants():
        for path, record in [
            (vdir.config_file, VariantConfig),
            (vdir.data_file, DataReport),
            (vdir.path / vdir.ENVIRONMENT, Environment),
            (vdir.metrics_file, RunMetrics),
        ]:
            found = record.read(path, "a run's document")
            found.write(tmp_path / path.name)
            assert (tmp_path / path.name).read_text() == path.read_text(), path
            assert undeclared(found) == [], path


# -- the quickstart's report, read as a person reads it -------------------------------------

#: the quickstart, reduced to run in about a minute: two seeds (a band each), two epochs, a
#: small phantom at 64 px, a short DCGAN, four images per explainer
REDUCED = (
    "seeds=[0,1]",
    "train.epochs=2",
    "data.patients=40",
    "data.size=96",
    "data.image_size=64",
    "model.pool=2",
    "train.precise_bn=10",
    "eval.bootstrap=100",
    'variants.gan.augment=[{name="dcgan", gan_size=16, width=4, batch_size=8, epochs=4, '
    "real_label=0.9, ratio=0.5, min_images=4, sample_epochs=[2,4]}]",
    "explain.0.max_images=4",
    "explain.1.max_images=4",
    "explain.2.max_images=4",
    "explain.2.samples=2",
)

#: what a person sees first: a laptop's screen
SCREEN_HEIGHT = 900

OVERFLOWING = """
const found = [];
const boxes = "p, li, h1, h2, h3, h4, figcaption, th, td, dt, dd, summary, pre";
for (const el of document.querySelectorAll(boxes)) {
  if (el.closest("details:not([open])")) continue;
  if (el.tagName !== "PRE" && el.scrollWidth > el.clientWidth + 1)
    found.push(el.tagName + ": " + el.textContent.slice(0, 80));
}
for (const box of document.querySelectorAll(".scroll, figure, pre")) {
  const outer = box.parentElement.getBoundingClientRect();
  const rect = box.getBoundingClientRect();
  if (rect.right > outer.right + 1) found.push("box past its parent: " + box.className);
}
for (const img of document.images) {
  const figure = img.closest("figure").getBoundingClientRect();
  if (img.getBoundingClientRect().right > figure.right + 1) found.push("image: " + img.alt);
}
if (document.documentElement.scrollWidth > window.innerWidth)
  found.push("the page scrolls sideways");
return found;
"""

UNCAPTIONED = """
return Array.from(document.images).filter(img => {
  const figure = img.closest("figure");
  const caption = figure && figure.querySelector("figcaption");
  return !caption || !caption.textContent.trim();
}).map(img => img.alt || img.src.slice(0, 40));
"""


@pytest.fixture(scope="module")
def quickstart_report(tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from odirkit.cli import app

    work = tmp_path_factory.mktemp("quickstart")
    sets = [x for value in REDUCED for x in ("--set", value)]
    sets += ["--set", f"data.root={(work / 'phantom').as_posix()}"]
    result = CliRunner().invoke(app, ["run", str(QUICKSTART), *sets, "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (work / "runs").glob("quickstart/*")
    assert f"report: {run / 'report.html'}" in result.stdout  # the run's last line
    return run


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 800])
def test_the_quickstart_report_reads_plainly_in_a_browser(quickstart_report, width):
    from selenium.webdriver.common.by import By

    driver = browser()
    try:
        driver.set_window_size(width, SCREEN_HEIGHT)
        driver.get((quickstart_report / "report.html").as_uri())
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"quickstart-report-{width}-first-screen.png"))
        height = driver.execute_script("return document.documentElement.scrollHeight")
        inner = driver.execute_script("return window.innerHeight")

        # the first screen holds the answer and the table of the F1 and recall of D
        answer = driver.find_element(By.CSS_SELECTOR, "#answer p")
        table = driver.find_element(By.ID, "answer-table")
        assert answer.text.startswith("On this data, ")
        assert "the recall of D" in answer.text or "recall of D" in answer.text
        headers = [h.text for h in table.find_elements(By.TAG_NAME, "th")]
        assert headers[:4] == ["variant", "learned", "F1 of D", "recall of D"], headers
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.text.split(" (")[0] for r in rows] == ["default", "augmented", "gan"]
        for element in (answer, table):
            bottom = driver.execute_script(
                "return arguments[0].getBoundingClientRect().bottom", element
            )
            assert bottom <= inner, f"{element.tag_name} ends at {bottom}px, below {inner}px"

        # no text overflows its box; wide tables scroll inside their own
        assert driver.execute_script(OVERFLOWING) == []
        # every figure has a caption, every image loaded
        assert driver.execute_script(UNCAPTIONED) == []
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert len(loaded) >= 30 and all(loaded)
        text = driver.find_element(By.TAG_NAME, "body").text  # what is shown, not <details>
        for python in ("None", "{}", "PydanticUndefined", "nan", "True", "False"):
            assert not re.search(rf"(?<![\w-]){re.escape(python)}(?![\w-])", text), python
        captions = [c.text for c in driver.find_elements(By.TAG_NAME, "figcaption")]
        assert any("after epoch 4 of 4" in c for c in captions)  # GAN samples by epoch
        assert any(c.startswith("Training photographs as stored") for c in captions)

        driver.set_window_size(width, min(height, 16000))
        driver.save_screenshot(str(ARTIFACTS / f"quickstart-report-{width}.png"))
    finally:
        driver.quit()
