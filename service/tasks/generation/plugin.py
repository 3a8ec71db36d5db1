"""The generation plug-in: its served model, its routes (``/generate`` and the OpenAI-compatible ``/v1``
ones) and its v2 adapter, as listed in ``service.registry``."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.generation.contract import TASK
from service.tasks.generation.model import build
from service.tasks.generation.openai import router as openai_router
from service.tasks.generation.routes import router
from service.tasks.generation.v2 import ADAPTER

PLUGIN = TaskPlugin(task=TASK, build=build, router=router, v2=ADAPTER, routers=(openai_router,))
