"""Ray Serve peer (runs in the Ray venv): ``python -m loadtest.peers.ray_app --port P --model NAME ...``.

The driver starts a local Ray instance on 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray
use the loopback address as the node address instead of probing for an outward one; no dashboard,
no usage stats, short temp dir for Ray's AF_UNIX sockets), starts Serve's HTTP proxy on
127.0.0.1:P, deploys ``Sentiment`` with ``@serve.batch`` as one application per replica count in
``--replicas`` (route ``/sentiment-r<N>``, ``{"text": ...}`` in, the body the service's ``/sentiment``
answers out), prints ``READY`` and serves until SIGTERM. The work is the
project's: ``loadtest.peers.engine.SentimentEngine`` (the codec and an ONNX Runtime session with the
service's options).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from loadtest.peers.engine import SentimentEngine
from loadtest.peers.servers import ray_route


@serve.deployment
class Sentiment:
    def __init__(self, repository: str, model: str, max_batch_size: int, batch_wait_s: float):
        self.engine = SentimentEngine.load(Path(repository), model)
        self.engine.predict(["good ."])  # warm-up, as the service does before it reports ready
        self.predict.set_max_batch_size(max_batch_size)
        self.predict.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def predict(self, texts: list[str]) -> list[dict]:
        return self.engine.predict(texts)

    async def __call__(self, request: Request) -> Response:
        payload = await request.json()
        result = await self.predict(payload["text"])
        body = json.dumps(self.engine.answer(result), ensure_ascii=False, separators=(",", ":"))
        return Response(body.encode("utf-8"), media_type="application/json")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--repository", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--replicas", type=int, nargs="+", default=[2])
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--batch-wait-s", type=float, default=0.002)
    p.add_argument("--max-ongoing-requests", type=int, default=256)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--temp-dir", default="/tmp/ray-bench")
    args = p.parse_args(argv)

    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=100 * 1024 * 1024,
        _temp_dir=args.temp_dir,
    )
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": args.port},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    for replicas in args.replicas:
        app = Sentiment.options(
            num_replicas=replicas,
            max_ongoing_requests=args.max_ongoing_requests,
            # replicas are placed by count, not by CPU reservation (the proxy and controller need CPU too)
            ray_actor_options={"num_cpus": 0},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        ).bind(args.repository, args.model, args.max_batch_size, args.batch_wait_s)
        serve.run(app, name=f"sentiment-r{replicas}", route_prefix=ray_route(replicas), blocking=False)
    print("READY", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
