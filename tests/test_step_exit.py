"""A KFP step's process ends right after its component succeeded; a failed one exits with its error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rsvl.step_exit import executor_output_file

SCRIPT = """
import atexit, sys
from pathlib import Path
import rsvl
class Noisy:
    def __del__(self):
        print("teardown ran", flush=True)
keep = Noisy()
atexit.register(lambda: print("later handler ran", flush=True))
if {write}:
    Path({out!r}).write_text("{{}}")
print("body done")
if {fail}:
    raise RuntimeError("the component failed")
"""


def run(tmp_path, *, write: bool, fail: bool = False, runtime: bool = True) -> subprocess.CompletedProcess:
    out = tmp_path / "executor_output.json"
    executor_input = json.dumps({"outputs": {"outputFile": str(out)}})
    env = {**os.environ, "_KFP_RUNTIME": "true"} if runtime else {
        k: v for k, v in os.environ.items() if k != "_KFP_RUNTIME"}
    return subprocess.run([sys.executable, "-c", SCRIPT.format(write=write, out=str(out), fail=fail),
                           "--executor_input", executor_input], capture_output=True, text=True, env=env, timeout=120)


def test_a_step_that_wrote_its_outputs_ends_after_the_exit_handlers_without_teardown(tmp_path):
    done = run(tmp_path, write=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["body done", "later handler ran"]
    assert "teardown ran" not in done.stdout


@pytest.mark.parametrize("case", ["no output file", "not a KFP step"])
def test_otherwise_the_process_exits_the_normal_way(tmp_path, case):
    done = run(tmp_path, write=case != "no output file", runtime=case != "not a KFP step")
    assert done.returncode == 0, done.stderr
    assert "later handler ran" in done.stdout and "teardown ran" in done.stdout


def test_a_failed_step_keeps_its_error_status(tmp_path):
    done = run(tmp_path, write=True, fail=True)
    assert done.returncode == 1 and "RuntimeError: the component failed" in done.stderr


def test_the_output_file_is_read_from_the_executor_input():
    payload = json.dumps({"outputs": {"outputFile": "/tmp/x/executor_output.json"}})
    assert str(executor_output_file(["main.py", "--executor_input", payload])) == "/tmp/x/executor_output.json"
    assert executor_output_file(["main.py"]) is None
    assert executor_output_file(["main.py", "--executor_input", "{}"]) is None
    assert executor_output_file(["main.py", "--executor_input"]) is None
