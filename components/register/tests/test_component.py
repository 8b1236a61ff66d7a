"""The ``register`` component's body on the session's tiny trained model, in the real sqlite MLflow registry.

The module registers under its own name (``component_register``), so the gate tests' versions and
aliases do not meet these.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl

from components.register.component import register
from rsvl.config import RunConfig
from rsvl.data.store import sha256_file
from rsvl.data.versioning import dataset_version
from rsvl.evaluate.pinned_data import prepare_eval_data
from rsvl.models.io import WEIGHTS_NAME
from rsvl.model_registry import CANDIDATE, download_model_dir, registry_client
from rsvl.model_registry.identity import WEIGHTS_TAG

NAME = "component_register"


@pytest.fixture(scope="module")
def cfg(run_config) -> RunConfig:
    settings = run_config.model_dump(mode="json")
    settings["registry"]["model_name"] = NAME
    return RunConfig.model_validate(settings)


def run(cfg, trained, filtered, pipeline_run_id: str) -> int:
    return register.python_func(config_json=cfg.model_dump_json(), model=trained.model,
                                dataset=dsl.Dataset(uri=str(filtered.dataset_dir)), mlflow_run_id=trained.mlflow_run_id,
                                pipeline_run_id=pipeline_run_id)


def test_the_model_becomes_the_candidate_version_with_its_lineage(cfg, trained, filtered, tmp_path):
    assert run(cfg, trained, filtered, "kfp-run-1") == 1
    client = registry_client(cfg.mlflow.tracking_uri)
    version = client.get_model_version(NAME, "1")
    assert version.run_id == trained.mlflow_run_id
    assert {k: int(v) for k, v in client.get_registered_model(NAME).aliases.items()} == {CANDIDATE: 1}
    weights = sha256_file(Path(trained.model.path) / "model" / WEIGHTS_NAME)
    assert version.tags[WEIGHTS_TAG] == weights
    assert version.tags["pipeline_run_id"] == "kfp-run-1" and version.tags["paper"] == "sar_text"
    assert version.tags["train_data_md5"] == dataset_version(filtered.dataset_dir)
    assert version.tags["eval_data_md5"] == prepare_eval_data(cfg).version()
    assert version.tags["config_hash"] == cfg.digest()
    downloaded = download_model_dir(client, NAME, 1, tmp_path / "downloaded")
    assert sha256_file(downloaded / WEIGHTS_NAME) == weights  # the registered package holds these very weights


def test_registering_the_same_model_again_reuses_its_version(cfg, trained, filtered):
    assert run(cfg, trained, filtered, "kfp-run-2") == 1
    client = registry_client(cfg.mlflow.tracking_uri)
    assert [int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == [1]
    assert client.get_model_version(NAME, "1").tags["pipeline_run_id"] == "kfp-run-1"
