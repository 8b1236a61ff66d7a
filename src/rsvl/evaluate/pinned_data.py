"""The evaluation sets of a run, made ready and pinned: ingested when needed, versioned, checked.

A run's evaluation data must be the data its config names, or champion and candidate scores mean
nothing. Each eval set's data version is the DVC md5 of the ``.dvc`` file covering its dataset
(with the workspace checked against it: modified data is refused), or, for a dataset outside DVC
(a real set ingested from ``../shared/data`` into the evaluation cache), a SHA-256 fingerprint of
its manifest and file table. An eval set with ``dvc_version`` refuses any other version. A set
with a ``source`` is ingested into ``evaluate.cache_dir/<name>``; an ``optional`` set whose source
is absent is skipped with the reason (recorded, never silent). The cached set records what it was
ingested from (format, resolved source path, the source files' names, sizes and mtimes, and the
code of :mod:`rsvl.data`) and is ingested again when any of them changed.

A ``narrate`` set is scored on a copy captioned by SAR-Narrator (the run's ``caption`` section,
every row re-captioned, as the training data is), kept in
``evaluate.cache_dir/<name>-narrated-<digest>`` where the digest covers the source data version,
the caption config, the code of :mod:`rsvl.caption` (templates, filter, rewriter prompt) and the
SHA-256 of ``caption.optical_captions``, so a change to any of them makes a new copy and an
unchanged one is reused. The pin still applies to the source data; the set's recorded version is
``<source version>:narrated-<16 hex of the copy's content fingerprint>`` (``:``, as ``+`` joins
the sets in :meth:`EvalData.version`), so lineage names both the benchmark data and the captions
it was scored against. Sets scored for ``retrieval`` or
``captioning`` must have captions on every row they score (HRSID's chips have none until narrated).

The cache may be shared by runs evaluating at once: every cached dataset is written into a scratch
folder beside its place and renamed into it, so a reader sees a complete dataset or none, and a
writer that loses the race uses the winner's copy once its record matches. The record also holds
the SHA-256 of the copy's content (:func:`rsvl.data.store.content_sha256` of every file but
``dataset.json``): a copy changed after it was written (a truncated scene, an edited table) is
ingested again with a warning, never scored.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rsvl.config import RunConfig
from rsvl.data.store import FILES_FILE, MANIFEST_FILE, META_FILE, content_sha256, read_manifest, sha256_file
from rsvl.data.versioning import FINGERPRINT_PREFIX, data_version, dataset_version, fingerprint, restore_hint
from rsvl.errors import DataError
from rsvl.config.evaluate import EvalSet

NARRATED = "narrated"
CAPTIONED_TASKS = ("retrieval", "captioning")
DIGEST_CHARS = 12
NARRATED_VERSION_CHARS = 16
CACHE_RECORD = "eval_cache"
CONTENT_KEY = "content_sha256"  # in the cache record: the digest of the copy's files (see the module doc)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalData:
    """The eval sets ready to score.

    Attributes:
        sets: The sets to score, each with an absolute ``dataset`` path.
        versions: Eval set name → its data version (a narrated set:
            ``<source version>:narrated-<content hex>``, see the module docstring).
        skipped: Eval set name → why it was not scored (optional sets whose source is absent).
    """

    sets: list[EvalSet]
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def version(self) -> str:
        """One value for all sets (the lineage tag): the distinct versions joined by ``+``, sorted."""
        return "+".join(sorted(set(self.versions.values()))) or "none"


def _pin_remedy(place: Path, version: str) -> str:
    """How to get the pinned version into ``place`` (see :func:`rsvl.data.versioning.restore_hint`)."""
    if version.startswith(FINGERPRINT_PREFIX):
        return f"put the pinned data at {place} (it is checked by its manifest and file table)"
    found = data_version(place)
    root = Path(place).resolve()
    while not (root / found.dvc_file).is_file():
        root = root.parent
    return (f"check out the .dvc file that records the pinned version (git), then restore its data: "
            f"{restore_hint(root, found.dvc_file, place)}")


@lru_cache(maxsize=None)
def code_version(package: str) -> str:
    """SHA-256 over every source file of an installed package (``.py`` and data such as prompts).

    The package version does not change with edits, so cached outputs of the package's code are
    keyed by its files instead.

    Args:
        package: Importable package name (``rsvl.caption``).
    """
    root = Path(importlib.util.find_spec(package).origin).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_fingerprint(source: Path) -> str:
    """SHA-256 over the names, sizes and mtimes of a source's files: cheap, and changes when any file does.

    Args:
        source: A source folder or archive.
    """
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        name = path.name if path == source else path.relative_to(source).as_posix()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def source_record(data_format: str, source: Path) -> dict:
    """What an ingested copy of ``source`` is made from: format, path, its files, the ingest code.

    The cache record of an eval set's and of a progressive stage's ingested source alike
    (:func:`cached_dataset` rebuilds the copy when it changes).
    """
    return {"format": data_format, "source": str(source.resolve()), "source_files": source_fingerprint(source),
            "adapters": code_version("rsvl.data")}


def _record_of(place: Path) -> dict | None:
    """The cache record in ``place``'s ``dataset.json`` without its content digest; ``None`` when unreadable."""
    return _without_digest(_stored_record(place))


