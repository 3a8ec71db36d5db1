"""The sentiment graph contract, written by the exporter and checked by the server.

One graph ``model`` (file ``model.onnx``): ``input_ids`` int64 ``[B, T]`` and ``lengths`` int64 ``[B]``
in, ``probabilities`` float32 ``[B, C]`` out. The version folder also holds the word vocabulary.
"""

TASK = "sentiment"
INPUT_IDS, LENGTHS, PROBABILITIES = "input_ids", "lengths", "probabilities"
GRAPH = "model"
#: graph key in the manifest -> file in the version folder
GRAPH_FILES = {GRAPH: "model.onnx"}
#: manifest ``files`` key -> file in the version folder
FILES = {"vocab": "vocab.json"}
