"""``ingest``: the run's training dataset, versioned (DVC md5 or content fingerprint).

Library: ``rsvl.steps.data_steps.run_ingest``
CLI: ``rsvl data generate`` / ``rsvl data ingest``
Tests: ``components/ingest/tests/test_component.py`` (the body on the default data: its DVC version, a refused
    version), ``tests/steps/test_data_steps.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(config_json: str, data_version: str, dataset: dsl.Output[dsl.Dataset],
           summary: dsl.Output[dsl.Markdown]) -> str:
    """Write the run's dataset: the embedded default data or a public layout converted to the canonical format.

    Args:
        config_json: The resolved run config (JSON).
        data_version: The data version the run must read; empty accepts the current one.
        dataset: The canonical dataset written.
        summary: Rows and data version, for the run's UI.

    Returns:
        The data version read.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.data_steps import run_ingest

    outcome = run_ingest(RunConfig.model_validate_json(config_json), dataset.path, data_version)
    dataset.metadata.update({"rows": outcome.rows, "data_version": outcome.version})
    with open(summary.path, "w", encoding="utf-8") as handle:
        handle.write(outcome.summary + "\n")
    return outcome.version
