"""Structured logging: plain text or one JSON object per line, each record carrying the request id.

The request id lives in a context variable set by the request middleware, so any log line written while
serving a request (route, batcher submit, error handler) carries it without passing it around.

Lines are formatted where they are logged and written by a thread of their own
(:class:`BackgroundStreamHandler`): a log destination that blocks (a pipe nobody reads, a stalled
collector) or fails (a closed pipe, a full disk) never stalls serving. Lines that cannot be written in
time are dropped and counted.
"""

from __future__ import annotations

import atexit
import collections
import contextvars
import json
import logging
import signal
import sys
import threading
import time
from typing import Any, TextIO

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else passed via ``extra=`` goes into the JSON object.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "color_message"}


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class _SecondCache:
    """``strftime`` of a record's second, computed once per second (a log line per request at thousands
    of requests a second would otherwise spend a fifth of its formatting here)."""

    def __init__(self, fmt: str, convert: Any) -> None:
        self.fmt, self.convert = fmt, convert
        self.second, self.text = -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.second, self.text = second, time.strftime(self.fmt, self.convert(second))
        return self.text


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = _SecondCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._second(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self._second = _SecondCache(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self.default_msec_format % (self._second(record.created), record.msecs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


class BackgroundStreamHandler(logging.Handler):
    """Formats a record in the logging thread and hands the line to a writer thread.

    At most ``capacity`` lines wait; beyond that new lines are dropped, and the next line written says
    how many were lost. A write that fails is dropped too (no traceback to the same broken stream). At
    exit, waiting lines get ``flush_timeout_s`` to be written; the writer never holds the process up.
    """

    #: the writer wakes at most this often: under load a line per request arrives, and waking for each
    #: would cost a thread switch (and the GIL) per request; many lines go out in one write instead
    LINGER_S = 0.01

    def __init__(self, stream: TextIO, capacity: int = 10_000, flush_timeout_s: float = 2.0):
        super().__init__()
        self.stream = stream
        self.capacity = capacity
        self.flush_timeout_s = flush_timeout_s
        self.dropped = 0
        # A deque and an event rather than a queue.Queue: appending takes no lock, and the event is set
        # only when the writer sleeps on it (once per LINGER_S at most), not for every line.
        self._lines: collections.deque[str | None] = collections.deque()
        self._wake = threading.Event()
        self._writing = False
        self._writer = threading.Thread(target=self._write_lines, name="log-writer", daemon=True)
        self._writer.start()
        atexit.register(self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken record must not fail the caller (nor print to a stuck stderr)
            self.dropped += 1
            return
        self._put(line)

    def _put(self, line: str | None) -> None:
        if line is not None and len(self._lines) >= self.capacity:
            self.dropped += 1
            return
        self._lines.append(line)
        if not self._wake.is_set():
            self._wake.set()

    def _write_lines(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.LINGER_S)
            self._wake.clear()
            self._writing = True
            batch = []
            while self._lines:
                batch.append(self._lines.popleft())
            lines = [line for line in batch if line is not None]
            try:
                if self.dropped:
                    dropped, self.dropped = self.dropped, 0
                    note = f"[{dropped} log lines dropped: the log destination was too slow or failing]"
                    lines.insert(0, note)
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            except Exception:  # EPIPE, ENOSPC, a closed stream: the lines are lost, serving goes on
                pass
            finally:
                self._writing = False
            if None in batch:
                return

    def flush(self) -> None:
        """Waits (at most ``flush_timeout_s``) until every waiting line is written."""
        deadline = time.monotonic() + self.flush_timeout_s
        while (self._lines or self._writing) and self._writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self.flush()
        self._put(None)
        super().close()


def flush_logs() -> None:
    """Writes the lines still waiting for the background writer (within its flush bound)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BackgroundStreamHandler):
            handler.flush()


def _flush_then_die(signum: int, frame: Any) -> None:
    flush_logs()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def flush_logs_on_sigterm() -> None:
    """uvicorn ends a graceful shutdown by raising the SIGTERM it caught again, under the handler it
    found; with the default one the process dies at once, before any exit hook, and the lines still
    waiting for the log writer ("shutdown complete") would be lost. This handler writes them first
    (within the writer's flush bound), then dies of the signal as before."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _flush_then_die)


def configure_logging(level: str = "INFO", fmt: str = "text", sigterm_flush: bool = True) -> None:
    """Routes the service's and uvicorn's loggers through one handler on stderr (written in the
    background, see :class:`BackgroundStreamHandler`). ``sigterm_flush=False`` leaves the SIGTERM handler
    alone (a serving process configured after uvicorn installed its own; it flushes at shutdown)."""
    # Neither format prints the caller's file and line, nor thread or process names: not looking them
    # up makes every record cheaper (the logging HOWTO's "Optimization"; an access-log line per request).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BackgroundStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_rnnserve", False):
            root.removeHandler(old)
            old.close()
    handler._rnnserve = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    if sigterm_flush:
        flush_logs_on_sigterm()
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the service writes its own access log
