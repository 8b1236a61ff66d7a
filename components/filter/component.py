"""``filter``: great-expectations checks; bad rows removed and quarantined with their reason; fails past the limit."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def filter_rows(config_json: str, dataset: dsl.Input[dsl.Dataset], filtered: dsl.Output[dsl.Dataset],
                summary: dsl.Output[dsl.Markdown]):
    """Validate every row; the filtered copy lists the good ones and quarantines the others (rule, reason).

    Args:
        config_json: The resolved run config (JSON).
        dataset: The captioned dataset.
        filtered: The good rows, with the quarantine table; metadata ``rows_kept``, ``rows_quarantined``.
        summary: Rows, bad rows by rule, kept and quarantined counts and the quarantine path.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.data_steps import run_filter

    outcome = run_filter(RunConfig.model_validate_json(config_json), dataset.path, filtered.path)
    filtered.metadata.update({"rows": outcome.rows, "rows_kept": outcome.rows,
                              "rows_quarantined": outcome.rows_quarantined})
    with open(summary.path, "w", encoding="utf-8") as handle:
        handle.write(outcome.summary + "\n")
