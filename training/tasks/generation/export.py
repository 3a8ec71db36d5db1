"""Export of a character LM to the model repository: a prefill graph and a one-step graph, their parity with
PyTorch over a multi-step rollout, and what the fp32-or-int8 choice measures on them (dev losses on the step
graph, logits of a fixed rollout through both graphs).

The graphs follow ``service.tasks.generation.contract``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper

from service.manifest import GraphSpec, ParityReport, TensorSpec
from service.tasks.generation.contract import GRAPH_FILES, state_output
from service.text import pad_batch
from training.export import _rnn_export_support, ort_session
from training.tasks.generation.network import CharLM, PrefillGraph, StepGraph
from training.weight_sharing import random_feed

PREFILL_FILE, STEP_FILE = GRAPH_FILES["prefill"], GRAPH_FILES["step"]
# ONNX forbids an output named like an input, so new states are ``<name>_out``.
output_name = state_output


def _state_specs(model: CharLM, suffix: str = "") -> list[TensorSpec]:
    dims = [model.num_layers, -1, model.hidden_size]
    return [TensorSpec(name=f"{n}{suffix}", dtype="float32", dims=dims) for n in model.state_names]


def _export(
    module: torch.nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes
) -> None:
    # The shared exporter's LSTM/GRU while_loop decompositions, kept for the whole export: without them a
    # second export in the same process unrolls the recurrence and fixes the prompt length.
    with _rnn_export_support():
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=18,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            external_data=False,
        )
    program.save(str(path))


@torch.no_grad()
def export_graphs(model: CharLM, version_dir: Path) -> dict[str, Path]:
    """Writes ``prefill.onnx`` and ``step.onnx`` with dynamic batch (and prompt-length) axes."""
    model = model.eval()
    version_dir.mkdir(parents=True, exist_ok=True)
    names = model.state_names
    vocab_size = model.head.out_features
    batch, time = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("time", min=1, max=1 << 16)
    states = model.zero_state(3)

    ids = torch.randint(4, vocab_size, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    _export(
        PrefillGraph(model),
        (ids, lengths),
        version_dir / PREFILL_FILE,
        ["input_ids", "lengths"],
        ["logits", *map(output_name, names)],
        {"input_ids": {0: batch, 1: time}, "lengths": {0: batch}},
    )
    state_shapes = {name: {1: batch} for name in names}
    _export(
        StepGraph(model),
        (ids[:, 0], *states),
        version_dir / STEP_FILE,
        ["input_ids", *names],
        ["logits", *map(output_name, names)],
        {"input_ids": {0: batch}, "state": tuple(state_shapes[n] for n in names)},
    )
    return {key: version_dir / file for key, file in GRAPH_FILES.items()}


def graph_specs_of(model: CharLM) -> dict[str, GraphSpec]:
    """The manifest's entries for the two graphs (state dimensions written out, not read back)."""
    vocab_size = model.head.out_features
    logits = TensorSpec(name="logits", dtype="float32", dims=[-1, vocab_size])
    return {
        "prefill": GraphSpec(
            file=PREFILL_FILE,
            inputs=[
                TensorSpec(name="input_ids", dtype="int64", dims=[-1, -1]),
                TensorSpec(name="lengths", dtype="int64", dims=[-1]),
            ],
            outputs=[logits, *_state_specs(model, "_out")],
        ),
        "step": GraphSpec(
            file=STEP_FILE,
            inputs=[TensorSpec(name="input_ids", dtype="int64", dims=[-1]), *_state_specs(model)],
            outputs=[logits, *_state_specs(model, "_out")],
        ),
    }


