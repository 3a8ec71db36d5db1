"""rnnserve's serving side: FastAPI + ONNX Runtime + numpy; never imports torch."""

__version__ = "0.1.0"
