"""Offline training package (extra ``train``): RNN model zoo, training loop, ONNX export, model repository.

Layout:

* :mod:`training.readers` — TSV/CSV, CoNLL, parallel and plain-text readers (errors name file and line).
* :mod:`training.models` — padding-invariant RNN/LSTM/GRU encoders (uni/bidirectional) and heads.
* :mod:`training.tasks` — registry of task plug-ins (:class:`training.tasks.base.TrainingTask`): data, model,
  batches, loss, evaluation, export. Sentiment is :mod:`training.tasks.sentiment`.
* :mod:`training.trainer` — the generic loop (AdamW + schedule, clipping with logged gradient norms, early
  stopping, seeds, checkpoints, metrics.json, PNG plot).
* :mod:`training.export` — ONNX export (dynamo, opset 18), ORT parity, int8 quantization.
* :mod:`training.config` / :mod:`training.settings` — TOML experiment configs with typed overrides; paths.
* :mod:`training.report` — ``docs/models.md`` from the model repository.

Text processing is :mod:`service.tasks.text`, shared with the service.
"""
