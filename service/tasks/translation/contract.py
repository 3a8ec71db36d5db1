"""The translation graph contract, written by the exporter and checked by the server.

``encoder`` (``encoder.onnx``): ``src_ids`` int64 ``[B, S]``, ``src_lengths`` int64 ``[B]`` ->
``memory`` and ``keys`` ``[B, S, H]`` plus the initial decoder state (one array per ``state_names``:
``hidden`` for GRU, ``hidden`` and ``cell`` for LSTM). ``step`` (``step.onnx``): ``prev_tokens`` ``[N]``,
the state, ``memory``, ``keys`` and ``src_lengths`` -> ``log_probs`` ``[N, V]``, ``<state>_out`` and
``attention`` ``[N, S]``. SentencePiece ids: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3.
"""

TASK = "translation"
SRC_IDS, SRC_LENGTHS = "src_ids", "src_lengths"
MEMORY, KEYS, PREV_TOKENS, LOG_PROBS, ATTENTION = "memory", "keys", "prev_tokens", "log_probs", "attention"
BOS_ID, EOS_ID = 2, 3
DEFAULT_STATE_NAMES = ("hidden",)
#: graph key in the manifest -> file in the version folder
GRAPH_FILES = {"encoder": "encoder.onnx", "step": "step.onnx"}
SIDES = ("source", "target")


def state_output(name: str) -> str:
    return f"{name}_out"


def side_files(side: str) -> dict[str, str]:
    """Manifest ``files`` entries of one side: its SentencePiece model and its vocabulary."""
    return {f"{side}_spm": f"{side}.model", f"{side}_vocab": f"{side}_vocab.json"}
