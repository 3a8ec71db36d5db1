"""Shared ONNX export helpers for every task: export, parity check, int8 quantization, manifest pieces.

* :func:`export_onnx`: ``torch.onnx.export(dynamo=True, opset_version=18)`` with named dynamic axes; LSTM/GRU
  become native ONNX ``LSTM``/``GRU`` ops. ``nn.RNN`` (tanh) has no translation in torch's ONNX library
  and its default decomposition unrolls the time loop (fixing the sequence length), so this module adds
  one that emits the native ONNX ``RNN`` op (one layer, one direction, as
  :class:`~training.encoder.RNNEncoder` uses it) plus a ``while_loop`` decomposition that keeps the
  sequence axis symbolic while tracing.
* :func:`check_parity`: ONNX Runtime against PyTorch on real examples; raises if above tolerance.
* :func:`quantize_int8`: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights of MatMul, LSTM and
  the embedding Gather).
* :func:`quantize_weights_int8`: weight-only int8 (MatMul weights and Gather tables; fp32 arithmetic, so
  an example's output does not depend on the rest of its batch).
* :func:`graph_specs`: the manifest's ``inputs``/``outputs`` read back from the exported graph.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from service.manifest import ParityReport, TensorSpec, TrainingInfo
from service.runtime import fold_int8_weights

log = logging.getLogger(__name__)

OPSET = 18
_ONNX_DTYPES = {
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BOOL: "bool",
}


# --- nn.RNN (tanh) support ------------------------------------------------------------------------------
def _one_layer_rnn_tanh(inp, hidden, params, has_biases, reverse=False):
    from torch._higher_order_ops.while_loop import while_loop
    from torch.export._patches import _clone_tensors_that_alias

    ih_weight, hh_weight = params[0], params[1]
    ih_bias = params[2] if has_biases else None
    hh_bias = params[3] if has_biases else None
    pre = torch.nn.functional.linear(inp, ih_weight, ih_bias)
    pre = pre.flip(0) if reverse else pre
    hh_weight, hh_bias = _clone_tensors_that_alias((hh_weight, hh_bias))
    state = hidden.unsqueeze(0)
    out0 = torch.empty(pre.size(0), *tuple(state.shape[1:]), dtype=state.dtype, device=state.device)

    def cond_fn(i, out, h):
        return i < pre.size(0)

    def body_fn(idx, out, h):
        i = idx.item()
        torch._check_is_size(i)
        torch._check_is_size(i, max=pre.size(0) - 1)
        h = torch.tanh(pre[i] + torch.nn.functional.linear(h, hh_weight, hh_bias))
        out = out.clone()
        out[i] = h.squeeze(0)
        return idx + 1, out, h

    start = torch.zeros((), dtype=torch.int64, device=state.device)
    _, out, final = while_loop(cond_fn, body_fn, [start, out0, state])
    return (out.flip(0) if reverse else out), final.squeeze(0)


def _rnn_tanh_while_loop(
    input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
):
    from torch._decomp.decompositions import _rnn_helper, gather_params

    params = gather_params(params, has_biases, False)
    out, finals = _rnn_helper(
        input,
        list(hx.unbind(0)),
        params,
        has_biases,
        num_layers,
        dropout,
        train,
        bidirectional,
        batch_first,
        _one_layer_rnn_tanh,
    )
    return out, torch.stack(finals, 0)


def _onnx_rnn_tanh(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten::rnn_tanh.input -> ONNX RNN (one layer, one direction, with biases)."""
    from onnxscript import opset18 as op

    if num_layers != 1 or bidirectional or not has_biases:
        raise NotImplementedError("ONNX export of nn.RNN supports one layer, one direction, with biases")
    if batch_first:
        input = op.Transpose(input, perm=[1, 0, 2])
    hidden_size = int(params[1].shape[1])
    weights = op.Unsqueeze(params[0], [0])
    recurrence = op.Unsqueeze(params[1], [0])
    bias = op.Unsqueeze(op.Concat(params[2], params[3], axis=0), [0])
    outputs, last = op.RNN(
        input, weights, recurrence, bias, None, hx, activations=["Tanh"], hidden_size=hidden_size
    )
    outputs = op.Squeeze(outputs, [1])
    if batch_first:
        outputs = op.Transpose(outputs, perm=[1, 0, 2])
    return outputs, last


