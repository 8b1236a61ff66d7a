"""Copies to and from the shared volume, checked per path: the source exists, the copy arrived whole, no source is lost.

The kuberay train step copies the dataset, the stage datasets, ``train.init_from`` and the config
onto the shared ReadWriteMany volume, and the RayJob's output back. A copy that replaces a folder
must never delete what it copies from: :func:`copy_tree` refuses a destination that is the source,
lies inside it or contains it (replacing ``shared/run/dataset`` with itself would delete it). Each
copy is written beside its destination under a scratch name, compared with its source file by file
(relative path and size) and only then renamed into place, so a reader never sees half a copy and
a short copy (a full volume, a vanished file) fails naming the path instead of training on it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rsvl.errors import DataError

SCRATCH = ".{name}.copying-{pid}"


def file_sizes(root: Path) -> dict[str, int]:
    """Relative path → size of every file under ``root`` (links followed, as the copy follows them)."""
    sizes: dict[str, int] = {}
    for folder, _, files in os.walk(root, followlinks=True):
        for name in files:
            path = Path(folder) / name
            sizes[path.relative_to(root).as_posix()] = path.stat().st_size
    return sizes


def check_copy(source: Path, copy: Path) -> None:
    """Raise unless ``copy`` holds exactly ``source``'s files with their sizes (a file or a folder).

    Raises:
        DataError: A file is missing, extra or of another size; the message names the paths.
    """
    if source.is_file():
        if not copy.is_file() or copy.stat().st_size != source.stat().st_size:
            raise DataError(f"copy of {source} to {copy} is incomplete ({source.stat().st_size} bytes expected)")
        return
    expected, found = file_sizes(source), file_sizes(copy)
    wrong = sorted(path for path in set(expected) | set(found) if expected.get(path) != found.get(path))
    if wrong:
        raise DataError(f"copy of {source} to {copy} is incomplete: {len(wrong)} of {len(expected)} file(s) missing "
                        f"or of another size (first: {wrong[:3]})")


def check_apart(source: Path, target: Path) -> None:
    """Refuse a copy whose destination is the source, inside it, or a folder holding it.

    Raises:
        DataError: The two overlap (replacing the destination would delete the source).
    """
    source, target = source.resolve(), target.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise DataError(f"refusing to copy {source} to {target}: one holds the other, so replacing the destination "
                        "would delete the source; use another run name or move the source off the shared run folder")


def copy_path(source: str | Path, target: str | Path) -> Path:
    """Copy a file or folder to ``target``, replacing what is there, checked (see the module docstring).

    Args:
        source: An existing file or folder.
        target: Its destination (parents are created).

    Returns:
        ``target``.

    Raises:
        DataError: The source is missing, the two overlap, or the copy arrived incomplete.
    """
    source, target = Path(source), Path(target)
    if not source.exists():
        raise DataError(f"cannot copy {source} to {target}: the source does not exist")
    check_apart(source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / SCRATCH.format(name=target.name, pid=os.getpid())
    _remove(scratch)
    try:
        if source.is_dir():
            shutil.copytree(source, scratch)
        else:
            shutil.copyfile(source, scratch)
        check_copy(source, scratch)
    except BaseException:
        _remove(scratch)
        raise
    _remove(target)
    os.replace(scratch, target)
    return target


def _remove(path: Path) -> None:
    """Delete a file or folder if present (only ever a destination or a scratch copy)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def copy_contents(source_dir: str | Path, target_dir: str | Path) -> list[Path]:
    """Copy every entry of ``source_dir`` into ``target_dir`` with :func:`copy_path` (each replaced, each checked).

    Raises:
        DataError: ``source_dir`` is missing or empty, overlaps ``target_dir``, or an entry's copy failed.
    """
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    if not source_dir.is_dir():
        raise DataError(f"cannot copy the contents of {source_dir}: no such folder")
    check_apart(source_dir, target_dir)
    entries = sorted(source_dir.iterdir())
    if not entries:
        raise DataError(f"cannot copy the contents of {source_dir}: it is empty")
    target_dir.mkdir(parents=True, exist_ok=True)
    return [copy_path(entry, target_dir / entry.name) for entry in entries]
