"""Ensembles of separately trained runs, as one model: ``python -m training ensemble``.

    python -m training ensemble --name sentiment-lstm-x5 runs/sentiment-lstm-s1{3,4,5,6,7}/best.pt

Every member is an ordinary run (``python -m training train`` with its own seed and its own early stopping
on dev). This puts the runs side by side in the task's ensemble form (``model.members = K``: sentiment
averages the members' probabilities, NER their emission and CRF scores), so the exported graph keeps the
single-model contract and the service needs nothing new. The runs must agree on everything but the
seed and run bookkeeping: task, model arguments, vocabularies and training data. The result is evaluated
on every split and saved as ``runs/<name>/best.pt``, which ``python -m training export`` ships.

Training members apart rather than jointly (``model.members`` in one run) lets each member stop at its
own best dev epoch; a joint run stops all of them at the ensemble's best epoch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.checkpoints import load_run
from training.config import ConfigError
from training.derived import recipe, renamed_config, save_derived_run
from training.settings import TrainingSettings
from training.trainer import config_differences, without_paths

log = logging.getLogger(__name__)

_MEMBER_KEY = re.compile(r"^members\.(\d+)\.(.*)$")
#: config entries that may differ between the members of one ensemble
_BOOKKEEPING: tuple[tuple[str, ...], ...] = (
    ("name",),
    ("seed",),
    ("trainer", "threads"),
    ("trainer", "progress"),
    ("export", "name"),
    ("export", "description"),
)
#: data entries that follow from the seed (the number of perturbed copies a distilled run drew), so they
#: may differ between members as the seed does; the data files themselves must be the same
_SEED_DERIVED_DATA: tuple[tuple[str, ...], ...] = (("train", "perturbed_copies"),)


def _member_states(state_dict: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """A checkpoint's members' own state dicts."""
    members: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        match = _MEMBER_KEY.match(key)
        index, rest = int(match[1]), match[2]
        members.setdefault(index, {})[rest] = value
    return [members[i] for i in sorted(members)]


def _check_compatible(checkpoints: Sequence[dict[str, Any]], paths: Sequence[Path]) -> None:
    first, first_path = checkpoints[0], paths[0]
    if "members" not in first["model_args"]:
        raise ConfigError(f"the {first['task']!r} task has no ensemble form (no model.members)")
    base_args = {k: v for k, v in first["model_args"].items() if k != "members"}
    base_config = without_paths(first["config"], _BOOKKEEPING)
    base_data = without_paths(first["data"], _SEED_DERIVED_DATA)
    for checkpoint, path in zip(checkpoints[1:], paths[1:], strict=True):
        problems = []
        if checkpoint["task"] != first["task"]:
            problems.append(f"task {checkpoint['task']!r} vs {first['task']!r}")
        if {k: v for k, v in checkpoint["model_args"].items() if k != "members"} != base_args:
            problems.append("model arguments")
        changed = config_differences(base_config, without_paths(checkpoint["config"], _BOOKKEEPING))
        if changed:
            problems.append(f"config ({'; '.join(changed)})")
        if checkpoint["task_state"] != first["task_state"]:
            problems.append("vocabularies / labels")
        if without_paths(checkpoint["data"], _SEED_DERIVED_DATA) != base_data:
            problems.append("training data")
        if problems:
            raise ConfigError(f"{path} cannot join {first_path}: different {'; '.join(problems)}")


def merge_checkpoints(
    paths: Sequence[Path],
    name: str,
    settings: TrainingSettings,
    default: bool | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """The ensemble of the runs at ``paths``: evaluated, saved as ``runs/<name>/best.pt``, and returned.
    ``command`` is how it was invoked (recorded after the members' own training commands)."""

    if len(paths) < 2:
        raise ConfigError("an ensemble needs at least two checkpoints")
    checkpoints = [load_run(p) for p in paths]
    _check_compatible(checkpoints, paths)
    first = checkpoints[0]
    states = [state for checkpoint in checkpoints for state in _member_states(checkpoint["state_dict"])]
    state_dict = {f"members.{i}.{k}": v for i, state in enumerate(states) for k, v in state.items()}
    model_args = {**first["model_args"], "members": len(states)}
    described = first["config"].get("export", {}).get("description", "")
    config = renamed_config(
        first["config"], name, f"Ensemble of {len(states)} separately trained runs: {described}", default
    )
    config["model"]["members"] = len(states)
    members = [
        {
            "checkpoint": str(path),
            "seed": c["seed"],
            "best_epoch": c["best_epoch"],
            "epochs_run": c["epochs_run"],
            "command": c["command"],
            "metrics": c["metrics"],
        }
        for c, path in zip(checkpoints, paths, strict=True)
    ]
    return save_derived_run(
        first,
        config,
        model_args,
        state_dict,
        settings,
        recipe(checkpoints, command),
        best_epoch=max(c["best_epoch"] for c in checkpoints),
        epochs_run=sum(c["epochs_run"] for c in checkpoints),
        train_time_s=sum(c["train_time_s"] for c in checkpoints),
        history=[],
        members=members,
    )
