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


def test_a_second_make_pipeline_on_the_same_store_refuses_at_once_naming_the_holder(tmp_path, capsys):
    from pipelines.run import main
    from rsvl.run_lock import lock_files, run_lock

    store, data = f"sqlite:///{tmp_path}/mlflow/mlflow.db", tmp_path / "data"
    overrides = ["--set", f"mlflow.tracking_uri={store}", "--set", f"data.root={data}"]
    held = lock_files([store], [data])
    assert held == sorted([tmp_path / "data.run.lock", tmp_path / "mlflow" / "mlflow.db.run.lock"])
    with run_lock(held[1]):  # the store's lock, as a first run holds it
        started = time.monotonic()
        with pytest.raises(SystemExit) as refused:
            main(["--paper", "sar_text", *overrides])
    assert time.monotonic() - started < 30
    message = str(refused.value.code)
    assert message.startswith("error: another pipeline run holds the lock") and str(held[1]) in message
    assert f"pid {os.getpid()}" in message
    assert not (tmp_path / "mlflow" / "mlflow.db").exists() and not data.exists()  # nothing ran
