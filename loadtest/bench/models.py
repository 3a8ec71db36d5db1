"""Which model a benchmark measures: the one the service would serve for a task, resolved by the service's
own repository scan (so ``default`` flags, pinned versions and broken folders count exactly as they do
when serving)."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.manifest import ModelManifest
from service.metrics import Metrics
from service.registry import default_plugins
from service.repository import ModelRepository


def single_model_repository(models: Path, name: str, folder: Path) -> Path:
    """A repository in ``folder`` holding only ``name`` (a link), so a server loads nothing else."""
    repo = folder / "models"
    repo.mkdir()
    (repo / name).symlink_to((models / name).resolve(), target_is_directory=True)
    return repo


def pick_model(models: Path, task: str, name: str | None = None) -> tuple[ModelManifest, int, Path]:
    """(manifest, version, version folder) of ``name``, or of ``task``'s default model in ``models``."""
    repo = ModelRepository(Settings(model_repository=models), default_plugins(), Metrics())
    repo.scan()
    name = name or repo.defaults.get(task)
    entry = repo.entries.get(name) if name else None
    if entry is None or entry.version is None or entry.manifest is None:
        raise SystemExit(f"no usable {task} model {name or ''} in {models} (entries: {sorted(repo.entries)})")
    return entry.manifest, entry.version, models / entry.name / str(entry.version)
