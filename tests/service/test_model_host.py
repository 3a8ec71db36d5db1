"""The inference process's loop, driven over a real pipe from a thread of the test process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from service.errors import InferenceError, ModelUnavailable
from service.manifest import ModelManifest
from service.model_host import ModelHost, _picklable
from service.runtime import ModelLoadError
from service.serving import load_model
from service.tasks.sentiment.model import build
from tests.service.conftest import TINY, settings_for


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle this one")


@pytest.fixture
def host(tiny_repo: Path) -> Iterator[Connection]:
    ours, theirs = Pipe()
    runner = threading.Thread(target=ModelHost(theirs, settings_for(tiny_repo)).run, daemon=True)
    runner.start()
    yield ours
    ours.send((-1, "exit", ()))
    runner.join(10)
    assert not runner.is_alive()


def _call(conn: Connection, call_id: int, op: str, *args: Any) -> tuple[bool, Any]:
    conn.send((call_id, op, args))
    answer_id, ok, value = conn.recv()
    assert answer_id == call_id
    return ok, value


def test_it_loads_predicts_and_unloads_over_the_pipe(host: Connection, tiny_repo: Path) -> None:
    manifest = ModelManifest.load(tiny_repo / TINY)
    ok, provider = _call(host, 1, "load", 7, build, manifest, 1, tiny_repo / TINY / "1")
    assert ok and provider == "CPUExecutionProvider"
    ok, results = _call(host, 2, "predict", 7, ["good", "bad and dull"])
    local = load_model(build, manifest, 1, tiny_repo / TINY / "1", settings_for(tiny_repo))
    assert ok and results == list(local.predict_batch(["good", "bad and dull"]))
    host.send((3, "unload", (7,)))  # no answer
    ok, error = _call(host, 4, "predict", 7, ["good"])
    assert not ok and isinstance(error, ModelUnavailable) and "not loaded here" in str(error)


def test_a_load_that_fails_answers_why(host: Connection, tiny_repo: Path) -> None:
    manifest = ModelManifest.load(tiny_repo / "broken-graph")
    ok, error = _call(host, 1, "load", 1, build, manifest, 1, tiny_repo / "broken-graph" / "1")
    assert not ok and isinstance(error, ModelLoadError) and "cannot load it" in str(error)


def test_exceptions_that_do_not_pickle_become_inference_errors_naming_them() -> None:
    kept = ValueError("kept")
    results = _picklable([{"label": "positive"}, kept, Unpicklable("no")])
    assert results[0] == {"label": "positive"} and results[1] is kept
    assert isinstance(results[2], InferenceError) and str(results[2]) == "Unpicklable: no"
    assert isinstance(_picklable(Unpicklable("whole")), InferenceError)
