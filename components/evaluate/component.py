"""``evaluate``: paper-exact metrics on the pinned eval sets, with pictures for the UI.

Comparison models are scored by the same code on the same prepared sets: every ablation the train
step saved (``<train out>/ablations/<name>/model``, found by ``rsvl.steps.evaluation.comparison_models``;
SAR-TEXT's ``sar_only``) and, with ``evaluate.compare_base: true``, the untuned ``base`` model built
from the config's ``model`` section (SAR-RS-CoCa against untuned CoCa). Their metrics are keyed
``<name>.<eval set>.<metric>`` (``sar_only.sar_test.mR``, ``base.sar_test.CIDEr``) in the
``metrics`` output and the MLflow run, beside the candidate's ``<eval set>.<metric>``; the report
opens with a table of every model's metrics and the difference candidate − comparison. The gate
scores no comparisons.

Eval sets with ``narrate: true`` are scored on a SAR-Narrator-captioned copy kept in
``evaluate.cache_dir`` (see ``rsvl.evaluate.pinned_data``).

Library: ``rsvl.steps.evaluation.run_evaluation``
CLI: ``rsvl evaluate``
Tests: ``components/evaluate/tests/test_component.py`` (candidate and base model on the pinned set, logged into
    the training run; a stray ablation refused), ``tests/steps/test_promotion.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

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
