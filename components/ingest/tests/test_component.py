"""The ``ingest`` component's body on the session's default data (``data.source: generate``, ``default/sar``)."""

from __future__ import annotations

import pandas as pd
import pytest
from kfp import dsl

from components.ingest.component import ingest
from rsvl.data.dataset import ManifestDataset
from rsvl.data.store import read_files, read_manifest
from rsvl.data.versioning import dvc_md5
from rsvl.errors import DataError


def run(run_config, folder, data_version: str = "") -> tuple[str, dsl.Dataset, dsl.Markdown]:
    dataset, summary = dsl.Dataset(uri=str(folder / "dataset")), dsl.Markdown(uri=str(folder / "summary.md"))
    version = ingest.python_func(config_json=run_config.model_dump_json(), data_version=data_version, dataset=dataset,
                                 summary=summary)
    return version, dataset, summary


def test_the_dataset_is_a_copy_of_the_default_sar_data_at_its_dvc_version(run_config, ingested, default_data, repo_root,
                                                                          tmp_path):
    version, dataset, summary = run(run_config, tmp_path)
    pinned = dvc_md5(repo_root / "data.dvc")  # the session's default data is generated at the checkout's DVC version
    assert version == dataset.metadata["data_version"] == ingested.version == pinned
    rows = len(ManifestDataset(tmp_path / "dataset", load_media=False))
    assert dataset.metadata["rows"] == rows == ingested.rows
    assert rows == len(ManifestDataset(default_data / "sar", load_media=False))
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "dataset"), read_manifest(default_data / "sar"))
    assert read_files(tmp_path / "dataset")["sha256"].tolist() == read_files(default_data / "sar")["sha256"].tolist()
    assert all((tmp_path / "dataset" / path).is_file() for path in read_files(tmp_path / "dataset")["path"])
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == ingested.summary + "\n"
    assert f"Ingested {rows} rows" in ingested.summary and pinned in ingested.summary


def test_the_run_gets_the_version_it_asks_for_or_fails(run_config, repo_root, tmp_path):
    pinned = dvc_md5(repo_root / "data.dvc")
    version, dataset, _ = run(run_config, tmp_path / "pinned", data_version=pinned)
    assert version == pinned and dataset.metadata["data_version"] == pinned
    with pytest.raises(DataError, match=f"is version {pinned}, the run asked for 0123abcd"):
        run(run_config, tmp_path / "other", data_version="0123abcd")
    assert not (tmp_path / "other" / "summary.md").exists()
