"""The page against a service that asks for API keys: nothing works without the key, everything with it.

A second real ``python -m service``, started with ``RNNSERVE_API_KEYS`` on two sentiment models: one key
may use both, the other only ``sentiment-gru``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.ui.browser import MODELS, Page, service_for_the_page

pytestmark = pytest.mark.timeout(180)

SERVED = ("sentiment-gru", "sentiment-rnn")
KEYS = '{"k-all": ["*"], "k-gru": ["sentiment-gru"]}'


@pytest.fixture(scope="module")
def keyed_url(browser_available: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("keyed-models")
    for name in SERVED:
        if not (MODELS / name / "config.json").is_file():
            pytest.skip(f"{name} is not bundled in models/")
        (repository / name).symlink_to(MODELS / name, target_is_directory=True)
    log = repository.parent / "keyed-server.log"
    env = {
        "RNNSERVE_MODEL_REPOSITORY": str(repository),
        "RNNSERVE_DEVICE": "cpu",
        "RNNSERVE_API_KEYS": KEYS,
        "RNNSERVE_DEFAULT_MODELS": '{"sentiment": "sentiment-gru"}',
    }
    with service_for_the_page(env, log) as base:
        yield base


@pytest.fixture
def keyed_page(driver, keyed_url: str) -> Iterator[Page]:
    page = Page(driver, keyed_url)
    page.open()
    page.js("sessionStorage.clear()")
    page.open()
    yield page
    page.js("sessionStorage.clear()")


def _sentiment(base: str, key: str, text: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{base}/sentiment",
        json={"text": text, "model": model},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def _enter_key(page: Page, key: str) -> None:
    """Types the key as a person would, then leaves the field (its ``change`` reloads the models)."""
    from selenium.webdriver.common.keys import Keys

    field = page.find("#api-key")
    field.clear()
    field.send_keys(key, Keys.TAB)


def test_without_a_key_the_page_says_so_next_to_the_key_field(keyed_page: Page) -> None:
    page = keyed_page
    answer = httpx.post(f"{page.base_url}/sentiment", json={"text": "fine ."}, timeout=60)
    assert answer.status_code == 401, answer.text
    page.open("sentiment")
    page.fill("#sentiment-texts", "a fine film .")
    page.find("#sentiment-submit").click()
    page.wait_for(lambda: page.visible("#api-key-error"), "the error next to the API key")
    shown = page.text("#api-key-error")
    assert "401" in shown and answer.json()["error"]["message"] in shown, shown
    assert page.find_all(".sentiment-row") == []


def test_a_key_entered_in_the_page_makes_every_call_succeed(keyed_page: Page) -> None:
    page = keyed_page
    page.open("sentiment")
    _enter_key(page, "k-all")
    pickers = "#sentiment-model option"
    page.wait_for(
        lambda: {o.get_attribute("value") for o in page.find_all(pickers)} >= set(SERVED),
        "the model picker filled from /models with the key",
    )
    assert not page.visible("#api-key-error")
    texts = ["a fine , moving film .", "dull and far too long ."]
    page.fill("#sentiment-texts", "\n".join(texts))
    page.find("#sentiment-submit").click()
    page.wait_for(lambda: len(page.find_all(".sentiment-row")) == 2, "one result row per line")
    labels = page.js("return [...document.querySelectorAll('.sentiment-row')].map(r => r.dataset.label)")
    answers = [_sentiment(page.base_url, "k-all", text, "sentiment-gru").json() for text in texts]
    expected = [answer["results"][0]["label"] for answer in answers]
    assert labels == expected
    assert "sentiment-gru" in page.text("#sentiment-meta")
    page.find("#tab-status").click()
    page.wait_for(
        lambda: all(name in page.text("#panel-status") for name in SERVED), "the status tab lists the models"
    )
    assert page.text("#status-ready").strip() == "ready"
    assert page.console_errors() == []


def test_a_key_limited_to_one_model_is_refused_the_other_next_to_the_picker(keyed_page: Page) -> None:
    page = keyed_page
    refused = _sentiment(page.base_url, "k-gru", "fine .", "sentiment-rnn")
    assert refused.status_code == 403, refused.text
    page.open("sentiment")
    _enter_key(page, "k-gru")
    page.wait_for(lambda: page.find_all("#sentiment-model option"), "the model picker filled")
    page.js(
        "const picker = document.querySelector('#sentiment-model'); picker.value = 'sentiment-rnn';"
        "picker.dispatchEvent(new Event('change', {bubbles: true}));"
    )
    page.fill("#sentiment-texts", "a fine film .")
    page.find("#sentiment-submit").click()
    slot = "#sentiment-model-error" if refused.json()["error"]["field"] == "model" else "#api-key-error"
    page.wait_for(lambda: page.visible(slot), f"the 403 shown at {slot}")
    shown = page.text(slot)
    assert "403" in shown and refused.json()["error"]["message"] in shown, shown
