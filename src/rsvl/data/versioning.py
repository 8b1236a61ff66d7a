"""Data versions through DVC: track ``data/`` with ``data.dvc``, push to and pull from a remote.

Every step that reads data records the DVC md5 of ``data.dvc`` (and the dataset's path inside
``data/``), so a later run can check out exactly the bytes an earlier model was trained on. The
default remote is a local directory outside the checkout (``.dvc/config``); point it at S3 or
MinIO with :func:`set_remote` (written to ``.dvc/config.local``, never committed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from rsvl.data.store import FILES_FILE, MANIFEST_FILE
from rsvl.errors import DataError

FINGERPRINT_PREFIX = "sha256-"

DEFAULT_REMOTE = "local"


@dataclass(frozen=True)
class DataVersion:
    """The exact data a step read: DVC md5 of the tracked directory plus a path inside it."""

    md5: str
    dvc_file: str
    path: str

    def tag(self) -> str:
        """Return ``md5:path``, the form stored as an MLflow tag."""
        return f"{self.md5}:{self.path}"


@contextlib.contextmanager
def _repo(root: str | Path):
    from dvc.repo import Repo

    previous = Path.cwd()
    os.chdir(root)
    try:
        with Repo(str(root)) as repo:
            yield repo
    finally:
        os.chdir(previous)


def init_repo(root: str | Path, remote_url: str | None = None) -> None:
    """Make ``root`` a DVC project (idempotent) and set its default remote when given.

    Args:
        root: The checkout (a git work tree) or any directory (initialised without SCM).
        remote_url: Remote URL or directory; relative paths resolve from ``.dvc/``.
    """
    from dvc.repo import Repo

    root = Path(root)
    if not (root / ".dvc").is_dir():
        Repo.init(str(root), no_scm=not (root / ".git").exists())
    if remote_url is not None:
        set_remote(root, remote_url, local=False)


def set_remote(root: str | Path, url: str, *, name: str = DEFAULT_REMOTE, local: bool = True) -> None:
    """Add or change a remote and make it the default.

    Args:
        root: DVC project directory.
        url: A directory, ``s3://bucket/prefix`` (set ``endpointurl`` for MinIO separately), etc.
        name: Remote name.
        local: Write to ``.dvc/config.local`` (per-machine, not committed) instead of ``.dvc/config``.
    """
    level = "local" if local else "repo"
    with _repo(root) as repo:
        with repo.config.edit(level) as conf:
            conf["remote"][name] = {"url": url}
            conf["core"]["remote"] = name


def track(root: str | Path, target: str = "data", push: bool = False) -> str:
    """``dvc add`` a directory (writing ``<target>.dvc``) and optionally push it.

    Args:
        root: DVC project directory.
        target: Directory to track, relative to ``root``.
        push: Also upload the new version to the default remote.

    Returns:
        The md5 DVC recorded for the directory.
    """
    root = Path(root)
    if not (root / target).is_dir():
        raise DataError(f"{root / target}: cannot track a directory that does not exist")
    with _repo(root) as repo:
        repo.add([target])
        if push:
            repo.push([target])
    return dvc_md5(root / f"{target}.dvc")


def push(root: str | Path, target: str = "data") -> None:
    """Upload the tracked version of ``target`` to the default remote."""
    with _repo(root) as repo:
        repo.push([f"{target}.dvc"])


def pull(root: str | Path, target: str = "data") -> None:
    """Download and check out the version of ``target`` recorded in ``<target>.dvc``."""
    with _repo(root) as repo:
        repo.pull([f"{target}.dvc"], force=True)


def workspace_matches(root: str | Path, dvc_file: str) -> bool:
    """Whether the workspace holds exactly the data ``dvc_file`` records.

    The workspace's hash is computed and compared with the recorded one, so the answer does not
    depend on the local DVC cache (a fresh clone that regenerated or pulled the data has none).

    Args:
        root: DVC project directory.
        dvc_file: The ``.dvc`` file, relative to ``root``.
    """
    with _repo(root) as repo:
        outs = [out for stage in repo.stage.collect(dvc_file) for out in stage.outs]
        return all(out.get_hash().value == out.hash_info.value for out in outs)


def restore_hint(root: str | Path, dvc_file: str, dataset_dir: str | Path) -> str:
    """Say how to get back the data version ``dvc_file`` records, naming only remedies that work.

    The generated default data is rewritten byte for byte by ``make data`` (its generator is
    CPU-independent, see :mod:`rsvl.data.synthetic.exact`); ``rsvl data pull`` is offered only
    when a DVC remote is configured, and for a local remote only when its folder exists (a fresh
    clone has no cache, so ``dvc checkout`` alone never helps there).

    Args:
        root: DVC project directory.
        dvc_file: The ``.dvc`` file, relative to ``root``.
        dataset_dir: The dataset whose workspace differs.

    Returns:
        One or more sentences, each a remedy.
    """
    from rsvl.data.store import read_meta

    hints = []
    with contextlib.suppress(Exception):
        meta = read_meta(dataset_dir)
        if meta.get("adapter") == "generate-default":
            default = Path(dataset_dir).parent
            seed = meta.get("generator_seed", 0)
            hints.append(
                f"{default} is the generated default data: `make data` rewrites it at the recorded version "
                f"(`rsvl data generate --out {default} --seed {seed}`, then `rsvl data validate {default} "
                f"--config pipelines/<paper>/config.yaml`); any other folder under {Path(dvc_file).stem}/ "
                f"is part of the version too"
            )
    remote = _default_remote(root)
    if remote is None:
        hints.append("no DVC remote is configured, so `rsvl data pull` cannot restore it")
    else:
        name, url = remote
        if "://" not in url and not Path(url).is_dir():
            hints.append(f"`rsvl data pull` cannot restore it: the DVC remote '{name}' ({url}) does not exist here")
        else:
            where = "" if "://" not in url else " where it is reachable"
            hints.append(f"`rsvl data pull` restores it from the DVC remote '{name}' ({url}){where}")
    return "; ".join(hints)


def _default_remote(root: str | Path) -> tuple[str, str] | None:
    """The default DVC remote's name and URL (local paths resolved), or ``None``."""
    try:
        with _repo(root) as repo:
            name = repo.config["core"].get("remote")
            remotes = repo.config.get("remote", {})
            if not name or name not in remotes:
                return None
            return name, str(remotes[name]["url"])
    except Exception:  # an unreadable config means no remote we can offer
        return None


