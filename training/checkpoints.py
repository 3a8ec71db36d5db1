"""A run's ``best.pt``: its format version, the one loader every reader uses, and the record it holds.

``FORMAT`` is stored in every ``best.pt``. A file of an earlier format is upgraded on load, here and only
here, so the networks, the export and the derived runs read one shape:

* format 1 (no ``format`` entry): models with an ensemble form (``model_args["members"]``) kept a single
  member's weights at the top level of ``state_dict``, and the training record (epochs, time, seed,
  machine, command, data) could be missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.config import ConfigError
from training.settings import cwd_or_repo_path

FORMAT = 2
_RECORD_DEFAULTS = {
    "epochs_run": 0,
    "best_epoch": 0,
    "train_time_s": 0.0,
    "machine": "",
    "command": "",
    "data": {},
}


def load_run(path: Path) -> dict[str, Any]:
    """A ``best.pt`` in the current format (upgraded in memory if it is older)."""
    return upgrade(torch.load(path, map_location="cpu", weights_only=False), path)


def upgrade(checkpoint: dict[str, Any], path: Path | str = "checkpoint") -> dict[str, Any]:
    version = checkpoint.get("format", 1)
    if version > FORMAT:
        raise ConfigError(f"{path} has checkpoint format {version}; this code reads up to {FORMAT}")
    if version == 1:
        checkpoint = dict(checkpoint)
        state = checkpoint["state_dict"]
        if "members" in checkpoint["model_args"] and not any(k.startswith("members.") for k in state):
            checkpoint["state_dict"] = {f"members.0.{key}": value for key, value in state.items()}
        checkpoint.setdefault("seed", checkpoint["config"].get("seed", 0))
        for key, value in _RECORD_DEFAULTS.items():
            checkpoint.setdefault(key, value)
        checkpoint["format"] = FORMAT
    return checkpoint


def warm_start(model: nn.Module, path: str | Path) -> None:
    """Loads a run's weights into ``model`` (built for the same architecture); a relative path is taken from
    the working directory, else from the repository."""
    file = cwd_or_repo_path(path)
    if not file.is_file():
        raise ConfigError(f"trainer.init_from {path}: no such checkpoint")
    state = load_run(file)["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"trainer.init_from {path}: not this model's architecture ({exc})") from None
