"""Standard protocols served beside the task routes, on the same models, batchers and schedulers.

* ``service.protocols.v2``: the Open Inference Protocol (KServe v2 / Triton), REST/JSON. The shared
  machinery (routes, request and response bodies, tensor parsing, the error shape) lives here; how a task's
  texts, options and results map to tensors lives in its ``service/tasks/<task>/v2.py`` adapter, named by
  its plug-in (``TaskPlugin.v2``).
* OpenAI-compatible text completions are generation's own (``service/tasks/generation/openai.py``).
"""
