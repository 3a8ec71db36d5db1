"""ONNX Runtime sessions: execution-provider choice, thread counts, and graph-contract checks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.config import Settings
from service.manifest import GraphSpec

log = logging.getLogger(__name__)

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class ModelLoadError(Exception):
    """A model cannot be served; the message is the one log line that says why."""


def select_providers(device: str, available: list[str] | None = None) -> list[str]:
    """``cuda``: CUDA (error if missing); ``auto``: CUDA when present; always CPU as fallback."""
    available = ort.get_available_providers() if available is None else available
    if device == "cuda":
        if CUDA not in available:
            raise ModelLoadError(f"device=cuda but ONNX Runtime has no {CUDA} (available: {available})")
        return [CUDA, CPU]
    if device == "auto" and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def fold_int8_weights(opts: ort.SessionOptions) -> ort.SessionOptions:
    """Weight-only int8 graphs (``DequantizeLinear`` on constant weights) are dequantized once, at load,
    into fp32 constants: int8 on disk, fp32 arithmetic, no per-run dequantization, and each row of a batch
    independent of the others (no shared activation scale). ORT otherwise keeps QDQ nodes for fusion."""
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return opts


def session_options(settings: Settings) -> ort.SessionOptions:
    opts = fold_int8_weights(ort.SessionOptions())
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = settings.ort_threads  # inter-op threads do nothing in sequential mode
    spin = "1" if settings.ort_allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    opts.log_severity_level = 3
    return opts


def _check_contract(session: ort.InferenceSession, spec: GraphSpec, path: Path) -> None:
    """The graph must have the inputs and outputs its manifest declares."""
    have_in = {i.name for i in session.get_inputs()}
    have_out = {o.name for o in session.get_outputs()}
    missing_in = [t.name for t in spec.inputs if t.name not in have_in]
    missing_out = [t.name for t in spec.outputs if t.name not in have_out]
    if missing_in or missing_out:
        raise ModelLoadError(
            f"{path.name}: graph lacks declared inputs {missing_in} / outputs {missing_out} "
            f"(graph has inputs {sorted(have_in)}, outputs {sorted(have_out)})"
        )


def read_external_data(path: Path, options: ort.SessionOptions) -> list[np.ndarray]:
    """Hands ONNX Runtime the contents of the external-data files the graph at ``path`` refers to (its
    shared ``weights.bin``) from memory. Left to itself ORT maps them into memory, and a file truncated
    or rewritten while serving would then crash the process (SIGBUS) or change the weights under it; read
    once, the weights stay what was loaded whatever happens to the folder. Returns the buffers, to be
    kept alive until the session exists."""
    if not hasattr(options, "add_external_initializers_from_files_in_memory"):  # ORT < 1.18: mapped
        return []
    graph = path.read_bytes()
    names = sorted(
        p.name
        for p in path.parent.iterdir()
        if p.is_file() and p.suffix != ".onnx" and p.name.encode() in graph
    )
    buffers = [np.fromfile(path.parent / name, dtype=np.uint8) for name in names]
    if names:
        options.add_external_initializers_from_files_in_memory(names, buffers, [b.size for b in buffers])
    return buffers


def create_session(path: Path, spec: GraphSpec, settings: Settings) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelLoadError(f"graph file {path} does not exist")
    providers = select_providers(settings.device)
    try:
        options = session_options(settings)
        external = read_external_data(path, options)
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        del external
    except Exception as exc:  # ORT raises its own exception types for corrupt or unsupported graphs
        raise ModelLoadError(f"{path.name}: ONNX Runtime cannot load it: {exc}".splitlines()[0]) from exc
    _check_contract(session, spec, path)
    return session


def provider_of(session: ort.InferenceSession) -> str:
    return session.get_providers()[0]
