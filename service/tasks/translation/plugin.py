"""The translation plug-in: its served model and its routes, as listed in ``service.registry``."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.translation.contract import TASK
from service.tasks.translation.model import build
from service.tasks.translation.routes import router
from service.tasks.translation.v2 import ADAPTER

PLUGIN = TaskPlugin(task=TASK, build=build, router=router, v2=ADAPTER)
