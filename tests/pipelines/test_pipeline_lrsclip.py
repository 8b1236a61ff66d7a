"""The lrsclip pipeline end to end on the local runner: the stretched dual-loss model beside the 77-token baseline.

At the smallest budgets that prove the wiring (model quality at full budgets: ``make bench``); one
paper per file, so ``make test``'s workers share the end-to-end runs between them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from e2e_support import smoke_budgets
from pipelines.run import run_local


def _lrsclip_budgets(tmp_path: Path, data_root: Path) -> list[str]:
    """The lrsclip pipeline at the least that proves the wiring: 2 steps per fit (the candidate, the 77-token baseline
    and the long-only KPS model), 8 rows per eval set (long-text and short-text retrieval, zero-shot)."""
    return smoke_budgets("lrsclip", tmp_path, data_root,
                         ["train.stages=[{name: align, max_steps: 2}]", "train.log_every=1", "train.batch_size=8",
                          "train.eval_split=null"])


LRSCLIP_CONSUMER = """
import sys
import mlflow
import pandas as pd
answer = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({"text": sys.argv[2:4]}))
print(pd.Series([list(map(float, v)) for v in answer["text_embedding"]]).to_json(orient="values"))
"""


def _captions_differing_after(tokenizer, position: int) -> list[str]:
    """Two ~120-token captions whose tokens agree up to ``position`` and differ after it (checked, not assumed)."""
    opening = ("This aerial image shows a residential area with small houses in regular rows along grey roads. "
               "The houses have red roofs and gardens with trees, and the roads cross at right angles. "
               "Cars are parked along the streets and a few people walk on the pavements near the gardens. "
               "The scene is bright and the shadows fall towards the lower right of the image. "
               "A narrow canal with green water runs along the left edge, crossed by two small footbridges, "
               "and a row of tall poplar trees lines its far bank.")
    endings = [" A large swimming pool with blue water lies in the upper left corner next to two tennis courts.",
               " A large church with a grey tower stands in the lower right corner next to an empty parking lot."]
    texts = [opening + ending for ending in endings]
    first, second = (row.tolist() for row in tokenizer(texts))
    differ = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    length = max(sum(1 for t in row if t) for row in (first, second))
    assert position < differ and 110 <= length <= 248, (differ, length)
    return texts


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_lrsclip_pipeline_trains_the_stretched_dual_loss_model_beside_the_77_token_baseline(
        tmp_path, repo_root, monkeypatch, capsys, default_data):
    import os
    import subprocess
    import sys

    import torch

    from rsvl.models import load_model

    monkeypatch.chdir(repo_root)  # the optional RSSCN7 eval set is ../shared/data/rsscn7
    run_local("lrsclip", _lrsclip_budgets(tmp_path, default_data.parent), {}, cache=True, local_root=tmp_path / "kfp")
    console = capsys.readouterr().out
    assert "registered: lrsclip v1 (aliases: candidate, champion)" in console, console[-4000:]
    ladder = console[console.index("ablation ladder"):].splitlines()[1:6]
    assert [line.strip().split("  ")[0] for line in ladder] == [
        "77-token baseline", "KPS-248 (long only)", "KPS-248 + dual loss", "short - 77-token baseline",
        "short - KPS-248 + dual loss"], console
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    version = client.get_model_version("lrsclip", "1")
    metrics = client.get_run(version.run_id).data.metrics
    wanted = {f"{model}{name}" for model in ("", "base77.", "kps248.")
              for name in ("optical_long.mR", "optical_long.i2t_r1", "optical_long.t2i_r10", "optical_test.mR",
                           "optical_test.zs_top1")}
    assert wanted <= set(metrics), sorted(wanted - set(metrics))
    # the candidate's fit trained both terms; the long-only controls trained one
    experiment = client.get_run(version.run_id).info.experiment_id
    fits = {run.info.run_name: run.data.metrics for run in client.search_runs([experiment])
            if "long_loss" in run.data.metrics}
    assert sorted("short_loss" in values for values in fits.values()) == [False, False, True], fits
    # the long captions fit the stretched context, and the 77-token baseline cuts every one of them
    truncated = sorted(values["truncated_long_text"] for values in fits.values())
    assert truncated[:2] == [0, 0] and truncated[2] > 0, truncated
    # a consumer in a fresh process: two captions that differ only after token 90 get different embeddings
    saved = {json.loads(path.read_text())["rsvl"]["architecture"]: path.parent
             for path in (tmp_path / "kfp").rglob("open_clip_config.json")}
    baseline, _, _, baseline_tokenizer = load_model(saved["rsvl-effnetlite0-minilm-77"])
    baseline.eval()  # no dropout
    texts = _captions_differing_after(load_model(saved["rsvl-effnetlite0-minilm-kps248"])[3], 90)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", LRSCLIP_CONSUMER, "models:/lrsclip@champion", *texts],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = (torch.tensor(vector) for vector in json.loads(result.stdout.strip().splitlines()[-1]))
    assert float(first @ second) < 1 - 1e-4
    with torch.no_grad():  # the 77-token baseline cannot tell them apart
        cut = baseline.encode_text(baseline_tokenizer(texts), normalize=True)
    assert torch.equal(cut[0], cut[1])
    print(console)
