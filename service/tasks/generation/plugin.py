"""The generation plug-in: its served model and its routes, as listed in ``service.registry``."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.generation.contract import TASK
from service.tasks.generation.model import build
from service.tasks.generation.routes import router

PLUGIN = TaskPlugin(task=TASK, build=build, router=router)