def _without_digest(stored: dict | None) -> dict | None:
    return None if stored is None else {key: value for key, value in stored.items() if key != CONTENT_KEY}


def _stored_record(place: Path) -> dict | None:
    try:
        stored = json.loads((place / META_FILE).read_text(encoding="utf-8")).get(CACHE_RECORD)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    return stored if isinstance(stored, dict) else None


def _intact(place: Path, record: dict) -> bool:
    """Whether ``place`` holds a copy made from ``record`` whose content still has its recorded digest."""
    stored = _stored_record(place)
    if stored is None or _without_digest(stored) != record:
        return False
    found = content_sha256(place, skip=(META_FILE,))
    if stored.get(CONTENT_KEY) != found:
        log.warning("eval cache %s not used: its content changed since it was written (SHA-256 %s, recorded %s); "
                    "it is built again", place, found[:12], str(stored.get(CONTENT_KEY))[:12])
        return False
    return True


def cached_dataset(place: Path, record: dict, build: Callable[[Path], object]) -> Path:
    """The cached dataset at ``place`` when it was made from ``record``; else built and renamed into place.

    ``build`` writes a dataset into a scratch folder beside ``place``; ``record`` is added to its
    ``dataset.json`` (under ``eval_cache``) and the folder is renamed into ``place``, so other
    processes never see it half-written. A stale dataset at ``place`` is moved aside first (after
    checking again that it is still stale). When another process renames its copy in first, that
    copy is used if its record matches.

    Args:
        place: The dataset's place in the cache.
        record: JSON-serialisable description of what the dataset is made from.
        build: Writes the dataset into the folder it is given (which does not exist yet).

    Returns:
        ``place``, resolved.

    Raises:
        DataError: Another process put a dataset with a different record at ``place`` meanwhile.
    """
    if _intact(place, record):
        return place.resolve()
    place.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{place.name}-", dir=place.parent))
    try:
        built = scratch / "data"
        build(built)
        meta = json.loads((built / META_FILE).read_text(encoding="utf-8"))
        meta[CACHE_RECORD] = {**record, CONTENT_KEY: content_sha256(built, skip=(META_FILE,))}
        (built / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if _intact(place, record):  # another process finished first
            return place.resolve()
        if place.exists():
            try:
                place.rename(scratch / "stale")
            except FileNotFoundError:
                pass
        try:
            built.rename(place)
        except OSError as err:
            if _record_of(place) != record:
                raise DataError(f"{place}: another process put a dataset made from {_record_of(place)} "
                                f"there while this one wrote {record}; remove it and run again") from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return place.resolve()


def _materialise(eval_set: EvalSet, data_root: Path, cache_dir: Path) -> Path | str:
    """The set's dataset directory, or a skip reason.

    A named ``dataset`` that exists is used as it is (it may be DVC data); otherwise the set's
    ``source`` is ingested there, or into the cache when no dataset is named, where it is ingested
    again whenever its record (format, source, source files, adapter code) changed.
    """
    from rsvl.data.adapters import ingest

    if eval_set.dataset is not None:
        path = Path(eval_set.dataset)
        path = path if path.is_absolute() else data_root / path
        if (path / META_FILE).is_file():
            return path.resolve()
    else:
        path = cache_dir / eval_set.name
    if eval_set.source is None:
        raise DataError(f"eval set {eval_set.name!r}: dataset {path} does not exist and the set has no source")
    source = Path(eval_set.source.path)
    if not source.exists():
        reason = f"source {source} is absent"
        if eval_set.optional:
            return reason
        raise DataError(f"eval set {eval_set.name!r}: {reason} (mark the set optional to skip it)")
    record = source_record(eval_set.source.format, source)
    return cached_dataset(path, record, lambda out: ingest(eval_set.source.format, source, out, name=eval_set.name))


def narration_record(cfg: RunConfig, source_version: str, place: Path) -> dict:
    """What a narrated copy is made from: source version, caption config, narrator code, optical captions.

    Args:
        cfg: The run config (``caption`` section).
        source_version: The source's data version.
        place: The source dataset directory (a relative ``optical_captions`` file lies inside it).
    """
    from rsvl.caption import optical_captions_path

    caption_cfg = cfg.caption.model_copy(update={"recaption": True})
    optical = optical_captions_path(caption_cfg, place)
    return {
        "source": source_version,
        "caption": caption_cfg.model_dump(mode="json"),
        "narrator": code_version("rsvl.caption"),
        "optical_captions": sha256_file(optical) if optical is not None else None,
    }


def narrated_copy(eval_set: EvalSet, place: Path, source_version: str, cfg: RunConfig) -> tuple[Path, str]:
    """Caption every row of an eval set's dataset with SAR-Narrator into the eval cache, or reuse that copy.

    Args:
        eval_set: The set (its name names the copy).
        place: The source dataset directory.
        source_version: The source's data version (part of the copy's digest).
        cfg: The run config (``caption`` section, ``evaluate.cache_dir``).

    Returns:
        ``(copy directory, recorded version)``, the version as the module docstring describes.
    """
    from rsvl.caption import caption_dataset

    caption_cfg = cfg.caption.model_copy(update={"recaption": True})
    record = narration_record(cfg, source_version, place)
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:DIGEST_CHARS]
    copy = cached_dataset(Path(cfg.evaluate.cache_dir) / f"{eval_set.name}-{NARRATED}-{digest}", record,
                          lambda out: caption_dataset(place, out, caption_cfg))
    content = fingerprint(copy).removeprefix(FINGERPRINT_PREFIX)[:NARRATED_VERSION_CHARS]
    return copy, f"{source_version}:{NARRATED}-{content}"


