"""The explicit registry of served tasks. A new task adds its ``TaskPlugin`` to this list, nothing else.

See ``service.serving`` for what a plug-in provides.
"""

from __future__ import annotations

from service.generation.plugin import PLUGIN as GENERATION
from service.plugins.ner import PLUGIN as NER
from service.plugins.sentiment import PLUGIN as SENTIMENT
from service.plugins.translation import PLUGIN as TRANSLATION
from service.serving import TaskPlugin


def default_plugins() -> list[TaskPlugin]:
    return [SENTIMENT, GENERATION, NER, TRANSLATION]
