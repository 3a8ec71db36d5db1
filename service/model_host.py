"""The inference process's side: it holds the batched models' ONNX Runtime sessions and runs their batches.

Started by a serving process (``service.inference_process``) when ``RNNSERVE_INFERENCE_PROCESS`` is on.
It gets calls over one pipe, ``(call_id, op, args)``, and answers each with ``(call_id, ok, value)``:

* ``load (key, build, manifest, version, version_dir)``: creates the sessions, builds the task's model
  with ``build`` (the task plug-in's builder, pickled by reference), warms it up; answers its provider.
  Loads run one at a time in a thread of their own, so the models already loaded keep serving.
* ``predict (key, items)``: the model's ``predict_batch(items)`` in that model's own thread (one batch at
  a time per model, as in the serving process), answering one result or exception per item.
* ``gen_submit``, ``gen_cancel``, ``gen_close``: a generation model's requests, for the step scheduler it
  runs here once loaded (``service.remote_scheduler.HostedScheduler``), whose news is sent unasked as
  ``(None, kind, payload)``.
* ``unload (key)``: forgets the model (no answer).
* ``exit``: ends the process once the batches already given have been answered.

It has no HTTP, JSON or event loop: its GIL and its cores' time go to encoding, ONNX Runtime and
decoding, whatever the serving process is doing. It ignores SIGINT and SIGTERM (a terminal's Ctrl-C or
a whole-group SIGTERM reaches it too, while its serving process still drains through it) and ends when
its serving process closes the pipe or dies.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from service.config import Settings
from service.errors import InferenceError, ModelUnavailable
from service.logs import configure_logging, flush_logs
from service.remote_scheduler import STATS_INTERVAL_S, HostedScheduler
from service.serving import ScheduledModel, ServedModel, load_model
from service.workers import signal_when_parent_dies

log = logging.getLogger(__name__)


def serve(conn: Connection, settings: Settings) -> None:
    """The inference process's entry point (``multiprocessing``'s target)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    signal_when_parent_dies(signal.SIGKILL)
    configure_logging(settings.log_level, settings.log_format, sigterm_flush=False)
    try:
        ModelHost(conn, settings).run()
    finally:
        flush_logs()


class ModelHost:
    def __init__(self, conn: Connection, settings: Settings):
        self.conn = conn
        self.settings = settings
        self.models: dict[int, ServedModel] = {}
        self.threads: dict[int, ThreadPoolExecutor] = {}
        self.loader = ThreadPoolExecutor(1, thread_name_prefix="load")
        self.hosted: dict[int, HostedScheduler] = {}
        self._send_lock = threading.Lock()
        threading.Thread(target=self._report, name="report", daemon=True).start()

    def run(self) -> None:
        """Until the serving process closes the pipe (or dies)."""
        log.info("inference process %d started", os.getpid())
        while True:
            try:
                call_id, op, args = self.conn.recv()
            except (EOFError, OSError):
                break
            if op == "exit":
                break
            if op == "predict":
                key, items = args
                thread = self.threads.get(key)
                if thread is None:
                    self._reply(call_id, False, ModelUnavailable(f"model #{key} is not loaded here"))
                else:
                    thread.submit(self._predict, call_id, key, items)
            elif op == "gen_submit" or op == "gen_cancel":
                key, wire = args
                if (hosted := self.hosted.get(key)) is not None:  # else its serving side heard it has gone
                    (hosted.submit if op == "gen_submit" else hosted.cancel)(wire)
            elif op == "gen_close":
                threading.Thread(target=self._close_hosted, args=(call_id, *args), daemon=True).start()
            elif op == "load":
                self.loader.submit(self._load, call_id, *args)
            elif op == "unload":
                (key,) = args
                self.models.pop(key, None)
                if (thread := self.threads.pop(key, None)) is not None:
                    thread.shutdown(wait=False)  # after the batches it was given
                if (hosted := self.hosted.pop(key, None)) is not None:
                    threading.Thread(target=hosted.close, args=(False, 0), daemon=True).start()
        log.info("inference process %d exiting", os.getpid())

    def _load(
        self, call_id: int, key: int, build: Any, manifest: Any, version: int, version_dir: Any
    ) -> None:
        try:
            model = load_model(build, manifest, version, version_dir, self.settings)
        except Exception as exc:
            self._reply(call_id, False, exc)
            return
        self.models[key] = model
        if isinstance(model, ScheduledModel):
            self.hosted[key] = HostedScheduler(key, model, self._notify)
        else:
            self.threads[key] = ThreadPoolExecutor(1, thread_name_prefix=f"batch-{manifest.name}")
        self._reply(call_id, True, model.provider)

    def _close_hosted(self, call_id: int, key: int, drain: bool, timeout: float | None) -> None:
        hosted = self.hosted.get(key)
        if hosted is not None:
            hosted.close(drain, timeout)
        self._reply(call_id, True, None)

    def _report(self) -> None:
        while True:
            time.sleep(STATS_INTERVAL_S)
            for hosted in list(self.hosted.values()):
                hosted.report()

    def _predict(self, call_id: int, key: int, items: list[Any]) -> None:
        model = self.models.get(key)
        if model is None:
            self._reply(call_id, False, ModelUnavailable(f"model #{key} is not loaded here"))
            return
        try:
            results = list(model.predict_batch(items))  # type: ignore[attr-defined]
        except Exception as exc:
            self._reply(call_id, False, exc)
            return
        self._reply(call_id, True, results)

    def _reply(self, call_id: int, ok: bool, value: Any) -> None:
        self._write(call_id, ok, value)

    def _notify(self, kind: str, payload: tuple[Any, ...]) -> None:
        """An unasked message: ``(None, kind, payload)``."""
        self._write(None, kind, payload)

    def _write(self, first: int | None, second: Any, value: Any) -> None:
        with self._send_lock:
            try:
                self.conn.send((first, second, value))
            except (pickle.PicklingError, TypeError, AttributeError):  # an exception that does not pickle
                self.conn.send((first, second, _picklable(value)))
            except OSError:  # the serving process has gone; run() ends at its next read
                pass


def _picklable(value: Any) -> Any:
    """``value`` with every exception that does not pickle, in it or in its lists and tuples, replaced by an
    ``InferenceError`` naming it."""

    if isinstance(value, list | tuple):
        return type(value)(_picklable(item) for item in value)
    if not isinstance(value, BaseException):
        return value
    try:
        pickle.dumps(value)
    except Exception:
        return InferenceError(f"{type(value).__name__}: {value}")
    return value