@contextlib.contextmanager
def _rnn_export_support() -> Iterator[None]:
    from torch.export._patches import (
        _register_rnn_while_loop_decomposition,
        register_gru_while_loop_decomposition,
        register_lstm_while_loop_decomposition,
    )

    # torch.onnx applies its own LSTM/GRU while_loop patches only while capturing the graph; any RNN op
    # decomposed later would be unrolled, fixing the sequence length. Keep them for the whole export.
    with (
        _register_rnn_while_loop_decomposition(torch.ops.aten.rnn_tanh.input, _rnn_tanh_while_loop),
        register_lstm_while_loop_decomposition(),
        register_gru_while_loop_decomposition(),
    ):
        yield


# --- export ---------------------------------------------------------------------------------------------
def export_onnx(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """Exports ``module`` (eval mode) to one self-contained ``.onnx`` file with named dynamic axes.

    ``dynamic_axes`` maps input name -> {axis: dim name}; equal names share one dimension.
    """
    module = module.eval()
    dims: dict[str, Any] = {}
    dynamic_shapes = {
        name: {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in axes.items()}
        for name, axes in dynamic_axes.items()
    }
    dynamic_shapes = {name: dynamic_shapes.get(name) for name in input_names}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _rnn_export_support():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            example_inputs,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            custom_translation_table={torch.ops.aten.rnn_tanh.input: _onnx_rnn_tanh},
            verbose=False,
        )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))
    graph_inputs = {value.name: value for value in onnx.load(str(path)).graph.input}
    for name, axes in dynamic_axes.items():
        dims = graph_inputs[name].type.tensor_type.shape.dim
        fixed = [axis for axis in axes if dims[axis].HasField("dim_value")]
        if fixed:
            raise RuntimeError(
                f"export fixed dynamic axes {fixed} of {name!r} to the example's sizes; "
                "pick example sizes that differ from each other and from the model's constants"
            )
    return path


