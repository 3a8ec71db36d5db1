"""The protocol's error answer: ``{"error": "<message>"}`` with the status the specification gives.

Handlers raise the service's own errors (``service.errors``); this turns them into the protocol's shape.
The specification answers every malformed request with 400, so the service's 422s become 400s; the
other statuses (404, 413, 499, 500, 503 with ``Retry-After``, 504) are kept.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse

from service.errors import BadRequest, ServiceError, public_message

log = logging.getLogger(__name__)


class BinaryDataUnsupported(BadRequest):
    """The binary tensor data extension (``Inference-Header-Content-Length``, ``binary_data_size``)."""

    code = "binary_data_unsupported"

    def __init__(self, where: str):
        super().__init__(
            f"{where}: binary tensor data is not supported; send the tensor as JSON 'data' "
            "(tritonclient: InferInput.set_data_from_numpy(array, binary_data=False))"
        )


def error_response(exc: ServiceError) -> JSONResponse:
    status = 400 if exc.status_code == 422 else exc.status_code
    if status >= 500:
        log.warning("%s: %s", exc.code, exc.message)
    return JSONResponse(
        {"error": public_message(exc.message)}, status_code=status, headers=exc.headers or None
    )
