"""TorchServe handler (runs in a TorchServe worker): a batch of ``{"text": ...}`` requests -> one model call.

Packed into the model archive by ``torch-model-archiver --handler``; the archive's ``peer.json`` names the
model repository and the model. The work is the project's: ``loadtest.peers.engine.SentimentEngine``
(the codec and an ONNX Runtime session with the service's options), imported from the repository on
``PYTHONPATH``. Each answer is the body ``POST /sentiment`` gives for one text, compact JSON as the
service writes it (TorchServe would otherwise indent a returned dict).
"""

from __future__ import annotations

import json
from pathlib import Path

from ts.torch_handler.base_handler import BaseHandler

from loadtest.peers.engine import SentimentEngine


def request_text(row: dict) -> str:
    body = row.get("body", row.get("data"))
    if isinstance(body, (bytes, bytearray)):
        body = json.loads(body)
    return body["text"]


class SentimentHandler(BaseHandler):
    def initialize(self, context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        peer = json.loads((model_dir / "peer.json").read_text(encoding="utf-8"))
        self.engine = SentimentEngine.load(Path(peer["repository"]), peer["model"])
        self.engine.predict(["good ."])  # warm-up, as the service does before it reports ready
        self.initialized = True

    def handle(self, data, context):
        results = self.engine.predict([request_text(row) for row in data])
        out = []
        for i, result in enumerate(results):
            context.set_response_content_type(i, "application/json")
            body = json.dumps(self.engine.answer(result), ensure_ascii=False, separators=(",", ":"))
            out.append(body.encode("utf-8"))
        return out
