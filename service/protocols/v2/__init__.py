"""The Open Inference Protocol (KServe v2 / Triton HTTP/REST): every model in the repository by name.

``routes`` serves it; ``adapter`` is what a task implements (``service/tasks/<task>/v2.py``); ``tensors``
parses input tensors and builds output tensors; ``schemas`` holds the request and response bodies;
``errors`` gives every failure the protocol's ``{"error": "..."}`` shape.
"""
