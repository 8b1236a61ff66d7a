"""``train``: Ray Train fit of the configured model, tracked in MLflow (backend ``local`` or ``kuberay``).

Library: ``rsvl.steps.training.run_train``
CLI: ``rsvl train``
Tests: ``components/train/tests/test_component.py`` (one tiny fit: the model folder, metrics against its MLflow
    run), ``tests/train/`` (the library), ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(config_json: str, dataset: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model],
          metrics: dsl.Output[dsl.Metrics]) -> str:
    """Fit the model; write it (open_clip local dir + config) and its held-out retrieval.

    Args:
        config_json: The resolved run config (JSON).
        dataset: The filtered training dataset.
        model: Folder with ``model/`` (the trained model) and ``config.json``.
        metrics: Held-out retrieval before and after training, steps, seconds.

    Returns:
        The MLflow run id of the fit.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.training import run_train, summary_metrics

    import json

    result = run_train(RunConfig.model_validate_json(config_json), dataset.path, model.path)
    shown = summary_metrics(result)
    for key, value in shown.items():
        metrics.log_metric(key, value)
    with open(metrics.path, "w", encoding="utf-8") as handle:  # a file on disk lets the local cache reuse the step
        json.dump(shown, handle, indent=2)
    model.metadata.update({"mlflow_run_id": result.mlflow_run_id, "run_name": result.run_name})
    return result.mlflow_run_id
