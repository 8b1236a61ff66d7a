"""A KFP step's process ends as soon as its component has succeeded, skipping interpreter teardown.

Tearing down an interpreter that imported torch, open_clip, transformers and MLflow takes about
two seconds (module dictionaries and their objects freed one by one), on every step of a
pipeline, for nothing: the outputs are written. In a KFP executor process (``_KFP_RUNTIME=true``,
set by the command of every lightweight component) :func:`install` registers an exit handler
that, once KFP's executor has written the step's output file, flushes logging and the standard
streams and ends the process with status 0 at once. It is registered when ``rsvl`` is imported
(the first thing a component body does), so the exit handlers registered later (MLflow, Ray,
the METEOR scorer) have run before it. A step that failed never wrote its output file, and
exits the normal way with its error status.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
from pathlib import Path

RUNTIME_ENV = "_KFP_RUNTIME"
INPUT_FLAG = "--executor_input"

_installed: list[Path] = []


def executor_output_file(argv: list[str]) -> Path | None:
    """The output file KFP's executor writes on success, from the process's ``--executor_input``.

    Args:
        argv: The process's arguments (``sys.argv``).

    Returns:
        Its path, or ``None`` when the arguments hold no executor input naming one.
    """
    try:
        payload = json.loads(argv[argv.index(INPUT_FLAG) + 1])
        return Path(payload["outputs"]["outputFile"])
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def _exit_after_success(output: Path) -> None:
    if not output.is_file() or getattr(sys, "last_value", None) is not None:
        return  # the component failed: exit the normal way, with its status
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


def install() -> bool:
    """In a KFP executor process, end it without teardown once the step succeeded (see the module doc).

    Returns:
        Whether the handler is (now or already) registered.
    """
    if _installed:
        return True
    if os.environ.get(RUNTIME_ENV) != "true":
        return False
    output = executor_output_file(sys.argv)
    if output is None:
        return False
    _installed.append(output)
    atexit.register(_exit_after_success, output)
    return True
