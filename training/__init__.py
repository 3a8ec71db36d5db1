"""Offline training package (extra ``train``): data readers, the generic trainer, ONNX export, the report.

Layout:

* :mod:`training.tasks` — one folder per task (``config``, ``network``, ``task`` and, where needed,
  ``data``, ``export``, ``metrics``), each a :class:`training.task.TrainingTask` listed in
  :mod:`training.registry`. Text processing and graph contracts come from ``service.tasks.<task>``.
* :mod:`training.trainer` — the generic loop (AdamW + schedule, clipping with logged gradient norms, early
  stopping, seeds, checkpoints, metrics.json, PNG plot).
* :mod:`training.export` / :mod:`training.quantization` / :mod:`training.weight_sharing` — ONNX export
  (dynamo, opset 18), ORT parity, the fp32-or-int8 choice, weights stored once across graphs.
* :mod:`training.ensemble` / :mod:`training.averaging` — runs merged into one model (``training.derived``).
* :mod:`training.encoder` — the padding-invariant RNN/LSTM/GRU encoder shared by the tasks' networks.
* :mod:`training.readers` — TSV/CSV, CoNLL, parallel and plain-text readers (errors name file and line).
* :mod:`training.config` / :mod:`training.settings` — TOML experiment configs with typed overrides; paths.
* :mod:`training.report` — ``docs/models.md`` from the model repository.
"""
