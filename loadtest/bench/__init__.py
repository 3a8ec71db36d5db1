"""HTTP benchmark utilities any task's benchmark can reuse.

- ``http_load``: a closed-loop load generator (N concurrent keep-alive clients, bounded in time) run as
  its own process against 127.0.0.1; reports requests/s and latency percentiles as JSON.
- ``server``: starts ``python -m service`` with settings overrides on a free port and stops it with SIGTERM.
- ``report``: medians over repeated runs and rewriting one marked section of ``docs/benchmarks.md``.

A task benchmark (see ``loadtest/bench_sentiment.py``) writes request bodies to a JSONL file, starts the
server per configuration, calls ``run_load`` a few times, and renders a table.
"""
