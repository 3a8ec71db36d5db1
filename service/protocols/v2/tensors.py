"""Tensors of the JSON encoding: reading a ``BYTES`` input of shape ``[N]`` and building output tensors.

Input data may be flat or nested (the specification allows both); it is checked against its shape and
datatype with one pass over the elements, and never copied element by element when it is already flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import BadRequest
from service.protocols.v2.errors import BinaryDataUnsupported
from service.protocols.v2.schemas import RequestInput

BYTES, FP32, INT32, INT64 = "BYTES", "FP32", "INT32", "INT64"


def tensor(name: str, datatype: str, shape: Sequence[int], data: list[Any]) -> dict[str, Any]:
    """One output tensor of the answer (``data`` flat, in row-major order)."""
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": data}


def bytes_tensor(name: str, values: list[str]) -> dict[str, Any]:
    return {"name": name, "datatype": BYTES, "shape": [len(values)], "data": values}


def _flatten(data: list[Any], name: str, out: list[str]) -> list[str]:
    for value in data:
        if type(value) is str:
            out.append(value)
        elif isinstance(value, list):
            _flatten(value, name, out)
        else:
            raise BadRequest(
                f"input '{name}': element {len(out)} is {type(value).__name__}, not a string "
                "(BYTES elements are JSON strings)"
            )
    return out


def strings(tensor: RequestInput) -> list[str]:
    """The strings of a ``BYTES`` tensor of shape ``[N]``, checked against its shape."""
    name = tensor.name
    if tensor.parameters and "binary_data_size" in tensor.parameters:
        raise BinaryDataUnsupported(f"input '{name}'")
    if tensor.datatype != BYTES:
        raise BadRequest(f"input '{name}' must have datatype BYTES, not {tensor.datatype!r}")
    if len(tensor.shape) != 1 or tensor.shape[0] < 0:
        raise BadRequest(f"input '{name}' must have shape [N] (one string per text), not {tensor.shape}")
    if tensor.parameters:
        raise BadRequest(f"input '{name}': input parameters are not supported ({sorted(tensor.parameters)})")
    data = tensor.data
    if data is None:
        raise BadRequest(f"input '{name}' has no 'data'")
    values = data if all(type(value) is str for value in data) else _flatten(data, name, [])
    if len(values) != tensor.shape[0]:
        raise BadRequest(f"input '{name}' has shape {tensor.shape} but {len(values)} elements")
    return values
