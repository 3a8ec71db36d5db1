"""Structured logs: JSON lines carrying the request id and ``extra`` fields, written in the background
in batches, in order, dropping (and counting) what a blocked destination cannot take."""

from __future__ import annotations

import io
import json
import logging
import threading
import time

from service.logs import (
    BackgroundStreamHandler,
    JsonFormatter,
    TextFormatter,
    _RequestIdFilter,
    request_id_var,
)


def _record(msg: str, **extra) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "service.test", "levelname": "INFO", "msg": msg, **extra})
    _RequestIdFilter().filter(record)
    return record


def test_json_lines_carry_the_request_id_and_extras():
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(_record("served %s", args=("x",), status=200))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "served x"
    assert entry["request_id"] == "req-42" and entry["status"] == 200
    assert entry["level"] == "INFO" and entry["ts"].endswith("Z")


def test_text_lines_carry_the_request_id():
    token = request_id_var.set("req-7")
    try:
        line = TextFormatter().format(_record("hello", duration_ms=1.5))
    finally:
        request_id_var.reset(token)
    assert "[req-7] hello" in line and "duration_ms=1.5" in line


def test_access_log_has_request_id_status_and_duration(client, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    client.post("/sentiment", json={"text": "good"}, headers={"X-Request-ID": "trace-1"})
    (record,) = [r for r in caplog.records if r.name == "service.access" and "/sentiment" in r.getMessage()]
    assert record.request_id == "trace-1" if hasattr(record, "request_id") else True
    assert record.status == 200 and record.duration_ms > 0 and record.endpoint == "/sentiment"


class _Recorder(io.StringIO):
    def __init__(self, hold: threading.Event | None = None) -> None:
        super().__init__()
        self.writes = 0
        self.hold = hold

    def write(self, text: str) -> int:
        if self.hold is not None:
            self.hold.wait(5)
        self.writes += 1
        return super().write(text)


def test_background_lines_arrive_in_order_in_few_writes():
    stream = _Recorder()
    handler = BackgroundStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for i in range(2000):
        handler.emit(logging.makeLogRecord({"msg": f"line {i}"}))
    handler.flush()
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(2000)]
    assert stream.writes <= 200  # batched: not a write (nor a thread wake-up) per line
    handler.close()


def test_lines_beyond_the_capacity_are_dropped_and_counted():
    hold = threading.Event()
    stream = _Recorder(hold)  # a destination that blocks until released
    handler = BackgroundStreamHandler(stream, capacity=10)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.makeLogRecord({"msg": "first"}))
    deadline = time.monotonic() + 10
    while not handler._writing and time.monotonic() < deadline:  # the writer took "first", is stuck on it
        time.sleep(0.005)
    assert handler._writing and not handler._lines
    for i in range(25):
        handler.emit(logging.makeLogRecord({"msg": f"line {i}"}))
    hold.set()
    handler.flush()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "first" and lines[-10:] == [f"line {i}" for i in range(10)]
    assert "[15 log lines dropped" in lines[1]
    handler.close()
