"""The serving process's side of its inference process (``RNNSERVE_INFERENCE_PROCESS``).

With it on, each serving process starts one inference process (``service.model_host``) and loads every
model there: the sessions, the encoding, ONNX Runtime and the decoding run in that process, with its own
GIL. The serving process keeps everything else: HTTP, JSON, validation, admission, the dynamic batcher
(its queue, deadlines and cost model). The batcher's model call becomes :class:`RemoteModel`: the batch's
items go over a pipe and the results come back, one round trip per batch, not per request. Generation's
decoding thread runs there as well, driven and listened to by ``service.remote_scheduler``; its news
arrives unasked, as ``(None, kind, payload)`` messages.

Why: a serving process's event loop and its model threads share one GIL and, at one priority, the cores.
Refusing an overload then slows the batches already admitted. In a process of its own the model work
keeps its GIL and, with ``RNNSERVE_EVENT_LOOP_NICE``, the cores ahead of the event loop.

A supervisor thread starts the inference process and reads its answers. If the process dies (a crash in
native code, the OOM killer), the calls waiting on it fail with 503 ``model_unavailable``, its models
report a fault (``/ready`` is 503 for this serving process), and it is started again and every model
loaded into it again; the serving process and its other requests carry on.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

from service import model_host, priority
from service.config import Settings
from service.errors import ModelUnavailable
from service.manifest import ModelManifest
from service.serving import BuildFn

log = logging.getLogger(__name__)

#: the shortest life an inference process must have had not to be started again only after a pause
_STABLE_S = 10.0
_MAX_PAUSE_S = 30.0


class InferenceProcessGone(ModelUnavailable):
    """The inference process exited while the call was running or before it was sent (503: try again
    in a second, when it has been started again)."""

    def __init__(self, message: str, **kwargs: Any):
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(message, **kwargs)


@dataclass(eq=False)
class RemoteModel:
    """One model version loaded in the inference process: the batcher's batch function."""

    process: InferenceProcess
    key: int
    provider: str

    def __call__(self, items: list[Any]) -> list[Any]:
        if (down := self.unavailable()) is not None:
            raise down
        return self.process.call("predict", self.key, items)

    def unavailable(self) -> InferenceProcessGone | None:
        """The 503 for a call now, while the inference process is being restarted; else None."""
        if self.key in self.process.live:
            return None
        return InferenceProcessGone("the inference process is restarting", field="model")

    def call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """Blocking: one call about this model, answered (``TimeoutError`` past ``timeout``)."""
        return self.process.call(op, self.key, *args, timeout=timeout)

    def send(self, op: str, *args: Any) -> None:
        """One message about this model, not answered (lost if the process is down)."""
        self.process.send(op, (self.key, *args), None)

    def subscribe(self, listener: Listener) -> None:
        """``listener`` receives this model's unasked messages, and hears when the process has exited."""
        self.process.listeners[self.key] = listener

    def unsubscribe(self) -> None:
        self.process.listeners.pop(self.key, None)

    def fault(self) -> str | None:
        """Why this model cannot answer now (its inference process is being restarted), else None."""
        return None if self.key in self.process.live else self.process.down_reason

    def release(self) -> None:
        """The model version is unloaded: the inference process forgets it too."""
        self.unsubscribe()
        self.process.forget(self.key)


class Listener(Protocol):
    """What receives a model's unasked messages (``service.remote_scheduler.RemoteScheduler``); called in
    the process's reader thread."""

    def receive(self, kind: str, payload: tuple[Any, ...]) -> None: ...

    def lost(self, error: BaseException) -> None:
        """The inference process exited: whatever it was doing for this model is lost."""


