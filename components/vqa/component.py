"""``vqa``: closed-set SAR VQA on the trained CLIP, accuracy per question type beside baselines."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def vqa(config_json: str, model: dsl.Input[dsl.Model], dataset: dsl.Input[dsl.Dataset], mlflow_run_id: str,
        vqa_model: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics], summary: dsl.Output[dsl.Markdown]):
    """Generate questions from the dataset's boxes and masks, fit the configured VQA model, score it.

    Args:
        config_json: The resolved run config (JSON) with a ``vqa`` section.
        model: The train step's folder (the CLIP at ``model/``).
        dataset: The run dataset (boxes, sea/land mask).
        mlflow_run_id: The CLIP's training run to log into (empty: log nowhere).
        vqa_model: The step's folder: the VQA model at ``model/``, LLaVA files, report, predictions.
        metrics: ``vqa.*`` accuracies.
        summary: The Markdown report (per question type: model, majority, random).
    """
    import json
    import os
    import shutil

    from rsvl.config import RunConfig
    from rsvl.steps.vqa import run_vqa

    outcome = run_vqa(RunConfig.model_validate_json(config_json), os.path.join(model.path, "model"), dataset.path,
                      vqa_model.path, mlflow_run_id=mlflow_run_id or None)
    for key, value in outcome.metrics.items():
        metrics.log_metric(key, value)
    with open(metrics.path, "w", encoding="utf-8") as handle:  # a file on disk lets the local cache reuse it
        json.dump(outcome.metrics, handle, indent=2)
    shutil.copyfile(outcome.report_md, summary.path)
    vqa_model.metadata.update({"kind": outcome.kind, "clip_weights_sha256": outcome.clip_weights_sha256})
