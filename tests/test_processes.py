"""rsvl.processes.run_jobs: results in job order from worker processes, failures raised, no re-run of __main__."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from rsvl.processes import available_cpus, run_jobs


def _square_with_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError(f"job {value} failed")
    return value


def test_results_come_back_in_job_order_from_other_processes():
    results = run_jobs(_square_with_pid, [(v,) for v in range(7)], processes=2)
    assert [square for square, _ in results] == [v * v for v in range(7)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_one_process_or_one_job_runs_here():
    assert run_jobs(_square_with_pid, [(2,), (3,)], processes=1) == [(4, os.getpid()), (9, os.getpid())]
    assert run_jobs(_square_with_pid, [(5,)], processes=4) == [(25, os.getpid())]
    assert run_jobs(_square_with_pid, [], processes=4) == []


def test_a_failed_job_raises_its_own_exception():
    with pytest.raises(ValueError, match="job 3 failed"):
        run_jobs(_fail_on_three, [(v,) for v in range(5)], processes=2)


def test_a_script_without_a_main_guard_is_not_run_again_by_the_workers(tmp_path):
    """Spawned workers would re-import the caller's __main__ and start the jobs again from there."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import os
        from rsvl.processes import run_jobs
        print("main ran in", os.getpid(), flush=True)
        print(run_jobs(abs, [(-1,), (-2,), (-3,)], processes=2))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("main ran in") == 1 and done.stdout.strip().endswith("[1, 2, 3]")


def test_available_cpus_follow_the_affinity_mask():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform")
    assert available_cpus() == len(os.sched_getaffinity(0))
    done = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                           "from rsvl.processes import available_cpus; print(available_cpus())"],
                          capture_output=True, text=True, timeout=60) if shutil.which("taskset") else None
    if done is not None:
        assert done.stdout.strip() == "1"

