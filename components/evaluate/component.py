"""``evaluate``: paper-exact metrics on the pinned eval sets, with pictures for the UI."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(config_json: str, model: dsl.Input[dsl.Model], mlflow_run_id: str, metrics: dsl.Output[dsl.Metrics],
             report: dsl.Output[dsl.HTML], summary: dsl.Output[dsl.Markdown]):
    """Score the trained model, and its comparisons, on the config's eval sets; log everything into its MLflow run.

    The train step's ablation models (``ablations/<name>/model``) and, with
    ``evaluate.compare_base``, the untuned base model are scored on the same sets beside it.

    Args:
        config_json: The resolved run config (JSON).
        model: The train step's output folder (``model/``, ``ablations/``).
        mlflow_run_id: The training run to log into.
        metrics: ``<eval set>.<metric>`` values, and ``<comparison>.<eval set>.<metric>``.
        report: The standalone HTML report (pictures embedded).
        summary: The Markdown report.
    """
    import json
    import os
    import shutil
    import tempfile

    from rsvl.config import RunConfig
    from rsvl.steps.evaluation import comparison_models, run_evaluation

    cfg = RunConfig.model_validate_json(config_json)
    with tempfile.TemporaryDirectory(prefix="rsvl-evaluate-") as out:
        evaluation = run_evaluation(cfg, os.path.join(model.path, "model"), out, mlflow_run_id=mlflow_run_id,
                                    compare=comparison_models(cfg, model.path), compare_base=cfg.evaluate.compare_base)
        values = {**evaluation.metrics, **evaluation.comparison_metrics}
        for key, value in values.items():
            metrics.log_metric(key, value)
        with open(metrics.path, "w", encoding="utf-8") as handle:  # a file on disk lets the local cache reuse it
            json.dump(values, handle, indent=2)
        shutil.copyfile(evaluation.result.report_html, report.path)
        shutil.copyfile(evaluation.result.report_md, summary.path)
