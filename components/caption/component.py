"""``caption``: captions for the rows that have none (the paper's captioner); captioned rows pass through.

Library: ``rsvl.steps.data_steps.run_caption``
Tests: ``components/caption/tests/test_component.py`` (the body against the library's output, the quarantine
    carried), ``tests/steps/test_data_steps.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def caption(config_json: str, dataset: dsl.Input[dsl.Dataset], captioned: dsl.Output[dsl.Dataset],
            summary: dsl.Output[dsl.Markdown]):
    """Caption the rows without captions.

    Args:
        config_json: The resolved run config (JSON).
        dataset: The ingested dataset.
        captioned: The dataset with captions.
        summary: Counts of captioned and uncaptioned rows.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.data_steps import run_caption

    outcome = run_caption(RunConfig.model_validate_json(config_json), dataset.path, captioned.path)
    captioned.metadata.update({"rows": outcome.rows})
    with open(summary.path, "w", encoding="utf-8") as handle:
        handle.write(outcome.summary + "\n")
