"""The KFP local runner's step cache, with every entry checked against digests before it is used.

KFP's :class:`kfp.local.cache.LocalCache` keeps one JSON entry per cached step under
``<pipeline root>/.kfp_cache/`` naming its outputs (parameter values, artifact URIs), and trusts
it as long as the artifact files exist: an entry edited by hand, or an artifact truncated or
changed after the step wrote it, would be fed to the next steps as if it were the step's output.
:class:`VerifiedLocalCache` writes ``<key>.digest.json`` beside each entry (the SHA-256 of the
entry's bytes and of every local artifact's content) and treats an entry whose digests do not
match, or that has none, as a miss: the step runs again and its outputs replace the entry; one
warning line names the entry and what changed. :func:`install` makes the runner use it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from kfp.local import cache as kfp_cache

from rsvl.data.store import content_sha256

DIGEST_SUFFIX = ".digest.json"
log = logging.getLogger(__name__)


def _artifact_uris(serialized: dict[str, Any]) -> list[str]:
    """The local URIs of the artifacts in a step's outputs, in the form KFP writes its entries in."""
    uris = []
    for value in serialized.values():
        if isinstance(value, dict) and value.get(kfp_cache._ARTIFACT_LIST_MARKER):
            uris += [artifact.get("uri", "") for artifact in value.get("artifacts", [])]
        elif isinstance(value, dict) and value.get(kfp_cache._ARTIFACT_MARKER):
            uris.append(value.get("uri", ""))
    return [uri for uri in uris if uri and not kfp_cache._is_remote_uri(uri)]  # remote stores: trusted, as KFP does


class VerifiedLocalCache(kfp_cache.LocalCache):
    """KFP's local cache, whose entries are used only when their digests match (see the module doc)."""

    def _digest_path(self, key: str) -> str:
        return os.path.join(self.cache_root, f"{key}{DIGEST_SUFFIX}")

    def _problem(self, key: str) -> str | None:
        """Why the entry ``key`` cannot be used, or ``None`` when its digests match."""
        try:
            recorded = json.loads(Path(self._digest_path(key)).read_text(encoding="utf-8"))
            entry_bytes = Path(self._entry_path(key)).read_bytes()
        except (OSError, ValueError):
            return "it has no readable digest record (written by an older run, or cut off while written)"
        if hashlib.sha256(entry_bytes).hexdigest() != recorded.get("entry"):
            return "its JSON changed since the step wrote it (SHA-256 mismatch)"
        try:
            outputs = json.loads(entry_bytes)
        except ValueError:
            return "its JSON is not readable"
        artifacts = recorded.get("artifacts", {})
        for uri in _artifact_uris(outputs):
            if not os.path.exists(uri):
                return None  # KFP's own check: a missing artifact is a miss, said in its log
            found = content_sha256(uri)
            if found != artifacts.get(uri):
                return (f"artifact {uri} changed since the step wrote it "
                        f"(SHA-256 {found[:12]}, recorded {str(artifacts.get(uri))[:12]})")
        return None

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached outputs of ``key`` when its entry and artifacts match their digests, else ``None`` (a miss)."""
        if not os.path.exists(self._entry_path(key)):
            return None
        problem = self._problem(key)
        if problem is not None:
            log.warning("KFP cache entry %s not used: %s; the step runs again and replaces it",
                        self._entry_path(key), problem)
            for path in (self._entry_path(key), self._digest_path(key)):
                Path(path).unlink(missing_ok=True)
            return None
        return super().get(key)

    def put(self, key: str, outputs: dict[str, Any]) -> None:
        """Write the entry (KFP's), then its digest record beside it, atomically."""
        super().put(key, outputs)
        record = {
            "entry": hashlib.sha256(Path(self._entry_path(key)).read_bytes()).hexdigest(),
            "artifacts": {uri: content_sha256(uri) for uri in _artifact_uris(self._serialize_outputs(outputs))},
        }
        fd, scratch = tempfile.mkstemp(prefix=".kfp_digest_", suffix=".tmp", dir=self.cache_root)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(record, out, sort_keys=True)
            os.replace(scratch, self._digest_path(key))
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise


def install() -> None:
    """Make the KFP local runner build :class:`VerifiedLocalCache` for its cache (call before ``kfp.local.init``)."""
    # kfp.local.cache.get_local_cache() builds its singleton from the module's `LocalCache` name
    kfp_cache.LocalCache = VerifiedLocalCache
    kfp_cache.reset_local_cache_singleton()
