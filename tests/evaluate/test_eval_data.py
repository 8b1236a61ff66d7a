"""Eval data is pinned: DVC md5 or content fingerprint, modified data refused, sources ingested, optional sets skipped.

Narrated sets are scored on a SAR-Narrator copy in the eval cache, made once per source version and
caption config; the pin still guards the source.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from rsvl.caption import read_provenance
from rsvl.config import RunConfig, load_config
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import MANIFEST_FILE, DatasetWriter, read_manifest, read_meta, write_parquet
from rsvl.data.versioning import track
from rsvl.errors import DataError
from rsvl.evaluate.runner import evaluate_model
from rsvl.models import build_model
from rsvl.data.versioning import FINGERPRINT_PREFIX, dataset_version, fingerprint
from rsvl.evaluate.pinned_data import cached_dataset, code_version, narration_record, prepare_eval_data

SAR_TEXT_CONFIG = Path("pipelines") / "sar_text" / "config.yaml"


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


def config(sets: list[dict], root, cache=None, **sections) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(root)}, "evaluate": {"sets": sets, "cache_dir": str(cache or root / "cache")},
        **sections,
    })


def sar_text_set(repo_root, name: str) -> dict:
    """An eval set of the SAR-TEXT config's local profile (its real pin)."""
    cfg = load_config(repo_root / SAR_TEXT_CONFIG, "local")
    return next(s for s in cfg.evaluate.sets if s.name == name).model_dump(exclude_none=True)


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


def test_modified_dvc_data_is_refused_with_the_remedy_that_works_here(project, tmp_path):
    track(project, "data")
    write_scenes(project / "data" / "scenes", seed=1)
    remote = tmp_path / "remote"
    assert not remote.exists()  # nothing was pushed: pulling cannot help
    with pytest.raises(DataError, match="differs from .*data.dvc") as refused:
        dataset_version(project / "data" / "scenes")
    assert f"cannot restore it: the DVC remote 'local' ({remote}) does not exist here" in str(refused.value)
    assert "make data" not in str(refused.value)  # not the generated default

    track(project, "data", push=True)
    write_scenes(project / "data" / "scenes", seed=2)
    with pytest.raises(DataError) as refused:
        dataset_version(project / "data" / "scenes")
    assert f"`rsvl data pull` restores it from the DVC remote 'local' ({remote})" in str(refused.value)


