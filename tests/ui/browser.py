"""Helpers for the browser tests: where Chromium is, the page object, the reference API call."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtest.bench.server import REPO_ROOT, running_service

CHROMIUM = Path(os.environ.get("RNNSERVE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("RNNSERVE_CHROMEDRIVER", "/usr/bin/chromedriver"))
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
SCREENSHOTS = os.environ.get("RNNSERVE_UPDATE_SCREENSHOTS", "") not in {"", "0", "false"}
SCREENSHOT_DIR = REPO_ROOT / "docs" / "images"
MODELS = REPO_ROOT / "models"
DESKTOP = (1280, 900)


def missing_browser() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


class Page:
    """The try-it page in the shared browser, with small helpers the tests share."""

    def __init__(self, driver: Any, base_url: str):
        self.driver = driver
        self.base_url = base_url

    def open(self, tab: str = "", path: str = "/ui/") -> Page:
        """Loads the page afresh (not just a hash change) and waits until it has read /models."""
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.get("about:blank")
        self.driver.get(f"{self.base_url}{path}{'#' + tab if tab else ''}")
        self.wait_for(lambda: self.js("return document.body.dataset.loaded === 'true'"), "page loaded")
        self.driver.get_log("browser")  # start each test with an empty console log
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
            time.sleep(0.05)

    def fill(self, css: str, value: str) -> None:
        """Sets a control's value as typing would (fires ``input``), fast for long texts."""
        self.js(
            "const el = document.querySelector(arguments[0]); el.focus(); el.value = arguments[1];"
            "el.dispatchEvent(new Event('input', {bubbles: true}));",
            css,
            value,
        )

    def text(self, css: str) -> str:
        return self.js("return document.querySelector(arguments[0]).textContent", css)

    def visible(self, css: str) -> bool:
        return self.js(
            "const el = document.querySelector(arguments[0]);"
            "return !!el && el.checkVisibility({contentVisibilityAuto: true, visibilityProperty: true})",
            css,
        )

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, name: str, width: int = DESKTOP[0], max_height: int = 2000) -> None:
        """Writes docs/images/ui-<name>.png (only with RNNSERVE_UPDATE_SCREENSHOTS=1): the whole page."""
        if not SCREENSHOTS:
            return
        metrics = {"width": width, "height": DESKTOP[1], "deviceScaleFactor": 1, "mobile": width < 600}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        height = self.js("return Math.ceil(document.documentElement.scrollHeight)")
        metrics["height"] = min(max(height, 400), max_height)
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        self.js("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        (SCREENSHOT_DIR / f"ui-{name}.png").write_bytes(base64.b64decode(shot["data"]))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def api(base_url: str, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    """The same call the page makes, straight to the API (the tests' reference answer)."""
    import httpx

    response = httpx.request(method, f"{base_url}{path}", json=body, timeout=60)
    return response.status_code, response.json()


@contextmanager
def service_for_the_page(env: dict[str, str], log: Path) -> Iterator[str]:
    """A ready ``python -m service`` with ``env``; if it does not start, the error shows its log's end."""
    try:
        with running_service(env, log_path=log) as base:
            yield str(base)
    except RuntimeError as error:
        raise RuntimeError(f"{error}\n{log.read_text()[-3000:]}") from None
