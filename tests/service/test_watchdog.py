"""A model call stuck past ``stall_after_s`` is a fault while it runs, and only then."""

from __future__ import annotations

import threading
import time

from service.errors import ModelUnavailable
from service.watchdog import CallWatch


def test_a_call_is_a_fault_only_past_the_bound_and_only_while_it_runs() -> None:
    watch = CallWatch("m", stall_after_s=0.2)
    release, entered = threading.Event(), threading.Event()

    def call() -> None:
        with watch.timing():
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=call)
    worker.start()
    assert entered.wait(5)
    assert watch.fault() is None and watch.refusal() is None, "running, not yet stuck"
    time.sleep(0.3)
    assert "stall_after_s = 0.2 s" in watch.fault()
    refusal = watch.refusal()
    assert isinstance(refusal, ModelUnavailable) and refusal.headers == {"Retry-After": "1"}
    assert refusal.field == "model" and "model m is not ready" in refusal.message
    release.set()
    worker.join(5)
    assert watch.fault() is None and watch.running_for() == 0.0


def test_the_oldest_of_several_running_calls_counts() -> None:
    watch = CallWatch("m", stall_after_s=0.15)
    release = threading.Event()
    started = threading.Barrier(3)

    def call(delay: float) -> None:
        time.sleep(delay)
        with watch.timing():
            started.wait(5)
            release.wait(10)

    threads = [threading.Thread(target=call, args=(d,)) for d in (0.0, 0.1)]
    for t in threads:
        t.start()
    started.wait(5)
    time.sleep(0.1)
    assert watch.running_for() >= 0.2 and watch.fault() is not None
    release.set()
    for t in threads:
        t.join(5)
    assert watch.fault() is None
