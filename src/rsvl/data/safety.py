"""Extract archives without letting a member escape the target directory."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

from rsvl.errors import DataError, UnsafeArchiveError


def _check_member(name: str, target: Path, archive: Path) -> Path:
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    dest = (target / name).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {target}")
    return dest


def _check_link(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    base = (target / member.name).parent if member.issym() else target
    dest = (base / member.linkname).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(
            f"{archive}: link {member.name!r} -> {member.linkname!r} points outside {target}")


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a zip or tar archive after checking every member path.

    Members with absolute paths, ``..`` components, or links pointing outside the target are
    refused before anything is written.

    Args:
        archive: A ``.zip`` or tar (optionally compressed) file.
        target: Directory to extract into (created when missing).

    Returns:
        The extracted file paths.

    Raises:
        UnsafeArchiveError: A member would land outside ``target``.
        DataError: The file is not a zip or tar archive, or is damaged.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target = target.resolve()
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, target)
        return _extract_tar(archive, target)
    except (zipfile.BadZipFile, tarfile.ReadError, EOFError) as err:
        raise DataError(f"{archive}: not a zip or tar archive, or a damaged one ({err})") from err


def _extract_zip(archive: Path, target: Path) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        for name in names:
            _check_member(name, target, archive)
        zf.extractall(target)
    return [target / n for n in names if not n.endswith("/")]


def _extract_tar(archive: Path, target: Path) -> list[Path]:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _check_member(member.name, target, archive)
            if member.issym() or member.islnk():
                _check_link(member, target, archive)
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or fifo")
        tf.extractall(target, filter="data")
        return [target / m.name for m in members if m.isfile()]
