"""Answers of the real service (HTTP, batched with each other) for a model folder the tests exported."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.manifest import ModelManifest
from tests.service.conftest import serving, settings_for


def served_probabilities(model_dir: Path, texts: list[str]) -> np.ndarray:
    """``POST /sentiment`` of ``texts`` to a service over ``model_dir``'s repository: ``[N, C]`` scores in
    the manifest's label order."""
    manifest = ModelManifest.load(model_dir)
    with serving(settings_for(model_dir.parent)) as client:
        response = client.post("/sentiment", json={"texts": texts, "model": manifest.name})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    return np.array([[answer["scores"][label] for label in manifest.labels] for answer in results])
