"""The text endpoints' shared path: disconnect watchers start late, from one timer per event loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

from service.api.texts import WATCH_AFTER_S, _late_starts_of


def test_late_starts_run_after_the_delay_unless_dropped_and_share_one_timer():
    async def scenario():
        loop = asyncio.get_running_loop()
        late = _late_starts_of(loop)
        assert _late_starts_of(loop) is late
        ran: list[tuple[str, float]] = []
        started = loop.time()
        late.add(loop, lambda: ran.append(("first", loop.time() - started)))
        scheduled = len(loop._scheduled)
        dropped = late.add(loop, lambda: ran.append(("dropped", 0.0)))
        await asyncio.sleep(WATCH_AFTER_S / 2)
        late.add(loop, lambda: ran.append(("second", loop.time() - started)))
        assert late.armed and len(loop._scheduled) == scheduled  # one timer for all of them
        dropped[1] = None
        await asyncio.sleep(WATCH_AFTER_S * 4)
        return ran, late

    ran, late = asyncio.run(scenario())
    assert [name for name, _ in ran] == ["first", "second"]
    assert WATCH_AFTER_S <= ran[0][1] < WATCH_AFTER_S * 3  # not before its time (the loop may be late)
    assert WATCH_AFTER_S * 1.5 <= ran[1][1] < WATCH_AFTER_S * 4.5
    assert not late._due and not late.armed


def test_each_event_loop_has_its_own_late_starts_which_go_with_it():
    async def with_one_pending() -> tuple[object, weakref.ref]:
        loop = asyncio.get_running_loop()
        late = _late_starts_of(loop)
        late.add(loop, lambda: None)  # still due when the loop closes
        return late, weakref.ref(loop)

    first, first_loop = asyncio.run(with_one_pending())
    second, _ = asyncio.run(with_one_pending())
    assert first is not second
    gc.collect()
    assert first_loop() is None  # nothing kept the closed loop alive, so its entry is gone too
