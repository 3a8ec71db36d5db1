"""Checkpoint averaging: one model whose weights are the mean of a run's last epochs.

    python -m training train --config training/configs/translation_gru.toml --trainer.keep_epochs=5
    python -m training average runs/translation-gru --last 5 --name translation-gru-avg5

The mean of the weights of the last few epochs of one run (Junczys-Dowmunt et al. 2016; fairseq's
``average_checkpoints``) usually scores a little better than any one of them, at no cost in size or speed:
the result is an ordinary model of the same architecture. The epochs come from ``runs/<run>/epochs/``
(``trainer.keep_epochs``); the run's ``best.pt`` gives the task, vocabularies and data. The average is
evaluated on every split and saved as ``runs/<name>/best.pt`` for ``python -m training export``; whether it
ships instead of the run's best epoch is decided on dev (both dev figures are logged and recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.checkpoints import load_run
from training.config import ConfigError
from training.derived import recipe, renamed_config, save_derived_run
from training.settings import TrainingSettings
from training.trainer import BEST_FILE, EPOCHS_DIR

log = logging.getLogger(__name__)


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors; other entries (counters) from the last state."""
    keys = states[0].keys()
    if any(state.keys() != keys for state in states):
        raise ConfigError("the epochs to average have different parameters (not one run's epochs?)")
    averaged = {}
    for key in keys:
        last = states[-1][key]
        if last.is_floating_point():
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(0).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def epoch_files(run_dir: Path, last: int) -> list[Path]:
    files = sorted((run_dir / EPOCHS_DIR).glob("epoch-*.pt"))
    if len(files) < last:
        raise ConfigError(
            f"{run_dir / EPOCHS_DIR} holds {len(files)} epoch(s), fewer than --last {last}; "
            "train with --trainer.keep_epochs=N (N >= the epochs to average)"
        )
    return files[-last:]


def average_run(
    run_dir: Path,
    last: int,
    name: str,
    settings: TrainingSettings,
    default: bool | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """The average of ``run_dir``'s last ``last`` kept epochs: evaluated, saved as ``runs/<name>/best.pt``."""
    if last < 2:
        raise ConfigError("averaging needs at least two epochs (--last 2 or more)")
    best_path = run_dir / BEST_FILE
    if not best_path.exists():
        raise ConfigError(f"{best_path} does not exist: average the epochs of a finished run")
    base = load_run(best_path)
    saved = [torch.load(f, map_location="cpu", weights_only=False) for f in epoch_files(run_dir, last)]
    epochs = [s["epoch"] for s in saved]
    described = base["config"].get("export", {}).get("description", "")
    config = renamed_config(
        base["config"], name, f"Mean weights of epochs {epochs[0]}-{epochs[-1]}: {described}", default
    )
    checkpoint = save_derived_run(
        base,
        config,
        base["model_args"],
        average_states([s["state_dict"] for s in saved]),
        settings,
        recipe([base], command),
        best_epoch=epochs[-1],
        averaged={
            "run": str(run_dir),
            "epochs": epochs,
            "dev_per_epoch": [s["dev"] for s in saved],
            "run_best_epoch": base["best_epoch"],
            "run_best_metrics": base["metrics"],
        },
    )
    metric = base["selection_metric"]
    log.info(
        "averaged epochs %s: dev %s %.4f (the run's best epoch %d: %.4f)",
        epochs,
        metric,
        checkpoint["metrics"]["dev"][metric],
        base["best_epoch"],
        base["metrics"]["dev"][metric],
    )
    return checkpoint
