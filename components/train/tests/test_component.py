"""The ``train`` component's body: one tiny fit on the filtered SAR chips (the session's ``trained`` fixture).

Its outputs are checked against the MLflow run it returns (the real sqlite store) and against what
the library rebuilds for that run (:func:`rsvl.steps.training.fit_result_from_mlflow`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.conftest import read_json
from rsvl.models import load_model
from rsvl.models.io import CONFIG_NAME, WEIGHTS_NAME
from rsvl.steps.training import fit_result_from_mlflow, summary_metrics
from rsvl.train.tracking import RUN_NAME_TAG


def test_the_model_folder_holds_the_trained_model_and_its_config(trained):
    folder = Path(trained.model.path)
    assert (folder / "config.json").is_file() and (folder / "model" / CONFIG_NAME).is_file()
    assert (folder / "model" / WEIGHTS_NAME).stat().st_size > 0
    model, *_ = load_model(folder / "model")
    assert model.rsvl_spec["architecture"] == "rsvl-tiny"
    assert not (folder / "ablations").exists() and not (folder / "stages").exists()  # one plain fit


def test_metrics_are_the_fits_numbers_as_mlflow_holds_them(trained, run_config):
    shown = trained.metrics.metadata
    assert read_json(trained.metrics.path) == shown
    assert shown["steps"] == 2.0 and shown["fit_seconds"] > 0
    assert {"loss", "test_mR", "untrained_test_mR", "test_i2t_r1", "untrained_test_t2i_r10"} <= set(shown)
    assert all(0.0 <= shown[key] <= 100.0 for key in shown if "test_" in key)

    run = MlflowClient(run_config.mlflow.tracking_uri).get_run(trained.mlflow_run_id)
    assert trained.model.metadata == {"mlflow_run_id": trained.mlflow_run_id, "run_name": run.data.tags[RUN_NAME_TAG]}
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_mR"] == pytest.approx(shown["test_mR"])
    rebuilt = fit_result_from_mlflow(run_config, trained.model.metadata["run_name"], Path(trained.model.path) / "model",
                                     seconds=shown["fit_seconds"])
    assert rebuilt.mlflow_run_id == trained.mlflow_run_id
    assert summary_metrics(rebuilt) == pytest.approx(shown)
