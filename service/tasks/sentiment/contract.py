"""The sentiment graph contract, written by the exporter and checked by the server.

One graph ``model`` (file ``model.onnx``): ``input_ids`` int64 ``[B, T]`` and ``lengths`` int64 ``[B]``
in, and for a model that also reads its words' characters ``char_ids`` int64 ``[B, T, W]``;
``probabilities`` float32 ``[B, C]`` out. The version folder also holds the word vocabulary (and the
character vocabulary, ``chars``, of a model with characters).
"""

TASK = "sentiment"
INPUT_IDS, LENGTHS, CHAR_IDS, PROBABILITIES = "input_ids", "lengths", "char_ids", "probabilities"
GRAPH = "model"
#: graph key in the manifest -> file in the version folder
GRAPH_FILES = {GRAPH: "model.onnx"}
#: manifest ``files`` key -> file in the version folder
FILES = {"vocab": "vocab.json"}
CHARS_KEY, CHARS_FILE = "chars", "chars.json"
