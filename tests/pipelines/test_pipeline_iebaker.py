"""The iebaker pipeline end to end on the local runner: EBA, local and KER trained; cosine, fused and SAR scored; the ladder.

At the smallest budgets that prove the wiring (model quality at full budgets: ``make bench``); one
paper per file, so ``make test``'s workers share the end-to-end runs between them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from e2e_support import smoke_budgets
from pipelines.run import run_local


def _iebaker_budgets(tmp_path: Path, data_root: Path) -> list[str]:
    """The iebaker pipeline at the least that proves the wiring: 2 steps per fit (the full objective and the four
    ladder ablations), 8 rows per eval set (cosine, fused and SAR matrices each)."""
    return smoke_budgets("iebaker", tmp_path, data_root,
                         ["train.stages=[{name: align, max_steps: 2}]", "train.log_every=1", "train.eval_split=null"])


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_iebaker_pipeline_trains_eba_local_and_ker_scores_fused_and_sar_and_shows_the_ladder(
        tmp_path, repo_root, monkeypatch, capsys, default_data):
    from rsvl.train.iebaker_objective import DROPPED_FILE

    monkeypatch.chdir(repo_root)  # the optional RSSCN7 eval set is ../shared/data/rsscn7
    run_local("iebaker", _iebaker_budgets(tmp_path, default_data.parent), {}, cache=True, local_root=tmp_path / "kfp")
    console = capsys.readouterr().out
    assert "registered: iebaker v1 (aliases: candidate, champion)" in console, console[-4000:]
    ladder = console[console.index("ablation ladder"):].splitlines()[1:7]
    assert [line.strip().split("  ")[0] for line in ladder] == [
        "base CLIP loss", "+ local fusion", "+ EBA joint", "(EBA split instead)", "+ KER", "+ SAR"], console
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("iebaker", "1")
    metrics = client.get_run(version.run_id).data.metrics
    wanted = {f"{model}optical_test.{name}" for model in ("", "clip_loss.", "local.", "eba_joint.", "eba_split.")
              for name in ("mR", "std_mR", "sar_mR", "fused_mR", "fused_std_mR", "fused_sar_mR", "fused_sar_std_mR")}
    assert wanted <= set(metrics), sorted(wanted - set(metrics))
    # each ladder row in the console is its model's logged value
    for line, key in zip(ladder, ["clip_loss.optical_test.mR", "local.optical_test.fused_mR",
                                  "eba_joint.optical_test.fused_mR", "eba_split.optical_test.fused_mR",
                                  "optical_test.fused_mR", "optical_test.fused_sar_mR"]):
        assert line.split()[-1] == key and f"{metrics[key]:.2f}" in line, (line, metrics[key])
    # the candidate's fit trained the whole objective and keeps EBA's table (empty at 2 steps: EBA starts at epoch 3)
    experiment = client.get_run(version.run_id).info.experiment_id
    full = [run for run in client.search_runs([experiment]) if "ker_loss" in run.data.metrics]
    assert len(full) == 1, [run.info.run_name for run in client.search_runs([experiment])]
    run_id = full[0].info.run_id
    assert {"local_loss", "global_loss", "eba.dropped", "eba.active"} <= set(full[0].data.metrics)
    table = Path(client.download_artifacts(run_id, DROPPED_FILE)).read_text(encoding="utf-8")
    assert table == "epoch,step,kind,sample_id,caption,similarity,tau\n"
    description = client.get_registered_model("iebaker").description
    assert "token features" in description and "load_model" in description
    print(console)
