"""Shared fixtures: one real (tiny) trained sentiment model repository per test session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def sentiment_model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding ``sentiment-tiny`` (LSTM, default) trained and exported by ``training``."""
    pytest.importorskip("torch")
    from tests.utils.model_factory import make_sentiment_repository

    root = tmp_path_factory.mktemp("trained-models")
    make_sentiment_repository(root)
    return root
