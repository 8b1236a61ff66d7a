"""What the end-to-end pipeline tests share: a run kept in the test's folder, scored at smoke size."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.dag import paper_tracks
from rsvl.config import EvalSet

SMOKE_ROWS = 8
"""Rows per eval set in the end-to-end runs (``limit``): enough for every metric to be computed."""


def store_overrides(tmp_path: Path, data_root: Path) -> list[str]:
    """Overrides that keep a pipeline run's MLflow store, Ray storage and eval cache in ``tmp_path``.

    Args:
        tmp_path: The test's folder.
        data_root: Where the default data lies (the ``default_data`` fixture's parent).

    Returns:
        ``key=value`` overrides for :func:`pipelines.run.run_local`.
    """
    return [f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"train.storage_path={tmp_path / 'ray'}",
            f"evaluate.cache_dir={tmp_path / 'eval_data'}", f"data.root={data_root}"]


def smoke_set(eval_set: EvalSet) -> dict:
    """An eval set as configured (its pins included) but scored on ``SMOKE_ROWS`` rows; one coarse scene for localisation."""
    configured = eval_set.model_dump(mode="json", exclude_none=True)
    if "localisation" in eval_set.tasks:
        return {**configured, "limit": 1, "localisation_steps": [0.25, 0.5]}
    return {**configured, "limit": SMOKE_ROWS}


def smoke_budgets(paper: str, tmp_path: Path, data_root: Path, train: list[str], *, floors: bool = True) -> list[str]:
    """Overrides that keep every step of ``paper``'s local pipeline but train and score the least that proves the wiring.

    Args:
        paper: The paper whose local profile runs.
        tmp_path: The test's folder (MLflow store, Ray storage, eval cache).
        data_root: Where the default data lies.
        train: The paper's own small training budget (stages, steps, logging).
        floors: Set every track's gate minimums to 0, so the first version is promoted and the
            aliases are exercised (each rule is still checked and its decision recorded).

    Returns:
        ``key=value`` overrides for :func:`pipelines.run.run_local`; a paper with several tracks
        gets each track's sets and floors under its ``<track>:`` prefix.
    """
    overrides = [*store_overrides(tmp_path, data_root), *train]
    tracks = paper_tracks(paper, "local")
    for track, cfg in tracks.items():
        prefix = f"{track}:" if len(tracks) > 1 else ""
        # JSON is YAML: the pins stay as configured
        overrides.append(f"{prefix}evaluate.sets={json.dumps([smoke_set(s) for s in cfg.evaluate.sets])}")
        if floors:
            overrides.append(f"{prefix}gate.minimums={json.dumps({metric: 0.0 for metric in cfg.gate.minimums})}")
    return overrides


TIME_TABLE = "\nstep times (s):"


def without_time_table(console: str) -> str:
    """The console of a run without its step time table, after checking the table names every step that ran.

    Args:
        console: What :func:`pipelines.run.run_local` printed.

    Returns:
        The console up to the table and after it (the ``MLflow UI`` lines), so a test can bound
        the rest's length; the table has one row per step.

    Raises:
        AssertionError: The table is missing, or a step's console line has no row in it.
    """
    before, found, table = console.partition(TIME_TABLE)
    assert found, "the summary has no step time table"
    rows, _, after = table.partition("\n  run (wall)")
    labelled = {line.split()[0] for line in rows.splitlines()[2:] if line.strip()}
    ran = {f"{parts[1]}-{parts[2]}" if parts[2] != "main" else parts[1]
           for parts in (line.split() for line in before.splitlines()) if len(parts) > 3 and parts[0] == "ok"}
    assert ran and ran <= labelled, f"steps without a time row: {sorted(ran - labelled)}"
    return before + "\n" + after.split("\n", 1)[-1]