@torch.no_grad()
def rollout_parity(
    model: CharLM, version_dir: Path, prompts: list[list[int]], steps: int, tolerance: float
) -> ParityReport:
    """ONNX Runtime against PyTorch: a padded prefill of ``prompts`` of different lengths, then ``steps``
    greedy decoding steps (PyTorch's argmax tokens fed to both, so the two follow the same path).

    Compares logits and states at every step; raises ``AssertionError`` past ``tolerance`` or if ORT's
    argmax ever differs from PyTorch's.
    """
    model = model.eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    prefill = ort.InferenceSession(
        str(version_dir / PREFILL_FILE), options, providers=["CPUExecutionProvider"]
    )
    step = ort.InferenceSession(str(version_dir / STEP_FILE), options, providers=["CPUExecutionProvider"])
    names = model.state_names

    # PyTorch reference: each prompt alone, unpadded.
    ref_logits, ref_states = [], []
    for prompt in prompts:
        logits, state = model(torch.tensor([prompt]))
        ref_logits.append(logits[0, -1])
        ref_states.append(state)
    torch_logits = torch.stack(ref_logits)
    torch_state = tuple(torch.cat([s[k] for s in ref_states], dim=1) for k in range(len(names)))

    ids, lengths = pad_batch(prompts)
    outputs = prefill.run(None, {"input_ids": ids, "lengths": lengths})
    worst = 0.0

    def compare(
        onnx_outputs: list[np.ndarray], logits: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> None:
        nonlocal worst
        for got, want in zip(onnx_outputs, (logits, *state), strict=True):
            worst = max(worst, float(np.abs(got - want.numpy()).max()))
        if not np.array_equal(onnx_outputs[0].argmax(-1), logits.numpy().argmax(-1)):
            raise AssertionError("ONNX and PyTorch disagree on the greedy token")

    compare(outputs, torch_logits, torch_state)
    onnx_state = outputs[1:]
    for _ in range(steps):
        tokens = torch_logits.argmax(-1)
        logits, torch_state = model(tokens.unsqueeze(1), torch_state)
        torch_logits = logits[:, 0]
        outputs = step.run(None, {"input_ids": tokens.numpy(), **dict(zip(names, onnx_state, strict=True))})
        compare(outputs, torch_logits, torch_state)
        onnx_state = outputs[1:]
    if worst > tolerance:
        raise AssertionError(f"ONNX/PyTorch max abs difference {worst:.2e} exceeds {tolerance:.0e}")
    return ParityReport(
        max_abs_diff=worst,
        tolerance=tolerance,
        examples=len(prompts),
        compared=f"logits and states after a padded prefill and {steps} greedy steps",
    )


def onnx_losses(step_graph: Path, val_ids: np.ndarray, bos_id: int, segments: int, seq_len: int) -> dict:
    """The validation losses of :mod:`training.tasks.generation.metrics`, measured on ``step_graph`` with
    ONNX Runtime loaded as the service loads it (int8 weights folded at load): ``loss`` over ``segments``
    parallel streams of the held-out text, ``window_loss`` over its zero-state windows of ``seq_len``
    characters."""
    session = ort_session(step_graph)
    state_inputs = [i for i in session.get_inputs() if i.name != "input_ids"]
    outputs = ["logits", *(output_name(i.name) for i in state_inputs)]

    def mean_nll(targets: np.ndarray) -> float:
        """Rows of ``targets`` read in parallel from ``<bos>`` and a zero state."""
        batch, length = targets.shape
        layers, hidden = state_inputs[0].shape[0], state_inputs[0].shape[2]
        states = [np.zeros((layers, batch, hidden), np.float32) for _ in state_inputs]
        tokens = np.full(batch, bos_id, dtype=np.int64)
        total = 0.0
        for t in range(length):
            feeds = {"input_ids": tokens, **{i.name: s for i, s in zip(state_inputs, states, strict=True)}}
            logits, *states = session.run(outputs, feeds)
            logits = logits.astype(np.float64)
            peak = logits.max(axis=1)
            log_norm = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))
            total += float((log_norm - logits[np.arange(batch), targets[:, t]]).sum())
            tokens = targets[:, t]
        return total / targets.size

    segments = min(segments, len(val_ids))
    per_segment = len(val_ids) // segments
    windows = len(val_ids) // seq_len
    return {
        "loss": mean_nll(val_ids[: per_segment * segments].reshape(segments, per_segment)),
        "window_loss": mean_nll(val_ids[: windows * seq_len].reshape(windows, seq_len)),
    }


