"""Extract archives without letting a member escape the target directory."""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

from rsvl.errors import DataError, UnsafeArchiveError

MAX_RATIO = 100
"""The most a zip member larger than :data:`RATIO_FLOOR` may inflate relative to its stored bytes: real
imagery and tables compress 1-10×; a member past this is a zip bomb."""
RATIO_FLOOR = 16 * 2**20
"""Members up to this size are never refused for their ratio (small text files compress well)."""
MAX_TOTAL = 1 << 40
"""The most an archive may unpack to in all (1 TiB), whatever the disk has free."""


def _check_sizes(archive: Path, target: Path, members: list[tuple[str, int, int | None]]) -> None:
    """Refuse a zip bomb, or an archive the disk cannot hold, from the declared sizes alone.

    Args:
        archive: The archive (for messages).
        target: Where it would be unpacked.
        members: ``(name, unpacked bytes, stored bytes or None)`` per member.
    """
    for name, size, stored in members:
        if stored is not None and size > RATIO_FLOOR and size > MAX_RATIO * max(stored, 1):
            raise UnsafeArchiveError(
                f"{archive}: member {name!r} inflates {stored:,} bytes to {size:,} ({size // max(stored, 1):,}×), "
                f"past the limit of {MAX_RATIO}× (rule archive_ratio: a zip bomb)")
    total = sum(size for _, size, _ in members)
    free = shutil.disk_usage(target).free
    if total > MAX_TOTAL or total > free:
        raise UnsafeArchiveError(
            f"{archive}: unpacks to {total:,} bytes, more than the {min(MAX_TOTAL, free):,} allowed "
            f"(rule archive_size: {free:,} bytes free under {target}); free space there or unpack it yourself")


def _check_member(name: str, target: Path, archive: Path) -> Path:
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path (rule archive_path)")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' (rule archive_path)")
    dest = (target / name).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the folder it unpacks to (rule archive_path)")
    return dest


def _check_link(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    base = (target / member.name).parent if member.issym() else target
    dest = (base / member.linkname).resolve()
    if dest != target and target not in dest.parents:
        raise UnsafeArchiveError(
            f"{archive}: link {member.name!r} -> {member.linkname!r} points outside the folder it unpacks to (rule archive_path)")


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a zip or tar archive after checking every member path.

    Members with absolute paths, ``..`` components, or links pointing outside the target are
    refused before anything is written, and so are zip bombs (a member past :data:`MAX_RATIO`
    times its stored size) and archives whose declared sizes pass the free disk or :data:`MAX_TOTAL`.

    Args:
        archive: A ``.zip`` or tar (optionally compressed) file.
        target: Directory to extract into (created when missing).

    Returns:
        The extracted file paths.

    Raises:
        UnsafeArchiveError: A member would land outside ``target``, inflates like a bomb, or the
            archive would not fit.
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
        _check_sizes(archive, target, [(info.filename, info.file_size, info.compress_size) for info in zf.infolist()])
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
        _check_sizes(archive, target, [(member.name, member.size, None) for member in members])
        tf.extractall(target, filter="data")
        return [target / m.name for m in members if m.isfile()]
