"""Ray Train fits: MLflow tracking, a killed worker and a re-launched run resume exactly, mR improves.

The fast tier starts no Ray: its fits run in Ray Train's local mode (``num_workers: 0``, one
worker in the launching process, no Ray instance, the laptop profile's setting), which trains the
tiny model's 12 steps of 16 images in a few seconds, checkpointing every 4 and logging every
step; its tests check MLflow tracking, the saved model, that it keeps its own checkpoints,
retries a failed attempt and resumes a killed process on re-launch.

The slow tier (CI) shares one local Ray session, one Ray storage folder and one MLflow store
(starting Ray costs about 10 s, each fit about 20 s more on two cores): an interrupted run of a Ray
worker (two launches and a worker restart) matches the local-mode fit loss for loss, a relative
``init_from`` reaches the workers, and ``rsvl train`` runs the local default config.
Whether the local default trains far above untrained at its full budget is ``make bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.config import RunConfig
from rsvl.data.generate import write_optical_scenes
from rsvl.errors import ConfigError, TrainError
from rsvl.models import build_model, load_model, save_model
from rsvl.train import fit
from rsvl.train.checkpoint import STEP_CHECKPOINT
from rsvl.train.loop import KILL_AT_STEP_ENV, RAISE_AT_STEP_ENV
from rsvl.train.tracking import UNTRACKED, flatten

TOTAL_STEPS = 12
CHECKPOINT_EVERY = 4
EXPERIMENT = "test-train"
SENTENCES = ["a dense green forest", "a harbour with boats"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for the module's data, Ray storage and MLflow store."""
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def ray_session():
    """A local two-CPU Ray session shared by every fit of the module; its controller polls workers often."""
    import ray

    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def optical(workdir) -> Path:
    """The default optical dataset (8 classes x 50 scenes, 5 captions each)."""
    write_optical_scenes(workdir / "optical", seed=0)
    return workdir / "optical"


def tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlflow.db'}"


def tiny_config(workdir: Path, **train: object) -> RunConfig:
    settings = dict(
        batch_size=16, max_steps=TOTAL_STEPS, lr=1e-3, warmup_steps=2, log_every=1,
        checkpoint_every=CHECKPOINT_EVERY, cpus_per_worker=2, max_failures=0, storage_path=str(workdir / "ray"),
    )
    return RunConfig.model_validate({
        "paper": "sar_text",
        "profile": "local",
        "model": {"name": "rsvl-tiny"},
        "train": {**settings, **train},
        "mlflow": {"tracking_uri": tracking_uri(workdir), "experiment": EXPERIMENT},
    })


def history(workdir: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of ``key``, in the order they were logged."""
    metrics = MlflowClient(tracking_uri(workdir)).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(metrics, key=lambda m: (m.timestamp, m.step))]


@pytest.fixture(scope="module")
def interrupted(ray_session, workdir, optical, local_reference):
    """A run killed at step 6 without retries, re-launched by name, killed again at step 10 and restarted."""
    mp = pytest.MonkeyPatch()
    name = "sar_text-interrupted"
    try:
        mp.setenv(KILL_AT_STEP_ENV, "6")
        with pytest.raises(TrainError) as first:
            fit(tiny_config(workdir), optical, workdir / "interrupted", run_name=name)
        mp.setenv(KILL_AT_STEP_ENV, "10")
        result = fit(tiny_config(workdir, max_failures=1), optical, workdir / "interrupted", run_name=name)
    finally:
        mp.undo()
    return first.value, result


@pytest.fixture(scope="module")
def local_reference(workdir, optical):
    """An uninterrupted fit of the tiny model in Ray Train's local mode: the reference of every resumed run."""
    return fit(tiny_config(workdir, num_workers=0), optical, workdir / "local-reference")


def assert_same_losses(workdir: Path, run_id: str, reference_run_id: str) -> list[tuple[int, float]]:
    logged = history(workdir, run_id, "loss")
    uninterrupted = dict(history(workdir, reference_run_id, "loss"))
    for step, value in logged:
        assert value == pytest.approx(uninterrupted[step], rel=1e-4, abs=1e-5), step
    return logged


def test_local_mode_keeps_its_checkpoints_and_trains_above_untrained(local_reference, workdir):
    assert local_reference.steps == TOTAL_STEPS
    logged = history(workdir, local_reference.mlflow_run_id, "loss")
    assert [step for step, _ in logged] == list(range(1, TOTAL_STEPS + 1))
    run_dir = workdir / "ray" / local_reference.run_name
    kept = sorted(p.name for p in run_dir.iterdir() if p.name.startswith("checkpoint"))
    assert kept == [STEP_CHECKPOINT.format(step=8), STEP_CHECKPOINT.format(step=12)]
    assert local_reference.checkpoint == str(run_dir / STEP_CHECKPOINT.format(step=12))
    assert local_reference.metrics["test_mR"] > local_reference.baseline["test_mR"] + 10


def test_local_mode_retries_a_failed_attempt_from_its_last_checkpoint(local_reference, workdir, optical, monkeypatch):
    monkeypatch.setenv(RAISE_AT_STEP_ENV, "6")
    result = fit(tiny_config(workdir, num_workers=0, max_failures=1), optical, workdir / "local-retry")
    logged = assert_same_losses(workdir, result.mlflow_run_id, local_reference.mlflow_run_id)
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5, *range(5, TOTAL_STEPS + 1)]
    assert [value for _, value in history(workdir, result.mlflow_run_id, "resumed_from_step")] == [4]
    assert result.steps == TOTAL_STEPS


