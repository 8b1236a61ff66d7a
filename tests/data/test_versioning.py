"""DVC round trip with the real DVC: add, push, remove, pull restores the same bytes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rsvl.data.store import DatasetWriter, read_files, sha256_file
from rsvl.data.versioning import data_version, dvc_md5, pull, track
from rsvl.errors import DataError


@pytest.fixture()
def project(dvc_project):
    return dvc_project


def _write(root, seed: int):
    rng = np.random.default_rng(seed)
    with DatasetWriter(root / "data" / "s1s2", name="t", kind="multisensor", adapter="test", source="rng") as w:
        for i in range(3):
            w.add_row(sample_id=f"p{i}", split="train", modality="s1s2", bands=2,
                      s1=w.write_array(rng.normal(size=(2, 8, 8)), f"p{i}_s1"))
    return w.report


def test_add_push_remove_pull_restores_bytes(project, tmp_path):
    _write(project, seed=0)
    before = {row.path: row.sha256 for row in read_files(project / "data" / "s1s2").itertuples()}
    md5 = track(project, "data", push=True)
    assert dvc_md5(project / "data.dvc") == md5
    assert any((tmp_path / "remote").rglob("*")), "push wrote nothing to the remote"

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    pull(project, "data")

    for rel, digest in before.items():
        assert sha256_file(project / "data" / "s1s2" / rel) == digest
    version = data_version(project / "data" / "s1s2")
    assert (version.md5, version.dvc_file, version.path) == (md5, "data.dvc", "s1s2")


def test_new_data_gives_a_new_version(project):
    _write(project, seed=0)
    first = track(project, "data")
    _write(project, seed=1)
    second = track(project, "data")
    assert first != second
    _write(project, seed=0)
    assert track(project, "data") == first


def test_untracked_directory_has_no_version(project):
    (project / "elsewhere").mkdir()
    with pytest.raises(DataError, match="not inside a DVC-tracked directory"):
        data_version(project / "elsewhere")
