"""The MLflow tracking store locked or unreachable: waited out with backoff, then one clear error (rsvl.mlflow_store).

A server that comes back after a few seconds is ridden out by the same policy:
``tests/test_k8s_manifests.py::test_mlflow_server_answers_the_cluster_hostname_only`` makes its
first call through :func:`rsvl.mlflow_store.tracking_client` while the server is still starting.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from rsvl.errors import TrackingStoreUnavailable
from rsvl.mlflow_store import HTTP_RETRY_ENV, http_backoff_seconds, store_unavailable, tracking_client

HOLD = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def _hold_lock(db, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_sqlite_store_locked_for_two_seconds_is_waited_out(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking_client(uri)
    experiment = client.create_experiment("locked")
    holder = _hold_lock(tmp_path / "mlflow.db", 2.0)
    started = time.monotonic()
    run = client.create_run(experiment)  # a write: it must wait for the holder's COMMIT
    waited = time.monotonic() - started
    assert holder.wait(timeout=30) == 0
    assert waited >= 1.5, f"the write did not wait for the lock ({waited:.2f} s)"
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run.info.run_id]


def test_a_lock_held_past_the_wait_gives_one_clear_error(tmp_path):
    db = tmp_path / "mlflow.db"
    tracking_client(f"sqlite:///{db}").create_experiment("locked")
    holder = _hold_lock(db, 5.0)
    try:  # the error sqlite itself raises on a held lock (MLflow's own wait is 20 s: too long for the suite)
        sqlite3.connect(db, timeout=0).execute("INSERT INTO experiments (name) VALUES ('x')")
    except sqlite3.OperationalError as err:
        raw = err
    holder.kill()
    clear = store_unavailable(raw, f"sqlite:///{db}")
    assert isinstance(clear, TrackingStoreUnavailable)
    assert str(clear).startswith(f"MLflow store {db} stayed locked past sqlite's 20 s wait: another process holds")
    assert store_unavailable(ValueError("bad value"), f"sqlite:///{db}") is None  # other errors pass through


def test_an_unreachable_server_is_retried_with_backoff_then_named(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0")
    assert http_backoff_seconds() == 0 + 2  # urllib3: no sleep before the first retry, factor * 2 ** (n - 1) before the n-th
    started = time.monotonic()
    with pytest.raises(TrackingStoreUnavailable) as caught:
        tracking_client(f"http://127.0.0.1:{port}").search_experiments()
    elapsed = time.monotonic() - started
    assert str(caught.value).startswith(f"MLflow tracking server http://127.0.0.1:{port} did not answer "
                                        "(Connection refused) after 2 retries with backoff (~2 s;")
    assert elapsed >= 2 - 0.1, f"gave up after {elapsed:.1f} s without its backoff"


def test_importing_the_store_module_sets_the_policy_and_keeps_what_the_user_set():
    code = "import json, os, rsvl.mlflow_store as m; print(json.dumps({k: os.environ[k] for k in m.HTTP_RETRY_ENV}))"
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_HTTP_REQUEST_TIMEOUT": "7"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == HTTP_RETRY_ENV | {"MLFLOW_HTTP_REQUEST_TIMEOUT": "7"}
