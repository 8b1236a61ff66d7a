"""The evaluation sets of a run, made ready and pinned: ingested when needed, versioned, checked.

A run's evaluation data must be the data its config names, or champion and candidate scores mean
nothing. Each eval set's data version is the DVC md5 of the ``.dvc`` file covering its dataset
(with the workspace checked against it: modified data is refused), or, for a dataset outside DVC
(a real set ingested from ``../shared/data`` into the evaluation cache), a SHA-256 fingerprint of
its manifest and file table. An eval set with ``dvc_version`` refuses any other version. A set
with a ``source`` is ingested into ``evaluate.cache_dir/<name>`` on first use; an ``optional``
set whose source is absent is skipped with the reason (recorded, never silent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from rsvl.config import RunConfig
from rsvl.data.store import FILES_FILE, MANIFEST_FILE, META_FILE
from rsvl.data.versioning import data_version, workspace_matches
from rsvl.errors import DataError
from rsvl.evaluate.config import EvalSet

FINGERPRINT_PREFIX = "sha256-"


@dataclass(frozen=True)
class EvalData:
    """The eval sets ready to score.

    Attributes:
        sets: The sets to score, each with an absolute ``dataset`` path.
        versions: Eval set name → its data version.
        skipped: Eval set name → why it was not scored (optional sets whose source is absent).
    """

    sets: list[EvalSet]
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def version(self) -> str:
        """One value for all sets (the lineage tag): the distinct versions joined by ``+``, sorted."""
        return "+".join(sorted(set(self.versions.values()))) or "none"


def fingerprint(dataset_dir: str | Path) -> str:
    """``sha256-<hex>`` over a canonical dataset's manifest and file table (each file's SHA-256 is in it)."""
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, FILES_FILE):
        digest.update(name.encode())
        digest.update((Path(dataset_dir) / name).read_bytes())
    return FINGERPRINT_PREFIX + digest.hexdigest()


def dataset_version(dataset_dir: str | Path) -> str:
    """The data version of a canonical dataset: its DVC md5 (workspace verified), or its fingerprint.

    Raises:
        DataError: The dataset is DVC-tracked but the workspace differs from the ``.dvc`` record.
    """
    try:
        version = data_version(dataset_dir)
    except DataError:
        return fingerprint(dataset_dir)
    root = Path(dataset_dir).resolve()
    while not (root / version.dvc_file).is_file():
        root = root.parent
    if not workspace_matches(root, version.dvc_file):
        raise DataError(
            f"{dataset_dir}: the data in the workspace differs from {root / version.dvc_file} (md5 {version.md5}); "
            f"run `dvc checkout {version.dvc_file}` (or `rsvl data pull`) to evaluate on the recorded version"
        )
    return version.md5


def _materialise(eval_set: EvalSet, data_root: Path, cache_dir: Path) -> Path | str:
    """The set's dataset directory (ingested from ``source`` when missing), or a skip reason."""
    from rsvl.data.adapters import ingest

    if eval_set.dataset is not None:
        path = Path(eval_set.dataset)
        path = path if path.is_absolute() else data_root / path
    else:
        path = cache_dir / eval_set.name
    if (path / META_FILE).is_file():
        return path.resolve()
    if eval_set.source is None:
        raise DataError(f"eval set {eval_set.name!r}: dataset {path} does not exist and the set has no source")
    source = Path(eval_set.source.path)
    if not source.exists():
        reason = f"source {source} is absent"
        if eval_set.optional:
            return reason
        raise DataError(f"eval set {eval_set.name!r}: {reason} (mark the set optional to skip it)")
    ingest(eval_set.source.format, source, path, name=eval_set.name)
    return path.resolve()


def prepare_eval_data(cfg: RunConfig, data_root: str | Path | None = None) -> EvalData:
    """Make every eval set of ``cfg.evaluate`` ready, version it and check its pin.

    Args:
        cfg: The run config.
        data_root: Where relative datasets live (default ``cfg.data.root``).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: No eval sets, a dataset missing without a source, a non-optional source
            absent, modified DVC data, or a version other than the set's ``dvc_version`` pin.
    """
    if not cfg.evaluate.sets:
        raise DataError(f"config of {cfg.paper!r} ({cfg.profile}) names no evaluate.sets; nothing to score")
    root = Path(data_root if data_root is not None else cfg.data.root)
    cache_dir = Path(cfg.evaluate.cache_dir)
    ready, versions, skipped = [], {}, {}
    for eval_set in cfg.evaluate.sets:
        place = _materialise(eval_set, root, cache_dir)
        if isinstance(place, str):
            skipped[eval_set.name] = place
            continue
        version = dataset_version(place)
        if eval_set.dvc_version is not None and eval_set.dvc_version != version:
            raise DataError(
                f"eval set {eval_set.name!r}: {place} is data version {version}, but the config pins "
                f"{eval_set.dvc_version}; check out the pinned data (git checkout of the .dvc file, then "
                "`dvc checkout`) or update evaluate.sets[].dvc_version deliberately"
            )
        versions[eval_set.name] = version
        ready.append(eval_set.model_copy(update={"dataset": str(place)}))
    if not ready:
        raise DataError(f"no eval set could be scored: {skipped}")
    return EvalData(ready, versions, skipped)
