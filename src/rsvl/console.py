"""Progress lines of long library loops, in one format the pipeline console recognises.

Library code logs a progress line through :class:`Progress` (``<what>: <done>/<total> <unit>,
<rate>/s, ETA <eta>``); the CLI prints it as it is, and the local pipeline runner
(``pipelines.console``) turns the lines it finds in a step's log into its live progress line
(:data:`PROGRESS_LINE` matches them, and training's ``step N/M ... loss L ... ETA E`` lines).
"""

from __future__ import annotations

import logging
import re
import time

PROGRESS_LINE = re.compile(
    r"(?P<what>\w[\w ./-]*?): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+), [\d.]+/s, ETA (?P<eta>\S+)")
"""A :class:`Progress` line (the logger's prefix before it is ignored)."""

TRAIN_LINE = re.compile(r"step (?P<done>\d+)/(?P<total>\d+) .*?loss (?P<loss>\S+) .*?ETA (?P<eta>\S+)")
"""A training progress line of ``rsvl.train.loop`` (``step 20/120 epoch 0.50 loss 2.3026 ... ETA 0m41s``)."""


def format_eta(seconds: float) -> str:
    """``1m05s``, or ``1h02m05s`` past an hour.

    Args:
        seconds: Time left (negative counts as 0).
    """
    minutes, secs = divmod(max(int(round(seconds)), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Log ``<what>: <done>/<total> <unit>, <rate>/s, ETA <eta>`` at most every ``every`` seconds, and at the end.

    Args:
        logger: Where the lines go (INFO).
        what: What is being done (``captioning sar_test``).
        total: Units in all.
        unit: Name of a unit (``images``).
        every: Least seconds between two lines (the first and the last are always logged).
    """

    def __init__(self, logger: logging.Logger, what: str, total: int, unit: str = "items", every: float = 10.0) -> None:
        self.logger, self.what, self.total, self.unit, self.every = logger, what, total, unit, every
        self.done, self.started, self._last = 0, time.perf_counter(), float("-inf")

    def add(self, count: int) -> None:
        """Count ``count`` more units done; log a line when due."""
        self.done += count
        now = time.perf_counter()
        if self.done < self.total and now - self._last < self.every:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.logger.info("%s: %d/%d %s, %.1f/s, ETA %s", self.what, self.done, self.total, self.unit, rate,
                         format_eta(eta))