def rollout_logits(
    prefill_graph: Path,
    step_graph: Path,
    prompts: list[list[int]],
    steps: int,
    tokens: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Logits of a padded prefill of ``prompts`` and of ``steps`` decoding steps through the two graphs
    (loaded as the service loads them). The steps feed ``tokens`` (``[steps, len(prompts)]``) when given,
    else the greedy token of each step, so that two precisions can be compared on the same path: the
    greedy tokens of one, fed to the other. Returns the logits (prefill first) and the tokens fed."""
    prefill, step = ort_session(prefill_graph), ort_session(step_graph)
    names = [i.name for i in step.get_inputs() if i.name != "input_ids"]
    ids, lengths = pad_batch(prompts)
    logits, *state = prefill.run(None, {"input_ids": ids, "lengths": lengths})
    collected, fed = [logits], []
    for t in range(steps):
        token = logits.argmax(-1).astype(np.int64) if tokens is None else tokens[t]
        fed.append(token)
        logits, *state = step.run(None, {"input_ids": token, **dict(zip(names, state, strict=True))})
        collected.append(logits)
    return collected, np.stack(fed) if fed else np.zeros((0, len(prompts)), np.int64)


def is_int8(graph: Path) -> bool:
    """Whether a graph holds int8 weights (weight-only ``DequantizeLinear`` or int8 tables, or dynamic
    quantization's integer ops); its external data is not read."""
    model = onnx.load(str(graph), load_external_data=False)
    quantized_ops = {"DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM"}
    return any(n.op_type in quantized_ops for n in model.graph.node) or any(
        i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for i in model.graph.initializer
    )


def external_tensors(graph: Path) -> dict[str, tuple[str, int, int]]:
    """Initializer name -> (location, offset, length) of the graph's tensors stored in external files."""
    model = onnx.load(str(graph), load_external_data=False)
    found = {}
    for tensor in model.graph.initializer:
        entries = {e.key: e.value for e in tensor.external_data}
        if "location" in entries:
            found[tensor.name] = (entries["location"], int(entries.get("offset", 0)), int(entries["length"]))
    return found


def _runs(graph: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort_session(graph).run(None, feed)


def reuse_transposed_weights(graph: Path, reference: Path, min_bytes: int = 1024) -> list[str]:
    """Rewrites ``graph`` so that its 2-D weights that are a transposed (and row-permuted) copy of one of
    ``reference``'s initializers are computed from that copy at load (``Gather`` rows, ``Transpose``:
    constants, folded once by ONNX Runtime), storing the copy's exact bytes instead; :func:`share_weights`
    then stores them once for both graphs.

    Why: the LSTM prefill graph recomputes the cell state with ``x @ W_ih.T`` and ``h @ W_hh.T`` and the
    heads differ in layout (``Gemm`` with ``transB`` in one graph, ``MatMul`` in the other). Exported fp32,
    those are run-time ``Transpose`` nodes of the shared parameters, but int8 quantization folds constants
    first, which turns them into second copies of nearly every weight (gate rows reordered for the ONNX
    ``LSTM`` op in one copy, transposed in the other). Returns the rewritten initializers; raises
    ``AssertionError`` (leaving ``graph`` as it was) unless the outputs stay bit-identical.
    """
    model = onnx.load(str(graph))
    anchors = [numpy_helper.to_array(t) for t in onnx.load(str(reference)).graph.initializer]
    anchor_bytes = {a.tobytes() for a in anchors}
    nodes, rewritten = [], []
    for tensor in list(model.graph.initializer):
        if len(tensor.dims) != 2:
            continue
        weight = numpy_helper.to_array(tensor)
        if weight.nbytes < min_bytes or weight.tobytes() in anchor_bytes:
            continue
        rows, cols = weight.shape
        wanted = np.ascontiguousarray(weight.T)  # [cols, rows]: the anchor's layout, rows permuted
        for anchor in anchors:
            if anchor.dtype != weight.dtype or anchor.size != weight.size or anchor.shape[-1] != rows:
                continue
            source = anchor.reshape(cols, rows)
            index: dict[bytes, int] = {}
            for i, row in enumerate(source):
                index.setdefault(row.tobytes(), i)
            order = [index.get(row.tobytes()) for row in wanted]
            if None in order:
                continue
            name = tensor.name
            model.graph.initializer.remove(tensor)
            model.graph.initializer.append(numpy_helper.from_array(source, f"{name}_transposed"))
            gathered = f"{name}_transposed"
            if order != list(range(cols)):
                model.graph.initializer.append(
                    numpy_helper.from_array(np.asarray(order, np.int32), f"{name}_row_order")
                )
                gathered = f"{name}_gathered"
                nodes.append(
                    helper.make_node(
                        "Gather", [f"{name}_transposed", f"{name}_row_order"], [gathered], axis=0
                    )
                )
            nodes.append(helper.make_node("Transpose", [gathered], [name], perm=[1, 0]))
            rewritten.append(name)
            break
    if not rewritten:
        return []
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, *existing])
    onnx.checker.check_model(model)
    feed = random_feed(ort_session(graph))
    before = _runs(graph, feed)
    original = graph.read_bytes()
    onnx.save(model, str(graph))
    after = _runs(graph, feed)
    if not all(a.tobytes() == b.tobytes() for a, b in zip(before, after, strict=True)):
        graph.write_bytes(original)
        raise AssertionError(f"{graph.name}: reusing {rewritten} changed the outputs; restored")
    return rewritten
