"""Full-budget quality benchmark: the sar_text pipeline at its local profile's budgets, against thresholds.

The tests (``tests/pipelines/test_pipelines.py``) run the same pipeline at the smallest budgets that still
prove the wiring (versions, aliases, lineage, caching, the ablation's step budget, metric keys, a
recorded gate decision). Whether the models are any *good* at the budgets a person runs
(``make pipeline``: CoCa 40 epochs, both SAR-RS-CLIP stages, the ablation, VQA) is checked here,
with the thresholds the tests used to hold:

* SAR-RS-CLIP: ``sar_test.mR`` above 20 and the gate promoted it;
* VQA: ``vqa.overall`` above the random-answer baseline;
* SAR-RS-CoCa: CIDEr and BLEU-4 on ``sar_test`` above the untuned CoCa's, and the gate promoted it;
* ``rsvl train`` on the local default (one fit, no stages): ``test_mR`` more than 30 points and
  3x above the untrained model's.

Prints a results table (metric, value, threshold, pass) and exits 1 when a check fails.

    PYTHONPATH=src:. HF_HUB_OFFLINE=1 .venv/bin/python bench/pipeline_quality.py [--work-dir DIR] [--only pipeline|train]

About 25-45 minutes on 2 cores (the pipeline run most of it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Check:
    """One benchmark row: a measured value against its threshold."""

    name: str
    value: float | str
    threshold: str
    passed: bool


def _pipeline_checks(work: Path) -> list[Check]:
    from mlflow import MlflowClient

    from pipelines.run import run_local
    from rsvl.steps.promotion import DECISION_TAG, PROMOTED

    tracking = f"sqlite:///{work / 'mlflow.db'}"
    overrides = [f"mlflow.tracking_uri={tracking}", f"train.storage_path={work / 'ray'}",
                 f"evaluate.cache_dir={work / 'eval_data'}"]  # data.root: the checkout's data/ (DVC-pinned), as `make pipeline`
    started = time.perf_counter()
    run_local("sar_text", overrides, {}, cache=False, local_root=work / "kfp")
    seconds = time.perf_counter() - started
    client = MlflowClient(tracking)
    clip = client.get_model_version("sar_rs_clip", "1")
    metrics = client.get_run(clip.run_id).data.metrics
    coca = client.get_model_version("sar_rs_coca", "1")
    captions = client.get_run(coca.run_id).data.metrics
    checks = [
        Check("pipeline wall time [s]", round(seconds, 1), "-", True),
        Check("sar_rs_clip gate decision", clip.tags.get(DECISION_TAG, "?"), PROMOTED, clip.tags.get(DECISION_TAG) == PROMOTED),
        Check("sar_test.mR", metrics["sar_test.mR"], "> 20", metrics["sar_test.mR"] > 20),
        Check("sar_test.mR - base.sar_test.mR (gain over the untuned start model)",
              metrics["sar_test.mR"] - metrics["base.sar_test.mR"], "info", True),
        Check("sar_test.mR - sar_only.sar_test.mR (progressive vs SAR only)",
              metrics["sar_test.mR"] - metrics["sar_only.sar_test.mR"], "info", True),
        Check("sar_test.std_mR (standard protocol: each caption its own answer)", metrics["sar_test.std_mR"],
              "info", True),
        Check("sar_test.std_mR - base.sar_test.std_mR", metrics["sar_test.std_mR"] - metrics["base.sar_test.std_mR"],
              "info", True),
        Check("optical_test.mR", metrics["optical_test.mR"], "info", True),
        Check("vqa.overall - vqa.random.overall", metrics["vqa.overall"] - metrics["vqa.random.overall"], "> 0",
              metrics["vqa.overall"] > metrics["vqa.random.overall"]),
        Check("vqa.overall - vqa.majority.overall", metrics["vqa.overall"] - metrics["vqa.majority.overall"], "info", True),
        Check("sar_rs_coca gate decision", coca.tags.get(DECISION_TAG, "?"), PROMOTED, coca.tags.get(DECISION_TAG) == PROMOTED),
    ]
    for metric in ("CIDEr", "BLEU_4"):
        ours, base = captions[f"sar_test.{metric}"], captions[f"base.sar_test.{metric}"]
        checks.append(Check(f"sar_test.{metric} - base.sar_test.{metric}", ours - base, "> 0", ours > base))
    return checks


def _train_checks(work: Path) -> list[Check]:
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from rsvl.cli import app
    from rsvl.data.generate import write_optical_scenes

    tracking = f"sqlite:///{work / 'train-mlflow.db'}"
    write_optical_scenes(work / "optical", seed=0)
    name = "sar_text-bench-local-default"
    result = CliRunner().invoke(app, [
        "train", "--config", str(REPO_ROOT / "pipelines/sar_text/config.yaml"), "--data", str(work / "optical"),
        "--run-name", name, "--out", str(work / "local-default"),
        "--set", f"train.storage_path={work / 'ray'}", "--set", f"mlflow.tracking_uri={tracking}",
        "--set", "train.stages=[]", "--set", "train.ablations=[]",
    ])
    if result.exit_code != 0:
        return [Check("rsvl train (local default)", f"exit {result.exit_code}", "0", False)]
    client = MlflowClient(tracking)
    run = client.search_runs([client.get_experiment_by_name("sar_text").experiment_id],
                             filter_string=f"tags.`rsvl.run_name` = '{name}'")[0]
    history = sorted(client.get_metric_history(run.info.run_id, "test_mR"), key=lambda m: m.step)
    untrained, trained = history[0].value, history[-1].value
    return [
        Check("train local default: untrained test_mR", untrained, "info", True),
        Check("train local default: trained - untrained test_mR", trained - untrained, "> 30", trained > untrained + 30),
        Check("train local default: trained / untrained test_mR", trained / max(untrained, 1e-9), "> 3", trained > 3 * untrained),
    ]


def _table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"| {'check':<{width}} | {'value':>10} | {'threshold':>9} | pass |", f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 11}|------|"]
    for c in checks:
        value = f"{c.value:.4g}" if isinstance(c.value, float) else str(c.value)
        lines.append(f"| {c.name:<{width}} | {value:>10} | {c.threshold:>9} | {'yes' if c.passed else 'NO':>4} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, help="keep data, runs and MLflow stores here (default: a temporary folder)")
    parser.add_argument("--only", choices=["pipeline", "train"], help="run one of the two benchmarks")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.chdir(REPO_ROOT)  # the pipeline's relative paths (pipelines/, ../shared/data) are the checkout's
    with tempfile.TemporaryDirectory(prefix="rsvl-bench-") as scratch:
        work = (args.work_dir or Path(scratch)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        checks: list[Check] = []
        if args.only in (None, "pipeline"):
            checks += _pipeline_checks(work / "pipeline")
        if args.only in (None, "train"):
            checks += _train_checks(work / "train")
    print("\n" + _table(checks))
    failed = [c.name for c in checks if not c.passed]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
