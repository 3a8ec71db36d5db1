"""A task plug-in: the manifest ``task`` it serves, how to build its served model, and its routes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter

from service.serving import BuildFn

if TYPE_CHECKING:
    from service.protocols.v2.adapter import V2Adapter


@dataclass(frozen=True)
class TaskPlugin:
    task: str
    build: BuildFn
    router: APIRouter | None = None
    #: how the task speaks the Open Inference Protocol (``service/tasks/<task>/v2.py``); None: not over v2
    v2: V2Adapter | None = None
    #: further routers of the task, e.g. generation's OpenAI-compatible ``/v1`` endpoints
    routers: tuple[APIRouter, ...] = ()