def test_local_mode_fails_past_max_failures_naming_the_run(workdir, optical, monkeypatch):
    monkeypatch.setenv(RAISE_AT_STEP_ENV, "2")
    with pytest.raises(TrainError, match="injected failure.*launch again with run name 'sar_text-local-fails'"):
        fit(tiny_config(workdir, num_workers=0), optical, workdir / "local-fails", run_name="sar_text-local-fails")


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
def test_local_mode_resumes_a_killed_process_on_relaunch(local_reference, workdir, optical):
    name, cfg = "sar_text-local-killed", tiny_config(workdir, num_workers=0)
    config_file = workdir / "local-killed.json"
    config_file.write_text(cfg.model_dump_json(), encoding="utf-8")
    launch = ("import sys; from rsvl.config import RunConfig; from rsvl.train import fit; "
              "fit(RunConfig.model_validate_json(open(sys.argv[1]).read()), sys.argv[2], sys.argv[3], run_name=sys.argv[4])")
    killed = subprocess.run(
        [sys.executable, "-c", launch, str(config_file), str(optical), str(workdir / "local-killed"), name],
        env={**os.environ, KILL_AT_STEP_ENV: "7"}, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == 1, killed.stderr[-2000:]
    result = fit(cfg, optical, workdir / "local-killed", run_name=name)
    logged = assert_same_losses(workdir, result.mlflow_run_id, local_reference.mlflow_run_id)
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5, 6, 5, 6, 7, 8, 9, 10, 11, 12]
    assert MlflowClient(tracking_uri(workdir)).get_run(result.mlflow_run_id).info.status == "FINISHED"


def test_a_non_finite_loss_stops_the_fit_with_a_clear_error(workdir, optical):
    model = build_model("rsvl-tiny")[0]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    save_model(model, workdir / "nan-model")
    cfg = tiny_config(workdir, num_workers=0, max_steps=2, eval_split=None, init_from=str(workdir / "nan-model"))
    with pytest.raises(TrainError, match=r"objective 'clip' gave loss nan at step 1; lower train.lr"):
        fit(cfg, optical, workdir / "nan-fit", run_name="sar_text-nan-loss")


def test_local_mode_needs_local_storage(workdir, optical):
    with pytest.raises(ConfigError, match="local mode.*needs a local"):
        fit(tiny_config(workdir, num_workers=0, storage_path="s3://bucket/runs"), optical, workdir / "remote")


def test_fit_tracks_params_metrics_tags_and_artifacts(local_reference, workdir, optical):
    client = MlflowClient(tracking_uri(workdir))
    run = client.get_run(local_reference.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == local_reference.run_name
    cfg = tiny_config(workdir, num_workers=0)
    rows = pq.read_table(optical / "manifest.parquet").num_rows  # 8 classes x 50 scenes, none quarantined
    assert rows == 400
    row_params = {"data.rows_kept": str(rows), "data.rows_quarantined": "0"}
    assert run.data.params == {**flatten(cfg.model_dump(mode="json")), **row_params}
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.name"] == "rsvl-tiny"

    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    assert run.data.tags["git_commit"] == commit
    assert run.data.tags["data_version"] == UNTRACKED

    steps = list(range(1, TOTAL_STEPS + 1))
    for key in ("loss", "lr", "samples_per_s", "peak_memory_mb"):
        assert [step for step, _ in history(workdir, run.info.run_id, key)] == steps, key
    assert all(value > 0 for _, value in history(workdir, run.info.run_id, "samples_per_s"))
    lr = dict(history(workdir, run.info.run_id, "lr"))
    assert lr[1] == pytest.approx(5e-4) and lr[2] == pytest.approx(1e-3)
    assert lr[3] == pytest.approx(1e-3) and all(lr[s] > lr[s + 1] for s in range(3, TOTAL_STEPS))
    loss = dict(history(workdir, run.info.run_id, "loss"))
    assert loss[TOTAL_STEPS] < loss[1]
    assert [step for step, _ in history(workdir, run.info.run_id, "test_mR")] == [0, TOTAL_STEPS]

    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "config.json"} <= top
    saved = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/open_clip_config.json", "model/open_clip_model.safetensors"} <= saved


