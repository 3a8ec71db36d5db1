"""Browser-test fixtures: the real ``python -m service`` on the bundled models, and headless Chromium.

Chromium and chromedriver come from Debian (``apt-get install chromium chromium-driver``; ``.ci/run``
installs them). Both paths are given to Selenium, so Selenium Manager never looks anything up or
downloads a browser. Without them the browser tests skip, except in CI (``CI=true``), where they fail.
Set ``RNNSERVE_UPDATE_SCREENSHOTS=1`` to rewrite the screenshots in ``docs/images/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ui.browser import (
    CHROMEDRIVER,
    CHROMIUM,
    DESKTOP,
    IN_CI,
    MODELS,
    Page,
    missing_browser,
    service_for_the_page,
)


@pytest.fixture(scope="session")
def browser_available() -> None:
    reason = missing_browser()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI needs the browser tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def base_url(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ready ``python -m service`` on the bundled models, on a free loopback port."""
    if not any(MODELS.glob("*/config.json")):
        pytest.skip("no model bundled in models/")
    log = tmp_path_factory.mktemp("ui-server") / "server.log"
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(MODELS),
        "RNNSERVE_DEVICE": "cpu",
        # A request of 5 texts or more is refused with 503 queue_full + Retry-After (the error tests).
        "RNNSERVE_BATCHING__SENTIMENT__MAX_QUEUE_SIZE": "4",
    }
    with service_for_the_page(env, log) as base:
        yield base


@pytest.fixture(scope="session")
def driver(browser_available: None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--lang=en-US",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    browser = webdriver.Chrome(options=options, service=service)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def page(driver: Any, base_url: str) -> Page:
    return Page(driver, base_url)
