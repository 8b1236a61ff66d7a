"""A fit's identity: config sections, data by content, start weights by SHA-256; a re-launch must match it.

One tiny fit (Ray Train local mode, 2 steps, no held-out scoring, a real MLflow sqlite store) starts
from a saved model and finishes once for the module; the tests re-launch its name with one thing
changed at a time. Re-launches that match reuse it without training; the others are refused before
any training, naming what changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from rsvl.config import RunConfig, deep_merge
from rsvl.data.generate import write_optical_scenes
from rsvl.errors import ConfigError, TrainError
from rsvl.models import build_model, save_model
from rsvl.train import fit
from rsvl.train.identity import RUN_CONFIG_FILE, fit_identity, identity_config
from rsvl.train.loop import RAISE_AT_STEP_ENV

NAME = "sar_text-identity"


def save_start_model(folder: Path, seed: int) -> Path:
    """A fresh tiny model saved in ``folder`` (a stand-in for a previous stage's output)."""
    torch.manual_seed(seed)
    return save_model(build_model("rsvl-tiny")[0], folder)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Optical data, a start model, Ray storage and the MLflow store."""
    root = tmp_path_factory.mktemp("identity")
    write_optical_scenes(root / "optical", seed=0, per_class=4)
    save_start_model(root / "start", seed=0)
    return root


def config(workdir: Path, **sections: object) -> RunConfig:
    base = {
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "train": {"num_workers": 0, "cpus_per_worker": 2, "batch_size": 8, "max_steps": 2, "lr": 1e-3,
                  "log_every": 1, "checkpoint_every": 2, "max_failures": 0, "eval_split": None,
                  "storage_path": str(workdir / "ray"), "init_from": str(workdir / "start")},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "test-identity"},
    }
    return RunConfig.model_validate(deep_merge(base, sections))


@pytest.fixture(scope="module")
def finished(workdir):
    """The fit, trained once under :data:`NAME`."""
    return fit(config(workdir), workdir / "optical", workdir / "out", run_name=NAME)


def test_other_sections_and_where_things_lie_do_not_change_a_finished_fit(finished, workdir, tmp_path):
    shutil.copytree(workdir / "optical", tmp_path / "data-copy")
    shutil.copytree(workdir / "start", tmp_path / "start-copy")
    changed = config(workdir, train={"log_every": 2, "max_failures": 3, "init_from": str(tmp_path / "start-copy")},
                     evaluate={"batch_size": 7, "java_metrics": False}, gate={"minimums": {"sar_test.mR": 1.0}},
                     registry={"model_name": "another-name"}, mlflow={"experiment": "another-experiment"})
    again = fit(changed, tmp_path / "data-copy", tmp_path / "out", run_name=NAME)
    assert again.reused and again.mlflow_run_id == finished.mlflow_run_id and again.steps == finished.steps == 2


def test_changed_data_is_refused_naming_it(finished, workdir, tmp_path):
    write_optical_scenes(tmp_path / "other-data", seed=1, per_class=4)
    with pytest.raises(ConfigError, match=rf"fit '{NAME}' was started with another config or data .*changed: "
                                          r"the training data: sha256-\w+ -> sha256-\w+"):
        fit(config(workdir), tmp_path / "other-data", tmp_path / "out", run_name=NAME)


def test_retrained_start_weights_are_refused_naming_them(finished, workdir, tmp_path):
    retrained = save_start_model(tmp_path / "start", seed=1)
    with pytest.raises(ConfigError, match=r"changed: the start weights .*: sha256:\w+ -> sha256:\w+"):
        fit(config(workdir, train={"init_from": str(retrained)}), workdir / "optical", tmp_path / "out", run_name=NAME)


def test_a_changed_train_field_is_named_with_both_values(finished, workdir, tmp_path):
    with pytest.raises(ConfigError, match=r"changed: config train.lr: 0.001 -> 0.0005\."):
        fit(config(workdir, train={"lr": 5e-4}), workdir / "optical", tmp_path / "out", run_name=NAME)
    assert not (tmp_path / "out").exists()


def test_resuming_from_checkpoints_on_changed_data_is_refused(workdir, tmp_path, monkeypatch):
    name = "sar_text-identity-resume"
    monkeypatch.setenv(RAISE_AT_STEP_ENV, "2")
    with pytest.raises(TrainError, match="resume"):
        fit(config(workdir, train={"checkpoint_every": 1}), workdir / "optical", tmp_path / "out", run_name=name)
    assert (workdir / "ray" / name / RUN_CONFIG_FILE).is_file()
    write_optical_scenes(tmp_path / "other-data", seed=1, per_class=4)
    with pytest.raises(ConfigError, match="changed: the training data"):
        fit(config(workdir, train={"checkpoint_every": 1}), tmp_path / "other-data", tmp_path / "out", run_name=name)


def test_identity_parts(workdir):
    cfg = config(workdir)
    identity = fit_identity(cfg, workdir / "optical")
    assert set(identity_config(cfg)) == {"paper", "track", "data", "model", "train"}
    assert "init_from" not in identity.config["train"] and "log_every" not in identity.config["train"]
    assert identity.start_weights.startswith("sha256:") and identity.inputs is None
    fresh = fit_identity(config(workdir, train={"init_from": None}), workdir / "optical")
    assert fresh.start_weights == "fresh" and fresh.digest() != identity.digest()
    other = config(workdir, profile="cluster", caption={"seed": 3}, evaluate={"compare_base": True})
    assert fit_identity(other, workdir / "optical").digest() == identity.digest()
