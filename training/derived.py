"""Runs built from other runs' weights (ensembles, checkpoint averages): evaluated and saved like a run.

A derived run gets its own name (config ``name`` and ``export.name``), is evaluated on every split by its
task, and is saved as ``runs/<name>/best.pt`` + ``metrics.json``, so ``python -m training export`` ships it
like any trained run. Its ``command`` is the whole recipe: the source runs' training commands, then the
command that derived it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch

from training.checkpoints import FORMAT as CHECKPOINT_FORMAT
from training.machine import machine_description
from training.settings import TrainingSettings
from training.trainer import save_run

log = logging.getLogger(__name__)


def renamed_config(
    config: dict[str, Any], name: str, description: str, default: bool | None = None
) -> dict[str, Any]:
    """A copy of a run's config for the derived run ``name`` (``default=None`` keeps ``export.default``)."""
    config = json.loads(json.dumps(config))
    config["name"] = name
    export = config.setdefault("export", {})
    export["name"] = name
    export["description"] = description
    if default is not None:
        export["default"] = default
    return config


def recipe(sources: Sequence[dict[str, Any]], command: str | None) -> str:
    """The source runs' own commands (each once, in order), then the deriving ``command``."""
    commands = list(dict.fromkeys(source["command"] for source in sources))
    return " && ".join([*commands, command or " ".join(["python -m training", *sys.argv[1:]])])


def save_derived_run(
    base: dict[str, Any],
    config: dict[str, Any],
    model_args: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    settings: TrainingSettings,
    command: str,
    **fields: Any,
) -> dict[str, Any]:
    """Evaluates ``state_dict`` on every split and saves it as ``runs/<config name>/best.pt``.

    ``base`` (one source run's ``best.pt``) gives the task, vocabularies and data; ``fields`` (e.g.
    ``best_epoch``, ``members``) add to or replace the entries taken from it.
    """
    from training.registry import get_task

    task = get_task(base["task"]).from_checkpoint({**base, "config": config}, settings)
    task.load_data()
    model = task.build_model(model_args)
    model.load_state_dict(state_dict)
    model.eval()
    metrics = {split: task.evaluate(model, split) for split in task.eval_splits()}
    selection = base["selection_metric"]
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "task": base["task"],
        "config": config,
        "model_args": model_args,
        "task_state": base["task_state"],
        "state_dict": state_dict,
        "selection_metric": selection,
        "best_metric": metrics["dev"][selection],
        "best_epoch": base["best_epoch"],
        "epochs_run": base["epochs_run"],
        "train_time_s": base["train_time_s"],
        "history": base["history"],
        "metrics": metrics,
        "data": base["data"],
        "seed": base["seed"],
        "machine": machine_description(),
        "command": command,
        "parameters": sum(p.numel() for p in model.parameters()),
        **fields,
    }
    save_run(checkpoint, settings.runs_dir / config["name"])
    log.info("%s: dev %s %.4f", config["name"], selection, metrics["dev"][selection])
    return checkpoint
