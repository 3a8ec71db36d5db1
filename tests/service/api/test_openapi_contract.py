"""The OpenAPI document states every rule the server enforces, and the server keeps to it.

* the request schemas carry the configured limits (from the settings of the app, not constants), the
  one-of of ``text``/``texts``, ranges, lengths and the prompt's characters;
* request bodies are strict: no value is coerced to another type;
* every status an operation can answer is listed for it;
* ``schemathesis`` (every check, every operation, fixed seed) finds no failure against the app on the
  bundled models, without and with API keys.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service.api.schemas import NON_BLANK_PATTERN, WHITESPACE_CLASS
from service.config import LimitsConfig
from service.main import create_app
from tests.service.bundled import bundled_repository
from tests.service.conftest import serving, settings_for

LIMITS = LimitsConfig(max_texts=3, max_text_chars=120)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled_repository(tmp_path_factory.mktemp("bundled"))


@pytest.fixture(scope="module")
def client(repo: Path):
    with serving(settings_for(repo, limits=LIMITS, access_log=False)) as c:
        yield c


def body_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


# ----------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("path", ["/sentiment", "/tag", "/translate"])
def test_text_schemas_state_the_configured_limits_and_exactly_one_of_text_and_texts(client, path):
    schema = body_schema(client.get("/openapi.json").json(), path)
    text, texts = schema["properties"]["text"], schema["properties"]["texts"]
    assert text["type"] == "string" and text["maxLength"] == LIMITS.max_text_chars
    assert texts["maxItems"] == LIMITS.max_texts and texts["minItems"] == 1
    assert texts["items"]["maxLength"] == LIMITS.max_text_chars
    assert schema["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert schema["additionalProperties"] is False
    assert "null" not in json.dumps(text) and "null" not in json.dumps(texts)  # absent, never null
    blank_is_an_error = path == "/sentiment"
    assert (text.get("pattern") == NON_BLANK_PATTERN) is blank_is_an_error
    assert (texts["items"].get("pattern") == NON_BLANK_PATTERN) is blank_is_an_error


def test_other_settings_give_other_schemas(repo):
    limits = LimitsConfig(max_texts=7, max_text_chars=33)
    app = create_app(settings_for(repo, limits=limits))
    schema = body_schema(app.openapi(), "/tag")
    assert schema["properties"]["texts"]["maxItems"] == 7
    assert schema["properties"]["text"]["maxLength"] == 33


def test_the_blank_pattern_is_exactly_python_white_space():
    blank = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
    assert re.fullmatch(f"[{WHITESPACE_CLASS}]+", blank)
    assert not any(re.search(NON_BLANK_PATTERN, ch) for ch in blank)
    assert re.search(NON_BLANK_PATTERN, " \u200b ")  # a zero-width space is not white space to strip()


def test_translation_and_generation_ranges_and_the_prompt_are_stated(client):
    document = client.get("/openapi.json").json()
    translate = body_schema(document, "/translate")["properties"]
    assert (translate["beam_size"]["minimum"], translate["beam_size"]["maximum"]) == (1, 8)
    assert (translate["max_length"]["minimum"], translate["max_length"]["maximum"]) == (1, 512)
    assert translate["beam_size"]["type"] == "integer" and translate["return_attention"]["type"] == "boolean"
    generate = body_schema(document, "/generate")["properties"]
    assert generate["stop"]["maxItems"] == 8
    assert (generate["stop"]["items"]["minLength"], generate["stop"]["items"]["maxLength"]) == (1, 64)
    assert generate["seed"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert generate["top_k"]["maximum"] == 2**63 - 1
    prompt = generate["prompt"]
    model = client.app.state.repository.entries["generation-gru"].model
    assert prompt["maxLength"] == min(model.max_prompt_chars, LIMITS.max_text_chars)
    assert re.fullmatch(prompt["pattern"], "ROMEO:\nWhat")
    assert not re.fullmatch(prompt["pattern"], "ROMEO: 🙂")  # a character the model never saw
    r = client.post("/generate", json={"prompt": "ROMEO: 🙂", "max_new_tokens": 1})
    assert r.status_code == 422 and r.json()["error"]["field"] == "prompt"


# -------------------------------------------------------------------------------------- strictness


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/generate", {"prompt": "A", "stream": 0}, "stream"),
        ("/generate", {"prompt": "A", "stream": "true"}, "stream"),
        ("/generate", {"prompt": "A", "max_new_tokens": "5"}, "max_new_tokens"),
        ("/generate", {"prompt": "A", "max_new_tokens": True}, "max_new_tokens"),
        ("/generate", {"prompt": "A", "max_new_tokens": 5.5}, "max_new_tokens"),
        ("/generate", {"prompt": "A", "temperature": "1.0"}, "temperature"),
        ("/generate", {"prompt": "A", "temperature": False}, "temperature"),
        ("/generate", {"prompt": "A", "seed": "1"}, "seed"),
        ("/generate", {"prompt": 5}, "prompt"),
        ("/generate", {"prompt": "A", "stop": ["x", 1]}, "stop[1]"),
        ("/translate", {"text": "A dog.", "beam_size": True}, "beam_size"),
        ("/translate", {"text": "A dog.", "beam_size": "5"}, "beam_size"),
        ("/translate", {"text": "A dog.", "return_attention": 1}, "return_attention"),
        ("/translate", {"text": "A dog.", "length_penalty": "1"}, "length_penalty"),
        ("/sentiment", {"text": 5}, "text"),
        ("/sentiment", {"text": None}, "text"),
        ("/sentiment", {"texts": None}, "texts"),
        ("/tag", {"text": "a", "model": 1}, "model"),
    ],
)
def test_no_value_is_coerced_to_another_type(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == field, error


def test_an_integral_number_is_an_integer_as_in_json_schema(client):
    r = client.post("/translate", json={"text": "A dog.", "beam_size": 2.0, "max_length": 1e1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("path", "body", "field", "code", "limit"),
    [
        ("/translate", {"text": "A dog.", "beam_size": 9}, "beam_size", "invalid_input", 8),
        ("/translate", {"text": "A dog.", "max_length": 0}, "max_length", "invalid_input", 1),
        ("/generate", {"stop": [""]}, "stop[0]", "invalid_input", 1),
        ("/generate", {"stop": ["x" * 65]}, "stop[0]", "limit_exceeded", 64),
        ("/generate", {"stop": ["a"] * 9}, "stop", "limit_exceeded", 8),
        ("/generate", {"max_new_tokens": 1001}, "max_new_tokens", "invalid_input", 1000),
        ("/sentiment", {"texts": ["a"] * 4}, "texts", "limit_exceeded", 3),
        ("/sentiment", {"texts": ["a", "b" * 121]}, "texts[1]", "limit_exceeded", 120),
    ],
)
def test_range_and_length_errors_name_the_field_and_the_limit(client, path, body, field, code, limit):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["field"], error["code"], error["limit"]) == (field, code, limit), error


# -------------------------------------------------------------------------------- status codes


INFERENCE = {"400", "404", "413", "422", "499", "500", "503", "504"}


def test_every_status_an_operation_can_answer_is_listed(client):
    document = client.get("/openapi.json").json()
    for path in ("/sentiment", "/tag", "/translate", "/generate"):
        responses = set(document["paths"][path]["post"]["responses"])
        assert {"200"} | INFERENCE <= responses, (path, responses)
        assert not {"401", "403"} & responses, "no keys are configured: neither can happen"
    for path in ("/health", "/models", "/metrics", "/ui/"):
        assert {"200", "413", "500"} <= set(document["paths"][path]["get"]["responses"]), path
    assert {"200", "503"} <= set(document["paths"]["/ready"]["get"]["responses"])
    queue_full = document["paths"]["/sentiment"]["post"]["responses"]["503"]
    assert "Retry-After" in queue_full["headers"]


# ------------------------------------------------------------------------------------ schemathesis


def run_schemathesis(
    app, *, max_examples: int, headers: dict[str, str] | None = None
) -> tuple[list, Counter]:
    """Every check on every operation, as ``schemathesis run --checks all`` does, against ``app`` (its
    lifespan run by schemathesis's ASGI client). Returns the failures and ``(operation, status)`` counts."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema
    from schemathesis.python import asgi

    config: dict[str, Any] = {"seed": 7, "generation": {"max-examples": max_examples, "database": "none"}}
    if headers:
        config["headers"] = headers
    st_config = SchemathesisConfig.from_dict(config)
    st_config.projects.override.checks.update(included_check_names=["all"])
    failures: list[tuple[str, str, str, Any]] = []
    statuses: Counter = Counter()
    try:
        with asgi.get_client(app) as http:  # starts the app; the schema is read once the models are in
            deadline = time.monotonic() + 60
            while http.get("/ready").status_code != 200:
                assert time.monotonic() < deadline, "the models did not load"
                time.sleep(0.05)
            schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=st_config)
            for event in from_schema(schema).execute():
                if isinstance(event, events.FatalError | events.NonFatalError):
                    failures.append(
                        ("engine", type(event).__name__, str(getattr(event, "info", event)), None)
                    )
                if not isinstance(event, events.ScenarioFinished):
                    continue
                recorder = event.recorder
                for interaction in recorder.interactions.values():
                    status = interaction.response.status_code if interaction.response else None
                    statuses[(recorder.label, status)] += 1
                for case_id, checks in recorder.checks.items():
                    for check in checks:
                        if check.failure_info is not None:
                            case = recorder.cases[case_id].value
                            title = getattr(check.failure_info.failure, "title", str(check.failure_info))
                            failures.append((recorder.label, check.name, title, case.body))
    finally:
        asgi.shutdown_lifespans()
    return failures, statuses


