"""Service settings: one pydantic-settings class, every knob under the ``RNNSERVE_`` environment prefix.

Nested values use ``__`` as delimiter or JSON, e.g. ``RNNSERVE_BATCHING__SENTIMENT__MAX_BATCH_SIZE=1`` or
``RNNSERVE_BATCHING='{"sentiment": {"max_batch_size": 1}}'``. A new task needs no new setting for its
batching knobs: ``Settings.batching_for(task)`` falls back to ``BatchingConfig()`` defaults.
The full table is in docs/service.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RNNSERVE_"
_REPO_ROOT = Path(__file__).resolve().parent.parent


class BatchingConfig(BaseModel):
    """Dynamic batching knobs of one task (Triton's names)."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(64, ge=1, description="items per model call; 1 turns batching off")
    max_queue_delay_ms: float = Field(
        0.0,
        ge=0,
        description="under load, how long a batch may wait to fill (0: a free worker takes what is queued at"
        " once; texts that arrive while it runs form the next batch); an idle server never waits",
    )
    max_queue_size: int = Field(1024, ge=1, description="queued items before new requests get 503")
    bucket_ratio: float = Field(
        2.0,
        ge=1.0,
        allow_inf_nan=False,
        description="a batch is split where the longest item exceeds this × the shortest (1e9: never)",
    )
    timeout_s: float = Field(10.0, gt=0, description="per-request time limit (queue + inference); 504 after")
    max_queue_wait_s: float = Field(
        1.0,
        gt=0,
        description="admission: a request is refused at once (503 + Retry-After) when the work queued ahead"
        " of it is expected to take longer than this (the running batch's rest, then the queue in full"
        " batches, each priced by the model time measured for its size)",
    )
    stall_after_s: float = Field(
        30.0,
        gt=0,
        description="a model call running longer than this is stuck: the model is unready (/ready says why),"
        " requests queued behind it and new ones get 503 until the call returns",
    )
    inline_max_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="a batch whose calls of its size have taken at most this much CPU time runs on the event"
        " loop's thread instead of the model's worker thread, saving the hand-off between threads (0: every"
        " batch in the worker thread; so it is with event_loop_nice above 0 or an inference process)",
    )
    step_prefill_max_tokens: int = Field(
        64,
        ge=0,
        description="generation: prompts of at most this many tokens are read through the shared step calls"
        " (one token per step) instead of a separate prefill call; 0: always a prefill call",
    )


class LimitsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_text_chars: int = Field(5000, ge=1, description="characters per text")
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_body_bytes: int = Field(1_048_576, ge=1, description="request body size, checked before parsing")


# What an API key may contain: RFC 6750's bearer-token characters (so it fits an Authorization header).
API_KEY_PATTERN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
ALL_MODELS = "*"


