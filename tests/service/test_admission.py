"""Admission by time: refusals by expected wait, refusal before the body is read, and refusal of every
POST while the process drains."""

from __future__ import annotations

import asyncio
import json

import pytest

from service.admission import AdmissionMiddleware
from service.drain import Drain
from service.errors import QueueFull
from tests.service.test_batching import Recorder, make, wait_entered


def test_a_request_is_refused_when_the_work_ahead_would_outlast_the_wait_bound():
    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_queue_wait_s=1.0)
        await b.start()
        busy = asyncio.create_task(b.submit(0))
        await wait_entered(rec)
        b.cost.observe(1, 0.3)  # as measured: 0.3 s a single item, no larger batch measured yet
        queued = asyncio.create_task(b.submit_many([1, 2]))  # 3 items ahead: just under 0.9 s, admitted
        await asyncio.sleep(0.01)
        assert b.refusal() is None
        more = asyncio.create_task(b.submit(3))  # admitted (0.9 s ahead of it); now 1.2 s are ahead
        await asyncio.sleep(0.01)
        assert b.refusal() is not None
        with pytest.raises(QueueFull) as info:
            await b.submit(9)
        rec.gate.set()
        results = await asyncio.gather(busy, queued, more)
        await b.close()
        return results, info.value, rec.batches

    results, err, batches = asyncio.run(scenario())
    assert results == [0, [2, 4], 6]
    assert err.status_code == 503 and "expected to take" in err.message
    assert int(err.headers["Retry-After"]) >= 1
    assert all(9 not in batch for batch in batches)  # the refused item was never queued


def test_the_model_time_is_measured_from_the_batches():
    async def scenario():
        b = make(lambda items: [x for x in items])
        await b.start()
        assert not b.cost.measured and b.refusal() is None  # nothing measured yet: admit
        await b.submit_many(list(range(8)))
        await b.close()
        return b.cost

    cost = asyncio.run(scenario())
    assert cost.measured and 0 < cost.batch_s(8) < 0.01


def test_a_queue_is_priced_as_the_batches_it_will_run_as():
    """A model whose calls cost 0.2 s plus 5 ms an item: 40 queued items are one batch of 0.4 s, not 40
    single-item calls of 0.205 s (8.2 s), so they are admitted under a 1 s bound."""

    async def scenario():
        rec = Recorder(hold=True)
        b = make(rec, max_batch_size=64, max_queue_wait_s=1.0)
        await b.start()
        busy = asyncio.create_task(b.submit(0))
        await wait_entered(rec)
        b.cost.observe(1, 0.205)
        b.cost.observe(32, 0.36)
        queued = asyncio.create_task(b.submit_many(list(range(1, 41))))
        await asyncio.sleep(0.01)
        wait = b.expected_wait_s()
        refusal = b.refusal()
        rec.gate.set()
        await asyncio.gather(busy, queued)
        await b.close()
        return wait, refusal

    wait, refusal = asyncio.run(scenario())
    assert 0.4 < wait < 0.7  # the running call's rest (under 0.205 s) and one batch of 40 (about 0.4 s)
    assert refusal is None


class _Repository:
    def __init__(self, refusal):
        self._refusal = refusal
        self.asked: list[tuple] = []

    def refusal(self, task=None, name=None):
        self.asked.append((task, name))
        return self._refusal


async def _call(middleware, path: str) -> tuple[dict, bytes, list]:
    sent: list[dict] = []
    received: list[str] = []

    async def receive():
        received.append("body")
        raise AssertionError("the body was read")

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    await middleware(scope, receive, send)
    return sent[0], sent[1]["body"] if len(sent) > 1 else b"", received


def test_a_refusal_is_answered_before_the_body_is_read():
    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    refusal = QueueFull("model is overloaded", limit=8, headers={"Retry-After": "3"})
    repository = _Repository(refusal)
    middleware = AdmissionMiddleware(app, repository, {"/sentiment": "sentiment"}, Drain(1.0))
    start, body, received = asyncio.run(_call(middleware, "/sentiment"))
    assert start["status"] == 503 and (b"retry-after", b"3") in start["headers"]
    assert json.loads(body)["error"]["code"] == "queue_full"
    assert received == [] and reached == []  # neither the body nor the app was touched
    asyncio.run(_call(middleware, "/v2/models/sentiment-gru/versions/1/infer"))
    assert repository.asked == [("sentiment", None), (None, "sentiment-gru")]


def test_an_admitted_request_goes_on_untouched():
    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = AdmissionMiddleware(app, _Repository(None), {"/sentiment": "sentiment"}, Drain(1.0))
    start, _, _ = asyncio.run(_call(middleware, "/sentiment"))
    assert start["status"] == 200 and reached == ["/sentiment"]


def test_admitted_posts_are_counted_until_they_end_even_when_they_fail():
    drain = Drain(1.0)
    seen: list[int] = []

    async def app(scope, receive, send):
        seen.append(drain.in_flight)
        if scope["path"] == "/fails":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = AdmissionMiddleware(app, _Repository(None), {}, drain)
    asyncio.run(_call(middleware, "/v1/completions"))
    with pytest.raises(RuntimeError):
        asyncio.run(_call(middleware, "/fails"))
    assert seen == [1, 1] and drain.in_flight == 0


def test_while_draining_every_post_is_refused_with_connection_close():
    drain = Drain(1.0)
    drain.start()
    reached: list[str] = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    repository = _Repository(None)
    middleware = AdmissionMiddleware(app, repository, {"/sentiment": "sentiment"}, drain)
    for path in ("/sentiment", "/v1/completions", "/v2/repository/models/x/load"):
        start, body, received = asyncio.run(_call(middleware, path))
        assert start["status"] == 503 and json.loads(body)["error"]["code"] == "shutting_down"
        assert (b"retry-after", b"1") in start["headers"] and (b"connection", b"close") in start["headers"]
        assert received == []
    scope = {"type": "http", "method": "GET", "path": "/ready", "headers": []}
    asyncio.run(middleware(scope, None, _discard))  # reads go on: /ready says why it is not ready
    assert reached == ["/ready"] and repository.asked == [] and drain.in_flight == 0


async def _discard(message) -> None:
    pass
