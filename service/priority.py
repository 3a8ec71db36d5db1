"""Model threads before the event loop: the serving process's threads at two scheduling priorities.

A serving process has two kinds of busy thread: the event loop (HTTP, JSON, validation, tokenization,
refusals) and the model threads (the batchers' and the generation scheduler's, which spend their time in
ONNX Runtime with the GIL released). When clients push far past capacity, the event loop is busy refusing
them; at equal priority it takes half of a core from the model thread, so the work already admitted runs
at half speed and goodput falls as the refusals rise. With ``RNNSERVE_EVENT_LOOP_NICE`` (Linux), the
event loop thread runs that many nice levels below the model threads: it still gets every cycle the model
threads leave, but it no longer slows them. The price is throughput at capacity whenever anything else
at normal priority wants the cores too, so it is off (0) by default (docs/experiments.md).

Linux gives each thread its own nice value and a new thread inherits its creator's, and only a
privileged process may lower a thread's nice value again. So the model threads are started by a
*spawner* thread, started before the event loop thread is reniced, which keeps the process's priority:
``start_thread`` and ``thread_pool`` start threads through it, and ``in_model_thread`` runs a function
(loading an ONNX Runtime session, whose intra-op threads are started then) in a thread at that priority.
Without ``lower_event_loop`` (other systems, or a nice of 0) these are plain thread starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")

_spawner: _Spawner | None = None


class _Spawner:
    """A thread at the process's priority that runs short calls (thread starts) for other threads."""

    def __init__(self) -> None:
        self.base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # the creator's nice
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="thread-spawner", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            call, done = self._calls.get()
            try:
                done.set_result(call())
            except BaseException as exc:  # handed to the caller, who re-raises it
                done.set_exception(exc)

    def run(self, call: Callable[[], R]) -> R:
        if threading.current_thread() is self._thread:
            return call()
        done: Future = Future()
        self._calls.put((call, done))
        return done.result()


def supported() -> bool:
    """Per-thread nice values: Linux's ``setpriority`` on a thread id."""
    return sys.platform.startswith("linux") and hasattr(os, "setpriority")


def lower_event_loop(nice: int) -> bool:
    """Runs the calling thread (the event loop's) ``nice`` levels below the process's other threads from
    now on; model threads started afterwards through this module keep the process's priority. Returns
    whether it took effect (not on systems without per-thread priorities, or with ``nice`` 0)."""
    global _spawner
    if nice <= 0 or not supported():
        return False
    if _spawner is None:
        _spawner = _Spawner()
    base = _spawner.base
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, base + nice))
    except OSError as exc:  # e.g. a seccomp profile that forbids it: serve at one priority
        log.warning("could not lower the event loop's scheduling priority: %s", exc)
        return False
    log.info("event loop thread at nice %d, model threads at %d", min(19, base + nice), base)
    return True


def set_gil_switch_interval(ms: float) -> None:
    """How long a thread holding the GIL keeps it while another thread asks for it. A model thread needs
    the GIL for a moment between ONNX Runtime calls (to encode, to hand results over, to start the next
    step); while the event loop is busy (refusing an overload) it waits up to this long each time, so a
    generation step or a batch that needs the GIL several times is slowed by as many waits. Python's
    default is 5 ms."""
    sys.setswitchinterval(ms / 1000)


def _run_at_model_priority(call: Callable[[], R]) -> R:
    return call() if _spawner is None else _spawner.run(call)


def start_thread(thread: threading.Thread) -> None:
    """Starts ``thread`` at the model threads' priority."""
    _run_at_model_priority(thread.start)


def thread_pool(name: str) -> ThreadPoolExecutor:
    """A one-thread executor whose thread runs at the model threads' priority: with the event loop
    lowered, its thread is started now, by the spawner, so that the executor never starts one from the
    caller's thread later; otherwise at its first call, as usual."""
    executor = ThreadPoolExecutor(1, thread_name_prefix=name)
    if _spawner is not None:
        _spawner.run(lambda: executor.submit(_nothing).result())
    return executor


def _nothing() -> None:
    return None


async def in_model_thread(call: Callable[..., R], *args: Any) -> R:
    """``await asyncio.to_thread(call, *args)``, in a new thread at the model threads' priority (for work
    that starts threads of its own, like creating an ONNX Runtime session)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[R] = loop.create_future()

    def settle(result: R | None, exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)

    def target() -> None:
        result, error = None, None
        try:
            result = call(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for the answer
            loop.call_soon_threadsafe(settle, result, error)

    start_thread(threading.Thread(target=target, name=f"model-{getattr(call, '__name__', 'call')}"))
    return await done
