"""Export of a character LM to the model repository: a prefill graph and a one-step graph, their parity with
PyTorch over a multi-step rollout, and the manifest.

Graph contracts (``S`` is the state list: ``h, c`` for LSTM, ``h`` for GRU, each ``[layers, B, hidden]``)::

    prefill: input_ids int64 [B, T], lengths int64 [B]  ->  logits float32 [B, V], *S_out (right-padded)
    step:    input_ids int64 [B], *S                     ->  logits float32 [B, V], *S_out
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from service.manifest import GraphSpec, ParityReport, TensorSpec
from service.tasks.text import pad_batch
from training.tasks.generation_model import CharLM, PrefillGraph, StepGraph

PREFILL_FILE, STEP_FILE = "prefill.onnx", "step.onnx"


def output_name(state_name: str) -> str:
    """ONNX forbids an output named like an input, so new states are ``<name>_out``."""
    return f"{state_name}_out"


def _state_specs(model: CharLM, suffix: str = "") -> list[TensorSpec]:
    dims = [model.num_layers, -1, model.hidden_size]
    return [TensorSpec(name=f"{n}{suffix}", dtype="float32", dims=dims) for n in model.state_names]


def _export(
    module: torch.nn.Module, args: tuple, path: Path, input_names, output_names, dynamic_shapes
) -> None:
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
def export_graphs(model: CharLM, version_dir: Path) -> dict[str, GraphSpec]:
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


def onnx_losses(version_dir: Path, val_ids: np.ndarray, bos_id: int, segments: int, seq_len: int) -> dict:
    """The validation losses of :mod:`training.tasks.generation_metrics`, measured on the exported step graph
    with ONNX Runtime (what the service runs): ``loss`` over ``segments`` parallel streams of the held-out
    text, ``window_loss`` over its zero-state windows of ``seq_len`` characters."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(version_dir / STEP_FILE), options, providers=["CPUExecutionProvider"])
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
