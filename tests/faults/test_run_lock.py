"""The run lock: a second run refuses at once naming the holder; a SIGKILLed holder frees it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rsvl.run_lock import RunLocked, run_lock

HOLD = ("import sys, time; from pathlib import Path; from rsvl.run_lock import run_lock\n"
        "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")


def test_second_run_refuses_while_held_and_kill_9_frees_the_lock(tmp_path):
    lock = tmp_path / "store" / "pipeline.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.perf_counter()
        with pytest.raises(RunLocked) as refused:
            with run_lock(lock):
                pytest.fail("acquired a lock another process holds")
        assert time.perf_counter() - started < 2
        assert str(lock) in str(refused.value) and f"pid {holder.pid}" in str(refused.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with run_lock(lock) as held:
            assert f"pid {os.getpid()}" in held.read_text()
    finally:
        holder.kill()
        holder.wait()
