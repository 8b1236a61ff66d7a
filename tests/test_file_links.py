"""Write-once outputs linked instead of copied: the same bytes under a second name, a copy where no link can be made."""

from __future__ import annotations

import os

import pytest
from mlflow import MlflowClient

from rsvl import file_links
from rsvl.file_links import link_or_copy, link_tree
from rsvl.mlflow_store import link_artifacts


def model_folder(root):
    folder = root / "model"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "weights.safetensors").write_bytes(os.urandom(4096))
    (folder / "config.json").write_text('{"embed_dim": 8}')
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\nship\n")
    return folder


def files_of(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_tree_is_linked_file_by_file(tmp_path):
    source = model_folder(tmp_path)
    target = link_tree(source, tmp_path / "out" / "model")
    assert files_of(target) == files_of(source)
    for path in source.rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(source)).stat().st_ino == path.stat().st_ino


def test_where_no_link_can_be_made_the_file_is_copied(tmp_path, monkeypatch):
    source = model_folder(tmp_path)

    def no_link(*_args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(file_links.os, "link", no_link)
    target = link_tree(source, tmp_path / "copy")
    assert files_of(target) == files_of(source)
    assert (target / "config.json").stat().st_ino != (source / "config.json").stat().st_ino
    with pytest.raises(FileExistsError):
        link_or_copy(source / "config.json", target / "config.json")


def test_a_local_store_gets_the_run_artifacts_mlflow_would_have_copied(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("links", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    source = model_folder(tmp_path)
    assert link_artifacts(run.info.artifact_uri, source, "model") is True
    listed = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert listed == {"model/weights.safetensors", "model/config.json", "model/tokenizer"}
    fetched = client.download_artifacts(run.info.run_id, "model", str(tmp_path / "fetched"))
    assert files_of(type(source)(fetched)) == files_of(source)


def test_a_remote_store_is_left_to_mlflow(tmp_path):
    source = model_folder(tmp_path)
    assert link_artifacts("s3://bucket/runs/1/artifacts", source, "model") is False
    assert link_artifacts("ftp://user@host/artifacts", source) is False
