"""Shared fixtures: the real data beside the checkout, and an offline environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _share_cores_among_workers() -> None:
    """Give each pytest-xdist worker (and the pipelines, Ray workers and subprocesses it starts) its share of the cores.

    With ``make test``'s two workers on two cores, two processes each running torch's default one
    thread per core oversubscribe the machine: spinning OpenMP threads then wait on each other and
    the suite runs about twice as long as its work. ``OMP_NUM_THREADS`` is read by torch and the
    BLAS libraries at import, inherited by every child process, and respected by Ray (it sets its
    own only where unset) and by the train loop (:func:`rsvl.train.loop.worker_threads`).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:  # a plugin imported it before this file: its pool is sized already
            sys.modules["torch"].set_num_threads(threads)


_share_cores_among_workers()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RSVL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SESSION_PREFIX = "session-"
"""Folders under pytest's basetemp with this prefix live for the whole session (not removed per module)."""


def pytest_report_header(config) -> str:
    """Free disk where the tests write: the suite needs a few GB at its peak (one pipeline run)."""
    base = config._tmp_path_factory.getbasetemp()
    return f"rsvl: {shutil.disk_usage(base).free / 2**30:.1f} GiB free at {base}"


def _declared_seconds(item) -> float:
    """The time a test declares it may need (its ``timeout`` marker); 0 for the ones within the default."""
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker is not None and marker.args else 0.0


def pytest_collection_modifyitems(config, items) -> None:
    """Mark the real-data tests ``slow`` and run the files of the long tests first.

    Real-data tests (``real_data`` marker or the ``shared_data`` fixture) are ``slow``: out of
    ``make test-fast``. ``make test``'s workers take whole files in collection order
    (``--dist loadfile --no-loadscope-reorder``): files are sorted by the longest ``timeout`` one of
    their tests declares, so the end-to-end runs start first and the many short files fill in at the
    end (longest first; xdist's own order, by test count, would leave the one-test end-to-end files
    for last and one worker idle for minutes). The sort is stable: a file's tests stay together and
    in order.
    """
    longest: dict[str, float] = {}
    for item in items:
        if "real_data" in item.keywords or "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        file = item.nodeid.split("::")[0]
        longest[file] = max(longest.get(file, 0.0), _declared_seconds(item))
    items.sort(key=lambda item: -longest[item.nodeid.split("::")[0]])


@pytest.fixture(scope="module", autouse=True)
def _module_tmp_cleanup(request, tmp_path_factory):
    """Remove the folders a module's fixtures made with ``tmp_path_factory`` once the module passed.

    ``tmp_path_retention_policy = "failed"`` removes a passed test's own ``tmp_path``, but not the
    module-scoped folders (trained models, Ray checkpoints, MLflow stores) that would otherwise pile
    up until the session ends; a module with a failure keeps them for inspection.
    """
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for folder in set(base.iterdir()) - before:
            if not folder.name.startswith(SESSION_PREFIX):
                shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real data (``../shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set RSVL_SHARED_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root directory."""
    return REPO_ROOT


@pytest.fixture()
def dvc_project(tmp_path) -> Path:
    """A fresh git + DVC project in ``tmp_path/project`` whose default remote is ``tmp_path/remote``."""
    import subprocess

    from rsvl.data.versioning import init_repo

    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    init_repo(root, remote_url=str(tmp_path / "remote"))
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, repo_root) -> Path:
    """A ``data.root`` outside the checkout for the session (tests never write into the checkout).

    It is ``data/`` of a DVC project (no SCM) holding a copy of the checkout's ``data.dvc``, so data
    generated there at that version is verified against it and carries its md5 (the pins of the
    paper configs' eval sets) as ``data/`` in the checkout does. Pass it on as ``data.root=...``
    (see :func:`default_data`); it is under pytest's basetemp and kept until the session ends.
    """
    from rsvl.data.versioning import init_repo

    project = tmp_path_factory.getbasetemp() / f"{SESSION_PREFIX}data"
    project.mkdir(exist_ok=True)
    init_repo(project)
    shutil.copyfile(repo_root / "data.dvc", project / "data.dvc")
    (project / "data").mkdir(exist_ok=True)
    return project / "data"


@pytest.fixture(scope="session")
def default_data(repo_root, data_root) -> Path:
    """``<data_root>/default`` as ``make data`` writes it, generated once a session at its DVC version."""
    from rsvl.config import load_config
    from rsvl.steps.data_steps import ensure_default_data

    cfg = load_config(repo_root / "pipelines" / "sar_text" / "config.yaml", "local", [f"data.root={data_root}"])
    return ensure_default_data(cfg)
