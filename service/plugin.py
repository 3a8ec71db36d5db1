"""A task plug-in: the manifest ``task`` it serves, how to build its served model, and its routes."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

from service.serving import BuildFn


@dataclass(frozen=True)
class TaskPlugin:
    task: str
    build: BuildFn
    router: APIRouter | None = None
