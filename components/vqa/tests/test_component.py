"""The ``vqa`` component's body on the session's tiny trained CLIP and the filtered SAR chips, logging into its run.

``tests/steps/test_vqa_step.py`` covers the library call and the component without a run id.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl
from mlflow import MlflowClient

from components.conftest import read_json
from components.vqa.component import vqa
from rsvl.data.store import sha256_file
from rsvl.models.io import WEIGHTS_NAME
from rsvl.steps.vqa import LLAVA_TEST, LLAVA_TRAIN, MODEL_TAG
from rsvl.vqa import QUESTION_TYPES, evaluate_vqa, load_vqa_model, read_llava, read_vqa_config, vqa_from_dataset


def test_the_vqa_model_metrics_and_summary_are_written_and_logged(run_config, trained, filtered, tmp_path):
    vqa_model, metrics = dsl.Model(uri=str(tmp_path / "vqa_model")), dsl.Metrics(uri=str(tmp_path / "metrics"))
    vqa.python_func(config_json=run_config.model_dump_json(), model=trained.model,
                    dataset=dsl.Dataset(uri=str(filtered.dataset_dir)), mlflow_run_id=trained.mlflow_run_id,
                    vqa_model=vqa_model, metrics=metrics, summary=dsl.Markdown(uri=str(tmp_path / "summary.md")))

    values = metrics.metadata
    assert read_json(tmp_path / "metrics") == values
    assert {"vqa.overall", *(f"vqa.{kind}" for kind in QUESTION_TYPES), "vqa.majority.overall"} <= set(values)
    # the untuned base beside the candidate (sar_text's evaluate.compare_base), on the run dataset
    assert {f"vqa.run.{model}.{kind}" for model in ("candidate", "base", "majority", "random")
            for kind in ("overall", *QUESTION_TYPES)} <= set(values)
    assert all(0.0 <= value <= 1.0 for value in values.values())
    assert (tmp_path / "summary.md").read_text(encoding="utf-8").startswith(f"# SAR VQA: {run_config.vqa.model}")

    clip = Path(trained.model.path) / "model"
    weights = sha256_file(clip / WEIGHTS_NAME)
    assert vqa_model.metadata == {"kind": run_config.vqa.model, "clip_weights_sha256": weights}
    assert read_vqa_config(tmp_path / "vqa_model" / "model").clip.weights_sha256 == weights
    test = read_llava(tmp_path / "vqa_model" / LLAVA_TEST)
    assert test == vqa_from_dataset(filtered.dataset_dir, "test")
    assert read_llava(tmp_path / "vqa_model" / LLAVA_TRAIN) == vqa_from_dataset(filtered.dataset_dir, "train")
    predicted = [p["answer"] for p in read_json(tmp_path / "vqa_model" / "predictions.json")]
    scored = evaluate_vqa(load_vqa_model(tmp_path / "vqa_model" / "model", clip), test, filtered.dataset_dir)
    assert [p[3] for p in scored.predictions] == predicted  # the saved model answers as the step's model did

    client = MlflowClient(run_config.mlflow.tracking_uri)
    run = client.get_run(trained.mlflow_run_id)
    assert {key: run.data.metrics[key] for key in values} == pytest.approx(values)
    assert run.data.tags[MODEL_TAG] == run_config.vqa.model
    assert {"vqa/report.md", "vqa/model"} <= {a.path for a in client.list_artifacts(trained.mlflow_run_id, "vqa")}
