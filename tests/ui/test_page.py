"""The try-it page in headless Chromium against the real service on the bundled models, tab by tab.

Each test compares what the page shows with the API's own answer to the same request.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.ui.browser import Page, api

pytestmark = pytest.mark.timeout(120)


def _error_slots_shown(page: Page) -> list[str]:
    return page.js(
        "return [...document.querySelectorAll('.field-error')].filter(e => !e.hidden).map(e => e.id)"
    )


# ------------------------------------------------------------------------------------------ the page


def test_root_redirects_to_the_page_which_loads_only_from_this_service(page: Page) -> None:
    page.open(path="/")
    assert page.driver.current_url == f"{page.base_url}/ui/"
    assert page.find("h1").text == "rnnserve"
    resources = page.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources, "the page loads its script and style"
    assert all(url.startswith(page.base_url + "/") for url in resources), resources
    ids = page.js("return [...document.querySelectorAll('[id]')].map(e => e.id)")
    assert len(ids) == len(set(ids)), "element ids are unique"
    assert page.console_errors() == []


def test_every_control_has_a_label_and_the_pickers_list_each_tasks_models(page: Page) -> None:
    page.open()
    unlabelled = page.js(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.labels.length === 0).map(e => e.id || e.outerHTML)"
    )
    assert unlabelled == []
    _, listing = api(page.base_url, "GET", "/models")
    for task in ("sentiment", "ner", "translation", "generation"):
        mine = [m for m in listing["models"] if m["task"] == task]
        options = page.js(
            "const s = document.querySelector(`.model-picker[data-task='${arguments[0]}']`);"
            "return {values: [...s.options].map(o => o.value), selected: s.value}",
            task,
        )
        assert sorted(options["values"]) == sorted(m["name"] for m in mine), task
        assert options["selected"] == next(m["name"] for m in mine if m["default"]), task


def test_tabs_work_from_the_keyboard_with_a_visible_focus(page: Page) -> None:
    from selenium.webdriver.common.keys import Keys

    page.open()
    page.find("#tab-sentiment").click()
    active = page.driver.switch_to.active_element
    active.send_keys(Keys.ARROW_RIGHT)
    state = page.js(
        "const a = document.activeElement; return {id: a.id, selected: a.getAttribute('aria-selected'),"
        " panelHidden: document.getElementById(a.getAttribute('aria-controls')).hidden,"
        " others: [...document.querySelectorAll('[role=tabpanel]')].filter(p => !p.hidden).length,"
        " focusVisible: a.matches(':focus-visible'), outline: getComputedStyle(a).outlineStyle}"
    )
    assert state == {
        "id": "tab-ner",
        "selected": "true",
        "panelHidden": False,
        "others": 1,
        "focusVisible": True,
        "outline": "solid",
    }
    page.driver.switch_to.active_element.send_keys(Keys.END)
    assert page.js("return document.activeElement.id") == "tab-status"
    assert page.js("return location.hash") == "#status"
    page.driver.switch_to.active_element.send_keys(Keys.HOME)
    assert page.js("return document.activeElement.id") == "tab-sentiment"
    assert page.visible("#panel-sentiment") and not page.visible("#panel-status")


# ------------------------------------------------------------------------------------------ sentiment


def test_sentiment_draws_one_probability_bar_per_line(page: Page) -> None:
    page.open("sentiment")
    texts = ["a gripping , beautifully acted film .", "dull and far too long ."]
    page.fill("#sentiment-texts", "\n".join(texts) + "\n\n")  # blank lines are not texts
    page.find("#sentiment-submit").click()
    page.wait_for(lambda: len(page.find_all(".sentiment-row")) == 2, "two sentiment rows")
    rows = page.js(
        "return [...document.querySelectorAll('.sentiment-row')].map(r => ({"
        " text: r.querySelector('.sentiment-text').textContent, label: r.dataset.label,"
        " bar: r.querySelector('.prob-bar').getBoundingClientRect().width,"
        " segments: Object.fromEntries([...r.querySelectorAll('.prob-seg')]"
        "   .map(s => [s.dataset.label, s.getBoundingClientRect().width]))}))"
    )
    status, answer = api(page.base_url, "POST", "/sentiment", {"texts": texts})
    assert status == 200
    assert [r["text"] for r in rows] == texts
    for row, result in zip(rows, answer["results"], strict=True):
        assert row["label"] == result["label"]
        assert set(row["segments"]) == set(result["scores"])
        for label, probability in result["scores"].items():
            assert row["segments"][label] / row["bar"] == pytest.approx(probability, abs=0.01)
    assert answer["model"] in page.text("#sentiment-meta")
    assert page.console_errors() == []
    page.screenshot("sentiment")


# ------------------------------------------------------------------------------------------ NER

NER_TEXT = (
    "😀 Peter Blackburn, a spokesman for the European Commission, said in Brussels that Germany "
    "would meet at the United Nations in New York.\nThe Italian striker scored as Juventus won the UEFA Cup."
)


def test_ner_highlights_exactly_the_apis_offsets(page: Page) -> None:
    page.open("ner")
    page.fill("#ner-text", NER_TEXT)
    page.find("#ner-submit").click()
    page.wait_for(lambda: page.find_all("#ner-output .ent"), "highlighted entities")
    marks = page.js(
        "return [...document.querySelectorAll('#ner-output .ent')].map(m => ({"
        " text: m.querySelector('.ent-text').textContent, label: m.dataset.label, title: m.title,"
        " colour: getComputedStyle(m).backgroundColor}))"
    )
    status, answer = api(page.base_url, "POST", "/tag", {"text": NER_TEXT})
    assert status == 200
    entities = answer["results"][0]["entities"]
    assert len(entities) >= 4
    # Python slices code points, like the API's offsets: the emoji before the first entity would shift a
    # page that sliced UTF-16 code units.
    assert [m["text"] for m in marks] == [NER_TEXT[e["start"] : e["end"]] for e in entities]
    assert [m["label"] for m in marks] == [e["label"] for e in entities]
    for mark, entity in zip(marks, entities, strict=True):
        assert f"{entity['score']:.3f}" in mark["title"], "the score shows on hover"
    colours = {m["label"]: m["colour"] for m in marks}
    assert len(set(colours.values())) == len(colours), "one colour per entity type"
    # The output is the original text, entity labels aside.
    shown = page.js(
        "return [...document.querySelector('#ner-output').childNodes].map(n => n.nodeType === 3 ? n.data"
        " : n.querySelector('.ent-text').textContent).join('')"
    )
    assert shown == NER_TEXT
    legend = page.js(
        "return Object.fromEntries([...document.querySelectorAll('#ner-legend li')].map(li =>"
        " [li.dataset.label, getComputedStyle(li.querySelector('.ent-label')).backgroundColor]))"
    )
    assert {label: legend[label] for label in colours} == colours
    page.screenshot("ner")

    tokens = answer["results"][0]["tokens"]
    assert not page.js("return document.querySelector('#ner-tokens').open")
    assert not page.visible("#ner-token-table tbody tr"), "the token table is behind a toggle"
    page.find("#ner-tokens summary").click()
    page.wait_for(lambda: page.visible("#ner-token-table tbody tr"), "token table shown")
    cells = page.js(
        "return [...document.querySelectorAll('#ner-token-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [(c[1], c[3]) for c in cells] == [(t["text"], t["tag"]) for t in tokens]
    assert page.console_errors() == []


# ------------------------------------------------------------------------------------------ translation


def test_translation_heatmap_has_a_cell_per_target_and_source_subword(page: Page) -> None:
    page.open("translation")
    text = "A man is riding a bike on the street."
    page.fill("#translation-text", text)
    page.fill("#translation-beam", "3")
    page.fill("#translation-max-length", "60")
    page.find("#translation-submit").click()
    page.wait_for(lambda: page.visible("#translation-attention tbody tr"), "the attention heatmap")
    shown = page.js(
        "const t = document.querySelector('#translation-attention');"
        "return {translation: document.querySelector('#translation-result').textContent,"
        " score: document.querySelector('#translation-score').textContent,"
        " columns: [...t.tHead.rows[0].cells].slice(1).map(c => c.textContent),"
        " rows: [...t.tBodies[0].rows].map(r => r.cells[0].textContent),"
        " cells: [...t.tBodies[0].rows].map(r => r.querySelectorAll('td').length),"
        " shades: [...t.tBodies[0].rows].map(r => [...r.querySelectorAll('td')].map(c =>"
        "   parseFloat(c.style.getPropertyValue('--w'))))}"
    )
    body = {"text": text, "beam_size": 3, "max_length": 60, "return_attention": True}
    status, answer = api(page.base_url, "POST", "/translate", body)
    assert status == 200
    result = answer["results"][0]
    attention = result["attention"]
    assert shown["translation"] == result["translation"]
    assert f"{result['score']:.3f}" in shown["score"]
    assert shown["columns"] == result["source_tokens"]
    assert shown["rows"] == result["target_tokens"]
    assert shown["cells"] == [len(result["source_tokens"])] * len(result["target_tokens"])
    assert shown["cells"] == [len(row) for row in attention]
    for shades, weights in zip(shown["shades"], attention, strict=True):  # darker where attention is higher
        assert max(range(len(weights)), key=weights.__getitem__) == max(
            range(len(shades)), key=shades.__getitem__
        )
    assert page.console_errors() == []
    page.screenshot("translation")


# ------------------------------------------------------------------------------------------ generation


def _throttle(page: Page, bytes_per_s: int) -> None:
    """A slow link (Chrome's network emulation): the server generates faster than a person reads."""
    page.driver.execute_cdp_cmd("Network.enable", {})
    conditions = {"offline": False, "latency": 0, "downloadThroughput": bytes_per_s, "uploadThroughput": -1}
    page.driver.execute_cdp_cmd("Network.emulateNetworkConditions", conditions)


def test_generation_streams_text_and_stop_ends_it(page: Page) -> None:
    page.open("generation")
    page.fill("#generation-max-tokens", "1000")
    page.fill("#generation-seed", "1")
    length = lambda: len(page.text("#generation-text"))  # noqa: E731
    _throttle(page, 2500)  # about 40 characters/s: each SSE event is about 60 bytes
    try:
        page.find("#generation-submit").click()
        first = page.wait_for(length, "the first streamed characters")
        assert page.js("return document.querySelector('#generation-state').dataset.state") == "streaming"
        page.wait_for(lambda: length() > first, "the text to grow")
        assert page.text("#generation-ttfc").endswith(("ms", "s"))
        page.wait_for(lambda: page.text("#generation-rate").isdigit(), "characters/s")
        assert page.find("#generation-submit").get_attribute("disabled") is not None
        page.find("#generation-stop").click()
        page.wait_for(
            lambda: page.js("return document.querySelector('#generation-state').dataset.state") == "stopped",
            "the stopped state",
        )
        stopped_at = length()
        assert 0 < stopped_at < 1000
        assert page.text("#generation-state") == f"stopped after {stopped_at} characters"
        time.sleep(1.0)
        assert length() == stopped_at, "no text after stop"
        assert page.find("#generation-stop").get_attribute("disabled") is not None
        assert page.find("#generation-submit").get_attribute("disabled") is None
    finally:
        _throttle(page, -1)
    assert page.console_errors() == []


def test_generation_runs_to_the_end_with_the_apis_text(page: Page) -> None:
    page.open("generation")
    params = {"prompt": "JULIET:\n", "temperature": 0.8, "top_k": 0, "top_p": 0.95, "seed": 7}
    page.fill("#generation-prompt", params["prompt"])
    page.fill("#generation-seed", "7")
    page.fill("#generation-max-tokens", "300")
    page.find("#generation-submit").click()
    page.wait_for(
        lambda: page.js("return document.querySelector('#generation-state').dataset.state") == "finished",
        "the end of the generation",
    )
    status, answer = api(page.base_url, "POST", "/generate", {**params, "max_new_tokens": 300})
    assert status == 200
    assert page.text("#generation-text") == answer["text"]
    assert page.text("#generation-state") == f"finished: {answer['finish_reason']}"
    assert page.text("#generation-count") == str(answer["tokens"])
    assert page.text("#generation-prompt-echo") == params["prompt"]
    assert page.console_errors() == []
    page.screenshot("generation")


# ------------------------------------------------------------------------------------------ status


def test_models_that_cannot_answer_are_listed_but_not_offered(page: Page) -> None:
    # /models as it reads while model control has unloaded one model and another failed to load
    page.open("sentiment")
    page.js(
        "const real = window.fetch; window.fetch = async (url, init) => {"
        " const response = await real(url, init);"
        " if (!String(url).endsWith('/models')) return response;"
        " const body = await response.json();"
        " for (const m of body.models) if (m.task === 'sentiment' && !m.default)"
        "   m.state = m.name === 'sentiment-gru' ? 'unloaded' : 'failed';"
        " const headers = {'Content-Type': 'application/json'};"
        " return new Response(JSON.stringify(body), {status: 200, headers});"
        "};"
        "document.querySelector('#status-refresh').click();"  # the status tab's button: a refresh now
    )
    options_js = (
        "[...document.querySelectorAll('#sentiment-model option')].map(o => [o.value, o.disabled, o.text])"
    )
    page.wait_for(
        lambda: ["sentiment-gru", True, "sentiment-gru (unloaded)"] in page.js(f"return {options_js}"),
        "the unloaded model disabled in the picker",
    )
    options = page.js(f"return {options_js}")
    enabled = [value for value, disabled, _ in options if not disabled]
    assert len(enabled) == 1 and page.find("#sentiment-model").get_attribute("value") == enabled[0]
    assert all(disabled for value, disabled, text in options if "(failed)" in text)


def test_status_lists_every_model_and_refreshes(page: Page) -> None:
    page.open("status")
    page.wait_for(lambda: page.find_all("#status-models tbody tr"), "the model table")
    _, listing = api(page.base_url, "GET", "/models")
    rows = page.js(
        "return [...document.querySelectorAll('#status-models tbody tr')].map(r =>"
        " [...r.cells].map(c => c.firstChild ? c.firstChild.textContent : ''))"
    )
    expected = [
        [
            m["name"],
            m["task"],
            m["state"],
            "★ default" if m["default"] else "",
            str(m["version"]),
            m["provider"],
            str(m["queue_depth"]),
            str(m["in_flight"]),
        ]
        for m in listing["models"]
    ]
    assert rows == expected
    assert page.text("#status-ready") == "ready" == page.text("#ready-badge")
    page.js(
        "window.__calls = []; const real = window.fetch;"
        "window.fetch = (url, init) => { window.__calls.push(String(url)); return real(url, init); };"
    )
    page.wait_for(
        lambda: any(u.endswith("/models") for u in page.js("return window.__calls")),
        "an automatic refresh",
        timeout=6,
    )
    assert page.console_errors() == []
    page.screenshot("status")


# ------------------------------------------------------------------------------------------ errors

ERROR_CASES = {
    "beam size over its range": (
        "translation",
        "#translation-beam",
        "9",
        "/translate",
        {"text": "A dog runs.", "beam_size": 9},
    ),
    "max length under its range": (
        "translation",
        "#translation-max-length",
        "0",
        "/translate",
        {"text": "A dog runs.", "max_length": 0},
    ),
    "top-p of zero": ("generation", "#generation-top-p", "0", "/generate", {"prompt": "A", "top_p": 0}),
    "max characters over the limit": (
        "generation",
        "#generation-max-tokens",
        "1001",
        "/generate",
        {"prompt": "A", "max_new_tokens": 1001},
    ),
    "a character the model does not know": (
        "generation",
        "#generation-prompt",
        "ROMEO: €",
        "/generate",
        {"prompt": "ROMEO: €"},
    ),
    "a line over the character limit": (
        "sentiment",
        "#sentiment-texts",
        "fine .\n" + "a" * 5001,
        "/sentiment",
        {"texts": ["fine .", "a" * 5001]},
    ),
}


@pytest.mark.parametrize(
    ("tab", "control", "value", "path", "body"), ERROR_CASES.values(), ids=list(ERROR_CASES)
)
def test_an_api_error_shows_next_to_its_control(
    page: Page, tab: str, control: str, value: str, path: str, body: dict
) -> None:
    status, answer = api(page.base_url, "POST", path, body)
    assert status == 422, answer
    page.open(tab)
    page.fill(control, value)
    page.find(f"#{tab}-submit").click()
    slot = f"{control}-error"
    page.wait_for(lambda: page.visible(slot), f"the error next to {control}")
    assert _error_slots_shown(page) == [slot[1:]], "only that control's error is shown"
    message = page.text(f"{slot} .message")
    assert message.startswith(answer["error"]["message"])
    assert f"422 {answer['error']['code']}" in page.text(slot)
    if answer["error"]["field"].startswith("texts["):
        assert "(line 2)" in message, "the line of the text area is named"
    assert page.find(control).get_attribute("aria-invalid") == "true"
    assert page.find(control).get_attribute("aria-describedby").split()[-1] == slot[1:]
    page.fill(control, "")  # editing the control clears its error
    assert not page.visible(slot)
    assert page.find(control).get_attribute("aria-invalid") is None


def test_a_full_queue_shows_its_retry_after_next_to_the_button(page: Page) -> None:
    # The test server queues at most 4 sentiment texts (conftest): 5 lines are refused at once.
    texts = [f"text number {i} ." for i in range(5)]
    status, answer = api(page.base_url, "POST", "/sentiment", {"texts": texts})
    assert status == 503 and answer["error"]["code"] == "queue_full", answer
    page.open("sentiment")
    page.fill("#sentiment-texts", "\n".join(texts))
    page.find("#sentiment-submit").click()
    page.wait_for(lambda: page.visible("#sentiment-submit-error"), "the error next to the button")
    shown = page.text("#sentiment-submit-error")
    assert answer["error"]["message"] in shown and "503 queue_full" in shown
    assert re.search(r"Retry after \d+ s\.", shown), shown
    assert page.find_all(".sentiment-row") == []
    page.screenshot("error", max_height=900)


def test_a_loading_model_error_shows_next_to_the_model_picker(page: Page) -> None:
    # The answer a model that is still loading gives (service.repository: 503, field "model",
    # Retry-After), served to the page in place of the real one.
    page.open("ner")
    page.js(
        "const real = window.fetch; window.fetch = (url, init) => String(url).endsWith('/tag')"
        " ? Promise.resolve(new Response(JSON.stringify({error: {code: 'model_unavailable',"
        "   message: \"model 'ner-bilstm-crf-x3' is loading\", field: 'model', limit: null},"
        "   request_id: 'r-1'}), {status: 503, headers: {'Content-Type': 'application/json',"
        "   'Retry-After': '1'}}))"
        " : real(url, init);"
    )
    page.find("#ner-submit").click()
    page.wait_for(lambda: page.visible("#ner-model-error"), "the error next to the model picker")
    assert _error_slots_shown(page) == ["ner-model-error"]
    shown = page.text("#ner-model-error")
    assert "is loading" in shown and "Retry after 1 s." in shown and "503 model_unavailable" in shown
    assert page.find("#ner-model-error").get_attribute("title") == "request id r-1"


# ------------------------------------------------------------------------------------------ API key


def test_the_api_key_is_kept_for_the_tab_and_sent_as_a_bearer_token(page: Page) -> None:
    page.open()
    try:
        page.find("#api-key").send_keys("test-key-123")
        page.driver.refresh()
        page.wait_for(lambda: page.js("return document.body.dataset.loaded === 'true'"), "page reloaded")
        assert page.find("#api-key").get_attribute("value") == "test-key-123"
        assert page.js("return sessionStorage.getItem('rnnserve.apiKey')") == "test-key-123"
        assert page.js("return localStorage.length") == 0, "not kept beyond the tab"
        page.js(
            "window.__calls = []; const real = window.fetch; window.fetch = (url, init = {}) => {"
            " window.__calls.push({url: String(url), auth: (init.headers || {}).Authorization || null});"
            " return real(url, init); };"
        )
        page.find("#sentiment-submit").click()
        page.wait_for(lambda: page.find_all(".sentiment-row"), "results with a key (the header is harmless)")
        page.find("#tab-status").click()
        page.wait_for(lambda: len(page.js("return window.__calls")) >= 3, "the status calls")
        calls = page.js("return window.__calls")
        assert {c["auth"] for c in calls} == {"Bearer test-key-123"}, calls
        page.find("#api-key-clear").click()
        assert page.js("return sessionStorage.getItem('rnnserve.apiKey')") is None
        assert page.find("#api-key").get_attribute("value") == ""
    finally:
        page.js("sessionStorage.clear()")


# ------------------------------------------------------------------------------------------ 375 px


def test_every_tab_fits_a_375_px_screen(page: Page) -> None:
    page.open("ner")
    metrics = {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True}
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        page.find("#ner-submit").click()
        page.wait_for(lambda: page.find_all("#ner-output .ent"), "entities")
        page.find("#tab-translation").click()
        page.find("#translation-submit").click()
        page.wait_for(lambda: page.visible("#translation-attention tbody tr"), "the heatmap")
        for tab in ("sentiment", "ner", "translation", "generation", "status"):
            page.find(f"#tab-{tab}").click()
            assert page.js("return innerWidth") == 375
            overflow = page.js("return document.documentElement.scrollWidth")
            assert overflow <= 375, f"{tab}: the page is {overflow} px wide"
            tabs = page.js(
                "return [...document.querySelectorAll('[role=tab]')]"
                ".map(t => t.getBoundingClientRect().right)"
            )
            assert max(tabs) <= 375, f"every tab button is on screen: {tabs}"
        page.find("#tab-ner").click()
    finally:
        page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    page.screenshot("mobile-375", width=375, max_height=1700)