def _require_captions(eval_set: EvalSet, place: Path) -> None:
    """Refuse a set whose scored rows lack the captions its retrieval or captioning task needs."""
    tasks = [task for task in eval_set.tasks if task in CAPTIONED_TASKS]
    if not tasks:
        return
    rows = read_manifest(place)
    if eval_set.split is not None:
        rows = rows[rows["split"] == eval_set.split]
    bare = [str(row.sample_id) for row in rows.itertuples() if not row.captions]
    if bare:
        hint = ("SAR-Narrator left them uncaptioned (see caption_rejected.parquet there)" if eval_set.narrate
                else "set `narrate: true` on the set to caption them with SAR-Narrator, or drop those tasks")
        raise DataError(
            f"eval set {eval_set.name!r}: {len(bare)} of {len(rows)} rows of {place} "
            f"[{eval_set.split or 'all'}] have no captions, needed by {' and '.join(tasks)} "
            f"(e.g. {bare[:3]}); {hint}"
        )


def pinned_dataset(eval_set: EvalSet, data_root: str | Path, cache_dir: str | Path) -> tuple[Path, str] | str:
    """One eval set's source dataset (before any narration), ingested when needed and checked against its pin.

    Args:
        eval_set: The set.
        data_root: Where relative datasets live.
        cache_dir: The evaluation cache (``evaluate.cache_dir``), where ``source`` sets are ingested.

    Returns:
        ``(dataset directory, data version)``, or the reason an ``optional`` set is skipped.

    Raises:
        DataError: A dataset missing without a source, a non-optional source absent, modified DVC
            data, or a version other than the set's ``dvc_version`` pin.
    """
    place = _materialise(eval_set, Path(data_root), Path(cache_dir))
    if isinstance(place, str):
        return place
    version = dataset_version(place)
    if eval_set.dvc_version is not None and eval_set.dvc_version != version:
        raise DataError(
            f"eval set {eval_set.name!r}: {place} is data version {version}, but the config pins "
            f"{eval_set.dvc_version}; {_pin_remedy(place, version)}, or update evaluate.sets[].dvc_version "
            "deliberately"
        )
    return place, version


def prepare_eval_data(cfg: RunConfig, data_root: str | Path | None = None) -> EvalData:
    """Make every eval set of ``cfg.evaluate`` ready, version it and check its pin.

    A ``narrate`` set is checked against its pin first, then captioned (or its cached narrated copy
    reused) and scored on that copy.

    Args:
        cfg: The run config.
        data_root: Where relative datasets live (default ``cfg.data.root``).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: No eval sets, a dataset missing without a source, a non-optional source
            absent, modified DVC data, a version other than the set's ``dvc_version`` pin, or rows
            without the captions a retrieval or captioning task needs.
    """
    if not cfg.evaluate.sets:
        raise DataError(f"config of {cfg.paper!r} ({cfg.profile}) names no evaluate.sets; nothing to score")
    root = Path(data_root if data_root is not None else cfg.data.root)
    cache_dir = Path(cfg.evaluate.cache_dir)
    ready, versions, skipped = [], {}, {}
    for eval_set in cfg.evaluate.sets:
        resolved = pinned_dataset(eval_set, root, cache_dir)
        if isinstance(resolved, str):
            skipped[eval_set.name] = resolved
            continue
        place, version = resolved
        if eval_set.narrate:
            place, version = narrated_copy(eval_set, place, version, cfg)
        _require_captions(eval_set, place)
        versions[eval_set.name] = version
        ready.append(eval_set.model_copy(update={"dataset": str(place)}))
    if not ready:
        raise DataError(f"no eval set could be scored: {skipped}")
    return EvalData(ready, versions, skipped)