def normalize_api_keys(value: object) -> dict[str, list[str]]:
    """``{"key": ["model", ...] | ["*"]}`` or a list of keys (each may use every model), checked."""
    if isinstance(value, list | tuple):
        value = {key: [ALL_MODELS] for key in value}
    if not isinstance(value, dict):
        raise ValueError('expected {"key": ["model", ...]} or ["key", ...]')
    out: dict[str, list[str]] = {}
    for key, models in value.items():
        if not isinstance(key, str) or not API_KEY_PATTERN.fullmatch(key) or len(key) > 512:
            raise ValueError("an API key is 1 to 512 characters of A-Z a-z 0-9 . _ ~ + / - (then =)")
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
            raise ValueError(f"the models of a key are a non-empty list of model names or {ALL_MODELS!r}")
        out[key] = list(models)
    return out


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        protected_namespaces=(),
        hide_input_in_errors=True,  # a mistyped setting must not print the API keys
    )

    model_repository: Path = Field(_REPO_ROOT / "models", description="the Triton-style model repository")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int | None = Field(
        None, ge=1, description="serving processes sharing the port; default: one per available core"
    )
    reuse_port: bool = Field(
        True,
        description="Linux, several serving processes: each listens on a socket of its own (SO_REUSEPORT) and"
        " the kernel spreads new connections evenly over them; false: one shared socket, from which an idle"
        " process takes every connection waiting (service/listener.py)",
    )
    # By default the cores are shared out among the serving processes (one thread each with one process
    # per core): these RNNs are small, the HTTP event loop needs a core too, and on a small shared machine
    # an ORT thread pool without spin-waiting can stall on busy cores (docs/benchmarks.md).
    ort_intra_op_threads: int | None = Field(
        None, ge=0, description="ONNX Runtime intra-op threads per session; default: cores / workers"
    )
    ort_allow_spinning: bool = Field(
        False, description="let ORT threads spin-wait (faster on a dedicated box, steals CPU from HTTP here)"
    )
    event_loop_stall_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="a serving process whose event loop has not run for this long (a short model call on the"
        " loop's thread that never returns) ends itself so that a fresh one replaces it"
        " (service/loop_watchdog.py, gunicorn's worker timeout); 0: never",
    )
    event_loop_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Linux: the event loop thread runs this many nice levels below the model threads, so"
        " that refusing an overload slows the work already admitted less (service/priority.py); it costs"
        " throughput at capacity, so 0 (one priority for all threads) is the default",
    )
    refused_connection_hold_s: float = Field(
        1.0,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="after a refusal (503 or 429 with Retry-After) on a keep-alive connection, read nothing"
        " more from that connection for at most this long (and at most Retry-After): enforces the backoff on"
        " clients that retry at once (service/read_hold.py). Requests that came through a proxy (Forwarded,"
        " X-Forwarded-For or Via) are not held; 0 (never hold) behind a proxy that sets none of these and"
        " shares its upstream connections between clients",
    )
    inference_process: bool = Field(
        False,
        description="each serving process runs its models in an inference process of its own, which holds"
        " their sessions and runs their batches and generation's steps with its own GIL"
        " (service/inference_process.py)",
    )
    gil_switch_interval_ms: float = Field(
        5.0,
        gt=0,
        le=100,
        description="Python's GIL switch interval: the longest a model thread waits for the GIL while the"
        " event loop holds it (service/priority.py)",
    )
    batching: dict[str, BatchingConfig] = Field(default_factory=dict, description="per-task overrides")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    default_models: dict[str, str] = Field(
        default_factory=dict, description="task -> model name; else the manifest marked default"
    )
    pinned_versions: dict[str, int] = Field(
        default_factory=dict, description="model name -> version; else the newest version"
    )
    warmup: bool = True
    listen_when_ready: bool = Field(
        False,
        description="load and warm the models before the port accepts connections: for a balancer without"
        " readiness checks (nginx), a starting replica then refuses connections, which the balancer retries"
        " elsewhere, instead of answering 503 while it loads; /health does not answer meanwhile either. The"
        " port also closes at once at SIGTERM (no drain with it open), which such a balancer also retries",
    )
    model_control: Literal["none", "poll", "explicit"] = Field(
        "none",
        description="after start-up: none (the repository is read once), poll (re-scanned every "
        "model_poll_interval_s; changed models are reloaded and switched in) or explicit (the "
        "/v2/repository load and unload routes)",
    )
    model_poll_interval_s: float = Field(
        5.0, gt=0, allow_inf_nan=False, description="poll mode: seconds between two scans of the repository"
    )
    gc_freeze: bool = Field(
        True, description="after loading, exempt the start-up heap from garbage collection"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "text"
    access_log: bool = True
    opentelemetry: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry instrumentation (needs an OTel SDK set up in the "
        "process); off, the service reports through /metrics only and skips per-request provider lookups",
    )
    shutdown_timeout_s: float = Field(
        30.0,
        gt=0,
        description="bound on each shutdown step: the admitted requests, those still running, the queues",
    )
    api_keys: dict[str, list[str]] = Field(
        default_factory=dict,
        description='API keys and the models each may use: {"key": ["*"]} (every model), {"key": '
        '["sentiment-gru", ...]}, or a list of keys; none: no key is asked for',
    )
    api_keys_file: Path | None = Field(
        None, description="a JSON file with more keys, in the same form as api_keys (read at start-up)"
    )
    public_paths: list[str] = Field(
        default_factory=lambda: ["/health", "/ready", "/v2/health/live", "/v2/health/ready"],
        description="paths answered without a key when keys are set (add /metrics for an open scrape)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='origins allowed to call the API from a browser page on another origin ("*": any);'
        " none: CORS off",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: object) -> dict[str, list[str]]:
        return normalize_api_keys(value)

    def batching_for(self, task: str, defaults: Mapping[str, Any] | None = None) -> BatchingConfig:
        """The task's batching knobs: those the settings name, else the task's own ``defaults``, else
        ``BatchingConfig``'s."""
        config = self.batching.get(task, BatchingConfig())
        unset = {k: v for k, v in (defaults or {}).items() if k not in config.model_fields_set}
        if self.event_loop_nice and config.inline_max_ms:
            unset["inline_max_ms"] = 0.0  # a call on the event loop's thread would run at its lower priority
        return config.model_copy(update=unset) if unset else config

    @property
    def process_count(self) -> int:
        """Serving processes: ``workers``, else one per core this process may run on."""
        return self.workers or available_cores()

    @property
    def ort_threads(self) -> int:
        """Intra-op threads per session: the setting, else the cores shared out among the processes."""
        if self.ort_intra_op_threads is not None:
            return self.ort_intra_op_threads
        return max(1, available_cores() // self.process_count)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@lru_cache
def get_settings() -> Settings:
    return Settings()
