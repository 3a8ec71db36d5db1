"""Peer servers (TorchServe, Ray Serve) for ``python -m loadtest.bench_peers``.

``install``: their virtual environments (and TorchServe's Java runtime); ``engine``: the one sentiment
inference path every peer handler calls (the project's codec, an ONNX Runtime session with the service's
options); ``torchserve``/``ray``: configuration and process control of each peer; ``procs``: CPU time of
a process tree. The handler modules (``torchserve_handler``, ``ray_app``) run inside the peers' own
environments, with the repository on ``PYTHONPATH``.
"""
