"""The closp pipeline end to end on the local runner: the text bridge and GeoCLOSP trained, scored and registered.

At the smallest budgets that prove the wiring (model quality at full budgets: ``make bench``); one
paper per file, so ``make test``'s workers share the end-to-end runs between them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import SHARED_DATA
from e2e_support import smoke_budgets, without_time_table
from pipelines.run import run_local
from rsvl.steps.promotion import DECISION_TAG, PROMOTED


def _closp_budgets(tmp_path: Path, data_root: Path) -> list[str]:
    """The closp pipeline at the least that proves the wiring: 2 steps per fit, 8 rows per eval set, gate floors 0."""
    return smoke_budgets("closp", tmp_path, data_root,
                         ["train.stages=[{name: bridge, max_steps: 2}]", "train.eval_split=null", "train.log_every=1"])


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_closp_pipeline_trains_the_text_bridge_and_geoclosp_and_registers_both(tmp_path, repo_root, monkeypatch,
                                                                               capsys, default_data):
    monkeypatch.chdir(repo_root)  # the optional ben_s1s2 eval sets are ../shared/data/ben_s1s2
    run_local("closp", _closp_budgets(tmp_path, default_data.parent), {}, cache=True, local_root=tmp_path / "kfp")
    console = capsys.readouterr().out
    assert len(without_time_table(console).splitlines()) <= 70, console
    for name in ("closp", "geoclosp"):
        assert f"registered: {name} v1 (aliases: candidate, champion)" in console, console[-4000:]
    assert "\n  candidate vs naive: " in console and "\n  candidate vs base: " in console, console
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    closp = client.get_model_version("closp", "1")
    assert closp.tags[DECISION_TAG] == PROMOTED
    metrics = client.get_run(closp.run_id).data.metrics
    assert {"crisis_s1.ndcg_at_1000", "crisis_s2.ndcg_at_1000", "crisis_s1.mR", "crisis_s2.mR",
            "s1s2_test.cross_mR", "s1s2_test.s1_to_s2_r1", "s1s2_test.s2_to_s1_r10",
            "naive.crisis_s1.ndcg_at_1000", "base.crisis_s2.ndcg_at_1000"} <= set(metrics), sorted(metrics)
    geo = client.get_model_version("geoclosp", "1")
    geo_metrics = client.get_run(geo.run_id).data.metrics
    assert {"crisis_s1.ndcg_at_1000", "crisis_s2.ndcg_at_1000"} <= set(geo_metrics)
    assert any(key.startswith("crisis_s1.ndcg_class.") for key in geo_metrics)
    if (SHARED_DATA / "ben_s1s2").is_dir():  # the optional real BigEarthNet pairs
        assert {"ben_s2.ndcg_at_1000", "ben_s2.cross_mR", "ben_s1.ndcg_at_1000"} <= set(metrics)
    # both trained as sensor models: an S1 and an S2 tower, and GeoCLOSP's location encoder
    from rsvl.models import load_model

    for version, location in ((closp, False), (geo, True)):
        folder = Path(client.download_artifacts(version.run_id, "model"))
        model = load_model(folder)[0]
        assert set(model.visual) == {"s1", "s2"} and (model.location is not None) == location
    print(console)