def test_modified_generated_default_names_make_data(dvc_project):
    from rsvl.data.generate import write_sar_chips

    sar = dvc_project / "data" / "default" / "sar"
    write_sar_chips(sar, seed=4, count=6)
    track(dvc_project, "data")
    (sar / "dataset.json").write_text((sar / "dataset.json").read_text().replace("synthetic-sar-ships", "edited"))
    with pytest.raises(DataError) as refused:
        dataset_version(sar)
    message = str(refused.value)
    default = dvc_project / "data" / "default"
    assert f"{default} is the generated default data: `make data` rewrites it at the recorded version" in message
    assert f"`rsvl data generate --out {default} --seed 4`" in message


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
    record = read_meta(cached)["eval_cache"]
    assert (record["format"], record["source"]) == ("class-folder", str(source.resolve()))
    stamp = (cached / "manifest.parquet").stat().st_mtime_ns
    prepare_eval_data(config(sets, tmp_path))
    assert (cached / "manifest.parquet").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["folders"]

    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(source / "forest" / "forest_9.png")
    grown = prepare_eval_data(config(sets, tmp_path))
    assert len(read_manifest(cached)) == 7 and grown.versions["folders"] != data.versions["folders"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["folders"]

    required = [{**sets[1], "optional": False}]
    with pytest.raises(DataError, match="'elsewhere': source .* is absent \\(mark the set optional"):
        prepare_eval_data(config(required, tmp_path))


def test_a_stale_cached_set_is_ingested_again_and_a_failed_ingest_leaves_no_half_written_set(tmp_path):
    source = tmp_path / "folders" / "forest"
    source.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(source / "forest_0.png")
    write_scenes(tmp_path / "cache" / "folders", seed=0)  # an earlier ingest, made from something else
    folders = {"name": "folders", "source": {"format": "class-folder", "path": str(tmp_path / "folders")},
               "split": None, "tasks": ["zero_shot"]}
    prepare_eval_data(config([folders], tmp_path))
    assert list(read_manifest(tmp_path / "cache" / "folders")["sample_id"]) != ["s0", "s1", "s2", "s3"]
    assert read_meta(tmp_path / "cache" / "folders")["adapter"] == "class-folder"

    hrsid = {"name": "hrsid", "source": {"format": "hrsid-boxes", "path": str(tmp_path / "folders")},
             "split": None, "tasks": ["zero_shot"]}
    with pytest.raises(DataError, match="ship_boxes.json is missing"):
        prepare_eval_data(config([hrsid], tmp_path))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["folders"]


def test_writers_racing_for_one_cached_set_both_get_the_complete_dataset(tmp_path):
    place, record = tmp_path / "cache" / "scenes", {"seed": 0}
    both_built = threading.Barrier(2)

    def build(out):
        write_scenes(out, seed=0)
        both_built.wait(timeout=30)

    results: list = []
    threads = [threading.Thread(target=lambda: results.append(cached_dataset(place, record, build)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [place.resolve()] * 2
    assert read_meta(place)["eval_cache"] == {**record, "content_sha256": _content(place)}
    assert len(read_manifest(place)) == 4
    assert [p.name for p in place.parent.iterdir()] == ["scenes"]

    cached_dataset(place, {"seed": 1}, lambda out: write_scenes(out, seed=1))
    assert read_meta(place)["eval_cache"] == {"seed": 1, "content_sha256": _content(place)}
    assert [p.name for p in place.parent.iterdir()] == ["scenes"]


def _content(folder) -> str:
    """SHA-256 over the dataset's files but dataset.json, computed here: path, NUL, the file's digest."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "dataset.json"):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@pytest.mark.parametrize("damage", ["scene", "table", "digest"])
def test_a_cached_set_changed_on_disk_is_built_again_not_scored(tmp_path, caplog, damage):
    place, record, builds = tmp_path / "cache" / "scenes", {"seed": 0}, []

    def build(out):
        builds.append(out)
        write_scenes(out, seed=0)

    cached_dataset(place, record, build)
    original = {p.relative_to(place): p.read_bytes() for p in place.rglob("*") if p.is_file()}
    cached_dataset(place, record, build)
    assert len(builds) == 1  # intact: reused
    if damage == "scene":  # a truncated image
        scene = next((place / "media").iterdir())
        scene.write_bytes(scene.read_bytes()[:40])
    elif damage == "table":  # a caption edited in the manifest
        manifest = read_manifest(place)
        manifest.loc[0, "captions"] = ["a forged caption"]
        write_parquet(pa.Table.from_pandas(manifest, preserve_index=False), place / MANIFEST_FILE)
    else:  # a record from before content digests (or one edited to match other content)
        meta = read_meta(place)
        meta["eval_cache"]["content_sha256"] = "0" * 64
        (place / "dataset.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="rsvl.evaluate.pinned_data"):
        assert cached_dataset(place, record, build) == place.resolve()
    assert len(builds) == 2 and f"eval cache {place} not used: its content changed" in caplog.text
    assert {p.relative_to(place): p.read_bytes() for p in place.rglob("*") if p.is_file()} == original


def test_code_version_follows_every_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "narrator_pkg"
    (package / "prompts").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "prompts" / "rewrite.md").write_text("Rewrite for SAR.")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_version("narrator_pkg")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.pyc").write_bytes(b"compiled")
    code_version.cache_clear()
    assert code_version("narrator_pkg") == before
    (package / "prompts" / "rewrite.md").write_text("Rewrite for SAR, briefly.")
    code_version.cache_clear()
    assert code_version("narrator_pkg") != before


def test_the_narration_record_covers_the_narrator_code_and_the_optical_captions_content(tmp_path):
    optical = tmp_path / "optical.json"
    optical.write_text('{"s0": ["a harbour with two ships"]}')
    cfg = config([{"name": "x", "dataset": "x", "tasks": ["zero_shot"]}], tmp_path,
                 caption={"optical_captions": str(optical)})
    first = narration_record(cfg, "md5", tmp_path)
    assert first["narrator"] == code_version("rsvl.caption")
    assert first["optical_captions"] == hashlib.sha256(optical.read_bytes()).hexdigest()
    optical.write_text('{"s0": ["a harbour with three ships"]}')
    assert narration_record(cfg, "md5", tmp_path)["optical_captions"] != first["optical_captions"]
    assert narration_record(config([], tmp_path), "md5", tmp_path)["optical_captions"] is None


def test_a_relative_optical_captions_file_is_read_from_the_narrated_dataset(tmp_path):
    cfg = config([{"name": "x", "dataset": "x", "tasks": ["zero_shot"]}], tmp_path,
                 caption={"optical_captions": "optical_captions.json"})
    paired, unpaired = tmp_path / "paired", tmp_path / "unpaired"
    paired.mkdir()
    unpaired.mkdir()
    (paired / "optical_captions.json").write_text('{"s0": ["two ships at the quay"]}')
    expected = hashlib.sha256((paired / "optical_captions.json").read_bytes()).hexdigest()
    assert narration_record(cfg, "md5", paired)["optical_captions"] == expected
    # a dataset without co-registered optical images (HRSID) narrates with an empty optical route
    assert narration_record(cfg, "md5", unpaired)["optical_captions"] is None


def test_a_config_without_eval_sets_or_with_only_skipped_sets_cannot_evaluate(tmp_path):
    with pytest.raises(DataError, match="names no evaluate.sets"):
        prepare_eval_data(config([], tmp_path))
    absent = {"name": "x", "source": {"format": "class-folder", "path": str(tmp_path / "no")}, "tasks": ["zero_shot"],
              "optional": True}
    with pytest.raises(DataError, match="no eval set could be scored"):
        prepare_eval_data(config([absent], tmp_path))


def test_a_narrated_set_is_scored_on_a_cached_sar_narrator_copy_of_its_pinned_source(repo_root, default_data, tmp_path):
    root = default_data.parent
    sar_test = sar_text_set(repo_root, "sar_test")
    cache = tmp_path / "cache"
    data = prepare_eval_data(config([sar_test], root, cache))
    copy = Path(data.sets[0].dataset)
    assert copy.parent == cache.resolve() and copy.name.startswith("sar_test-narrated-")
    content = fingerprint(copy).removeprefix(FINGERPRINT_PREFIX)[:16]
    assert data.versions == {"sar_test": f"{sar_test['dvc_version']}:narrated-{content}"}
    assert read_meta(copy)["captioned_by"]["config"]["recaption"] is True

    source = ManifestDataset(default_data / "sar", split="test", load_media=False)
    narrated = ManifestDataset(copy, split="test", load_media=False)
    assert len(narrated) == len(source) == 23
    provenance = read_provenance(copy)
    assert {row["route"] for row in provenance} <= {"a2c", "sa2c"}
    changed = 0
    for index in range(len(narrated)):
        record = narrated.record(index)
        written = {row["caption"] for row in provenance if row["sample_id"] == record["sample_id"]}
        assert record["captions"] and set(record["captions"]) == written
        changed += set(record["captions"]) != set(source.record(index)["captions"])
    assert changed > 0

    stamp = (copy / "manifest.parquet").stat().st_mtime_ns
    again = prepare_eval_data(config([sar_test], root, cache))
    assert again.versions == data.versions and (copy / "manifest.parquet").stat().st_mtime_ns == stamp
    assert [p.name for p in cache.iterdir()] == [copy.name]

    with pytest.raises(DataError, match=f"is data version {sar_test['dvc_version']}, but the config pins 0123"):
        prepare_eval_data(config([{**sar_test, "dvc_version": "0123"}], root, cache))
    reseeded = prepare_eval_data(config([sar_test], root, cache, caption={"seed": 1}))
    assert Path(reseeded.sets[0].dataset) != copy and len(list(cache.iterdir())) == 2


def test_the_sar_text_config_prepares_its_eval_sets(repo_root, default_data, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)  # the hrsid source is ../shared/data/hrsid_samples, relative to the checkout
    cfg = load_config(SAR_TEXT_CONFIG, "local", [f"evaluate.cache_dir={tmp_path}", f"data.root={default_data.parent}"])
    data = prepare_eval_data(cfg)
    pin = sar_text_set(repo_root, "optical_test")["dvc_version"]
    assert data.versions["optical_test"] == pin
    assert data.versions["sar_test"].startswith(f"{pin}:narrated-")
    if (repo_root / ".." / "shared" / "data" / "hrsid_samples").is_dir():
        assert data.versions["hrsid"].startswith(FINGERPRINT_PREFIX) and ":narrated-" in data.versions["hrsid"]
    else:
        assert data.skipped["hrsid"].startswith("source ../shared/data/hrsid_samples is absent")


def test_hrsid_boxes_need_narration_to_be_scored_for_retrieval_and_captioning(shared_data, tmp_path):
    hrsid = {"name": "hrsid", "source": {"format": "hrsid-boxes", "path": str(shared_data / "hrsid_samples")},
             "split": None, "tasks": ["retrieval"]}
    with pytest.raises(DataError, match=r"'hrsid': 3 of 3 rows .* \[all\] have no captions, needed by retrieval"
                                        r".*set `narrate: true`"):
        prepare_eval_data(config([hrsid], tmp_path))

    narrated = {**hrsid, "tasks": ["retrieval", "captioning"], "narrate": True}
    data = prepare_eval_data(config([narrated], tmp_path))
    assert data.versions["hrsid"] == f"{fingerprint(tmp_path / 'cache' / 'hrsid')}:narrated-" \
        f"{fingerprint(data.sets[0].dataset).removeprefix(FINGERPRINT_PREFIX)[:16]}"
    torch.manual_seed(0)
    result = evaluate_model(build_model("rsvl-tiny-coca"), data.sets, tmp_path / "out", java_metrics=False)
    assert {"hrsid.mR", "hrsid.CIDEr", "hrsid.BLEU_4"} <= set(result.metrics)
    assert 0.0 <= result.metrics["hrsid.mR"] <= 100.0


def test_cluster_profile_pins_are_the_fingerprints_of_the_generated_default_data(repo_root, default_data):
    """The cluster's copies of the default sets are checked by content fingerprint: every pin must be today's."""
    from rsvl.config import load_config
    from rsvl.data.versioning import fingerprint

    checked = 0
    for path in sorted((repo_root / "pipelines").glob("*/config.yaml")):
        cfg = load_config(path, "cluster")
        for eval_set in cfg.evaluate.sets:
            if eval_set.dataset and eval_set.dataset.startswith("default/") and eval_set.dvc_version:
                assert eval_set.dvc_version == fingerprint(default_data.parent / eval_set.dataset), (path, eval_set.name)
                checked += 1
    assert checked >= 5  # sar_text's two pinned sets, closp's three, base's optical set