def _report(failures: list) -> str:
    seen: dict[tuple[str, str], tuple] = {}
    for failure in failures:
        seen.setdefault(failure[:2], failure)
    return "\n".join(
        f"{op} {check}: {title} {json.dumps(body, default=str)[:300]}"
        for op, check, title, body in seen.values()
    )


def _check_coverage(statuses: Counter, protected: bool, forbidden: frozenset[str] = frozenset()) -> None:
    operations = {op for op, _ in statuses}
    for path in ("/sentiment", "/tag", "/translate", "/generate"):
        answered = 403 if path in forbidden else 200
        assert statuses[(f"POST {path}", answered)] > 0, f"schemathesis never got a {answered} from {path}"
        assert statuses[(f"POST {path}", 422)] > 0, f"schemathesis never sent {path} an invalid body"
        if protected:
            assert statuses[(f"POST {path}", 401)] > 0, f"schemathesis never called {path} without a key"
    assert {"GET /health", "GET /ready", "GET /models", "GET /metrics"} <= operations


def test_schemathesis_finds_nothing(repo):
    settings = settings_for(repo, limits=LIMITS, access_log=False)
    failures, statuses = run_schemathesis(create_app(settings), max_examples=25)
    assert not failures, _report(failures)
    _check_coverage(statuses, protected=False)


def test_schemathesis_finds_nothing_with_api_keys(repo):
    keys = {"key-every-model": ["*"], "key-some-models": ["sentiment-gru", "ner-bigru-crf", "generation-gru"]}
    settings = settings_for(repo, limits=LIMITS, access_log=False, api_keys=keys)
    app = create_app(settings)
    failures, statuses = run_schemathesis(
        app, max_examples=15, headers={"Authorization": "Bearer key-some-models"}
    )
    assert not failures, _report(failures)
    _check_coverage(statuses, protected=True, forbidden=frozenset({"/translate"}))  # that key's models
