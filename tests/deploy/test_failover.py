"""``deploy/nginx.conf`` run for real: 3 replicas behind nginx, one drained, one killed, both back.

The short version of ``python -m loadtest.bench_failover`` (about 45 s). Asserts on correctness only, not
speed: no request hangs, no answer is wrong, a draining replica loses nothing, a killed one shows clients
at most a 502/503 with a body (and never a broken connection nginx could have retried), restarted replicas
take requests again once warm (never answering 503 while they load), and X-Request-ID goes through.
Skipped only where nginx is not installed; CI installs it (``.ci/run``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.bench.nginx import NGINX_CONF, Balancer, find_nginx
from loadtest.bench_failover import Cluster, Run, Schedule, drive, failures, running_cluster, summarize


@pytest.fixture(autouse=True, scope="module")
def nginx_installed() -> None:
    """Skipped without nginx, except in CI (``CI=true``), where it must run."""
    if find_nginx() is not None:
        return
    reason = "nginx is not installed (apt-get install nginx; .ci/run installs it)"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI needs the balancer test: {reason}")
    pytest.skip(reason)


# Events at 3.6 s (SIGTERM), 7.2 s (SIGKILL), 10.8 s (restart); 5 s of load once all are back.
SCHEDULE = Schedule.for_run(seconds=18, after_restart_s=5)
CLIENTS = 6
TIMEOUT_S = 30  # a request without an answer this long has hung


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(3, tmp_path_factory.mktemp("failover")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def run(cluster: Cluster) -> Run:
    return asyncio.run(drive(cluster, SCHEDULE, CLIENTS, TIMEOUT_S))


@pytest.fixture(scope="module")
def phases(run: Run) -> dict[str, dict[str, Any]]:
    return {p["phase"].split(" (")[0]: p for p in summarize(run)}


def post(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{url}/sentiment",
        data=json.dumps({"text": "a gripping , beautifully acted film ."}).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def test_x_request_id_of_the_client_goes_through_and_one_is_made_without(cluster: Cluster) -> None:
    balancer = cluster.balancer
    status, headers, body = post(balancer.url, {"X-Request-ID": "client-id-42"})
    assert status == 200 and headers["x-request-id"] == "client-id-42"
    assert json.loads(body)["results"]

    status, headers, _ = post(balancer.url, {})
    made = headers["x-request-id"]
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", made), made
    assert logged_ids(balancer, "/sentiment", 2)[-2:] == ["client-id-42", made], "nginx made it, sent it on"


def logged_ids(balancer: Balancer, uri: str, count: int, wait_s: float = 10) -> list[str]:
    """The request ids nginx logged for ``uri``, once there are ``count`` (it writes the line after the
    answer has gone)."""
    deadline = time.monotonic() + wait_s
    while len(ids := [e["request_id"] for e in balancer.access_entries() if e["uri"] == uri]) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return ids


def test_a_draining_replica_loses_nothing(phases: dict[str, dict[str, Any]], cluster: Cluster) -> None:
    term = phases["after SIGTERM"]
    assert term["requests"] > 0
    assert term["lost_connection"] == term["lost_timeout"] == term["wrong"] == 0, term
    assert set(term["statuses"]) == {200}, term["statuses"]
    log = (cluster.workdir / "replica-1.log").read_text(encoding="utf-8")
    assert "shutdown complete" in log, "replica 1 drained and exited by itself"


def test_a_killed_replica_shows_clients_at_most_a_clean_5xx(phases: dict[str, dict[str, Any]]) -> None:
    kill = phases["after SIGKILL"]
    assert kill["requests"] > 0 and kill["lost_timeout"] == 0 and kill["wrong"] == 0, kill
    assert set(kill["statuses"]) <= {200, 502, 503}, kill["statuses"]
    # nginx noticed the dead replica and sent its requests to another one
    assert kill["retried_by_nginx"] >= 1, kill
    # the only broken connections: answers that had started when the replica died (nginx passed the
    # header on, so no proxy could retry them)
    assert kill["lost_connection"] == kill["cut_short"], kill


def test_every_error_answer_has_a_body_and_nothing_hangs(run: Run) -> None:
    assert run.outcomes
    assert failures(run) == []
    errors = [o for o in run.outcomes if o.status not in (0, 200)]
    # a body and the request's own X-Request-ID on each: answer_problem checked both (failures: none wrong)
    assert all(o.status in (502, 503) for o in errors), {o.status for o in errors}


def test_restarted_replicas_take_requests_again(phases: dict[str, dict[str, Any]]) -> None:
    back = phases["after restart"]
    # replica 1 came back at its address, replica 2 at a new one that only the reload made known
    assert back["replicas_answering"] == ["replica 1", "replica 2 (new address)", "replica 3"], back
    assert back["lost_connection"] == back["lost_timeout"] == back["wrong"] == 0, back
    # the replicas listen only once warm (RNNSERVE_LISTEN_WHEN_READY): no 503 "model loading" on the way
    assert set(back["statuses"]) == {200}, back["statuses"]
    restarting = next(phase for name, phase in phases.items() if name.startswith("restarting"))
    assert set(restarting["statuses"]) == {200}, restarting["statuses"]


def test_the_rendered_conf_changes_only_ports_and_paths(cluster: Cluster) -> None:
    shipped = NGINX_CONF.read_text(encoding="utf-8").splitlines()
    rendered = cluster.balancer.conf.read_text(encoding="utf-8").splitlines()
    changed = set(rendered) - set(shipped)
    allowed = re.compile(
        r"\s*(server 127\.0\.0\.1:\d+ |listen 127\.0\.0\.1:\d+;|pid |access_log |\w+_temp_path )"
    )
    assert changed and all(allowed.match(line) for line in changed), changed
    assert str(Path(cluster.workdir)) in cluster.balancer.conf.read_text(encoding="utf-8")
