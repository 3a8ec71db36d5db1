"""docs/deployment.md names only metrics the service exports and commands that exist."""

from __future__ import annotations

import re

from service.metrics import Metrics
from tests.deploy.dockerfile import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


def test_every_metric_in_the_doc_is_exported() -> None:
    families = {metric.name for metric in Metrics().registry.collect()}
    named = set(re.findall(r"\brnnserve_[a-z_]+", DOC))
    assert named
    for name in named:
        base = re.sub(r"_(bucket|sum|count|total)$", "", name)
        assert base in families, f"{name} is not exported (families: {sorted(families)})"


def test_every_module_the_doc_runs_exists() -> None:
    for module in set(re.findall(r"python -m (loadtest\.[\w.]+)", DOC)):
        assert (REPO_ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    for script in set(re.findall(r"python ((?:loadtest|deploy)/[\w/]+\.py)", DOC)):
        assert (REPO_ROOT / script).is_file(), script
