"""The generation graph contract, written by the exporter and checked by the server.

``S`` = the manifest's ``task_options.state_names`` (``h, c`` for LSTM, ``h`` for GRU), each
``[layers, B, hidden]``::

    prefill (prefill.onnx): input_ids [B, T] int64, lengths [B] int64 -> logits [B, V], <s>_out for s in S
    step    (step.onnx):    input_ids [B] int64, <s> for s in S       -> logits [B, V], <s>_out for s in S

Both graphs keep their weights once, in ``weights.bin`` (ONNX external data), listed in ``files``.
"""

TASK = "generation"
INPUT_IDS, LENGTHS, LOGITS = "input_ids", "lengths", "logits"
DEFAULT_STATE_NAMES = ("h", "c")
#: graph key in the manifest -> file in the version folder
GRAPH_FILES = {"prefill": "prefill.onnx", "step": "step.onnx"}
FILES = {"vocab": "vocab.json"}


def state_output(name: str) -> str:
    return f"{name}_out"
