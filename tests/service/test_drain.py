"""The drain in front of the server's signal handler: it holds SIGTERM back while admitted requests run,
and passes it on once they have ended, when the bound runs out, at a second signal, or when nothing runs.
(tests/service/test_shutdown_faults.py has the same with a real server.)"""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest
import uvicorn

from service.drain import Drain

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")


@pytest.fixture
def server_handler():
    """A stand-in for uvicorn's handler: records the signals it got."""
    received: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    before_int = signal.getsignal(signal.SIGINT)
    yield received
    signal.signal(signal.SIGTERM, before)
    signal.signal(signal.SIGINT, before_int)


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


async def _settle() -> None:
    for _ in range(5):  # the handler runs between bytecodes; its follow-up on the loop's next turns
        await asyncio.sleep(0)


def test_sigterm_waits_for_the_requests_in_flight_then_reaches_the_server(server_handler):
    started: list[bool] = []

    async def scenario() -> tuple[list[int], bool, list[int]]:
        drain = Drain(5.0, on_start=lambda: started.append(True))
        assert drain.install()
        drain.in_flight = 2
        _sigterm()
        await _settle()
        held = list(server_handler)
        draining = drain.draining
        drain.in_flight = 0
        await asyncio.sleep(0.2)
        drain.uninstall()
        return held, draining, list(server_handler)

    held, draining, received = asyncio.run(scenario())
    assert held == [] and draining and started == [True]
    assert received == [signal.SIGTERM]


def test_with_nothing_in_flight_the_signal_goes_straight_through(server_handler):
    async def scenario() -> tuple[list[int], bool]:
        drain = Drain(5.0)
        drain.install()
        _sigterm()
        await _settle()
        drain.uninstall()
        return list(server_handler), drain.draining

    received, draining = asyncio.run(scenario())
    assert received == [signal.SIGTERM] and not draining


def test_a_second_signal_stops_at_once_and_the_first_is_not_passed_twice(server_handler):
    async def scenario() -> tuple[list[int], list[int]]:
        drain = Drain(5.0)
        drain.install()
        drain.in_flight = 1
        _sigterm()
        await _settle()
        _sigterm()
        await _settle()
        after_second = list(server_handler)
        drain.in_flight = 0
        await asyncio.sleep(0.2)
        drain.uninstall()
        return after_second, list(server_handler)

    after_second, received = asyncio.run(scenario())
    assert after_second == [signal.SIGTERM] and received == [signal.SIGTERM]


def test_the_bound_hands_the_signal_over_with_requests_still_running(server_handler):
    async def scenario() -> tuple[list[int], int]:
        drain = Drain(0.2)
        drain.install()
        drain.in_flight = 1  # never ends
        _sigterm()
        await asyncio.sleep(0.5)
        drain.uninstall()
        return list(server_handler), drain.in_flight

    received, in_flight = asyncio.run(scenario())
    assert received == [signal.SIGTERM] and in_flight == 1


def test_the_bound_counts_from_the_first_signal(server_handler):
    async def scenario() -> tuple[float, float, float]:
        drain = Drain(1.0)
        drain.install()
        before = drain.remaining_s()
        drain.in_flight = 1
        _sigterm()
        await asyncio.sleep(0.3)
        halfway = drain.remaining_s()
        await asyncio.sleep(1.0)
        drain.uninstall()
        return before, halfway, drain.remaining_s()

    before, halfway, after = asyncio.run(scenario())
    assert before == 1.0 and 0 < halfway <= 0.7 and after == 0.0


def test_without_holding_back_the_signal_goes_through_and_starts_the_clock(server_handler):
    """RNNSERVE_LISTEN_WHEN_READY: no drain step, the port closes at once, and the queues' drain after it
    still gets only the rest of the bound."""

    async def scenario() -> tuple[list[int], bool, float]:
        drain = Drain(5.0)
        drain.install(hold_back=False)
        drain.in_flight = 1
        _sigterm()
        await _settle()
        await asyncio.sleep(0.2)
        drain.uninstall()
        return list(server_handler), drain.draining, drain.remaining_s()

    received, draining, remaining = asyncio.run(scenario())
    assert received == [signal.SIGTERM] and not draining and remaining <= 4.8


def test_uvicorn_gets_what_the_drain_left_of_the_bound():
    """The drain stands in front of uvicorn's ``Server.handle_exit``: uvicorn's own wait for the requests
    still running is cut to the rest of the bound, not a second bound of its own."""

    async def scenario() -> tuple[float | None, bool]:
        server = uvicorn.Server(uvicorn.Config(app=None, timeout_graceful_shutdown=30))
        previous = signal.signal(signal.SIGTERM, server.handle_exit)  # as uvicorn installs it
        try:
            drain = Drain(0.5)
            drain.install()
            drain.in_flight = 1  # never ends: the whole bound goes to the drain
            _sigterm()
            await asyncio.sleep(1.5)
            drain.uninstall()
        finally:
            signal.signal(signal.SIGTERM, previous)
        return server.config.timeout_graceful_shutdown, server.should_exit

    grace, told_to_exit = asyncio.run(scenario())
    assert grace == 0.0 and told_to_exit


def test_uninstall_gives_the_signal_back(server_handler):
    async def scenario() -> None:
        drain = Drain(5.0)
        drain.install()
        assert signal.getsignal(signal.SIGTERM) == drain._on_signal
        drain.uninstall()

    asyncio.run(scenario())
    _sigterm()
    assert server_handler == [signal.SIGTERM]


def test_outside_the_main_thread_nothing_is_installed(server_handler):
    outcome: list[bool] = []
    handler = signal.getsignal(signal.SIGTERM)

    def in_thread() -> None:
        async def scenario() -> bool:
            return Drain(5.0).install()

        outcome.append(asyncio.run(scenario()))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert outcome == [False] and signal.getsignal(signal.SIGTERM) is handler
