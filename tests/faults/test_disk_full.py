"""A disk-full write of a dataset leaves the previous version intact and says what to free."""

from __future__ import annotations

import errno
import hashlib
import re

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


def test_a_full_disk_while_checkpointing_keeps_the_last_whole_checkpoint(tmp_path, monkeypatch):
    import os
    import shutil

    import torch

    from rsvl.errors import TrainError
    from rsvl.models import build_model
    from rsvl.train.checkpoint import (checkpoint_write_error, latest_checkpoint, persist_checkpoint, read_checkpoint,
                                       write_checkpoint)

    torch.manual_seed(0)
    model = build_model("rsvl-tiny", pretrained=None)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    run_dir = tmp_path / "run"
    step4 = persist_checkpoint(write_checkpoint(tmp_path / "s4" / "checkpoint", model, optimizer, scheduler, None,
                                                {"step": 4}), run_dir, 4, keep=2)
    before = _digests(run_dir)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the disk fills while the step-8 checkpoint is written to scratch ...
    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", full)
        with pytest.raises(OSError) as raised:
            write_checkpoint(tmp_path / "s8" / "checkpoint", model, optimizer, scheduler, None, {"step": 8})
    error = checkpoint_write_error(raised.value, 8, tmp_path / "s8", run_dir)
    assert isinstance(error, TrainError)
    assert re.fullmatch(rf"the disk filled up while writing the checkpoint of step 8 \({re.escape(str(tmp_path))}/s8: "
                        rf"[\d,]+ bytes free; {re.escape(str(run_dir))}: [\d,]+ bytes free\); the last whole "
                        rf"checkpoint, {re.escape(str(step4))}, is unchanged and a re-launch resumes from it; "
                        r"free space .* and run again", str(error))
    assert checkpoint_write_error(OSError(errno.EACCES, "denied"), 8, tmp_path, run_dir).errno == errno.EACCES

    # ... or while it is copied into the run folder (scratch on another file system: a copy, not a rename)
    directory = write_checkpoint(tmp_path / "s8b" / "checkpoint", model, optimizer, scheduler, None, {"step": 8})
    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", lambda *args: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
        patch.setattr(shutil, "copyfile", full)
        with pytest.raises(OSError, match="No space left"):
            persist_checkpoint(directory, run_dir, 8, keep=2)
    assert _digests(run_dir) == before and latest_checkpoint(run_dir) == step4
    assert [p.name for p in run_dir.iterdir()] == [step4.name]  # no half copy beside it
    assert read_checkpoint(step4, model, optimizer, scheduler, None) == {"step": 4}
