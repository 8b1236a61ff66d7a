"""``register``: the trained model as an MLflow pyfunc version (alias ``candidate``) with its lineage.

Library: ``rsvl.steps.registration.run_register``
CLI: ``rsvl register``
Tests: ``components/register/tests/test_component.py`` (version, alias and lineage in the sqlite registry; an
    identical model reuses its version), ``tests/steps/test_promotion.py``, ``tests/model_registry/test_model_registry.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register(config_json: str, model: dsl.Input[dsl.Model], dataset: dsl.Input[dsl.Dataset], mlflow_run_id: str,
             pipeline_run_id: str) -> int:
    """Register the model; an identical model (weights, config, data) reuses its version.

    Args:
        config_json: The resolved run config (JSON).
        model: The train step's model folder.
        dataset: The training dataset (its version goes into the lineage).
        mlflow_run_id: The training run the model is attached to.
        pipeline_run_id: This pipeline run (lineage).

    Returns:
        The registered version.
    """
    import os

    from rsvl.config import RunConfig
    from rsvl.steps.registration import run_register

    cfg = RunConfig.model_validate_json(config_json)
    return run_register(cfg, os.path.join(model.path, "model"), dataset.path, pipeline_run_id,
                        mlflow_run_id=mlflow_run_id).version
