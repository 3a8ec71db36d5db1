"""Model threads keep the process's priority while the event loop thread runs below them (Linux)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from service import priority

pytestmark = pytest.mark.skipif(not priority.supported(), reason="per-thread nice values are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_thread(fn):
    """Runs ``fn`` in a thread of its own (never renice the test runner's thread) and returns its result."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join(10)
    if "error" in out:
        raise out["error"]
    return out["value"]


def _nice_of_a_thread_started_by(start) -> int:
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(_nice()))
    start(t)
    t.join(5)
    return seen[0]


def test_the_event_loop_runs_below_the_model_threads_it_starts():
    def scenario():
        base = _nice()
        assert priority.lower_event_loop(5)
        pool = priority.thread_pool("test-model")
        try:
            in_pool = pool.submit(_nice).result()
        finally:
            pool.shutdown()
        in_model_thread = asyncio.run(priority.in_model_thread(_nice))
        return {
            "base": base,
            "event loop": _nice(),
            "plain thread": _nice_of_a_thread_started_by(threading.Thread.start),
            "start_thread": _nice_of_a_thread_started_by(priority.start_thread),
            "thread_pool": in_pool,
            "in_model_thread": in_model_thread,
        }

    seen = _in_thread(scenario)
    base = seen["base"]
    assert seen["event loop"] == min(19, base + 5)
    assert seen["plain thread"] == seen["event loop"]  # what Linux does unaided: the creator's nice
    assert seen["start_thread"] == seen["thread_pool"] == seen["in_model_thread"] == base


def test_lowering_twice_does_not_lower_further():
    def scenario():
        priority.lower_event_loop(3)
        priority.lower_event_loop(3)
        return _nice(), priority._spawner.base

    nice, base = _in_thread(scenario)
    assert nice == min(19, base + 3)


def test_a_nice_of_zero_changes_nothing():
    def scenario():
        before = _nice()
        return priority.lower_event_loop(0), before, _nice()

    took_effect, before, after = _in_thread(scenario)
    assert not took_effect and before == after


def test_errors_in_a_model_thread_reach_the_caller():
    def boom():
        raise ValueError("no session")

    async def scenario():
        with pytest.raises(ValueError, match="no session"):
            await priority.in_model_thread(boom)

    asyncio.run(scenario())
