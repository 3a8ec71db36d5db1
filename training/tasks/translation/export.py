"""Translation export: the encoder graph and the decoder-step graph, and their parity with PyTorch.

The graphs follow ``service.tasks.translation.contract``. Exported graphs are evaluated with the service's
own :class:`~service.tasks.translation.model.TranslationModel` (its codec, session options, batching path
and search), so the manifest's figures are those of the served model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from service.config import Settings
from service.manifest import ModelManifest, ParityReport
from service.runtime import create_session
from service.tasks.translation.contract import BOS_ID, EOS_ID, GRAPH_FILES, SRC_IDS, SRC_LENGTHS
from service.tasks.translation.model import TranslationModel
from service.tasks.translation.model import build as build_served
from service.tasks.translation.search import Arrays, SearchParams
from training.export import export_onnx, ort_session
from training.tasks.translation.network import EncoderGraph, Seq2Seq, step_graph


def encoder_outputs(model: Seq2Seq) -> list[str]:
    return ["memory", "keys", *model.state_names]


def step_inputs(model: Seq2Seq) -> list[str]:
    return ["prev_tokens", *model.state_names, "memory", "keys", SRC_LENGTHS]


def step_outputs(model: Seq2Seq) -> list[str]:
    return ["log_probs", *(f"{name}_out" for name in model.state_names), "attention"]


@torch.no_grad()
def export_graphs(model: Seq2Seq, version_dir: Path) -> dict[str, Path]:
    """Writes the encoder and step graphs (``GRAPH_FILES``) with dynamic batch and source-length axes."""
    model.eval()
    # example sizes unlike any model constant (layers, sizes), so the exporter keeps the axes dynamic
    src = torch.randint(4, model.encoder.embedding.num_embeddings, (6, 11))
    lengths = torch.tensor([11, 4, 2, 9, 1, 6])
    encoder = export_onnx(
        EncoderGraph(model),
        (src, lengths),
        version_dir / GRAPH_FILES["encoder"],
        [SRC_IDS, SRC_LENGTHS],
        encoder_outputs(model),
        {SRC_IDS: {0: "batch", 1: "source"}, SRC_LENGTHS: {0: "batch"}},
    )
    memory, keys, states = model.encode(src, lengths)
    prev = torch.tensor([2, 5, 9, 4, 7, 3])
    batch_axis = {0: "rows"}
    step = export_onnx(
        step_graph(model),
        (prev, *states, memory, keys, lengths),
        version_dir / GRAPH_FILES["step"],
        step_inputs(model),
        step_outputs(model),
        {
            "prev_tokens": batch_axis,
            **{name: batch_axis for name in model.state_names},
            "memory": {0: "rows", 1: "source"},
            "keys": {0: "rows", 1: "source"},
            SRC_LENGTHS: batch_axis,
        },
    )
    return {"encoder": encoder, "step": step}


def torch_step(model: Seq2Seq):
    """The PyTorch model as the numpy search's step function (the reference of the ONNX step graph)."""
    graph = step_graph(model).eval()
    names = model.state_names

    @torch.no_grad()
    def step(tokens: np.ndarray, state: Arrays, memory: Arrays):
        args = [torch.from_numpy(state[n]) for n in names]
        args += [torch.from_numpy(memory[k]) for k in ("memory", "keys", SRC_LENGTHS)]
        log_probs, *new, attention = graph(torch.from_numpy(tokens), *args)
        return log_probs.numpy(), {n: s.numpy() for n, s in zip(names, new, strict=True)}, attention.numpy()

    return step


@torch.no_grad()
def torch_encode(model: Seq2Seq, feeds: dict[str, np.ndarray]) -> tuple[Arrays, Arrays]:
    """(state, memory) of a collated batch, as the service's search expects them."""
    model.eval()
    memory, keys, states = model.encode(
        torch.from_numpy(feeds[SRC_IDS]), torch.from_numpy(feeds[SRC_LENGTHS])
    )
    state = {n: s.numpy() for n, s in zip(model.state_names, states, strict=True)}
    return state, {"memory": memory.numpy(), "keys": keys.numpy(), SRC_LENGTHS: feeds[SRC_LENGTHS]}