def test_saved_model_reloads_and_is_the_trained_one(local_reference, workdir):
    artifact = MlflowClient(tracking_uri(workdir)).download_artifacts(
        local_reference.mlflow_run_id, "model", str(workdir / "downloaded"))
    embeddings = []
    for folder in (local_reference.model_dir, artifact):
        model, _, _, tokenizer = load_model(folder)
        with torch.no_grad():
            embeddings.append(model.eval().encode_text(tokenizer(SENTENCES)))
    assert torch.equal(embeddings[0], embeddings[1])
    assert local_reference.steps == TOTAL_STEPS


@pytest.mark.slow
@pytest.mark.timeout(600)  # Ray start-ups and worker restarts are slow on 2 busy cores
def test_relaunch_with_the_same_name_resumes_the_run(interrupted, workdir):
    failure, result = interrupted
    assert "sar_text-interrupted" in str(failure) and "resume" in str(failure)
    assert result.run_name == "sar_text-interrupted" and result.steps == TOTAL_STEPS
    runs = MlflowClient(tracking_uri(workdir)).search_runs(
        [MlflowClient(tracking_uri(workdir)).get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string="tags.`rsvl.run_name` = 'sar_text-interrupted'")
    assert [r.info.run_id for r in runs] == [result.mlflow_run_id]
    assert runs[0].info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_worker_resumes_at_the_next_step_with_the_same_losses(interrupted, local_reference, workdir):
    """Against the local-mode fit: the Ray worker trains like local mode, and resumes exactly."""
    _, result = interrupted
    logged = history(workdir, result.mlflow_run_id, "loss")
    # fresh start to step 5, killed before 6; re-launch from the step-4 checkpoint to step 9, worker killed
    # before 10; restart from the step-8 checkpoint to the end
    assert [step for step, _ in logged] == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 9, 10, 11, 12]
    assert [value for _, value in history(workdir, result.mlflow_run_id, "resumed_from_step")] == [4, 8]
    uninterrupted = dict(history(workdir, local_reference.mlflow_run_id, "loss"))
    for step, value in logged:
        assert value == pytest.approx(uninterrupted[step], rel=1e-4, abs=1e-5), step
    assert result.metrics["loss"] == pytest.approx(local_reference.metrics["loss"], rel=1e-4)
    assert result.metrics["test_mR"] == pytest.approx(local_reference.metrics["test_mR"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_new_name_starts_fresh_and_a_changed_config_cannot_resume(interrupted, local_reference, workdir, optical):
    _, result = interrupted
    assert result.run_name != local_reference.run_name
    assert history(workdir, result.mlflow_run_id, "loss")[0][0] == 1
    with pytest.raises(ConfigError, match="started with another config"):
        fit(tiny_config(workdir, lr=5e-4), optical, workdir / "other", run_name=result.run_name)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_relative_init_from_reaches_the_ray_workers(ray_session, workdir, optical, monkeypatch):
    torch.manual_seed(1)
    save_model(build_model("rsvl-tiny")[0], workdir / "start-model")
    monkeypatch.chdir(workdir)  # the Ray workers were started from another directory
    cfg = tiny_config(workdir, max_steps=2, checkpoint_every=2, eval_split=None, init_from="start-model")
    result = fit(cfg, optical, workdir / "relative-init")
    assert result.steps == 2 and result.checkpoint


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_command_fits_the_local_default_and_reports_test_mr(workdir, optical, repo_root):
    """``rsvl train`` on the local default config (no Ray: ``num_workers: 0``), two steps; the full
    budget's quality (far above untrained) is ``make bench``."""
    name = "sar_text-local-default"
    result = CliRunner().invoke(app, [
        "train", "--config", str(repo_root / "pipelines/sar_text/config.yaml"), "--data", str(optical),
        "--run-name", name, "--out", str(workdir / "local-default"),
        "--set", f"train.storage_path={workdir / 'ray'}", "--set", f"mlflow.tracking_uri={tracking_uri(workdir)}",
        "--set", "train.stages=[]", "--set", "train.ablations=[]",  # one fit (tests/train/test_train_progressive.py: stages)
        "--set", "train.max_steps=2", "--set", "train.log_every=1", "--set", "train.warmup_steps=1",
    ])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri(workdir))
    run = client.search_runs([client.get_experiment_by_name("sar_text").experiment_id],
                             filter_string=f"tags.`rsvl.run_name` = '{name}'")[0]
    assert run.data.params["model.name"] == "rsvl-effnetlite0-minilm" and run.data.params["train.num_workers"] == "0"
    mean_recall = history(workdir, run.info.run_id, "test_mR")
    assert [step for step, _ in mean_recall] == [0, 2]
    (_, untrained), (_, trained) = mean_recall
    assert f"test_mR: {untrained:.2f} -> {trained:.2f}" in result.output, result.output
