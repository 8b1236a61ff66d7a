"""The georsclip pipeline end to end on the local runner: the caption funnel, full and adapter fine-tuning, registration.

At the smallest budgets that prove the wiring (model quality at full budgets: ``make bench``); one
paper per file, so ``make test``'s workers share the end-to-end runs between them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from e2e_support import smoke_budgets
from pipelines.run import run_local


def _georsclip_budgets(tmp_path: Path, data_root: Path) -> list[str]:
    """The georsclip pipeline at the least that proves the wiring: the scorer's fit as configured (its funnel
    thresholds are set for it), 2 steps per fine-tuning fit, 8 rows per eval set, one coarse localisation scene."""
    return smoke_budgets("georsclip", tmp_path, data_root,
                         ["train.stages=[{name: finetune, max_steps: 2}]", "train.log_every=1", "train.eval_split=null"])


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_georsclip_pipeline_funnels_captions_fine_tunes_fully_and_with_adapters_and_registers(
        tmp_path, repo_root, monkeypatch, capsys, default_data):
    from rsvl.caption.rs5m_dataset import RS5M_FILE
    from rsvl.data.synthetic.rs5m_pool import read_truth

    monkeypatch.chdir(repo_root)  # the optional RSSCN7 eval set is ../shared/data/rsscn7
    run_local("georsclip", _georsclip_budgets(tmp_path, default_data.parent), {}, cache=True,
              local_root=tmp_path / "kfp")
    console = capsys.readouterr().out
    assert "registered: georsclip v1 (aliases: candidate, champion)" in console, console[-4000:]
    assert "\n  funnel: 167 in; keyword -" in console and "\n  candidate vs lora: " in console, console
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("georsclip", "1")
    metrics = client.get_run(version.run_id).data.metrics
    assert {"optical_test.mR", "optical_test.zs_top1", "seloc.Rmi", "seloc.Rsu", "lora.optical_test.mR",
            "ia3.seloc.Rmi", "base.optical_test.zs_top1", "trainable_params", "lora.trainable_params",
            "ia3.fit_seconds", "funnel.rows_kept", "funnel.outliers.removed"} <= set(metrics), sorted(metrics)
    # the adapters train a small share of what full fine-tuning trains; IA3 fewer than LoRA
    assert metrics["ia3.trainable_params"] < metrics["lora.trainable_params"] < metrics["trainable_params"]
    assert metrics["lora.adapter_params"] > 0 and metrics["adapter_params"] == 0
    # every pool row is kept or quarantined by exactly one stage; the truth's removals all happen
    truth = read_truth(default_data / "rs5m")
    removed = sum(metrics[f"funnel.{stage}.removed"] for stage in
                  ("keyword", "decode", "exact_duplicates", "near_duplicates", "outliers"))
    assert metrics["funnel.rows_in"] == len(truth) == removed + metrics["funnel.rows_kept"]
    kinds = [row["kind"] for row in truth.values()]
    # the stages that need no model remove exactly their planted rows
    assert (metrics["funnel.keyword.removed"], metrics["funnel.decode.removed"],
            metrics["funnel.exact_duplicates.removed"], metrics["funnel.near_duplicates.removed"]) == (
        kinds.count("photo"), kinds.count("corrupt") + kinds.count("tiny"), kinds.count("exact_duplicate"),
        kinds.count("near_duplicate"))
    # the caption step's side table lists every uncaptioned image of the pool
    captioned = next((tmp_path / "kfp").rglob(RS5M_FILE))
    import pyarrow.parquet as pq

    ids = set(pq.read_table(captioned).column("sample_id").to_pylist())
    assert ids == {sample for sample, row in truth.items() if row["kind"] == "uncaptioned"}
    print(console)
