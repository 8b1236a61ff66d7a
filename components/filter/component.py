"""``filter``: great-expectations checks; bad rows quarantined with their reason; fails past the limit."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def filter_rows(config_json: str, dataset: dsl.Input[dsl.Dataset], filtered: dsl.Output[dsl.Dataset],
                summary: dsl.Output[dsl.Markdown]):
    """Validate every row and quarantine the bad ones (listed with rule and reason in the dataset).

    Args:
        config_json: The resolved run config (JSON).
        dataset: The captioned dataset.
        filtered: The dataset with its quarantine table.
        summary: Rows, bad rows by rule and the quarantine path.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.data_steps import run_filter

    outcome = run_filter(RunConfig.model_validate_json(config_json), dataset.path, filtered.path)
    filtered.metadata.update({"rows": outcome.rows})
    with open(summary.path, "w", encoding="utf-8") as handle:
        handle.write(outcome.summary + "\n")
