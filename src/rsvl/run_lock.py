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
from typing import Iterator


class RunLocked(RuntimeError):
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
