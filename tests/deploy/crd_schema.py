"""A CustomResourceDefinition's ``openAPIV3Schema`` as a JSON Schema (2020-12) the tests can validate with.

The vendored ``*.schema.json`` files beside this module are made by it (tests/deploy/README.md says from
which CRD files); it changes the schema only in ways that keep its meaning for validating a manifest:

* one served version's ``openAPIV3Schema``, without ``status`` (written by the controller, never by us)
  and without ``description`` texts;
* ``additionalProperties: false`` on every object schema that lists ``properties`` and neither allows
  more (``additionalProperties``) nor keeps unknown fields (``x-kubernetes-preserve-unknown-fields``):
  what the API server does with strict field validation, which ``kubectl apply`` asks for by default,
  so a misspelt field is an error here as it is there;
* OpenAPI's ``nullable: true`` becomes a ``"null"`` in ``type``;
* identical subschemas (the container schema recurs dozens of times in KServe's CRD) are stored once
  under ``$defs`` and referenced, which makes the file small and changes nothing for validation.

CEL rules (``x-kubernetes-validations``) and the other ``x-kubernetes-*`` markers are kept but not
evaluated by ``jsonschema``; ``metadata`` stays ``{"type": "object"}`` as in the CRD (the tests check it
against Kubernetes' ObjectMeta separately).

    python -m tests.deploy.crd_schema CRD.yaml VERSION OUT.json [SOURCE]   # SOURCE: where CRD.yaml came from
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Subschemas whose canonical JSON is at least this long and that occur more than once go to $defs.
SHARE_MIN_CHARS = 200
# Keywords whose value is a map from names to schemas (not a schema itself).
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_VALUES = ("items", "additionalProperties", "not")


def _children(schema: dict[str, Any]) -> list[tuple[str, str | int | None]]:
    """``(keyword, key)`` of every direct subschema of ``schema``."""
    out: list[tuple[str, str | int | None]] = []
    for keyword in SCHEMA_MAPS:
        out += [(keyword, name) for name in schema.get(keyword, {})]
    for keyword in SCHEMA_LISTS:
        out += [(keyword, i) for i in range(len(schema.get(keyword, [])))]
    out += [(k, None) for k in SCHEMA_VALUES if isinstance(schema.get(k), dict)]
    return out


def _get(schema: dict[str, Any], keyword: str, key: str | int | None) -> dict[str, Any]:
    return schema[keyword] if key is None else schema[keyword][key]


def _set(schema: dict[str, Any], keyword: str, key: str | int | None, value: dict[str, Any]) -> None:
    if key is None:
        schema[keyword] = value
    else:
        schema[keyword][key] = value


def tighten(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy with descriptions dropped, ``nullable`` turned into a type, and unknown fields refused."""
    out = {k: v for k, v in schema.items() if k not in ("description", "nullable")}
    for keyword in SCHEMA_MAPS:
        if keyword in out:
            out[keyword] = {name: tighten(s) for name, s in out[keyword].items()}
    for keyword in SCHEMA_LISTS:
        if keyword in out:
            out[keyword] = [tighten(s) for s in out[keyword]]
    for keyword in SCHEMA_VALUES:
        if isinstance(out.get(keyword), dict):
            out[keyword] = tighten(out[keyword])
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _canonical(schema: Any) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def share(schema: dict[str, Any]) -> dict[str, Any]:
    """Move every large subschema that occurs more than once into ``$defs`` (largest first)."""
    counts: Counter[str] = Counter()

    def count(node: dict[str, Any]) -> None:
        for keyword, key in _children(node):
            child = _get(node, keyword, key)
            text = _canonical(child)
            if len(text) >= SHARE_MIN_CHARS:
                counts[text] += 1
            count(child)

    count(schema)
    names: dict[str, str] = {}
    defs: dict[str, Any] = {}
    for text, n in sorted(counts.items(), key=lambda item: -len(item[0])):
        if n > 1:
            names[text] = "s" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def replace(node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        for keyword in SCHEMA_MAPS + SCHEMA_LISTS:
            if keyword in node:
                node[keyword] = type(node[keyword])(node[keyword])
        for keyword, key in _children(node):
            child = _get(node, keyword, key)
            text = _canonical(child)
            if text in names:
                name = names[text]
                if name not in defs:
                    defs[name] = None  # placeholder: a shared schema may contain shared schemas
                    defs[name] = replace(child)
                _set(node, keyword, key, {"$ref": f"#/$defs/{name}"})
            else:
                _set(node, keyword, key, replace(child))
        return node

    out = replace(schema)
    if defs:
        out["$defs"] = dict(sorted(defs.items()))
    return out


def crd_json_schema(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    [entry] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = dict(entry["schema"]["openAPIV3Schema"])
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "status"}
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    out = {
        "$schema": DIALECT,
        "$comment": f"{kind} {group}/{version}, from {source} by tests/deploy/crd_schema.py",
        **share(tighten(schema)),
    }
    return out


def main(argv: list[str]) -> int:
    source, version, target = argv[1:4]
    crd = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    schema = crd_json_schema(crd, version, argv[4] if len(argv) > 4 else Path(source).name)
    Path(target).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
