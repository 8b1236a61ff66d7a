"""Console output of long-running steps: the ``rsvl`` loggers' progress lines on stderr.

Library code only logs (``logging.getLogger("rsvl...")``); entry points (the CLI, the pipeline
components) call :func:`show_progress` once so a fit's periodic step/loss/samples-per-second/ETA
lines reach the terminal or the Kubeflow step log, whether the loop runs in a Ray worker (Ray
forwards its output) or in this process (Ray Train local mode).
"""

from __future__ import annotations

import logging
import sys

PROGRESS_FORMAT = "%(asctime)s %(name)s: %(message)s"
_HANDLER_NAME = "rsvl-progress"


def show_progress(level: int = logging.INFO) -> None:
    """Print ``rsvl`` log records at ``level`` and above on stderr; calling it again changes nothing.

    Args:
        level: The lowest level shown.
    """
    logger = logging.getLogger("rsvl")
    logger.setLevel(level)
    if any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter(PROGRESS_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
