"""Put immutable files in a second place without writing their bytes again.

A train step's model (~120 MB locally, GBs on the cluster) goes from the final checkpoint to the
step's output and into the MLflow run; on the local profile the three are folders on one disk,
and the copies were a fifth of a progression's time outside its training steps (about 1.3 s
per copy here). A hard link is the same file under another name. Only write-once outputs are
linked: a later writer replaces a file (a new inode) rather than changing it in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> str:
    """Hard-link ``target`` to ``source``, or copy it where no link can be made (another file system).

    Args:
        source: An existing file.
        target: The new name (must not exist).

    Returns:
        ``target``, as ``shutil.copytree`` wants from its ``copy_function``.

    Raises:
        FileExistsError: ``target`` exists (it is never replaced).
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(target):
            raise FileExistsError(f"{target}: exists; not replaced") from None
        shutil.copy2(source, target)
    return str(target)


def link_tree(source: str | Path, target: str | Path) -> Path:
    """``shutil.copytree`` with each file hard-linked where possible (:func:`link_or_copy`).

    Args:
        source: The folder.
        target: The new folder (it may exist, without the files to put there).

    Returns:
        ``target``.
    """
    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True)
    return Path(target)
