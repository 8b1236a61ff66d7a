"""``filter``: the RS5M funnel if configured, then great-expectations checks; removed rows quarantined with why.

``filtered`` is a copy of the input whose ``manifest.parquet`` holds only the rows that passed; the
others are in its ``quarantine.parquet`` (stage ``validate``, where, rule, reason), their media are
gone from ``media/`` and ``files.parquet``, and ``dataset.json`` counts what is left (``counts``,
plus ``filter``: rows in, kept, removed, by rule). The input is not changed. The artifact's
metadata carries ``rows_kept`` and ``rows_quarantined`` (quarantined records, each source record
or manifest row once, all stages). Past ``data.max_bad_fraction`` the step fails naming the rows,
the rules and the quarantine table.

With ``curation.funnel`` (RS5M) the funnel runs first, scored by the run's model (keyword →
decode → exact duplicates → near duplicates → outliers), and the checks run on the rows it kept:
its removals are quarantined too (stage ``funnel.<stage>``), ``dataset.json`` keeps its counts
(``funnel``), the metadata gains its ``funnel.*`` counts and, for a pool with ground truth
(``truth.json``), each stage's precision and recall, and the summary shows them as a table.

Library: ``rsvl.steps.data_steps.run_filter`` (``rsvl.data.filtering.filter_dataset``, ``rsvl.data.funnel.run_funnel``)
CLI: ``rsvl data validate DIR --out FILTERED``
Tests: ``components/filter/tests/test_component.py`` (the body on a planted corrupt image), ``tests/pipelines/test_pipelines.py``
    (compiled spec, end-to-end local run), ``tests/data/test_filter_quarantine.py``
    (planted corrupt images: library, reader and a local pipeline run under and over the limit),
    ``tests/data/test_filter_funnel.py`` (the funnel on a mixed pool with ground truth, scored by a real model)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def filter_rows(config_json: str, dataset: dsl.Input[dsl.Dataset], filtered: dsl.Output[dsl.Dataset],
                summary: dsl.Output[dsl.Markdown]):
    """Validate every row; the filtered copy lists the good ones and quarantines the others (rule, reason).

    Args:
        config_json: The resolved run config (JSON).
        dataset: The captioned dataset.
        filtered: The good rows, with the quarantine table; metadata ``rows_kept``, ``rows_quarantined``
            (and ``funnel.*`` with a funnel).
        summary: The funnel's table (with a funnel); rows, bad rows by rule, kept and quarantined
            counts and the quarantine path.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.data_steps import run_filter

    outcome = run_filter(RunConfig.model_validate_json(config_json), dataset.path, filtered.path)
    filtered.metadata.update({"rows": outcome.rows, "rows_kept": outcome.rows,
                              "rows_quarantined": outcome.rows_quarantined, **outcome.funnel})
    with open(summary.path, "w", encoding="utf-8") as handle:
        handle.write(outcome.summary + "\n")