def ort_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session loaded the way the service loads graphs (int8 weights folded at load)."""
    options = fold_int8_weights(ort.SessionOptions())
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batches(
    session: ort.InferenceSession, batches: Sequence[dict[str, np.ndarray]], output: str
) -> list[np.ndarray]:
    return [session.run([output], batch)[0] for batch in batches]


def check_parity(
    reference: Callable[[dict[str, np.ndarray]], np.ndarray],
    session: ort.InferenceSession,
    batches: Sequence[dict[str, np.ndarray]],
    output: str,
    tolerance: float,
) -> ParityReport:
    """Max abs difference of ``output`` between PyTorch (``reference``) and ONNX Runtime over ``batches``."""
    worst, examples = 0.0, 0
    for batch in batches:
        expected = reference(batch)
        got = session.run([output], batch)[0]
        worst = max(worst, float(np.abs(expected - got).max()))
        examples += len(expected)
    report = ParityReport(max_abs_diff=worst, tolerance=tolerance, examples=examples, compared=output)
    if worst > tolerance:
        raise AssertionError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {tolerance:g} on {output}")
    return report


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        # quantize_dynamic wants a pre-processed (shape-inferred) model; ORT's helper does that.
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:  # pre-processing is an optimisation; quantize the raw graph otherwise
            log.warning("quant_pre_process failed (%s); quantizing the graph as exported", exc)
            shutil.copyfile(source, prepared)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
    return target


#: op type -> (input positions holding weights, the weight axis that gets one scale per slice)
_WEIGHT_INPUTS: dict[str, tuple[tuple[int, ...], int]] = {
    "MatMul": ((1,), 1),  # B [K, N]: per output column
    "Gemm": ((1,), -1),  # B [K, N] or, with transB, [N, K]: per output unit (axis set below)
    "GRU": ((1, 2), 1),  # W/R [directions, 3H, in]: per gate row
    "LSTM": ((1, 2), 1),
    "RNN": ((1, 2), 1),
}


def quantize_weights_int8(
    source: Path, target: Path, dequantize_ops: Sequence[str] = ("MatMul",), min_elements: int = 256
) -> Path:
    """Weight-only int8 of the constant weights of ``dequantize_ops`` and of Gather tables (embeddings).

    Weights are stored as int8 with one symmetric scale per output unit, followed by a ``DequantizeLinear``
    (ONNX Runtime fuses it with a MatMul into ``MatMulNBits``, 8 bits, as fast as fp32; for other ops it
    dequantizes on every run, so list those only for graphs run once per batch, like an encoder). Gather
    tables get one scale per row and are gathered as int8, then scaled. Activations stay fp32, unlike
    ``quantize_dynamic``, whose per-tensor activation scale makes every row's result depend on the largest
    value in its batch. Tensors under ``min_elements`` stay fp32. Constants are folded first (ONNX Runtime's
    basic, hardware-independent optimizations), so weights rearranged at run time (the exporter's RNN gate
    reordering) become the initializers their ops read.
    """
    from onnx import helper, numpy_helper

    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        options.log_severity_level = 3
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(folded))
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))

    def attribute(node: onnx.NodeProto, key: str, default: int) -> int:
        return next((a.i for a in node.attribute if a.name == key), default)

    def role(name: str) -> tuple[str, int] | None:
        """("dequantize", scale axis) or ("gather", 0) for a quantizable initializer."""
        tensor, uses = initializers[name], consumers.get(name, [])
        if tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) < 2 or not uses:
            return None
        if int(np.prod(tensor.dims)) < min_elements or name in outputs:
            return None
        if all(n.op_type == "Gather" and pos == 0 and attribute(n, "axis", 0) == 0 for n, pos in uses):
            return ("gather", 0) if len(tensor.dims) == 2 else None
        axes = set()
        for node, pos in uses:
            positions, axis = _WEIGHT_INPUTS.get(node.op_type, ((), 0))
            if node.op_type not in dequantize_ops or pos not in positions:
                return None
            axes.add(attribute(node, "transB", 0) ^ 1 if node.op_type == "Gemm" else axis)
        return ("dequantize", axes.pop()) if len(axes) == 1 else None

    new_nodes: list[onnx.NodeProto] = []
    replaced: dict[str, onnx.TensorProto] = {}
    for name in list(initializers):
        found = role(name)
        if found is None:
            continue
        kind, axis = found
        weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
        others = tuple(a for a in range(weight.ndim) if a != axis)
        scale = np.abs(weight).max(axis=others) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        shaped = np.expand_dims(scale, others)
        replaced[name] = numpy_helper.from_array(
            np.clip(np.round(weight / shaped), -127, 127).astype(np.int8), f"{name}_int8"
        )
        if kind == "dequantize":
            graph.initializer.extend(
                [
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero"),
                ]
            )
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"], [name], axis=axis
                )
            )
            continue
        graph.initializer.append(numpy_helper.from_array(scale[:, None], f"{name}_row_scale"))
        for k, (node, _) in enumerate(consumers[name]):
            ids, out = node.input[1], node.output[0]
            node.input[0], node.output[0] = f"{name}_int8", f"{out}_int8"
            new_nodes += [
                helper.make_node("Cast", [f"{out}_int8"], [f"{out}_f32"], to=onnx.TensorProto.FLOAT),
                helper.make_node("Gather", [f"{name}_row_scale", ids], [f"{out}_scale{k}"]),
                helper.make_node("Mul", [f"{out}_f32", f"{out}_scale{k}"], [out]),
            ]
    kept = [i for i in graph.initializer if i.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *replaced.values()])
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    nodes = _topological([*new_nodes, *graph.node], available)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return target


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where each input is produced before it is read (stable for ready nodes)."""
    ordered, pending, have = [], list(nodes), set(available) | {""}
    while pending:
        ready = [n for n in pending if all(i in have for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an undefined input")
        for node in ready:
            ordered.append(node)
            have.update(node.output)
        pending = [n for n in pending if not any(n is r for r in ready)]
    return ordered


def graph_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs with dtypes; symbolic or unknown dimensions become ``-1``."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        return TensorSpec(name=value.name, dtype=_ONNX_DTYPES[tensor.elem_type], dims=dims)

    initializers = {i.name for i in graph.initializer}
    return [spec(v) for v in graph.input if v.name not in initializers], [spec(v) for v in graph.output]


def training_info(checkpoint: dict[str, Any]) -> TrainingInfo:
    """A manifest's ``training`` record from a run's ``best.pt`` (current format: training.checkpoints)."""
    return TrainingInfo(
        data=checkpoint["data"],
        config=checkpoint["config"],
        epochs_run=checkpoint["epochs_run"],
        best_epoch=checkpoint["best_epoch"],
        train_time_s=round(checkpoint["train_time_s"], 1),
        seed=checkpoint["seed"],
        machine=checkpoint["machine"],
        command=checkpoint["command"],
    )


def prepare_version_dir(models_dir: Path, name: str, version: int) -> Path:
    """``<models_dir>/<name>/<version>/``, emptied if it exists (re-exporting replaces that version)."""
    version_dir = models_dir / name / str(version)
    if version_dir.exists():
        shutil.rmtree(version_dir)
    version_dir.mkdir(parents=True)
    return version_dir
