"""Locust load test of rnnserve: one user class per endpoint, weighted like production traffic.

The mix (``contract.ENDPOINTS``): sentiment 50 %, tag 25 %, translate 15 %, generate 10 %. At start the
master (or the single local process) asks the server which of them it serves (``/openapi.json`` and
``/models``) and keeps only those user classes, so the same file works while some tasks are not deployed
yet. Every answer is checked for its shape (``contract.check_*``): a wrong answer is a failure, not only
a non-2xx. Request texts come from ``payloads.json`` (``make_payloads.py``, sampled from the dev splits).

Headless with a time bound, CSV and HTML reports (``locust.conf`` in this folder holds the defaults)::

    cd loadtest && locust --host http://127.0.0.1:8000            # 60 s, reports in loadtest/reports/
    python -m loadtest.loadrun --run-time 60s                     # also starts the server, prints a table

Standard library and locust only: the official locust image runs it unchanged (docker-compose.yml).
"""

from __future__ import annotations

import json
import logging
import random
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

# locust puts this file's folder on sys.path while it imports the file.
from contract import ENDPOINTS, Check, Endpoint, served_endpoints
from locust import FastHttpUser, constant, events, task
from locust.runners import WorkerRunner

log = logging.getLogger("rnnserve.loadtest")
PAYLOADS: dict[str, Any] = json.loads(Path(__file__).with_name("payloads.json").read_text(encoding="utf-8"))
BATCH_SHARE = 0.2  # share of sentiment/tag requests that send a list of texts instead of one text
BATCH_SIZE = 4
MAX_NEW_TOKENS = 32
SERVED_MODELS: dict[str, frozenset[str]] = {}  # endpoint -> ready models, filled by discovery


def _get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)


def discover(host: str) -> dict[str, frozenset[str]]:
    """The mix endpoints the server at ``host`` serves, with their ready models."""
    openapi = _get_json(f"{host.rstrip('/')}/openapi.json")
    models = _get_json(f"{host.rstrip('/')}/models").get("models", [])
    return served_endpoints(openapi, models)


class EndpointUser(FastHttpUser):
    """Sends one kind of request in a closed loop and checks every answer."""

    abstract = True
    wait_time = constant(0)
    endpoint: ClassVar[Endpoint]

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    def texts_payload(self, key: str) -> dict[str, Any]:
        texts = PAYLOADS[key]
        if random.random() < BATCH_SHARE:
            return {"texts": random.sample(texts, BATCH_SIZE)}
        return {"text": random.choice(texts)}

    @task
    def call(self) -> None:
        path, check = self.endpoint.path, self.endpoint.check
        request = self.payload()
        with self.client.post(path, json=request, name=path, catch_response=True) as response:
            if response.status_code == 0:
                response.failure(f"no answer: {response.error!r}")
                return
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure(f"answer is not JSON: {(response.text or '')[:200]}")
                return
            problems = _check(check, request, body, SERVED_MODELS.get(path, frozenset()))
            if problems:
                response.failure("wrong answer: " + "; ".join(problems[:3]))


def _check(check: Check, request: dict[str, Any], body: Any, models: frozenset[str]) -> list[str]:
    try:
        return check(request, body, models)
    except Exception as exc:  # a checker crash on a malformed answer is a wrong answer too
        return [f"unreadable answer ({type(exc).__name__}: {exc})"]


def _endpoint(path: str) -> Endpoint:
    return next(e for e in ENDPOINTS if e.path == path)


class SentimentUser(EndpointUser):
    endpoint = _endpoint("/sentiment")
    weight = endpoint.weight

    def payload(self) -> dict[str, Any]:
        return self.texts_payload("sentiment")


class TagUser(EndpointUser):
    endpoint = _endpoint("/tag")
    weight = endpoint.weight

    def payload(self) -> dict[str, Any]:
        return self.texts_payload("tag")


class TranslateUser(EndpointUser):
    endpoint = _endpoint("/translate")
    weight = endpoint.weight

    def payload(self) -> dict[str, Any]:
        return {"text": random.choice(PAYLOADS["translate"])}


class GenerateUser(EndpointUser):
    endpoint = _endpoint("/generate")
    weight = endpoint.weight

    def payload(self) -> dict[str, Any]:
        return {
            "prompt": random.choice(PAYLOADS["generate"]),
            "max_new_tokens": MAX_NEW_TOKENS,
            "temperature": 0.8,
            "top_k": 40,
            "seed": random.randrange(2**31),
        }


@events.init.add_listener
def keep_served_endpoints(environment, **_kwargs) -> None:
    """Drop the user classes of endpoints the server does not serve (on the master or a local runner)."""
    if isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    try:
        SERVED_MODELS.update(discover(environment.host))
    except OSError as exc:
        log.error("cannot ask %s which endpoints it serves (%s); keeping the full mix", environment.host, exc)
        return
    kept = [u for u in environment.user_classes if u.endpoint.path in SERVED_MODELS]
    if not kept:
        log.error("%s serves none of %s; keeping the full mix", environment.host, [e.path for e in ENDPOINTS])
        return
    environment.user_classes[:] = kept
    log.info("load mix: %s", {u.endpoint.path: u.weight for u in kept})


@events.test_start.add_listener
def learn_served_models(environment, **_kwargs) -> None:
    """Workers learn the served model names too (for the answers' ``model`` check) once they know the host."""
    if SERVED_MODELS or not environment.host:
        return
    try:
        SERVED_MODELS.update(discover(environment.host))
    except OSError as exc:
        log.warning(
            "cannot list the served models at %s (%s); the 'model' check is off", environment.host, exc
        )