@torch.no_grad()
def check_graph_parity(
    model: Seq2Seq, encoder: Path, step: Path, batches: Sequence[dict[str, np.ndarray]], tolerance: float
) -> ParityReport:
    """Max abs difference of every encoder output and of three decoder steps' log-probabilities."""
    model.eval()
    enc_session, step_session = ort_session(encoder), ort_session(step)
    reference = torch_step(model)
    names = encoder_outputs(model)
    worst, examples = 0.0, 0
    for feeds in batches:
        state, memory = torch_encode(model, feeds)
        expected = [memory["memory"], memory["keys"], *(state[n] for n in model.state_names)]
        got = enc_session.run(names, feeds)
        worst = max([worst, *(float(np.abs(a - b).max()) for a, b in zip(expected, got, strict=True))])
        tokens = np.full(len(feeds[SRC_LENGTHS]), 2, dtype=np.int64)
        for _ in range(3):
            log_probs, state_next, attention = reference(tokens, state, memory)
            outs = step_session.run(step_outputs(model), {"prev_tokens": tokens, **state, **memory})
            worst = max(
                worst, float(np.abs(outs[0] - log_probs).max()), float(np.abs(outs[-1] - attention).max())
            )
            state, tokens = state_next, log_probs.argmax(axis=1).astype(np.int64)
        examples += len(tokens)
    if worst > tolerance:
        raise AssertionError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {tolerance:g}")
    return ParityReport(
        max_abs_diff=worst, tolerance=tolerance, examples=examples, compared="encoder+log_probs"
    )


# --- evaluation of exported graphs through the service's decoding ----------------------------------------
def served_translator(
    manifest: ModelManifest,
    version_dir: Path,
    graphs: Mapping[str, Path] | None = None,
    threads: int = 1,
) -> TranslationModel:
    """The service's ``TranslationModel`` over ``graphs`` (by graph key; default: the manifest's files in
    ``version_dir``) and the tokenizer files of ``version_dir``, built by the plug-in with the service's
    session options."""
    settings = Settings(device="cpu", ort_intra_op_threads=threads, warmup=False)
    paths = graphs or {key: version_dir / spec.file for key, spec in manifest.graphs.items()}
    sessions = {key: create_session(paths[key], spec, settings) for key, spec in manifest.graphs.items()}
    version = int(version_dir.name) if version_dir.name.isdigit() else 1
    return build_served(manifest, version, version_dir, sessions, settings)


def translate_served(model: TranslationModel, sources: Sequence[str], params: SearchParams) -> list[str]:
    """Translations through ``TranslationModel.predict_batch`` (what a dynamic batch runs), in input order;
    sources go in by length in batches of the model's ``max_batch_size``, as a full queue would fill them."""
    lengths = [len(model.codec.encode_source(s)) for s in sources]
    order = sorted(range(len(sources)), key=lengths.__getitem__)
    out = [""] * len(sources)
    for start in range(0, len(order), model.max_batch_size):
        chunk = order[start : start + model.max_batch_size]
        results = model.predict_batch([(sources[i], params) for i in chunk])
        for i, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            out[i] = result["translation"]
    return out


def sentences_per_second(
    model: TranslationModel, sources: Sequence[str], params: SearchParams, per_call: int, repeats: int = 3
) -> float:
    """Sentences per second of ``predict_batch`` on ``sources``, ``per_call`` sentences per call (best of
    ``repeats`` passes after one warm-up pass)."""
    calls = [[(s, params) for s in sources[i : i + per_call]] for i in range(0, len(sources), per_call)]
    best = float("inf")
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        for call in calls:
            model.predict_batch(call)
        if attempt:
            best = min(best, time.perf_counter() - start)
    return len(sources) / best


def teacher_forced_probabilities(
    model: TranslationModel,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    steps: int = 3,
    batch_size: int = 32,
) -> list[np.ndarray]:
    """Next-token probabilities of the first ``steps`` decoder steps, fed the reference target tokens
    (``</s>`` past a target's end): what two precisions of one model are compared on."""
    out = []
    for start in range(0, len(sources), batch_size):
        encoded, gold = sources[start : start + batch_size], targets[start : start + batch_size]
        state, memory = model.encode(encoded)
        tokens = np.full(len(encoded), BOS_ID, dtype=np.int64)
        for t in range(steps):
            log_probs, state, _ = model.step(tokens, state, memory)
            out.append(np.exp(log_probs))
            tokens = np.array([g[t] if t < len(g) else EOS_ID for g in gold], dtype=np.int64)
    return out


def weight_bytes(path: Path) -> dict[str, int]:
    """Bytes of a graph's initializers by element type (what quantization turned into int8)."""
    sizes: dict[str, int] = {}
    for tensor in onnx.load(str(path)).graph.initializer:
        kind = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name
        sizes[kind] = sizes.get(kind, 0) + len(onnx.numpy_helper.to_array(tensor).tobytes())
    return sizes


def quantized_ops(path: Path) -> dict[str, int]:
    """Op counts that show what a quantizer did: ``MatMulInteger`` (dynamic), ``DequantizeLinear`` of
    weights (weight-only, RNN weights included), Gathers reading an int8 table, and the RNN ops."""
    graph = onnx.load(str(path)).graph
    int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    ops: dict[str, int] = {}
    for node in graph.node:
        kind = node.op_type
        if kind == "Gather" and node.input[0] in int8:
            kind = "Gather (int8 table)"
        if kind in ("MatMulInteger", "DequantizeLinear", "Gather (int8 table)", "GRU", "LSTM"):
            ops[kind] = ops.get(kind, 0) + 1
    return ops
