"""Who used the CPUs during a benchmark: every process sampled in a background thread, grouped by role.

A 2-core machine has no spare core, so a trainer's throughput is whatever CPU time is left to its
compute process. :class:`CpuUsage` reads each process's CPU seconds (user + system) every
``interval`` seconds and reports, for a time window, the average number of cores each role used
and its niceness. Roles follow process ancestry: ``trainer`` (the process that runs the train
steps: open_clip's process, the Ray Train worker, or this process in Ray Train's local mode), ``loader workers`` (its children), ``Ray``
(every other descendant of this driver: Ray's daemons and actors), ``bench driver`` (this
process), and ``not this benchmark`` (anything else on the machine, which makes the numbers noisy).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

TRAIN_WORKER_TITLE = "RayTrainWo"  # survives the 15-character process name
TITLE_SETTLE_S = 15.0
TRAINER, LOADERS, RAY, DRIVER, OTHERS = "trainer", "loader workers", "Ray", "bench driver", "not this benchmark"


@dataclass
class _Series:
    role: str = OTHERS
    title: str = ""
    nice: int = 0
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def cpu_at(self, moment: float) -> float:
        """CPU seconds at the last sample at or before ``moment`` (the first sample if none)."""
        return self.cpu[max(bisect.bisect_right(self.times, moment) - 1, 0)]


def _ancestors(pid: int, parents: dict[int, int]) -> list[int]:
    chain = []
    while pid in parents and parents[pid] not in chain and parents[pid] > 0:
        pid = parents[pid]
        chain.append(pid)
    return chain


class CpuUsage:
    """Sample the CPU time of all processes, labelled relative to one trainer process.

    Use as a context manager around the run.

    Args:
        trainer_pid: The trainer's process when known at start (open_clip's, or this process for
            Ray Train's local mode); ``None`` takes the Ray Train worker among this process's
            descendants.
        interval: Seconds between samples.
    """

    def __init__(self, trainer_pid: int | None = None, interval: float = 1.0) -> None:
        self.trainer_pid = trainer_pid
        self.interval = interval
        self.driver_pid = os.getpid()
        self.series: dict[tuple[int, float], _Series] = defaultdict(_Series)
        self._procs: dict[int, psutil.Process] = {}
        self._parents: dict[int, int] = {}
        self._titles: dict[int, str] = {}
        self._created: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-usage", daemon=True)

    def __enter__(self) -> "CpuUsage":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _role(self, pid: int, parents: dict[int, int], titles: dict[int, str]) -> str:
        chain = _ancestors(pid, parents)
        if self.trainer_pid is not None:
            if pid == self.trainer_pid:
                return TRAINER
            if self.trainer_pid in chain:
                return LOADERS
        if pid == self.driver_pid:
            return DRIVER
        if self.driver_pid not in chain:
            return OTHERS
        if self.trainer_pid is None and TRAIN_WORKER_TITLE in titles.get(pid, ""):
            return LOADERS if TRAIN_WORKER_TITLE in titles.get(chain[0], "") else TRAINER
        return RAY

    def _sample(self) -> None:
        now = time.time()
        alive: dict[int, tuple[psutil.Process, float, int]] = {}
        for pid in psutil.pids():
            try:
                proc = self._procs.get(pid) or psutil.Process(pid)
                with proc.oneshot():
                    times, nice, created = proc.cpu_times(), proc.nice(), proc.create_time()
                    if self._created.get(pid) != created:
                        self._created[pid] = created
                        self._parents.pop(pid, None)
                        self._titles.pop(pid, None)
                    if pid not in self._parents:
                        self._parents[pid] = proc.ppid()
                    if pid not in self._titles or now - created < TITLE_SETTLE_S:
                        self._titles[pid] = " ".join(part for part in proc.cmdline() if part) or proc.name()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self._procs[pid] = proc
            alive[pid] = (proc, times.user + times.system, nice)
        for pid, (proc, cpu, nice) in alive.items():
            series = self.series[(pid, self._created[pid])]
            series.role = self._role(pid, self._parents, self._titles)
            series.title, series.nice = self._titles[pid], nice
            if not series.times and self._thread.is_alive():
                series.times.append(min(self._created[pid], now))
                series.cpu.append(0.0)
            series.times.append(now)
            series.cpu.append(cpu)

    def _used(self, start: float, end: float) -> list[tuple[_Series, float]]:
        return [(s, s.cpu_at(end) - s.cpu_at(start)) for s in self.series.values() if s.times]

    def cores(self, start: float, end: float) -> dict[str, tuple[float, set[int]]]:
        """Average cores used by each role between ``start`` and ``end``, with the roles' niceness.

        Returns:
            ``{role: (cores, {nice values})}``, largest first.
        """
        totals: dict[str, float] = defaultdict(float)
        nices: dict[str, set[int]] = defaultdict(set)
        span = max(end - start, 1e-9)
        for series, used in self._used(start, end):
            if used > 0:
                totals[series.role] += used / span
                nices[series.role].add(series.nice)
        return {role: (totals[role], nices[role]) for role in sorted(totals, key=totals.get, reverse=True)}

    def top(self, role: str, start: float, end: float, count: int = 4) -> list[tuple[str, float]]:
        """The ``count`` processes of ``role`` that used the most cores in the window, by short title."""
        span = max(end - start, 1e-9)
        found = [(_short(s.title), used / span) for s, used in self._used(start, end) if s.role == role and used > 0]
        return sorted(found, key=lambda item: item[1], reverse=True)[:count]


def _short(title: str) -> str:
    parts = title.split()
    if not parts:
        return title
    if os.path.basename(parts[0]).startswith("python") and len(parts) > 1:
        parts = [part for part in parts[1:] if not part.startswith("-")] or parts
    return os.path.basename(parts[0])
