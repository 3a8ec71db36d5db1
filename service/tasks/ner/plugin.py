"""The ner plug-in: its served model and its routes, as listed in ``service.registry``."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.ner.contract import TASK
from service.tasks.ner.model import build
from service.tasks.ner.routes import router
from service.tasks.ner.v2 import ADAPTER

PLUGIN = TaskPlugin(task=TASK, build=build, router=router, v2=ADAPTER)
