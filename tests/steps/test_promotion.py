"""Evaluate → register → gate end to end on the real MLflow registry: a degraded candidate is not promoted.

Two tiny models are trained in Ray Train's local mode on the default optical scenes: a good one
(lr 1e-3) and a deliberately degraded one (lr 1e-7, so it stays near its random start). The good
one becomes champion on the absolute minimum alone; the degraded one, scored against it on the
same pinned data in the same gate run, is rejected and the champion alias stays put. Registering
the good model again creates no new version, and gating it again changes nothing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.config import RunConfig, write_config_file
from rsvl.data.generate import write_optical_scenes
from rsvl.model_registry import CANDIDATE, CHAMPION, registry_client
from rsvl.steps.evaluation import run_evaluation
from rsvl.errors import ModelError
from rsvl.steps.promotion import (ALREADY, DECISION_TAG, PROMOTED, REJECTED, REUSED, SCORED, SCORES_TAG,
                                  promote_candidate, run_gate)
from rsvl.steps.recorded_scores import FINGERPRINT_TAG
from rsvl.steps.registration import run_register
from rsvl.train import fit

MODEL_NAME = "sar_rs_clip_test"


def settings(workdir, **train) -> dict:
    return {
        "paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
        "data": {"root": str(workdir)},
        "train": {"batch_size": 16, "max_steps": 12, "lr": 1e-3, "warmup_steps": 2, "log_every": 6,
                  "checkpoint_every": 12, "cpus_per_worker": 2, "num_workers": 0,
                  "storage_path": str(workdir / "ray"), **train},
        "evaluate": {"sets": [{"name": "optical_test", "dataset": "optical", "split": "test", "tasks": ["retrieval"]}],
                     "cache_dir": str(workdir / "cache")},
        "gate": {"minimums": {"optical_test.mR": 20.0}, "min_improvement": {"optical_test.mR": 0.5},
                 "max_regression": {"optical_test.i2t_r1": 5.0}},
        "registry": {"model_name": MODEL_NAME},
        "mlflow": {"tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}", "experiment": "test-promotion"},
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("promotion")
    write_optical_scenes(root / "optical", seed=0)
    return root


@pytest.fixture(scope="module")
def trained(workdir):
    """(config, fit result) of the good and of the degraded model."""
    good_cfg = RunConfig.model_validate(settings(workdir))
    bad_cfg = RunConfig.model_validate(settings(workdir, lr=1e-7))
    return {
        "good": (good_cfg, fit(good_cfg, workdir / "optical", workdir / "good")),
        "degraded": (bad_cfg, fit(bad_cfg, workdir / "optical", workdir / "degraded")),
    }


def register(workdir, cfg, result, pipeline_run: str):
    return run_register(cfg, result.model_dir, workdir / "optical", pipeline_run, mlflow_run_id=result.mlflow_run_id)


@pytest.fixture(scope="module")
def gated(workdir, trained):
    """Register and gate the good model, then the degraded one; keep what each step returned."""
    good_cfg, good = trained["good"]
    bad_cfg, bad = trained["degraded"]
    first = register(workdir, good_cfg, good, "pipeline-1")
    first_gate = run_gate(good_cfg, first.version, workdir / "gate-1")
    second = register(workdir, bad_cfg, bad, "pipeline-2")
    second_gate = run_gate(bad_cfg, second.version, workdir / "gate-2")
    return first, first_gate, second, second_gate


def test_evaluation_is_logged_into_the_training_run(workdir, trained):
    cfg, good = trained["good"]
    evaluation = run_evaluation(cfg, good.model_dir, workdir / "eval-good", mlflow_run_id=good.mlflow_run_id)
    run = MlflowClient(cfg.mlflow.tracking_uri).get_run(good.mlflow_run_id)
    assert run.data.metrics["optical_test.mR"] == pytest.approx(evaluation.metrics["optical_test.mR"])
    assert evaluation.metrics["optical_test.mR"] == pytest.approx(good.metrics["test_mR"], abs=1e-6)
    assert run.data.tags["eval_data_version"] == evaluation.data.versions["optical_test"]
    logged = {a.path for a in MlflowClient(cfg.mlflow.tracking_uri).list_artifacts(good.mlflow_run_id, "evaluation")}
    assert {"evaluation/report.md", "evaluation/report.html", "evaluation/evaluation.json"} <= logged


def test_first_model_becomes_champion_on_the_minimums(gated, trained):
    first, first_gate, _, _ = gated
    assert first.created and first.version == 1
    assert first_gate.verdict == PROMOTED and first_gate.champion == 1
    assert first_gate.decision.champion is None
    assert first_gate.decision.candidate["optical_test.mR"] > 20.0


def test_degraded_candidate_is_not_promoted_and_the_champion_alias_stays(gated, trained, workdir):
    cfg = trained["good"][0]
    _, _, second, second_gate = gated
    assert second.created and second.version == 2
    decision = second_gate.decision
    assert second_gate.verdict == REJECTED and second_gate.champion == 1 and decision.champion_version == "1"
    assert decision.deltas["optical_test.mR"] < -10
    assert any(r.startswith("FAIL optical_test.mR") for r in decision.reasons)

    client = registry_client(cfg.mlflow.tracking_uri)
    model = client.get_registered_model(MODEL_NAME)
    assert {k: int(v) for k, v in model.aliases.items()} == {CHAMPION: 1, CANDIDATE: 2}
    tags = client.get_model_version(MODEL_NAME, "2").tags
    assert tags[DECISION_TAG] == REJECTED and tags["gate.champion_version"] == "1"
    assert float(tags["gate.delta.optical_test.mR"]) == pytest.approx(decision.deltas["optical_test.mR"], rel=1e-5)
    assert tags["pipeline_run_id"] == "pipeline-2" and tags["paper"] == "sar_text"
    assert client.get_model_version(MODEL_NAME, "1").tags[DECISION_TAG] == PROMOTED

    report = second_gate.report.read_text(encoding="utf-8")
    assert report.startswith(f"# Gate: `{MODEL_NAME}` version 2 NOT promoted")
    gate_run = client.get_run(second_gate.mlflow_run_id)
    assert gate_run.data.metrics["champion.optical_test.mR"] == pytest.approx(decision.champion["optical_test.mR"])
    assert gate_run.data.metrics["candidate.optical_test.mR"] == pytest.approx(decision.candidate["optical_test.mR"])
    assert gate_run.data.metrics["champion.optical_test.mR"] == pytest.approx(
        trained["good"][1].metrics["test_mR"], abs=1e-6)


def test_a_version_the_gate_did_not_pass_is_never_promoted(gated, trained):
    cfg = trained["degraded"][0]
    _, _, second, second_gate = gated
    assert second_gate.verdict == REJECTED
    with pytest.raises(ModelError, match=f"{MODEL_NAME} v2: gate decision is 'rejected', not 'passed'; refusing"):
        promote_candidate(cfg, second.version)
    client = registry_client(cfg.mlflow.tracking_uri)
    assert int(client.get_registered_model(MODEL_NAME).aliases[CHAMPION]) == 1
    assert client.get_model_version(MODEL_NAME, "2").tags[DECISION_TAG] == REJECTED


def test_registering_the_same_model_again_reuses_its_version_and_the_gate_leaves_it(gated, trained, workdir):
    cfg, good = trained["good"]
    again = register(workdir, cfg, good, "pipeline-3")
    assert not again.created and again.version == 1
    client = registry_client(cfg.mlflow.tracking_uri)
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'")) == [1, 2]
    outcome = run_gate(cfg, again.version, workdir / "gate-3")
    assert outcome.verdict == ALREADY and outcome.champion == 1


def test_cli_evaluate_and_register(gated, trained, workdir):
    cfg, good = trained["good"]
    config = str(write_config_file(cfg, workdir / "good.yaml"))
    evaluated = CliRunner().invoke(app, ["evaluate", "--config", config, "--model", str(good.model_dir),
                                         "--out", str(workdir / "eval-cli")])
    assert evaluated.exit_code == 0, evaluated.output
    assert f"optical_test.mR: {good.metrics['test_mR']:.4f}" in evaluated.output
    assert (workdir / "eval-cli" / "report.html").is_file()
    registered = CliRunner().invoke(app, ["register", "--config", config, "--model", str(good.model_dir),
                                          "--train-data", str(workdir / "optical"), "--run-id", good.mlflow_run_id])
    assert registered.exit_code == 0, registered.output
    assert f"models:/{MODEL_NAME}/1 (unchanged, reused); aliases: candidate, champion" in registered.output


def test_cli_gate_reports_the_decision(gated, trained, workdir):
    config = str(write_config_file(trained["degraded"][0], workdir / "degraded.yaml"))
    result = CliRunner().invoke(app, ["gate", "--config", config, "--version", "2",
                                      "--out", str(workdir / "gate-cli")])
    assert result.exit_code == 0, result.output
    assert f"{MODEL_NAME} v2: rejected; champion is v1" in result.output
    assert "FAIL optical_test.mR" in result.output


def test_the_gate_reuses_the_evaluate_steps_scores_only_for_the_same_model_data_and_settings(trained, workdir):
    """Scores the evaluate step recorded are taken back by the gate; another model or setting is scored anew."""
    def probe_cfg(**evaluate) -> RunConfig:
        values = settings(workdir)
        values["registry"] = {"model_name": "reuse_probe"}
        values["evaluate"] = {**values["evaluate"], **evaluate}
        return RunConfig.model_validate(values)

    cfg, (_, good), (_, bad) = probe_cfg(), trained["good"], trained["degraded"]
    evaluated = run_evaluation(cfg, good.model_dir, workdir / "eval-probe", mlflow_run_id=good.mlflow_run_id)
    client = registry_client(cfg.mlflow.tracking_uri)
    assert len(client.get_run(good.mlflow_run_id).data.tags[FINGERPRINT_TAG]) == 64
    first = register(workdir, cfg, good, "probe-1")
    reused = run_gate(cfg, first.version, workdir / "gate-probe-1")
    tags = client.get_run(reused.mlflow_run_id).data.tags
    assert tags[SCORES_TAG.format(role="candidate")] == f"{REUSED} {good.mlflow_run_id}"
    assert reused.decision.candidate == evaluated.metrics  # the recorded values, bit for bit
    assert reused.verdict == PROMOTED

    # the degraded model was never evaluated into its run: scored; the champion's scores still hold
    second = register(workdir, cfg, bad, "probe-2")
    mixed = run_gate(cfg, second.version, workdir / "gate-probe-2")
    tags = client.get_run(mixed.mlflow_run_id).data.tags
    assert tags[SCORES_TAG.format(role="candidate")] == SCORED
    assert tags[SCORES_TAG.format(role="champion")] == f"{REUSED} {good.mlflow_run_id}"
    assert mixed.decision.champion == evaluated.metrics and mixed.verdict == REJECTED

    # both evaluated: a gate in a fresh process reuses both and never imports torch or open_clip
    run_evaluation(cfg, bad.model_dir, workdir / "eval-probe-bad", mlflow_run_id=bad.mlflow_run_id)
    config = write_config_file(cfg, workdir / "probe.yaml")
    probe = (f"import sys; from rsvl.config import load_config; from rsvl.steps.promotion import run_gate; "
             f"outcome = run_gate(load_config({str(config)!r}, 'local'), {second.version}, "
             f"{str(workdir / 'gate-probe-fresh')!r}, promote=False); "
             f"print(outcome.mlflow_run_id, sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    fresh = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    run_id, imported = fresh.stdout.strip().split("\n")[-1].split(" ", 1)
    assert imported == "[]"
    tags = client.get_run(run_id).data.tags
    assert tags[SCORES_TAG.format(role="candidate")] == f"{REUSED} {bad.mlflow_run_id}"
    assert tags[SCORES_TAG.format(role="champion")] == f"{REUSED} {good.mlflow_run_id}"

    # other eval settings: the recorded scores no longer describe this evaluation, so both are scored
    rescored = run_gate(probe_cfg(batch_size=7), second.version, workdir / "gate-probe-3")
    tags = client.get_run(rescored.mlflow_run_id).data.tags
    assert tags[SCORES_TAG.format(role="champion")] == tags[SCORES_TAG.format(role="candidate")] == SCORED
    assert rescored.decision.champion == pytest.approx(evaluated.metrics, abs=1e-6)
    assert rescored.decision.candidate == pytest.approx(mixed.decision.candidate, abs=1e-6)

    # a run whose fingerprint does not match the downloaded weights (here: edited) is not trusted
    client.set_tag(good.mlflow_run_id, FINGERPRINT_TAG, "0" * 64)
    distrusted = run_gate(cfg, second.version, workdir / "gate-probe-4")
    assert client.get_run(distrusted.mlflow_run_id).data.tags[SCORES_TAG.format(role="champion")] == SCORED


def test_the_promote_step_imports_neither_torch_nor_open_clip():
    """``promote`` only moves an alias: its module must not pay the ~10 s of torch, open_clip and transformers."""
    import subprocess
    import sys

    probe = ("import sys; import rsvl.steps.promotion, rsvl.model_registry; "
             "print(sorted(m for m in ('torch', 'open_clip', 'transformers', 'great_expectations') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
