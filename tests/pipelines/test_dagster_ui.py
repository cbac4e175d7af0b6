"""The Dagster UI in a real browser: the webserver on 127.0.0.1, headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from testdata import REPO

pytestmark = pytest.mark.slow

# Where a person finds the screenshots after the test (git-ignored).
SCREENSHOTS = REPO / "data" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@pytest.fixture
def webserver(settings, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # Tall: the asset list renders only the rows in view, and the catalog of assets has grown
    # past what 1000 px show.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1600,3000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def _page_text(browser, url: str, expected: list[str], timeout: float = 60) -> str:
    from selenium.webdriver.common.by import By

    browser.get(url)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = browser.find_element(By.TAG_NAME, "body").text
        if all(name in text for name in expected):
            return text
        time.sleep(1)
    missing = [name for name in expected if name not in text]
    raise AssertionError(f"{url} does not show {missing}")


def _dismiss_welcome(browser) -> None:
    from selenium.webdriver.common.by import By

    for button in browser.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        button.click()


def test_the_ui_shows_assets_checks_schedules_and_sensors(webserver, browser):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    _page_text(
        browser,
        f"{webserver}/assets",
        ["raw_events", "events", "user_sequences", "item_stats", "online_features", "served_recommendations"],
    )
    _dismiss_welcome(browser)
    _page_text(browser, f"{webserver}/assets/events?view=checks", ["events_contract", "rows_balance"])
    _page_text(
        browser,
        f"{webserver}/automation",
        [
            "ingest_job_schedule",
            "features_job_schedule",
            "retraining_schedule",
            "landing_sensor",
            "served_logs_sensor",
            "new_served_data_sensor",
        ],
    )
    _page_text(
        browser,
        f"{webserver}/locations/pipelines.definitions/asset-groups/experiments",
        ["experiment_results", "experiment_decisions"],
    )
    _page_text(browser, f"{webserver}/locations/pipelines.definitions/asset-groups/ingest", ["raw_events"])
    _dismiss_welcome(browser)
    time.sleep(2)  # let the graph lay itself out
    path = SCREENSHOTS / "dagster-ingest-graph.png"
    assert browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
