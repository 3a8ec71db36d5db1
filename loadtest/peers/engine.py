"""The sentiment inference every peer handler runs: the project's codec around one ONNX Runtime session.

Imported inside the peers' own environments (the repository on ``PYTHONPATH``), so it uses only what the
codec and the session need: ``service.manifest``, ``service.tasks.sentiment.codec`` and
``service.runtime.create_session`` with ``service.config.Settings()`` — the service's own session options
(``session_options``: weight-only int8 folded at load by ``fold_int8_weights``, i.e.
``session.disable_quant_qdq``; ``RNNSERVE_ORT_INTRA_OP_THREADS`` intra-op threads, 1 by default; no
spinning), read from the same ``RNNSERVE_*`` environment the service reads. No FastAPI, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.config import Settings
from service.manifest import ModelManifest, version_dirs
from service.runtime import create_session
from service.tasks.sentiment.codec import SentimentCodec
from service.tasks.sentiment.contract import GRAPH, PROBABILITIES


def newest_version(model_dir: Path) -> tuple[int, Path]:
    found = version_dirs(model_dir)
    if not found:
        raise FileNotFoundError(f"{model_dir} has no numbered version folder")
    return found[-1]


@dataclass
class SentimentEngine:
    name: str
    version: int
    codec: SentimentCodec
    session: Any

    @classmethod
    def load(cls, repository: Path, name: str) -> SentimentEngine:
        model_dir = Path(repository) / name
        manifest = ModelManifest.load(model_dir)
        version, version_dir = newest_version(model_dir)
        spec = manifest.graphs[GRAPH]
        session = create_session(version_dir / spec.file, spec, Settings())
        return cls(name, version, SentimentCodec.from_manifest(manifest, version_dir), session)

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """One ``{"label", "score", "scores"}`` per text, in order: encode, pad, one model call, decode.

        (The service also splits a batch into length groups within 2× of each other; for the benchmark's
        15-25-token sentences that is always one group, so the model calls are the same.)
        """
        feeds = self.codec.collate([self.codec.encode(t) for t in texts])
        (probabilities,) = self.session.run([PROBABILITIES], feeds)
        return self.codec.decode_batch(probabilities)

    def answer(self, result: dict[str, Any]) -> dict[str, Any]:
        """The body ``POST /sentiment`` answers for one text."""
        return {"model": self.name, "results": [result]}
