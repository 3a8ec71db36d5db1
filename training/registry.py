"""The registry of training tasks: one line per task (the module that defines its ``TrainingTask``).

Adding a task: write ``training/tasks/<task>/`` with a :class:`~training.task.TrainingTask` subclass in
``task.py`` decorated with ``@register_task``, add that module to ``_MODULES`` below, and put one TOML
file per experiment in ``training/configs/`` with ``task = "<name>"``. Nothing else in the package changes.
The modules are imported on first lookup (they import torch).
"""

from __future__ import annotations

import importlib

from training.task import TrainingTask

_MODULES = (
    "training.tasks.sentiment.task",
    "training.tasks.generation.task",
    "training.tasks.ner.task",
    "training.tasks.translation.task",
)
_REGISTRY: dict[str, type[TrainingTask]] = {}


def register_task(cls: type[TrainingTask]) -> type[TrainingTask]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"training task {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_tasks() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def get_task(name: str) -> type[TrainingTask]:
    _load_tasks()
    if name not in _REGISTRY:
        raise KeyError(f"unknown training task {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def task_names() -> list[str]:
    _load_tasks()
    return sorted(_REGISTRY)
