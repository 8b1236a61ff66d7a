"""The pipeline's caption step: SAR-Narrator captions uncaptioned rows, captioned rows and quarantine carry over."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from rsvl.config import RunConfig
from rsvl.data.adapters import ingest
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes
from rsvl.data.store import QuarantineRecord, read_quarantine, write_quarantine
from rsvl.data.versioning import dvc_md5
from rsvl.errors import DataError
from rsvl.data.scene_captions import CAPTIONS_PER_ROW, TEMPLATES, scene_captions
from rsvl.steps.data_steps import ensure_stage_data, run_caption, run_ingest
from rsvl.train.progressive import stage_dataset

CFG = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"}})


def test_captioned_rows_pass_through_and_the_quarantine_is_carried(tmp_path):
    write_optical_scenes(tmp_path / "optical", seed=0, per_class=3)
    record = QuarantineRecord(stage="ingest", where="row 7", rule="unreadable_image", reason="test: truncated PNG",
                              sample_id="broken_7")
    write_quarantine(tmp_path / "optical", [record], append=True)
    before = ManifestDataset(tmp_path / "optical", load_media=False).frame
    outcome = run_caption(CFG, tmp_path / "optical", tmp_path / "captioned")
    after = ManifestDataset(tmp_path / "captioned", load_media=False).frame
    assert outcome.rows == len(before) == len(after)
    assert after["captions"].map(list).tolist() == before["captions"].map(list).tolist()
    assert "0 captioned" in outcome.summary and f"{len(before)} passed through" in outcome.summary
    carried = read_quarantine(tmp_path / "captioned")
    assert "broken_7" in carried["sample_id"].tolist() and "truncated PNG" in " ".join(carried["reason"])


@pytest.mark.real_data
def test_hrsid_chips_get_captions_that_state_their_ship_count(tmp_path, shared_data):
    ingest("hrsid-boxes", shared_data / "hrsid_samples", tmp_path / "hrsid")
    outcome = run_caption(CFG, tmp_path / "hrsid", tmp_path / "captioned")
    frame = ManifestDataset(tmp_path / "captioned", load_media=False).frame
    truth = json.loads((shared_data / "hrsid_samples" / "ship_boxes.json").read_text())
    assert len(frame) == len(truth) == outcome.rows
    assert all(len(captions) > 0 for captions in frame["captions"])
    assert "a2c" in outcome.summary


def test_ingest_refuses_data_of_another_version_than_the_run_asked_for(tmp_path, default_data, repo_root):
    cfg = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
                                    "data": {"root": str(default_data.parent)}, "train": {"dataset": "default/sar"}})
    pinned = dvc_md5(repo_root / "data.dvc")  # the generated default data is this DVC version
    with pytest.raises(DataError, match=f"is version {pinned}, the run asked for 0123abcd"):
        run_ingest(cfg, tmp_path / "refused", expected_version="0123abcd")
    outcome = run_ingest(cfg, tmp_path / "ingested", expected_version=pinned)
    rows = len(ManifestDataset(default_data / "sar", load_media=False))
    assert outcome.version == pinned and outcome.rows == rows


def _stage_cfg(root, source) -> RunConfig:
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(root / "data"), "max_bad_fraction": 0.5},
        "evaluate": {"cache_dir": str(root / "cache")},
        "train": {"stages": [{"name": "optical", "dataset": "scenes/rsscn7",
                              "source": {"format": "class-folder", "path": str(source)}},
                             {"name": "sar"}]}})


def test_a_stage_source_is_ingested_once_into_the_cache_with_captions_from_its_class_labels(tmp_path, repo_root):
    """The committed RSSCN7-layout fixture: 6 listed images, one with an unknown split, one missing."""
    source = tmp_path / "rsscn7"
    shutil.copytree(repo_root / "tests" / "fixtures" / "adapters" / "class-folder", source)
    cfg = _stage_cfg(tmp_path, source)
    target = (tmp_path / "cache" / "stages" / "scenes" / "rsscn7").resolve()
    assert ensure_stage_data(cfg) == [target] and not (tmp_path / "data").exists()  # the DVC-tracked root untouched
    assert stage_dataset(cfg, cfg.train.stages[0], None) == tmp_path / "cache" / "stages" / "scenes" / "rsscn7"
    frame = ManifestDataset(target, load_media=False).frame.set_index("sample_id")
    assert sorted(frame.index) == ["aGrass/a001", "aGrass/a002", "bField/b001", "dRiverLake/d001"]
    phrases = {"grass": "grassland", "field": "farmland fields", "river lake": "river lake"}
    for sample_id, row in frame.iterrows():
        captions = list(row["captions"])
        assert len(captions) == len(set(captions)) == CAPTIONS_PER_ROW
        assert all(phrases[row["label"]] in caption.lower() for caption in captions), captions
    assert list(frame.loc["aGrass/a001", "captions"]) != list(frame.loc["aGrass/a002", "captions"])
    stamp = (target / "manifest.parquet").stat().st_mtime_ns
    assert ensure_stage_data(cfg) == [target]  # made from the same files: reused as it is
    assert (target / "manifest.parquet").stat().st_mtime_ns == stamp
    assert [p.name for p in target.parent.iterdir()] == ["rsscn7"]  # no scratch left behind
    (source / "images" / "aGrass" / "a002.jpg").unlink()  # the source changed: ingested again
    assert ensure_stage_data(cfg) == [target]
    assert "aGrass/a002" not in ManifestDataset(target, load_media=False).frame["sample_id"].tolist()


def test_stage_data_is_made_without_importing_the_training_stack(tmp_path, repo_root):
    # the ingest step runs it: importing open_clip (and transformers, torchvision) there cost ~6 s of a 27 s step
    source = tmp_path / "rsscn7"
    shutil.copytree(repo_root / "tests" / "fixtures" / "adapters" / "class-folder", source)
    probe = ("import json, sys\nfrom rsvl.config import RunConfig\nfrom rsvl.steps.data_steps import ensure_stage_data\n"
             "places = ensure_stage_data(RunConfig.model_validate_json(sys.argv[1]))\n"
             "print(json.dumps([[str(p) for p in places], sorted(m for m in sys.modules if m.split('.')[0] in "
             "('open_clip', 'torchvision', 'transformers', 'ray', 'mlflow'))]))")
    cfg = _stage_cfg(tmp_path, source)
    out = subprocess.run([sys.executable, "-c", probe, cfg.model_dump_json()], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    places, heavy = json.loads(out.splitlines()[-1])
    assert places == [str((tmp_path / "cache" / "stages" / "scenes" / "rsscn7").resolve())] and heavy == []


def test_an_absent_stage_source_names_the_stage_and_the_path(tmp_path):
    cfg = _stage_cfg(tmp_path, tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"train.stages 'optical': source .*nowhere is absent"):
        ensure_stage_data(cfg)


def test_scene_captions_name_rsscn7_classes_as_a_reader_would():
    assert all("a river or lake" in c.lower() for c in scene_captions("riverlake", "x"))
    assert all("snow field" in c.lower() for c in scene_captions("Snow_Field", "x"))
    assert scene_captions("forest", "a") == scene_captions("forest", "a")
    assert len(set(scene_captions("forest", "a", count=len(TEMPLATES)))) == len(TEMPLATES)