class InferenceProcess:
    def __init__(self, settings: Settings):
        self.settings = settings
        #: models loaded in the inference process now running (a restarted one loads them again)
        self.live: set[int] = set()
        self.down_reason = "the inference process is starting"
        self.restarts = 0
        self._loads: dict[int, tuple[Any, ...]] = {}  # key -> load arguments, for a restart
        self._keys = itertools.count()
        self._calls = itertools.count()
        self._pending: dict[int, Future[Any]] = {}
        #: model key -> who receives its unasked messages
        self.listeners: dict[int, Listener] = {}
        self._lock = threading.Lock()  # sends, the pending calls and the connection
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._closing = False
        self._started = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Starts the supervisor thread, which starts the inference process (at this thread's priority:
        call it before the event loop is reniced)."""
        self._supervisor = threading.Thread(target=self._supervise, name="inference-process", daemon=True)
        priority.start_thread(self._supervisor)
        self._started.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Blocking: the inference process finishes the batches it was given and exits."""
        self._closing = True
        self.send("exit", (), None)
        # The supervisor reaps the process once it has closed the pipe: one thread waits for it, so a
        # process already reaped is never taken for a live one (and its pid never signalled).
        if self._supervisor is not None:
            self._supervisor.join(timeout)
        process = self._process
        if process is not None and process.exitcode is None:
            log.warning("inference process %d did not exit within %g s; killing it", process.pid, timeout)
            process.kill()
            process.join(timeout)

    # -- calls -----------------------------------------------------------------------------------
    def load(self, build: BuildFn, manifest: ModelManifest, version: int, version_dir: Path) -> RemoteModel:
        """Blocking: loads and warms up the model in the inference process; raises why it could not."""
        key = next(self._keys)
        args = (key, build, manifest, version, version_dir)
        self._loads[key] = args  # from here on, a restarted process loads it again
        restarts = self.restarts
        try:
            provider = self.call("load", *args)
        except BaseException:
            self._loads.pop(key, None)
            raise
        if self.restarts == restarts:  # else the restarted process is loading it again
            self.live.add(key)
        return RemoteModel(self, key, provider)

    def forget(self, key: int) -> None:
        self._loads.pop(key, None)
        self.live.discard(key)
        self.send("unload", (key,), None)

    def call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        """Blocking: sends one call and waits for its answer (raised when it is an error; ``TimeoutError``
        past ``timeout``)."""
        done: Future[Any] = Future()
        self.send(op, args, done)
        return done.result(timeout)

    def send(self, op: str, args: tuple[Any, ...], done: Future[Any] | None) -> None:
        with self._lock:
            if self._conn is None:
                error = InferenceProcessGone(self.down_reason)
                if done is not None:
                    done.set_exception(error)
                return
            call_id = next(self._calls)
            if done is not None:
                self._pending[call_id] = done
            try:
                self._conn.send((call_id, op, args))
            except OSError as exc:  # the process has just gone; the supervisor fails every pending call
                log.debug("inference process: send failed: %s", exc)

    # -- the supervisor thread ---------------------------------------------------------------------
    def _supervise(self) -> None:
        pause = 1.0
        while not self._closing:
            started = time.monotonic()
            try:
                conn = self._spawn()
            except Exception as exc:  # e.g. out of memory or processes: the models stay unavailable
                self.down_reason = f"the inference process cannot be started: {exc}"
                log.error("%s; trying again", self.down_reason)
            else:
                self._started.set()
                self._reload()
                code = self._read(conn)
                if self._closing:
                    break
                self.restarts += 1
                self.down_reason = f"the inference process exited (code {code}) and is being restarted"
                log.error("inference process exited with code %s: its calls failed; restarting it", code)
            self._started.set()
            pause = 1.0 if time.monotonic() - started > _STABLE_S else min(_MAX_PAUSE_S, pause * 2)
            time.sleep(pause)
        self._started.set()

    def _spawn(self) -> Connection:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=model_host.serve, args=(theirs, self.settings), name="rnnserve-inference", daemon=True
        )
        process.start()
        theirs.close()
        with self._lock:
            self._conn, self._process = ours, process
        return ours

    def _reload(self) -> None:
        """After a restart: every model loaded before is loaded again (without waiting here: the answers
        arrive through :meth:`_read`); each serves again once it is."""
        for key, args in list(self._loads.items()):
            done: Future[Any] = Future()
            done.add_done_callback(lambda f, key=key: self._reloaded(key, f))
            self.send("load", args, done)

    def _reloaded(self, key: int, done: Future[Any]) -> None:
        args = self._loads.get(key)
        if args is None:  # unloaded, or its first load failed, meanwhile
            self.send("unload", (key,), None)
            return
        if done.exception() is None:
            self.live.add(key)
            log.info("inference process: model %s loaded again", args[2].name)
        else:
            log.error("inference process: model %s failed to load again: %s", args[2].name, done.exception())

    def _read(self, conn: Connection) -> int | None:
        """Delivers answers until the process ends; then fails the calls still waiting. Returns its code."""
        while True:
            try:
                call_id, ok, value = conn.recv()
            except (EOFError, OSError):
                break
            if call_id is None:  # unasked: (None, kind, (key, ...))
                if (listener := self.listeners.get(value[0])) is not None:
                    listener.receive(ok, value[1:])
                continue
            with self._lock:
                done = self._pending.pop(call_id, None)
            if done is None:
                continue
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)
        with self._lock:
            self._conn = None
            self.live.clear()
            pending, self._pending = self._pending, {}
            process = self._process
        conn.close()
        if process is not None:
            process.join(5.0)  # it has closed its end: it is exiting
            if process.is_alive():
                process.kill()
                process.join()
        code = process.exitcode if process is not None else None
        error = InferenceProcessGone(f"the inference process exited (code {code}) during the call")
        for done in pending.values():
            done.set_exception(error)
        for listener in list(self.listeners.values()):
            listener.lost(error)
        return code
