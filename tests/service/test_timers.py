"""Delayed calls: run after their delay unless dropped, from one timer per event loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

from service.timers import delayed_calls

DELAY = 0.02


def test_calls_run_after_their_delay_unless_dropped_and_share_one_timer():
    async def scenario():
        loop = asyncio.get_running_loop()
        calls = delayed_calls(loop)
        assert delayed_calls(loop) is calls
        ran: list[tuple[str, float]] = []
        started = loop.time()
        calls.add(loop, DELAY, lambda: ran.append(("first", loop.time() - started)))
        scheduled = len(loop._scheduled)
        dropped = calls.add(loop, DELAY, lambda: ran.append(("dropped", 0.0)))
        await asyncio.sleep(DELAY / 2)
        calls.add(loop, DELAY, lambda: ran.append(("second", loop.time() - started)))
        assert calls.armed and len(loop._scheduled) == scheduled  # one timer for all of them
        dropped[1] = None
        await asyncio.sleep(DELAY * 4)
        return ran, calls

    ran, calls = asyncio.run(scenario())
    assert [name for name, _ in ran] == ["first", "second"]
    assert DELAY <= ran[0][1] < DELAY * 3  # not before its time (the loop may be late)
    assert DELAY * 1.5 <= ran[1][1] < DELAY * 4.5
    assert not calls._due and not calls.armed


def test_a_shorter_delay_added_later_runs_first_and_each_runs_once():
    async def scenario():
        loop = asyncio.get_running_loop()
        calls = delayed_calls(loop)
        ran: list[tuple[str, float]] = []
        started = loop.time()
        calls.add(loop, DELAY * 3, lambda: ran.append(("long", loop.time() - started)))
        calls.add(loop, DELAY, lambda: ran.append(("short", loop.time() - started)))
        dropped = calls.add(loop, DELAY * 2, lambda: ran.append(("dropped", 0.0)))
        dropped[1] = None
        assert calls.pending == 2
        await asyncio.sleep(DELAY * 6)
        return ran, calls

    ran, calls = asyncio.run(scenario())
    assert [name for name, _ in ran] == ["short", "long"]
    assert DELAY <= ran[0][1] < DELAY * 3 <= ran[1][1] < DELAY * 5
    assert calls.pending == 0 and not calls.armed


def test_each_event_loop_has_its_own_delayed_calls_which_go_with_it():
    async def with_one_pending() -> tuple[object, weakref.ref]:
        loop = asyncio.get_running_loop()
        calls = delayed_calls(loop)
        calls.add(loop, DELAY, lambda: None)  # still due when the loop closes
        return calls, weakref.ref(loop)

    first, first_loop = asyncio.run(with_one_pending())
    second, _ = asyncio.run(with_one_pending())
    assert first is not second
    gc.collect()
    assert first_loop() is None  # nothing kept the closed loop alive, so its entry is gone too
