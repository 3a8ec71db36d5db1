"""``JsonAnswer``: the same JSON values as Starlette's ``JSONResponse``, rendered by pydantic-core."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse
from hypothesis import given
from hypothesis import strategies as st

from service.api.responses import JsonAnswer

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_the_same_values_as_starlettes_json_response(value):
    ours, theirs = JsonAnswer(value), JSONResponse(value)
    assert json.loads(ours.body) == json.loads(theirs.body)
    assert ours.headers["content-length"] == str(len(ours.body))
    assert ours.headers["content-type"] == "application/json"


def test_an_answer_is_compact_utf8():
    answer = JsonAnswer({"label": "positive", "scores": {"négatif": 0.25, "positif": 0.75}})
    assert answer.body == '{"label":"positive","scores":{"négatif":0.25,"positif":0.75}}'.encode()
