"""Read the repository's Kubernetes manifests for the security tests."""

from __future__ import annotations


def containers_in(document) -> list[dict]:
    """Every container spec in a manifest, however deep (Deployments, Jobs, the RayJob's head and workers)."""
    if isinstance(document, dict):
        found = []
        for key, value in document.items():
            found += ([c for c in value if isinstance(c, dict)] if key in ("containers", "initContainers")
                      and isinstance(value, list) else containers_in(value))
        return found
    return [c for value in document for c in containers_in(value)] if isinstance(document, list) else []
