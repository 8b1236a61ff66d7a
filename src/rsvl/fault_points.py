"""Named points where a test can kill this process with SIGKILL, as ``kill -9`` would, to prove recovery.

Off unless ``RSVL_FAULT_KILL_AT`` names the point; nothing else reads the variable.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "RSVL_FAULT_KILL_AT"
"""Environment variable naming the point to die at (e.g. ``register.after_create_version``)."""


def kill_point(name: str) -> None:
    """SIGKILL this process when :data:`KILL_AT_ENV` names ``name``; otherwise do nothing.

    Args:
        name: The point, ``<step>.<moment>``.
    """
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
