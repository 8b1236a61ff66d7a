"""Containers run with a read-only root filesystem where the step allows it, and the exceptions say why.

Non-root, no privilege escalation, dropped capabilities and seccomp are checked for every pod by
``tests/test_k8s_manifests.py`` (``test_our_pods_are_restricted_and_non_root``) and the images'
non-root ``USER`` by ``tests/test_docker.py``; this adds the root filesystem.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from manifest_support import containers_in

REPO = Path(__file__).resolve().parents[2]
WRITABLE_ROOT = {
    ("rayjob-template.yaml", "ray-head"): "Ray writes its session folder, logs and spilled objects under /tmp/ray "
                                          "and the working directory, and pip caches under $HOME",
    ("rayjob-template.yaml", "ray-worker"): "the same Ray runtime as the head",
    ("rayjob-template.yaml", "ray-job-submitter"): "KubeRay's submitter runs the Ray CLI, which writes under $HOME",
}
"""Containers allowed a writable root filesystem, with the reason (kept in docs/security.md too)."""


def test_every_container_has_a_read_only_root_but_the_listed_exceptions():
    seen = set()
    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for container in containers_in(document):
                key = (path.name, container["name"])
                seen.add(key)
                read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem") is True
                assert read_only != (key in WRITABLE_ROOT), \
                    f"{path.name}: {container['name']} read-only root is {read_only}; exceptions: {sorted(WRITABLE_ROOT)}"
    assert set(WRITABLE_ROOT) <= seen and len(seen) >= 8


def test_the_exceptions_are_documented():
    text = (REPO / "docs" / "security.md").read_text()
    for (_, name), _reason in WRITABLE_ROOT.items():
        assert re.search(rf"`{name}`", text), name
