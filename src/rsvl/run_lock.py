"""One pipeline run at a time on a store: an exclusive ``flock`` on a lock file beside it.

The kernel releases a ``flock`` when its holder dies, so a ``kill -9`` leaves no stale lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from rsvl.errors import RsvlError

LOCK_SUFFIX = ".run.lock"


class RunLocked(RsvlError):
    """Another live process holds the run lock."""


@contextmanager
def run_lock(path: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the block, or refuse at once.

    Args:
        path: The lock file (created with its folder if missing); its text names the holder.

    Returns:
        A context manager yielding ``path`` while the lock is held.

    Raises:
        RunLocked: The lock is held by a live process; the message names the file, the holder's
            pid, command and start time, and what to do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown holder"
            raise RunLocked(
                f"another pipeline run holds the lock {path} ({holder}); wait for it to finish. "
                "The lock is released by the kernel when its holder exits, even on kill -9, "
                "so if that process is gone, simply run again") from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()}, command {' '.join(sys.argv)!r}, started {started}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def lock_files(tracking_uris: Iterable[str], data_roots: Iterable[str | Path]) -> list[Path]:
    """The lock files of a local run: one beside each sqlite tracking store and one beside each data root.

    A lock beside (not inside) the data root keeps it out of the root's DVC version.

    Args:
        tracking_uris: The runs' MLflow tracking URIs (only ``sqlite:///`` stores get a lock).
        data_roots: The runs' data roots.

    Returns:
        The distinct lock paths, sorted.
    """
    from rsvl.mlflow_store import SQLITE_PREFIX, resolve_tracking_uri

    paths = {Path(str(Path(root).resolve()) + LOCK_SUFFIX) for root in data_roots}
    for uri in tracking_uris:
        resolved = resolve_tracking_uri(uri)
        if resolved.startswith(SQLITE_PREFIX):
            paths.add(Path(resolved[len(SQLITE_PREFIX):] + LOCK_SUFFIX))
    return sorted(paths)


@contextmanager
def run_locks(paths: Iterable[Path]) -> Iterator[list[Path]]:
    """Hold every lock in ``paths`` (in sorted order) for the block, or refuse at the first one held.

    Raises:
        RunLocked: One of them is held by a live process.
    """
    from contextlib import ExitStack

    with ExitStack() as stack:
        held = [stack.enter_context(run_lock(path)) for path in sorted(paths)]
        yield held
