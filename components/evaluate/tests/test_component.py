"""The ``evaluate`` component's body on the session's tiny trained model, with the untuned base model beside it.

The pinned ``sar_test`` set is the default SAR chips' test split narrated as the training data was,
so the candidate's numbers are the train step's held-out ``test_*`` numbers after training and the
base model's (the same seeded random start) are its ``untrained_test_*`` ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from mlflow import MlflowClient

from components.conftest import read_json
from components.evaluate.component import evaluate
from rsvl.config import RunConfig
from rsvl.errors import ModelError
from rsvl.evaluate.pinned_data import prepare_eval_data
from rsvl.steps.evaluation import EVAL_DATA_TAG

METRICS = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR")
"""The merged protocol's numbers, which the training loop's held-out scoring also logs."""
STANDARD = tuple(f"std_{metric}" for metric in METRICS)


def with_base(run_config) -> RunConfig:
    settings = run_config.model_dump(mode="json")
    settings["evaluate"]["compare_base"] = True
    return RunConfig.model_validate(settings)


@pytest.fixture(scope="module")
def evaluated(run_config, trained, tmp_path_factory) -> tuple[dsl.Metrics, Path]:
    out = tmp_path_factory.mktemp("evaluate")
    metrics = dsl.Metrics(uri=str(out / "metrics"))
    evaluate.python_func(config_json=with_base(run_config).model_dump_json(), model=trained.model,
                         mlflow_run_id=trained.mlflow_run_id, metrics=metrics,
                         report=dsl.HTML(uri=str(out / "report.html")),
                         summary=dsl.Markdown(uri=str(out / "summary.md")))
    return metrics, out


def test_metrics_are_the_candidates_and_the_base_models_on_the_pinned_set(evaluated, trained):
    metrics, out = evaluated
    values = metrics.metadata
    assert read_json(out / "metrics") == values
    assert set(values) == {f"{model}sar_test.{m}" for model in ("", "base.") for m in METRICS + STANDARD}
    fit = trained.metrics.metadata
    for metric in METRICS:
        assert values[f"sar_test.{metric}"] == pytest.approx(fit[f"test_{metric}"], abs=1e-6)
        assert values[f"base.sar_test.{metric}"] == pytest.approx(fit[f"untrained_test_{metric}"], abs=1e-6)


def test_everything_is_logged_into_the_training_run(evaluated, trained, run_config):
    metrics, _ = evaluated
    client = MlflowClient(run_config.mlflow.tracking_uri)
    run = client.get_run(trained.mlflow_run_id)
    assert {key: run.data.metrics[key] for key in metrics.metadata} == pytest.approx(metrics.metadata)
    version = run.data.tags[f"{EVAL_DATA_TAG}.sar_test"]
    assert version == prepare_eval_data(run_config).versions["sar_test"]
    assert version.startswith("29f786aefd8de12b769d1021f2757279:narrated-")  # the pinned DVC version, narrated
    logged = {a.path for a in client.list_artifacts(trained.mlflow_run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/report.html", "evaluation/evaluation.json"} <= logged


def test_the_reports_show_both_models(evaluated, trained):
    metrics, out = evaluated
    html = (out / "report.html").read_text(encoding="utf-8")
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and "sar_test" in html and "<img" in html
    assert markdown.startswith("# sar_text evaluation") and "base" in markdown
    assert f"{metrics.metadata['sar_test.mR']:.2f}" in markdown


def test_a_train_output_with_an_ablation_the_config_lacks_is_refused(run_config, trained, tmp_path):
    (tmp_path / "train" / "ablations" / "sar_only" / "model").mkdir(parents=True)
    (tmp_path / "train" / "model").symlink_to(Path(trained.model.path) / "model")
    with pytest.raises(ModelError, match=r"\['sar_only'\] are no ablations of this config"):
        evaluate.python_func(config_json=run_config.model_dump_json(), model=dsl.Model(uri=str(tmp_path / "train")),
                             mlflow_run_id=trained.mlflow_run_id, metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
                             report=dsl.HTML(uri=str(tmp_path / "report.html")),
                             summary=dsl.Markdown(uri=str(tmp_path / "summary.md")))
    assert not (tmp_path / "metrics").exists()
