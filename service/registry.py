"""The explicit registry of served tasks: one line per task. A new task adds its plug-in here."""

from __future__ import annotations

from service.plugin import TaskPlugin
from service.tasks.generation.plugin import PLUGIN as GENERATION
from service.tasks.ner.plugin import PLUGIN as NER
from service.tasks.sentiment.plugin import PLUGIN as SENTIMENT
from service.tasks.translation.plugin import PLUGIN as TRANSLATION


def default_plugins() -> list[TaskPlugin]:
    return [SENTIMENT, GENERATION, NER, TRANSLATION]
