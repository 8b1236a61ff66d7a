"""Adapters turn a public dataset layout into the canonical format, one module per layout.

Each adapter registers itself by name with :func:`register`; ``rsvl data ingest --format NAME``
and :func:`ingest` look it up here, so adding a layout never touches the CLI or the pipelines.
"""

from __future__ import annotations

import importlib
import pkgutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Protocol

from rsvl.data.safety import safe_extract
from rsvl.data.store import IngestReport
from rsvl.errors import DataError


class Adapter(Protocol):
    """Signature every adapter implements."""

    def __call__(self, source: Path, out: Path, *, name: str | None = None) -> IngestReport: ...


_REGISTRY: dict[str, Adapter] = {}


def register(name: str) -> Callable[[Adapter], Adapter]:
    """Register an adapter function under a format name.

    Args:
        name: The ``--format`` value users pass.
    """

    def wrap(func: Adapter) -> Adapter:
        if name in _REGISTRY:
            raise ValueError(f"adapter {name!r} registered twice")
        _REGISTRY[name] = func
        return func

    return wrap


def _load_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def formats() -> list[str]:
    """Return the registered format names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def ingest(fmt: str, source: str | Path, out: str | Path, *, name: str | None = None) -> IngestReport:
    """Ingest ``source`` in format ``fmt`` into a canonical dataset at ``out``.

    Args:
        fmt: A registered format name (see :func:`formats`).
        source: Source file or directory of the public layout, or a zip/tar of it (unpacked
            into a temporary directory after every member path is checked).
        out: Destination dataset directory (replaced if it exists).
        name: Dataset name; defaults to the source's name.

    Returns:
        The writer's report (rows, quarantined rows, files).
    """
    _load_all()
    if fmt not in _REGISTRY:
        raise DataError(f"unknown format {fmt!r}; known formats: {', '.join(sorted(_REGISTRY))}")
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: source does not exist")
    if not is_archive(source):
        return _REGISTRY[fmt](source, Path(out), name=name)
    with tempfile.TemporaryDirectory(prefix="rsvl-ingest-") as tmp:
        safe_extract(source, tmp)
        entries = [p for p in Path(tmp).iterdir()]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(tmp)
        return _REGISTRY[fmt](root, Path(out), name=name or source.name.split(".")[0])


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a zip or tar file that ingest should unpack (guarded) first.

    Args:
        path: A source path given to :func:`ingest`.
    """
    if not path.is_file() or path.suffix.lower() in {".json", ".csv", ".txt", ".parquet", ".h5", ".hdf5"}:
        return False
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)
