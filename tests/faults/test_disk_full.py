"""A disk-full write of a dataset leaves the previous version intact and says what to free."""

from __future__ import annotations

import errno
import hashlib

import numpy as np
import pytest
from PIL import Image

import rsvl.data.store as store
from rsvl.data.adapters import ingest
from rsvl.errors import DataError


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _source(folder, shade):
    for index, label in enumerate(("forest", "river")):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((16, 16, 3), shade + index, dtype=np.uint8)).save(folder / label / f"{label}.png")
    return folder


@pytest.mark.parametrize("when", ["media", "tables"])
def test_a_full_disk_during_ingest_keeps_the_previous_dataset_byte_for_byte(tmp_path, monkeypatch, when):
    out = tmp_path / "data" / "scenes"
    ingest("class-folder", _source(tmp_path / "v1", 10), out)
    before = _digests(out)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the disk fills while copying a scene, or while writing the tables at the end
    monkeypatch.setattr(store.shutil if when == "media" else store, "copyfile" if when == "media" else "write_parquet",
                        full)
    with pytest.raises(DataError, match=r"scenes: the disk filled up while writing the dataset \([\d,]+ bytes free"
                                        r".*the previous dataset there is unchanged; free space there"):
        ingest("class-folder", _source(tmp_path / "v2", 90), out)
    assert _digests(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["scenes"]  # no half-written folder beside it


def test_a_replaced_dataset_is_whole_and_nothing_is_left_beside_it(tmp_path):
    out = tmp_path / "scenes"
    ingest("class-folder", _source(tmp_path / "v1", 10), out)
    report = ingest("class-folder", _source(tmp_path / "v2", 90), out)
    assert report.out_dir == out and sorted(p.name for p in tmp_path.iterdir()) == ["scenes", "v1", "v2"]
    pixels = np.asarray(Image.open(next((out / "media").glob("forest*"))))
    assert pixels[0, 0, 0] == 90
