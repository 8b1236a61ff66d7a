"""Fixtures of the component tests (``components/<step>/tests/test_component.py``).

The suite's shared fixtures (``data_root``, ``default_data``, the per-module cleanup, ...) live in
``tests/conftest.py`` and are re-exported here, so a component test sees the same session data.
On top of them: the ``sar_text`` local configs at the smallest sizes that prove the wiring (the
``rsvl-tiny`` CLIP, one fit of two optimizer steps, the pinned ``sar_test`` set only), the data
steps' library outputs, and one model trained by the ``train`` component's body, which the
``evaluate``, ``register``, ``gate`` and ``vqa`` tests share. Everything is written under
``<basetemp>/session-components`` (MLflow sqlite store, Ray storage, eval cache) and lives for the
session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from kfp import dsl

from tests.conftest import (  # noqa: F401  (fixtures, re-exported for the tests under components/)
    SESSION_PREFIX,
    _module_tmp_cleanup,
    data_root,
    default_data,
    repo_root,
    shared_data,
)

PAPER, PROFILE = "sar_text", "local"
SAR_TEST = ("{name: sar_test, dataset: default/sar, split: test, tasks: [retrieval], narrate: true, "
            "dvc_version: 29f786aefd8de12b769d1021f2757279}")
"""The paper's pinned SAR test set, as ``pipelines/sar_text/config.yaml`` lists it (its other sets are left out)."""


def tiny_overrides(workdir: Path, data_root: Path) -> list[str]:
    """Overrides of the ``sar_text`` local configs: every store under ``workdir``, the smallest main track.

    One fit (no progressive stages, no ablation) of the seeded ``rsvl-tiny`` CLIP for two steps of
    16 pairs, still scored on the held-out test split before and after; evaluation on the pinned
    ``sar_test`` set alone (so VQA on the run dataset alone); a gate minimum of 0 so the first version passes.
    """
    return [f"data.root={data_root}", f"mlflow.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
            f"train.storage_path={workdir / 'ray'}", f"evaluate.cache_dir={workdir / 'eval_data'}",
            "main:model={name: rsvl-tiny, pretrained: null, image_size: null}",
            "main:train.stages=[]", "main:train.ablations=[]", "main:train.max_steps=2", "main:train.batch_size=16",
            "main:train.warmup_steps=1", "main:train.log_every=1", f"main:evaluate.sets=[{SAR_TEST}]", "main:vqa.sets=[]",
            "main:gate.minimums={sar_test.mR: 0.0}"]


@dataclass(frozen=True)
class Trained:
    """What the ``train`` component's body wrote and returned, as the later steps receive it."""

    model: dsl.Model
    metrics: dsl.Metrics
    mlflow_run_id: str


@pytest.fixture(scope="session")
def components_dir(tmp_path_factory) -> Path:
    """``<basetemp>/session-components``: the session's MLflow store, Ray storage and eval cache."""
    folder = tmp_path_factory.getbasetemp() / f"{SESSION_PREFIX}components"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def config_json(components_dir, default_data) -> str:
    """The ``config_json`` pipeline parameter: ``{track: config}`` of ``sar_text`` (local) at the tiny sizes."""
    from pipelines.dag import paper_tracks
    from rsvl.config import tracks_json

    return tracks_json(paper_tracks(PAPER, PROFILE, tiny_overrides(components_dir, default_data.parent)))


@pytest.fixture(scope="session")
def run_config(config_json):
    """The main track's resolved :class:`rsvl.config.RunConfig` (what ``configure`` returns with no run parameters)."""
    from rsvl.config import MAIN_TRACK, configure_track

    return configure_track(config_json, MAIN_TRACK)


@pytest.fixture(scope="session")
def ingested(run_config, components_dir):
    """:class:`rsvl.steps.data_steps.DataOutcome` of the library's ``run_ingest``: the run's data (``default/sar``)."""
    from rsvl.steps.data_steps import run_ingest

    return run_ingest(run_config, components_dir / "ingested")


@pytest.fixture(scope="session")
def captioned(run_config, ingested, components_dir):
    """:class:`rsvl.steps.data_steps.DataOutcome` of the library's ``run_caption`` on :func:`ingested`."""
    from rsvl.steps.data_steps import run_caption

    return run_caption(run_config, ingested.dataset_dir, components_dir / "captioned")


@pytest.fixture(scope="session")
def filtered(run_config, captioned, components_dir):
    """:class:`rsvl.steps.data_steps.DataOutcome` of the library's ``run_filter`` on :func:`captioned`."""
    from rsvl.steps.data_steps import run_filter

    return run_filter(run_config, captioned.dataset_dir, components_dir / "filtered")


@pytest.fixture(scope="session")
def trained(run_config, filtered, components_dir) -> Trained:
    """One run of the ``train`` component's body on the filtered dataset, shared by the later steps' tests."""
    from components.train.component import train

    out = components_dir / "train"
    out.mkdir(exist_ok=True)
    model, metrics = dsl.Model(uri=str(out / "model")), dsl.Metrics(uri=str(out / "metrics"))
    run_id = train.python_func(config_json=run_config.model_dump_json(),
                               dataset=dsl.Dataset(uri=str(filtered.dataset_dir)), model=model, metrics=metrics)
    return Trained(model, metrics, run_id)


def read_json(path: str | Path) -> dict:
    """A JSON file's content."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
