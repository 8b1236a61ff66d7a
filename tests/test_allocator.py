"""glibc malloc settings for the pipeline steps: what they change, and that every way of running sets the same."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

import pytest

from rsvl.allocator import MALLOC_ENV, configure

# 20 rounds of a fresh 200 MB float32 array, written, then freed: the page faults of a training step's big tensors
FAULTS = """
import ctypes, resource
import numpy as np
# 4 KiB pages only (PR_SET_THP_DISABLE): how many huge pages a busy machine hands out varies, so counts with them do too
ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.empty(50_000_000, dtype=np.float32)
    block.fill(1.0)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_configure_adds_the_settings_and_keeps_what_the_user_set():
    environ = {"MALLOC_TRIM_THRESHOLD_": "1024", "PATH": "/bin"}
    assert configure(environ) == {"MALLOC_MMAP_THRESHOLD_": MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"],
                                  "MALLOC_TRIM_THRESHOLD_": "1024"}
    assert environ == {"MALLOC_TRIM_THRESHOLD_": "1024", "PATH": "/bin",
                       "MALLOC_MMAP_THRESHOLD_": str(4 * 1024**3)}
    assert MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"] == str(64 * 1024**3)


def _faults(extra: dict[str, str]) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | extra
    out = subprocess.run([sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's; other C libraries ignore them")
def test_freed_big_blocks_stay_mapped_so_the_next_one_does_not_fault_its_pages_in_again():
    pages = 50_000_000 * 4 // 4096  # one round's 200 MB in 4 KiB pages
    assert _faults({}) >= 19 * pages  # every round faults its block in anew
    assert _faults(MALLOC_ENV) <= 2 * pages  # the first round only, and what the interpreter moves
    # neither setting alone does it: the trim returns the heap top, or the block is mmapped
    for name, value in MALLOC_ENV.items():
        assert _faults({name: value}) >= 19 * pages, name


@pytest.mark.parametrize("dockerfile", ["docker/Dockerfile.cpu", "docker/Dockerfile.cuda"])
def test_the_images_start_their_steps_with_the_same_settings(repo_root, dockerfile):
    text = (repo_root / dockerfile).read_text(encoding="utf-8")
    found = dict(re.findall(r"^\s+(MALLOC_[A-Z_]+)=(\d+)", text, flags=re.M))
    assert found == MALLOC_ENV
