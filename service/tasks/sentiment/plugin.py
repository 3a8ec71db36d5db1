"""The sentiment plug-in: its served model and its routes, as listed in ``service.registry``."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.sentiment.contract import TASK
from service.tasks.sentiment.model import build
from service.tasks.sentiment.routes import router
from service.tasks.sentiment.v2 import ADAPTER

PLUGIN = TaskPlugin(task=TASK, build=build, router=router, v2=ADAPTER)