def dvc_md5(dvc_file: str | Path) -> str:
    """Read the md5 of the single output recorded in a ``.dvc`` file.

    Args:
        dvc_file: Path of ``data.dvc`` (or any single-output ``.dvc`` file).

    Returns:
        The md5 (``…​.dir`` suffix removed for directories).
    """
    dvc_file = Path(dvc_file)
    if not dvc_file.is_file():
        raise DataError(f"{dvc_file}: no DVC file; run `rsvl data generate --track` or `dvc add data`")
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    if len(outs) != 1 or "md5" not in outs[0]:
        raise DataError(f"{dvc_file}: expected one output with an md5, found {outs!r}")
    return str(outs[0]["md5"]).removesuffix(".dir")


def data_version(dataset_dir: str | Path, root: str | Path | None = None) -> DataVersion:
    """Name the data version a step reads: the md5 of the ``.dvc`` file that covers ``dataset_dir``.

    Args:
        dataset_dir: A dataset directory inside a DVC-tracked directory.
        root: DVC project root; by default the nearest parent holding ``.dvc/``.

    Returns:
        The version; raises ``DataError`` when no ``.dvc`` file covers the directory.
    """
    dataset_dir = Path(dataset_dir).resolve()
    root = Path(root).resolve() if root else _find_root(dataset_dir)
    rel = dataset_dir.relative_to(root)
    for depth in range(1, len(rel.parts) + 1):
        tracked = Path(*rel.parts[:depth])
        dvc_file = root / f"{tracked}.dvc"
        if dvc_file.is_file():
            inner = Path(*rel.parts[depth:]).as_posix() if depth < len(rel.parts) else "."
            return DataVersion(dvc_md5(dvc_file), dvc_file.relative_to(root).as_posix(), inner)
    raise DataError(f"{dataset_dir}: not inside a DVC-tracked directory under {root}")


def _find_root(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if (parent / ".dvc").is_dir():
            return parent
    raise DataError(f"{path}: no DVC project (.dvc/) in any parent directory")


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
            f"to evaluate on the recorded version: {restore_hint(root, version.dvc_file, dataset_dir)}"
        )
    return version.md5
