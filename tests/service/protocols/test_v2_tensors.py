"""Reading a BYTES tensor of the JSON encoding."""

from __future__ import annotations

import pytest

from service.errors import BadRequest
from service.protocols.v2.schemas import RequestInput
from service.protocols.v2.tensors import strings


def tensor(data, shape=None, datatype="BYTES", **fields) -> RequestInput:
    return RequestInput(name="text", shape=shape or [len(data)], datatype=datatype, data=data, **fields)


def test_flat_and_nested_data_give_the_strings_in_row_major_order() -> None:
    assert strings(tensor(["a", "b"])) == ["a", "b"]
    assert strings(tensor([["a"], ["b", ["c"]]], shape=[3])) == ["a", "b", "c"]
    assert strings(tensor([], shape=[0])) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": ["a"], "shape": [2]}, "has shape [2] but 1 elements"),
        ({"data": ["a"], "shape": [1, 1]}, "must have shape [N]"),
        ({"data": ["a"], "shape": [-1]}, "must have shape [N]"),
        ({"data": [True]}, "element 0 is bool, not a string"),
        ({"data": [["a", None]], "shape": [2]}, "element 1 is NoneType"),
        ({"data": ["a"], "datatype": "bytes"}, "datatype BYTES, not 'bytes'"),
        ({"data": None, "shape": [1]}, "has no 'data'"),
        ({"data": ["a"], "parameters": {"binary_data_size": 5}}, "binary tensor data is not supported"),
        ({"data": ["a"], "parameters": {"content_type": "str"}}, "input parameters are not supported"),
    ],
)
def test_malformed_tensors_are_bad_requests(kwargs, message) -> None:
    data = kwargs.pop("data")
    with pytest.raises(BadRequest) as error:
        strings(tensor(data, **kwargs))
    assert message in error.value.message
