"""The served side of each task, one folder per task, all of the same shape.

``service/tasks/<task>/`` holds ``contract.py`` (graph tensor names, file names and special ids, shared
with the exporter in ``training/tasks/<task>/``), ``codec.py`` (text to model input and model output to
answer; numpy and the standard library only, so training imports it too), ``schemas.py`` (request and
response models), ``model.py`` (the served model: how a batch or a decoding step runs), ``routes.py`` (the
HTTP endpoints) and ``plugin.py`` (the one object ``service.registry`` lists). Importing a task's contract
or codec never imports FastAPI: only ``routes.py`` and ``plugin.py`` do.
"""
