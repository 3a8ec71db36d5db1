"""Settings come from RNNSERVE_* variables, nested ones with ``__`` or JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import BatchingConfig, Settings
from service.runtime import CPU, CUDA, ModelLoadError, select_providers


def test_environment_overrides_with_nested_delimiter_and_json(monkeypatch):
    monkeypatch.setenv("RNNSERVE_MODEL_REPOSITORY", "/srv/models")
    monkeypatch.setenv("RNNSERVE_BATCHING__SENTIMENT__MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("RNNSERVE_LIMITS__MAX_TEXTS", "8")
    monkeypatch.setenv("RNNSERVE_DEFAULT_MODELS", '{"sentiment": "sentiment-gru"}')
    monkeypatch.setenv("RNNSERVE_LOG_FORMAT", "json")
    s = Settings()
    assert s.model_repository == Path("/srv/models")
    assert s.batching_for("sentiment").max_batch_size == 1
    assert s.batching_for("sentiment").max_queue_delay_ms == BatchingConfig().max_queue_delay_ms
    assert s.batching_for("ner") == BatchingConfig()
    assert s.limits.max_texts == 8 and s.limits.max_text_chars == 5000
    assert s.default_models == {"sentiment": "sentiment-gru"}
    assert s.log_format == "json"


def test_invalid_settings_are_rejected(monkeypatch):
    monkeypatch.setenv("RNNSERVE_DEVICE", "tpu")
    with pytest.raises(ValidationError):
        Settings()


def test_provider_selection():
    assert select_providers("cpu", [CUDA, CPU]) == [CPU]
    assert select_providers("auto", [CPU]) == [CPU]
    assert select_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert select_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(ModelLoadError, match="device=cuda"):
        select_providers("cuda", [CPU])


@pytest.mark.parametrize("enabled", [False, True])
def test_opentelemetry_setting_reaches_fastapi(tmp_path, enabled: bool) -> None:
    from service.main import create_app

    app = create_app(Settings(model_repository=tmp_path, opentelemetry=enabled), plugins=[])
    if not hasattr(app, "_telemetry"):
        pytest.skip("this FastAPI has no native telemetry")
    assert {k: app._telemetry[k] for k in ("tracing", "metrics", "logs")} == dict.fromkeys(
        ("tracing", "metrics", "logs"), enabled
    )


def test_short_calls_run_on_the_event_loop_unless_it_runs_at_a_lower_priority():
    assert Settings().batching_for("sentiment").inline_max_ms == 5.0
    assert Settings(batching={"ner": {"inline_max_ms": 2}}).batching_for("ner").inline_max_ms == 2
    niced = Settings(event_loop_nice=10, batching={"ner": {"inline_max_ms": 2}})
    assert niced.batching_for("ner").inline_max_ms == 0 == niced.batching_for("sentiment").inline_max_ms


def test_translation_keeps_every_call_in_its_model_thread_unless_told_otherwise():
    from service.tasks.translation.model import build

    assert Settings().batching_for("translation", build.batching_defaults).inline_max_ms == 0
    told = Settings(batching={"translation": {"inline_max_ms": 3}})
    assert told.batching_for("translation", build.batching_defaults).inline_max_ms == 3
