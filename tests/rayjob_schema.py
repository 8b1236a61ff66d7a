"""Check a RayJob manifest offline against the vendored KubeRay CRD schema (a test helper: the code never validates).

``k8s/schemas/ray.io_rayjobs.json`` is the ``v1`` ``openAPIV3Schema`` of the RayJob CRD (see
``k8s/schemas/README.md``). CRD schemas never say ``additionalProperties: false``: the API server
drops unknown fields, silently unless the client asks for strict field validation. Validation here
is strict, the way :func:`rsvl.cluster.submit.submit_rayjob` creates RayJobs, so a misspelt field
fails in a test instead of being dropped on the cluster.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from rsvl.errors import ConfigError

_PRESERVE = "x-kubernetes-preserve-unknown-fields"


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a CRD schema in which every object with ``properties`` forbids other keys.

    Objects that declare their own ``additionalProperties`` (string maps) or preserve unknown
    fields are left alone, as the API server's strict field validation does.

    Args:
        schema: An ``openAPIV3Schema``.

    Returns:
        The tightened copy; ``schema`` is not modified.
    """
    result = copy.deepcopy(schema)

    def tighten(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not node.get(_PRESERVE):
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)

    tighten(result)
    return result


def load_rayjob_schema(path: str | Path) -> dict[str, Any]:
    """Read the vendored RayJob schema and make it strict (see :func:`strict_schema`).

    Args:
        path: ``k8s/schemas/ray.io_rayjobs.json``.

    Raises:
        ConfigError: The file is missing or not JSON.
    """
    path = Path(path)
    try:
        return strict_schema(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: RayJob schema file does not exist") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: RayJob schema is not valid JSON ({err})") from err


def validate_rayjob(manifest: dict[str, Any], schema: dict[str, Any]) -> None:
    """Validate a RayJob manifest; raise with every violation, each at its field path.

    Args:
        manifest: A RayJob as built by :func:`rsvl.cluster.rayjob.build_rayjob`.
        schema: From :func:`load_rayjob_schema`.

    Raises:
        ConfigError: The manifest breaks the schema; one line per violation.
    """
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        name = manifest.get("metadata", {}).get("name", "<unnamed>") if isinstance(manifest, dict) else "<unnamed>"
        lines = [f"RayJob {name}: {len(errors)} schema violation(s)"]
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            lines.append(f"  {where}: {error.message}")
        raise ConfigError("\n".join(lines))
