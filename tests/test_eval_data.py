"""Eval data is pinned: DVC md5 or content fingerprint, modified data refused, sources ingested, optional sets skipped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rsvl.config import RunConfig
from rsvl.data.store import DatasetWriter
from rsvl.data.versioning import track
from rsvl.errors import DataError
from rsvl.steps.eval_data import FINGERPRINT_PREFIX, dataset_version, fingerprint, prepare_eval_data


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_scenes(out, seed: int, rows: int = 4):
    rng = np.random.default_rng(seed)
    with DatasetWriter(out, name="scenes", kind="captioning", adapter="test", source="rng") as writer:
        for i in range(rows):
            writer.add_row(sample_id=f"s{i}", split="test", modality="optical", bands=3, captions=[f"scene {i}"],
                           image=writer.write_bytes(png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)), f"s{i}.png"))


def config(sets: list[dict], root) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(root)}, "evaluate": {"sets": sets, "cache_dir": str(root / "cache")},
    })


@pytest.fixture()
def project(dvc_project):
    write_scenes(dvc_project / "data" / "scenes", seed=0)
    return dvc_project


def test_dvc_tracked_set_is_versioned_by_its_md5_and_the_pin_is_enforced(project):
    md5 = track(project, "data")
    pinned = {"name": "scenes", "dataset": "scenes", "tasks": ["retrieval"], "dvc_version": md5}
    data = prepare_eval_data(config([pinned], project / "data"))
    assert data.versions == {"scenes": md5} and data.version() == md5 and data.skipped == {}
    assert data.sets[0].dataset == str((project / "data" / "scenes").resolve())

    with pytest.raises(DataError, match=f"is data version {md5}, but the config pins 0123"):
        prepare_eval_data(config([{**pinned, "dvc_version": "0123"}], project / "data"))


def test_modified_dvc_data_is_refused(project):
    track(project, "data")
    write_scenes(project / "data" / "scenes", seed=1)
    with pytest.raises(DataError, match="differs from .*data.dvc.*dvc checkout"):
        dataset_version(project / "data" / "scenes")


def test_untracked_set_gets_a_content_fingerprint(tmp_path):
    write_scenes(tmp_path / "a", seed=0)
    write_scenes(tmp_path / "b", seed=0)
    write_scenes(tmp_path / "c", seed=1)
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b") != fingerprint(tmp_path / "c")
    assert dataset_version(tmp_path / "a").startswith(FINGERPRINT_PREFIX)


def test_a_source_is_ingested_once_and_an_absent_optional_source_is_skipped_with_its_reason(tmp_path):
    source = tmp_path / "folders"
    rng = np.random.default_rng(0)
    for cls in ("forest", "river_lake"):
        (source / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / cls / f"{cls}_{i}.png")
    sets = [
        {"name": "folders", "source": {"format": "class-folder", "path": str(source)}, "split": None,
         "tasks": ["zero_shot"]},
        {"name": "elsewhere", "source": {"format": "class-folder", "path": str(tmp_path / "absent")},
         "tasks": ["zero_shot"], "optional": True},
    ]
    data = prepare_eval_data(config(sets, tmp_path))
    cached = tmp_path / "cache" / "folders"
    assert [s.name for s in data.sets] == ["folders"] and data.sets[0].dataset == str(cached.resolve())
    assert data.skipped == {"elsewhere": f"source {tmp_path / 'absent'} is absent"}
    assert data.versions["folders"] == fingerprint(cached)
    stamp = (cached / "manifest.parquet").stat().st_mtime_ns
    prepare_eval_data(config(sets, tmp_path))
    assert (cached / "manifest.parquet").stat().st_mtime_ns == stamp

    required = [{**sets[1], "optional": False}]
    with pytest.raises(DataError, match="'elsewhere': source .* is absent \\(mark the set optional"):
        prepare_eval_data(config(required, tmp_path))


def test_a_config_without_eval_sets_or_with_only_skipped_sets_cannot_evaluate(tmp_path):
    with pytest.raises(DataError, match="names no evaluate.sets"):
        prepare_eval_data(config([], tmp_path))
    absent = {"name": "x", "source": {"format": "class-folder", "path": str(tmp_path / "no")}, "tasks": ["zero_shot"],
              "optional": True}
    with pytest.raises(DataError, match="no eval set could be scored"):
        prepare_eval_data(config([absent], tmp_path))
