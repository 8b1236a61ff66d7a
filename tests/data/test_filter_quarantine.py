"""The filter step removes what validation quarantines, and no reader yields a quarantined row.

Corrupt images are planted in small sources (a truncated JPEG, a truncated PNG and a PNG
signature followed by garbage: all keep a name ingest accepts, none decodes), so the expected bad
rows are known from what the test wrote, not from the code under test.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rsvl.config import RunConfig
from rsvl.data.adapters import ingest
from rsvl.data.dataset import ManifestDataset
from rsvl.data.filtering import row_counts
from rsvl.data.store import (
    QuarantineRecord,
    read_files,
    read_manifest,
    read_meta,
    read_quarantine,
    write_quarantine,
)
from rsvl.data.validate import validate_dataset
from rsvl.errors import ValidationFailed
from rsvl.steps.data_steps import run_filter

CLASSES = ("forest", "river", "farmland")
PER_CLASS = 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cfg(max_bad_fraction: float) -> RunConfig:
    return RunConfig.model_validate({"paper": "georsclip", "profile": "local", "model": {"name": "rsvl-tiny"},
                                     "data": {"max_bad_fraction": max_bad_fraction}})


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _class_folder(root: Path) -> tuple[set[str], set[str]]:
    """Write a class-folder source with three corrupt images.

    Returns:
        ``(all sample ids, corrupt sample ids)``: ids are ``<class>/<file stem>``, the class-folder
        adapter's documented rule.
    """
    rng = np.random.default_rng(7)
    ids = set()
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for index in range(PER_CLASS):
            suffix = ".jpg" if index % 2 else ".png"
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{index:02d}{suffix}")
            ids.add(f"{name}/{name}_{index:02d}")
    _truncate(root / "forest" / "forest_01.jpg")
    _truncate(root / "river" / "river_04.png", keep=0.3)
    (root / "farmland" / "farmland_06.png").write_bytes(PNG_SIGNATURE + b"not an image" * 8)
    return ids, {"forest/forest_01", "river/river_04", "farmland/farmland_06"}


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def planted(tmp_path) -> tuple[Path, set[str], set[str]]:
    """An ingested class-folder dataset with three planted corrupt images, its ids and the bad ids."""
    ids, bad = _class_folder(tmp_path / "source")
    ingest("class-folder", tmp_path / "source", tmp_path / "ingested")
    assert set(read_manifest(tmp_path / "ingested")["sample_id"]) == ids  # ingest reads headers only
    return tmp_path / "ingested", ids, bad


def test_filter_lists_only_good_rows_and_quarantines_the_corrupt_ones(planted, tmp_path):
    dataset, ids, bad = planted
    before = _snapshot(dataset)
    outcome = run_filter(_cfg(0.1), dataset, tmp_path / "filtered")
    out = tmp_path / "filtered"

    assert _snapshot(dataset) == before, "the filter changed its input dataset"
    manifest = read_manifest(out, include_quarantined=True)
    assert set(manifest["sample_id"]) == ids - bad and len(manifest) == len(ids) - len(bad)

    quarantine = read_quarantine(out)
    assert set(quarantine["sample_id"]) == bad and set(quarantine["stage"]) == {"validate"}
    for record in quarantine.itertuples():
        assert record.where.startswith("manifest.parquet row ") and repr(record.sample_id) in record.where
        assert "image_decodes" in record.rule
        assert Path(record.sample_id).name in record.reason and "decode" in record.reason

    listed = set(read_files(out)["path"])
    assert listed == set(manifest["image"]) and all((out / path).is_file() for path in listed)
    assert {p.relative_to(out).as_posix() for p in (out / "media").iterdir()} == listed
    counts = read_meta(out)["counts"]
    splits = manifest["split"].value_counts().to_dict()
    assert (counts["rows"], counts["files"], counts["quarantined"], counts["splits"]) == (
        len(ids) - len(bad), len(ids) - len(bad), len(bad), splits)
    assert read_meta(out)["filter"]["rows_in"] == len(ids) and read_meta(out)["filter"]["rows_removed"] == len(bad)

    assert (outcome.rows, outcome.rows_quarantined) == (len(ids) - len(bad), len(bad))
    assert f"kept {len(ids) - len(bad)} of {len(ids)} rows" in outcome.summary and "image_decodes" in outcome.summary

    samples = ManifestDataset(out)
    assert len(samples) == len(ids) - len(bad)
    read = [samples[i] for i in range(len(samples))]  # every kept row decodes
    assert {s["sample_id"] for s in read} == ids - bad and all(s["image"].shape == (3, 24, 24) for s in read)


def test_readers_skip_rows_quarantined_in_place(planted):
    dataset, ids, bad = planted
    report = validate_dataset(dataset, max_bad_fraction=0.1)
    assert report.passed and report.bad_rows == len(bad)
    stored = read_manifest(dataset, include_quarantined=True)
    assert set(stored["sample_id"]) == ids, "validating in place keeps the manifest as it was"

    assert set(read_manifest(dataset)["sample_id"]) == ids - bad
    for split in ("train", "val", "test"):
        samples = ManifestDataset(dataset, split=split)
        expected = {i for i in stored[stored["split"] == split]["sample_id"] if i not in bad}
        assert {samples[i]["sample_id"] for i in range(len(samples))} == expected  # decodes without DataError
    assert row_counts(dataset).kept == len(ids) - len(bad) and row_counts(dataset).quarantined == len(bad)


def test_a_row_with_a_validate_record_is_skipped_even_if_it_decodes(planted):
    dataset, ids, _ = planted
    good, partly = "forest/forest_02", "river/river_03"
    write_quarantine(dataset, [
        QuarantineRecord("validate", "manifest.parquet row 2", "caption_words", "test: marked bad", good),
        # an ingest record names a source record (one bad caption, one bad question), not the row
        QuarantineRecord("ingest", "captions.json#3.captions[1]", "caption_utf8", "test: one caption", partly),
    ], append=True)
    frame = ManifestDataset(dataset, load_media=False).frame
    assert good not in set(frame["sample_id"]) and partly in set(frame["sample_id"])
    assert len(frame) == len(ids) - 1


def test_revalidating_a_filtered_dataset_keeps_the_removed_rows_quarantined(planted, tmp_path):
    dataset, ids, bad = planted
    run_filter(_cfg(0.1), dataset, tmp_path / "filtered")
    again = validate_dataset(tmp_path / "filtered", max_bad_fraction=0.0)
    assert again.passed and again.rows == len(ids) - len(bad)
    assert set(read_quarantine(tmp_path / "filtered")["sample_id"]) == bad


def test_filter_past_the_limit_fails_naming_the_rules_and_leaves_the_source(planted, tmp_path):
    dataset, ids, bad = planted
    before = _snapshot(dataset)
    with pytest.raises(ValidationFailed) as failed:
        run_filter(_cfg(0.01), dataset, tmp_path / "filtered")
    message = str(failed.value)
    assert f"{len(bad)} of {len(ids)} rows" in message and "image_decodes" in message
    assert str(tmp_path / "filtered" / "quarantine.parquet") in message
    assert _snapshot(dataset) == before


def test_cli_validate_out_writes_the_filtered_copy_and_leaves_the_tree(planted, tmp_path):
    from typer.testing import CliRunner

    from rsvl.cli import app

    dataset, ids, bad = planted
    shutil.copytree(dataset, tmp_path / "tree" / "a")
    before = _snapshot(tmp_path / "tree")
    result = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "tree"), "--out", str(tmp_path / "clean"),
                                      "--max-bad-fraction", "0.1"])
    assert result.exit_code == 0, result.output
    assert f"kept {len(ids) - len(bad)} of {len(ids)} rows" in result.output
    assert set(read_manifest(tmp_path / "clean" / "a", include_quarantined=True)["sample_id"]) == ids - bad
    assert _snapshot(tmp_path / "tree") == before

    failed = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "tree"), "--out", str(tmp_path / "clean"),
                                      "--max-bad-fraction", "0.01"])
    assert failed.exit_code == 1 and "image_decodes" in failed.output


def _captions_json_source(optical: Path, out: Path, every: int = 4) -> tuple[int, set[str], set[str]]:
    """Every ``every``-th row of the default optical set as a ``captions-json`` source, three images spoiled.

    Returns:
        ``(entries, ids quarantined at ingest, ids quarantined by validation)``.
    """
    rows = read_manifest(optical).iloc[::every]
    entries = {}
    for row in rows.itertuples():
        name = f"images/{Path(row.image).name}"
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(optical / row.image, out / name)
        entries[name] = {"split": row.split, "captions": list(row.captions)}
    (out / "captions.json").write_text(json.dumps(entries), encoding="utf-8")
    names = sorted(entries)
    garbage, truncated = names[0], names[1:3]
    (out / garbage).write_bytes(PNG_SIGNATURE + b"garbage" * 16)  # no readable header: ingest rejects it
    for name in truncated:  # header intact, pixels cut: only a full decode (validation) finds it
        _truncate(out / name, keep=0.4)
    stem = lambda name: str(Path(name).with_suffix(""))  # noqa: E731 - the adapter's documented id rule
    return len(entries), {stem(garbage)}, {stem(name) for name in truncated}


def _filter_only(config_json: str, uri: str) -> None:
    """Run the KFP ``filter`` component alone (KFP local runner) on the dataset at ``uri``."""
    from kfp import dsl

    from components.filter.component import filter_rows

    @dsl.pipeline(name="filter-only")
    def only_filter(config_json: str, uri: str):
        data = dsl.importer(artifact_uri=uri, artifact_class=dsl.Dataset, reimport=True)
        filter_rows(config_json=config_json, dataset=data.output)

    only_filter(config_json=config_json, uri=uri)


@pytest.mark.slow
def test_corrupt_files_train_under_the_limit_and_stop_the_filter_over_it(
        tmp_path, repo_root, monkeypatch, capfd, default_data):
    """Over the limit, the KFP ``filter`` component fails the run (local runner); under it, the step
    bodies chained as the pipeline chains them (``ingest -> caption -> filter -> train``, each its
    component's ``.python_func``) train on the kept rows only. The whole DAG runs in the ``sar_text``
    end-to-end test; here only the data path matters."""
    from kfp import dsl, local
    from mlflow import MlflowClient

    from components.caption.component import caption
    from components.filter.component import filter_rows
    from components.ingest.component import ingest as ingest_step
    from components.train.component import train
    from pipelines.dag import paper_config

    monkeypatch.chdir(repo_root)
    entries, at_ingest, at_validate = _captions_json_source(default_data / "optical", tmp_path / "source")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [f"mlflow.tracking_uri={tracking}", f"train.storage_path={tmp_path / 'ray'}",
                 "data.source=ingest", "data.format=captions-json", f"data.path={tmp_path / 'source'}",
                 f"data.root={default_data.parent}", "model={name: rsvl-tiny, pretrained: null, image_size: null}",
                 "train.num_workers=0", "train.max_steps=2", "train.batch_size=16",
                 # validation's limit is under test: no RS5M funnel (its decode stage would remove the corrupt
                 # images first) and no curation scorer to fit (tests/data/test_filter_funnel.py covers them)
                 "curation=null"]
    bad_share = len(at_validate) / (entries - len(at_ingest))

    ingest("captions-json", tmp_path / "source", tmp_path / "ingested")
    over = paper_config("georsclip", "local", overrides + [f"data.max_bad_fraction={bad_share / 2}"])
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "over"),
               enable_caching=False)
    capfd.readouterr()
    with pytest.raises(RuntimeError, match="filter-rows"):
        _filter_only(over.model_dump_json(), str(tmp_path / "ingested"))
    log = "".join(capfd.readouterr())
    assert "ValidationFailed" in log and "image_decodes" in log and "quarantine.parquet" in log, log[-3000:]

    config_json = paper_config("georsclip", "local", overrides + [f"data.max_bad_fraction={bad_share * 2}"]
                               ).model_dump_json()
    under = tmp_path / "under"
    artifact = lambda kind, name: kind(uri=str(under / name))  # noqa: E731
    ingested, captioned, filtered = (artifact(dsl.Dataset, name) for name in ("ingested", "captioned", "filtered"))
    ingest_step.python_func(config_json=config_json, data_version="", dataset=ingested,
                            summary=artifact(dsl.Markdown, "ingest.md"))
    caption.python_func(config_json=config_json, dataset=ingested, captioned=captioned,
                        summary=artifact(dsl.Markdown, "caption.md"))
    filter_rows.python_func(config_json=config_json, dataset=captioned, filtered=filtered,
                            summary=artifact(dsl.Markdown, "filter.md"))
    run_id = train.python_func(config_json=config_json, dataset=filtered, model=artifact(dsl.Model, "model"),
                               metrics=artifact(dsl.Metrics, "metrics"))

    kept = entries - len(at_ingest) - len(at_validate)
    manifest = pd.read_parquet(Path(filtered.path) / "manifest.parquet")
    assert len(manifest) == kept and not set(manifest["sample_id"]) & (at_ingest | at_validate)
    quarantine = read_quarantine(filtered.path)
    assert set(quarantine[quarantine["stage"] == "validate"]["sample_id"]) == at_validate
    assert set(quarantine[quarantine["stage"] == "ingest"]["sample_id"]) == at_ingest
    assert (filtered.metadata["rows_kept"], filtered.metadata["rows_quarantined"]) == (kept, len(at_ingest | at_validate))
    params = MlflowClient(tracking).get_run(run_id).data.params  # the fit read the kept rows only
    assert (params["data.rows_kept"], params["data.rows_quarantined"]) == (str(kept), str(len(at_ingest | at_validate)))
