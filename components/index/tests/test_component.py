"""The ``index`` component's body: the promoted version of the session's tiny trained model indexes the archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.index.component import index
from rsvl.config import RunConfig
from rsvl.errors import ConfigError, DataError
from rsvl.model_registry import registry_client
from rsvl.model_registry.register import set_champion
from rsvl.search.index import read_manifest_file
from rsvl.search.index import kept_model
from rsvl.search.searcher import Searcher
from rsvl.search.service import open_index
from rsvl.steps.registration import run_register
from rsvl.steps.search_index import CURRENT


def test_the_new_champion_indexes_the_archive_and_becomes_current(run_config, trained, filtered, tmp_path):
    settings = run_config.model_dump(mode="json")
    settings["registry"]["model_name"] = "index_component_test"
    settings["search"] = {"dataset": str(Path(filtered.dataset_dir).resolve()), "out_dir": str(tmp_path / "search")}
    cfg = RunConfig.model_validate(settings)
    registration = run_register(cfg, f"{trained.model.path}/model", filtered.dataset_dir, "kfp-run",
                                mlflow_run_id=trained.mlflow_run_id)
    set_champion(registry_client(cfg.mlflow.tracking_uri), cfg.registry.model_name, registration.version)
    folder = Path(index.python_func(config_json=cfg.model_dump_json(), version=registration.version))
    assert folder == tmp_path / "search" / "index_component_test" / f"v{registration.version}"
    assert (folder.parent / CURRENT).read_text().strip() == folder.name
    manifest = read_manifest_file(folder)
    assert (manifest["model"]["name"], manifest["model"]["version"]) == ("index_component_test", registration.version)
    assert manifest["entries"] + manifest["skipped"] == filtered.rows  # every row's image, indexed or listed
    assert len(Searcher(folder).metadata) == manifest["entries"]
    # the service opens the newest version from the parent folder, with the model copy kept in the index
    searcher, embedder = open_index(str(folder.parent), tracking_uri=f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert searcher.root == folder and kept_model(folder, manifest["model"]["weights_sha256"]) is not None
    (folder.parent / CURRENT).write_text("../../etc\n")
    with pytest.raises(DataError, match="not an index folder beside it"):
        open_index(str(folder.parent))


def test_without_a_search_section_there_is_nothing_to_index(run_config):
    with pytest.raises(ConfigError, match="no search section"):
        index.python_func(config_json=run_config.model_dump_json(), version=1)
