"""The profile summary: every sample counted once, in the innermost stage its stack reaches."""

from __future__ import annotations

import pytest

from loadtest.profile_path import stage_of, summarize

LOOP = "Thread main (x);Runner.run (asyncio/runners.py:118)"
WORKER = "Thread w (x);_worker (concurrent/futures/thread.py:83)"
RAW = "\n".join(
    [
        f"{LOOP};RequestContextMiddleware.__call__ (service/middleware.py:50);"
        "_IncludedRouter._match (fastapi/routing.py:1866) 20",
        f"{LOOP};answer_texts (service/api/texts.py:40);"
        "SentimentCodec.encode (service/tasks/sentiment/codec.py:30);"
        "WordTokenizer.tokenize (service/text.py:80) 10",
        f"{WORKER};DynamicBatcher._call (service/batching.py:350);"
        "Session.run (onnxruntime/capi/onnxruntime_inference_collection.py:220) 50",
        f"{LOOP};RequestContextMiddleware._record (service/middleware.py:99);"
        "Logger.info (logging/__init__.py:1) 5",
        f"{LOOP} 15",
    ]
)


def test_stages_take_the_innermost_match_and_add_up() -> None:
    summary = summarize(RAW)
    assert summary["samples"] == 100
    assert summary["stages"] == {
        "model call (ONNX Runtime)": 50.0,
        "routing": 20.0,
        "waiting (idle threads, event loop select)": 15.0,
        "tokenize and encode": 10.0,
        "access log and metrics": 5.0,
    }
    assert summary["inclusive"]["Runner.run (asyncio/runners.py)"] == 50.0
    assert summary["self"]["Session.run (onnxruntime/capi/onnxruntime_inference_collection.py)"] == 50.0


def test_a_frame_nothing_matches_is_other_and_no_samples_is_an_error() -> None:
    assert stage_of(["main (app.py)", "helper (app.py)"]) == "other"
    with pytest.raises(ValueError):
        summarize("")
