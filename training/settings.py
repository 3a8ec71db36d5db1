"""Where training reads data and writes runs and models: pydantic-settings, env prefix ``RNNSERVE_``.

``RNNSERVE_DATA_DIR`` points at the dataset root (``<data_dir>/<task>/...``); it defaults to
``../shared/data`` next to the repository when that folder exists, else ``<repo>/data``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def cwd_or_repo_path(path: str | Path) -> Path:
    """``path`` as given when it exists (or is absolute), else taken from the repository root: config keys
    such as ``distill.teacher = "models/..."`` work from any working directory."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def _default_data_dir() -> Path:
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else REPO_ROOT / "data"


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RNNSERVE_", extra="ignore", protected_namespaces=())

    data_dir: Path = Field(default_factory=_default_data_dir, description="dataset root: <data_dir>/<task>/")
    runs_dir: Path = Field(REPO_ROOT / "runs", description="checkpoints, metrics.json and plots per run")
    models_dir: Path = Field(REPO_ROOT / "models", description="the model repository exports go to")

    def resolve_data_path(self, path: str | Path) -> Path:
        """Absolute paths stay; a relative path is looked up under ``data_dir`` first, then the cwd."""
        path = Path(path).expanduser()
        if path.is_absolute():
            return path
        under_data = self.data_dir / path
        if under_data.exists() or not path.exists():
            return under_data
        return path.resolve()


@lru_cache
def get_training_settings() -> TrainingSettings:
    return TrainingSettings()
