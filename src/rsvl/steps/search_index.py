"""The ``index`` step: after a promotion, the archive indexed with the new champion, one folder per version."""

from __future__ import annotations

from pathlib import Path

from rsvl.config import RunConfig
from rsvl.errors import ConfigError

from rsvl.search.index import CURRENT, KEPT_MODEL, write_atomic


def index_dir_of(cfg: RunConfig, version: int) -> Path:
    """``<search.out_dir>/<registered name>/v<version>``."""
    if cfg.search is None:
        raise ConfigError("the run config has no search section: nothing to index")
    return Path(cfg.search.out_dir) / cfg.registry.model_name / f"v{version}"


def run_index(cfg: RunConfig, version: int) -> Path:
    """Index ``search.dataset`` with registered version ``version`` and point ``CURRENT`` at it.

    A rerun for the same version reuses the embeddings already computed (the index's shards).

    Args:
        cfg: The run config (``search``, ``registry.model_name``, ``mlflow.tracking_uri``, ``data.root``).
        version: The champion version just promoted.

    Returns:
        The index folder.

    Raises:
        ConfigError: No ``search`` section.
        DataError: The dataset is not a canonical dataset or nothing in it could be embedded.
    """
    from rsvl.model_registry.embedder import load_embedder
    from rsvl.search.index import build_index
    from rsvl.search.model_ref import resolve_model

    out = index_dir_of(cfg, version)
    dataset = Path(cfg.search.dataset)
    dataset = dataset if dataset.is_absolute() else Path(cfg.data.root) / dataset
    folder, ref = resolve_model(f"models:/{cfg.registry.model_name}/{version}", cfg.mlflow.tracking_uri,
                                cache_dir=out / KEPT_MODEL)
    build_index(load_embedder(folder), ref, dataset, out, batch_size=cfg.search.batch_size, kind=cfg.search.kind)
    write_atomic(out.parent / CURRENT, lambda path: path.write_text(out.name + "\n"))
    return out
