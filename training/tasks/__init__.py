"""Registry of training-task plug-ins (see :mod:`training.tasks.base` for the contract).

Adding a task: write ``training/tasks/<task>.py`` with a :class:`~training.tasks.base.TrainingTask` subclass
decorated with ``@register_task``, add its module name to ``_PLUGINS`` below, and put one TOML file per
experiment in ``training/configs/`` with ``task = "<name>"``. Nothing else in the package changes.
"""

from __future__ import annotations

import importlib

from training.tasks.base import TrainingTask

_REGISTRY: dict[str, type[TrainingTask]] = {}
# Modules that register plug-ins, imported on first lookup (torch-heavy, so not at package import).
_PLUGINS = (
    "training.tasks.sentiment",
    "training.tasks.generation",
    "training.tasks.ner",
    "training.tasks.translation",
)


def register_task(cls: type[TrainingTask]) -> type[TrainingTask]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"training task {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_plugins() -> None:
    for module in _PLUGINS:
        importlib.import_module(module)


def get_task(name: str) -> type[TrainingTask]:
    _load_plugins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown training task {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def task_names() -> list[str]:
    _load_plugins()
    return sorted(_REGISTRY)


__all__ = ["TrainingTask", "get_task", "register_task", "task_names"]
