"""What the end-to-end pipeline tests share: the smoke size of an eval set, and a run kept in the test's folder."""

from __future__ import annotations

from pathlib import Path

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
