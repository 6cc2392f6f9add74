"""The HTML report in a real headless browser (Debian's chromium + chromedriver): it loads without console
errors, its tables sort on a header click, and its images render. `.ci/run` installs the browser."""
from __future__ import annotations

import shutil

import pytest

from tests.test_tables import fake_record, save
from bench.reporting.tables import write_tables

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_report_loads_sorts_and_renders_images(browser, results_dir):
    from selenium.webdriver.common.by import By

    for seed, accuracy in enumerate([0.90, 0.92, 0.94]):
        save(results_dir, fake_record("dense", seed, accuracy, 1000))
    save(results_dir, fake_record("gated_a", 0, 0.99, 600, rates={"blocks.0": 1.0, "blocks.1": 0.2}))
    save(results_dir, fake_record("gated_b", 0, 0.80, 300, rates={"blocks.0": 0.5, "blocks.1": 0.1}))
    write_tables(results_dir)
    browser.get((results_dir / "report.html").as_uri())

    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []

    table = browser.find_element(By.CSS_SELECTOR, "table.sortable")
    methods = lambda: [row.find_elements(By.TAG_NAME, "td")[1].text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert methods() == ["gated_a", "dense", "gated_b"]  # ranked by accuracy
    macs_header = next(h for h in table.find_elements(By.TAG_NAME, "th") if h.text.startswith("executed MACs"))
    macs_header.click()
    assert methods() == ["gated_b", "gated_a", "dense"]  # ascending MACs
    macs_header.click()
    assert methods() == ["dense", "gated_a", "gated_b"]  # descending

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 2
    for image in images:
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
    browser.save_screenshot(str(results_dir / "report.png"))
    assert (results_dir / "report.png").stat().st_size > 10_000
