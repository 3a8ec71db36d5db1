"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

With several serving processes (``RNNSERVE_WORKERS``), ``python -m service`` sets ``PROMETHEUS_MULTIPROC_DIR``
before the workers start: every process then writes its values to files there (prometheus_client's
multiprocess mode) and ``/metrics``, whichever process answers it, reports the sum over all of them
(counters and histograms add up; queue depth is the sum over live processes; a model is ready when it is
ready in every live process).

HTTP metrics are labelled by route template (``/sentiment``, never the raw URL), method and status;
batching metrics by model name. Batchers get a ``BatchMetrics`` view so they do not depend on prometheus.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class BatchMetrics:
    """The per-model metric children a batcher updates."""

    queue_depth: Gauge
    batch_size: Histogram
    queue_wait: Histogram
    inference_time: Histogram
    items_failed: Counter


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_ENV) or None
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        r = self.registry
        self.requests = Counter(
            "rnnserve_http_requests", "HTTP requests", ["endpoint", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "rnnserve_http_request_duration_seconds",
            "HTTP request latency",
            ["endpoint", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "rnnserve_queue_depth",
            "items waiting in a batch queue",
            ["model"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            "rnnserve_batch_size", "items per model call", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "rnnserve_queue_wait_seconds",
            "time an item waits before its batch starts",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_time = Histogram(
            "rnnserve_inference_seconds",
            "time of one batch call (pre-processing, model, post-processing)",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.items_failed = Counter(
            "rnnserve_batch_items_failed", "items whose inference raised", ["model"], registry=r
        )
        self.held_connections = Counter(
            "rnnserve_held_connections",
            "refusals after which the connection was not read for its Retry-After"
            " (RNNSERVE_REFUSED_CONNECTION_HOLD_S)",
            registry=r,
        )
        self.model_ready = Gauge(
            "rnnserve_model_ready",
            "1 when the model is loaded and warm",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )

    def for_model(self, model: str) -> BatchMetrics:
        return BatchMetrics(
            queue_depth=self.queue_depth.labels(model),
            batch_size=self.batch_size.labels(model),
            queue_wait=self.queue_wait.labels(model),
            inference_time=self.inference_time.labels(model),
            items_failed=self.items_failed.labels(model),
        )

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:  # label lookups cost more than the observation; keep the children
            labels = (endpoint, method, str(status))
            children = self._request_children[key] = (
                self.requests.labels(*labels),
                self.latency.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The exposition: this app's registry, or every serving process's values in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def close(self) -> None:
        """At process exit: this process's live gauges leave the sums."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
