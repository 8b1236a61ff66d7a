"""Run independent, CPU-bound jobs in worker processes, results in job order.

Writing and validating the default datasets are six and five independent jobs of 1 to 6 s of pure
Python and NumPy each; threads would serialise on the GIL. On Linux the workers are forked: they
start at once with the modules already imported, and the caller's ``__main__`` is not run again
(a spawned worker re-imports it, which breaks scripts without an ``if __name__ == "__main__"``
guard). Jobs must therefore not run torch operators: its OpenMP pool, once started in the caller,
does not survive a fork (NumPy's OpenBLAS and Python's locks do). Elsewhere the workers are spawned.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, so a container's CPU set counts, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity mask
        return os.cpu_count() or 1


def run_jobs(job: Callable[..., T], arguments: Sequence[tuple[Any, ...]], processes: int | None = None) -> list[T]:
    """Call ``job(*args)`` for each ``args``, in up to ``processes`` spawned workers.

    Args:
        job: A module-level function that runs no torch operator (see the module docstring).
        arguments: One argument tuple per call; longer jobs first keeps the workers evenly busy.
        processes: Worker processes; ``None``: the available CPUs. With one process, or one job,
            the calls run here, one after another.

    Returns:
        The results, in the order of ``arguments``.

    Raises:
        Exception: The first failed job's exception (in job order), once every job has ended.
    """
    count = min(processes or available_cpus(), len(arguments))
    if count <= 1:
        return [job(*args) for args in arguments]
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context(method)) as pool:
        futures = [pool.submit(job, *args) for args in arguments]
        return [future.result() for future in futures]
