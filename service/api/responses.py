"""``JsonAnswer``: a ``JSONResponse`` rendered by pydantic-core's serializer.

Starlette renders with ``json.dumps``, about 3.5 µs for a one-text sentiment answer here against 0.45 µs
for ``pydantic_core.to_json``, on the path of every request. The bytes are the same compact JSON except
for how some floats are spelled (``0.00001`` for ``1e-05``): the same numbers. A non-finite float, which
``json.dumps`` would refuse, becomes ``null``; the models' answers are checked finite before this.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


def render_json(content: Any) -> bytes:
    """The service's JSON bytes: answers, error bodies and the middleware's refusals alike."""
    return pydantic_core.to_json(content)


class JsonAnswer(JSONResponse):
    def render(self, content: Any) -> bytes:
        return render_json(content)
