"""The training side of each task, one folder per task, all of the same shape.

``training/tasks/<task>/`` holds ``config.py`` (the experiment's typed configuration), ``network.py``
(the PyTorch modules), ``task.py`` (data, batches, loss, evaluation, export hooks and the report row: the
:class:`~training.task.TrainingTask`) and, where a task needs them, ``data.py``, ``export.py`` and
``metrics.py``. Text processing and the graph contract come from ``service/tasks/<task>/`` (``codec.py``,
``contract.py``), so trained and served inputs are built by the same code. ``training.registry`` lists
the tasks.
"""
