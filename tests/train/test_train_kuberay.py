"""The train step on ``backend: kuberay``: a RayJob whose entrypoint really trains, through the real client.

The Kubernetes API here is :class:`fake_kube.ExecutingKube` on loopback: it validates the RayJob
against the strict CRD schema and runs its ``spec.entrypoint`` as KubeRay's head pod would, in a
folder standing in for the shared volume. So the test covers the whole path: dataset and config
copied to the volume, the manifest, the submission and status stream, the ``rsvl train`` command
line itself, the model copied back and the fit's numbers read from MLflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from fake_kube import ExecutingKube, serving
from rayjob_schema import load_rayjob_schema
from rsvl.cluster.volume import check_copy, copy_contents, copy_path
from rsvl.config import RunConfig, deep_merge
from rsvl.data.generate import write_optical_scenes, write_sar_chips
from rsvl.errors import DataError, TrainError
from rsvl.models import load_model
from rsvl.steps.training import RUNS_DIR, _inputs_for_pods, run_train, summary_metrics
from rsvl.train.progressive import stage_dataset

SCHEMA = Path(__file__).resolve().parents[2] / "k8s" / "schemas" / "ray.io_rayjobs.json"


def kuberay_config(root: Path, **train) -> RunConfig:
    shared = root / "shared"
    return RunConfig.model_validate({
        "paper": "sar_text", "profile": "cluster", "model": {"name": "rsvl-tiny"},
        "train": {"backend": "kuberay", "num_workers": 1, "cpus_per_worker": 2, "batch_size": 16, "max_steps": 4,
                  "lr": 1e-3, "log_every": 2, "checkpoint_every": 4, "max_failures": 0,
                  "storage_path": str(shared / "ray"),
                  "kuberay": {"shared_mount_path": str(shared), "data_mount_path": str(root / "data"),
                              "hf_home": str(shared / "hf"), "image": "registry.example.com/rsvl/train:0.1.0-test",
                              "poll_seconds": 0.2},
                  **train},
        "mlflow": {"tracking_uri": f"sqlite:///{shared / 'mlflow.db'}", "experiment": "kuberay-test"},
    })


@pytest.fixture
def cluster(tmp_path):
    """(api client, fake API server) whose RayJobs run in ``tmp_path`` with this interpreter's ``rsvl``."""
    (tmp_path / "shared").mkdir()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    fake = ExecutingKube(load_rayjob_schema(SCHEMA), cwd=str(tmp_path), env=env)
    with serving(fake) as api_client:
        yield api_client, fake
    for process in fake.processes.values():
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kuberay_trains_the_progressive_plan_in_the_rayjob_and_returns_its_models(tmp_path, cluster):
    """One RayJob (one Ray start-up in its entrypoint) for the whole path: the stage data and the run's
    dataset copied to the volume, the manifest, the submission and status stream, ``rsvl train``
    running the plan (two stages, an ablation), the models copied back and the numbers read from MLflow."""
    api_client, fake = cluster
    write_optical_scenes(tmp_path / "laptop-data" / "default" / "optical", seed=0, per_class=12)
    write_sar_chips(tmp_path / "sar", seed=0, count=60)
    stages = {"stages": [{"name": "optical", "dataset": "default/optical", "max_steps": 4},
                         {"name": "sar", "max_steps": 2}],
              "ablations": [{"name": "sar_only", "stages": ["sar"]}]}
    cfg = RunConfig.model_validate(deep_merge(kuberay_config(tmp_path, **stages).model_dump(mode="json"),
                                              {"data": {"root": str(tmp_path / "laptop-data")}}))
    result = run_train(cfg, tmp_path / "sar", tmp_path / "out", run_name="sar_text-plan", api_client=api_client)

    assert fake.requests[0][0] == "POST" and fake.calls("DELETE") == []
    assert len(fake.processes) == 1  # the whole plan in one RayJob
    job = next(iter(fake.processes))
    job_log = (tmp_path / f"{job}.log").read_text()
    assert fake.processes[job].returncode == 0, job_log[-3000:]
    assert job_log.count("Started a local Ray instance") == 1  # the three fits share one Ray start-up
    shared_run = tmp_path / "shared" / RUNS_DIR / "sar_text-plan"
    assert (shared_run / "dataset" / "dataset.json").is_file() and (shared_run / "config.yaml").is_file()
    assert (shared_run / "data" / "default" / "optical" / "manifest.parquet").is_file()
    sent = yaml.safe_load((shared_run / "config.yaml").read_text())
    assert sent["defaults"]["data"]["root"] == str(shared_run / "data")

    assert list(result.stages) == ["optical", "sar"] and result.run_name == "sar_text-plan-sar"
    assert [fitted.steps for fitted in result.stages.values()] == [4, 2] and result.steps == 2
    assert "test_mR" in result.metrics and "test_mR" in result.baseline
    assert result.ablations["sar_only"].run_name == "sar_text-plan-sar_only-sar"
    assert result.ablations["sar_only"].steps == 6
    assert result.model_dir == tmp_path / "out" / "model"
    model, _, _, tokenizer = load_model(result.model_dir)
    assert model.encode_text(tokenizer(["a harbour"])).shape[-1] == 64
    for model in ("model", "stages/optical/model", "ablations/sar_only/model"):
        assert load_model(tmp_path / "out" / model)[0].rsvl_spec["in_bands"] == 3, model
    shown = summary_metrics(result)
    assert {"stage.optical.test_mR", "stage.sar.untrained_test_mR"} <= set(shown)
    assert shown["ablation.sar_only.steps"] == 6 and shown["ablation.sar_only.fit_seconds"] > 0


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
def test_a_failing_rayjob_is_deleted_and_the_error_says_how_to_resume(tmp_path, cluster):
    api_client, fake = cluster
    (tmp_path / "empty").mkdir()
    cfg = kuberay_config(tmp_path)
    with pytest.raises(TrainError, match="resume"):
        run_train(cfg, tmp_path / "empty", tmp_path / "out", run_name="sar_text-broken", api_client=api_client)
    assert len(fake.calls("DELETE")) == 1


def test_a_dataset_already_in_the_shared_run_folder_is_refused_not_deleted(tmp_path):
    run = "sar_text-on-volume"
    dataset = tmp_path / "shared" / RUNS_DIR / run / "dataset"
    write_optical_scenes(dataset, seed=0, per_class=2)
    files = sorted(path.relative_to(dataset) for path in dataset.rglob("*"))
    with pytest.raises(DataError, match="refusing to copy .*dataset to .*dataset: one holds the other"):
        run_train(kuberay_config(tmp_path), dataset, tmp_path / "out", run_name=run)
    assert sorted(path.relative_to(dataset) for path in dataset.rglob("*")) == files
    with pytest.raises(DataError, match="one holds the other"):
        run_train(kuberay_config(tmp_path), tmp_path / "shared" / RUNS_DIR, tmp_path / "out", run_name=run)
    assert (dataset / "manifest.parquet").is_file()


def test_volume_copies_check_each_path(tmp_path):
    source = tmp_path / "source"
    (source / "nested").mkdir(parents=True)
    (source / "nested" / "weights.bin").write_bytes(b"\0" * 1000)
    (source / "config.json").write_text("{}")
    with pytest.raises(DataError, match="nowhere .*the source does not exist"):
        copy_path(tmp_path / "nowhere", tmp_path / "target")
    with pytest.raises(DataError, match="one holds the other"):
        copy_path(tmp_path, source / "inside")
    (tmp_path / "out" / "nested").mkdir(parents=True)
    (tmp_path / "out" / "config.json").mkdir()  # a folder where the copy puts a file
    copied = copy_contents(source, tmp_path / "out")
    assert [path.name for path in copied] == ["config.json", "nested"]
    assert (tmp_path / "out" / "config.json").read_text() == "{}"
    assert (tmp_path / "out" / "nested" / "weights.bin").stat().st_size == 1000
    check_copy(source, tmp_path / "out")
    (tmp_path / "out" / "nested" / "weights.bin").write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match=r"incomplete: 1 of 2 file\(s\) missing or of another size .*weights.bin"):
        check_copy(source, tmp_path / "out")
    with pytest.raises(DataError, match="empty"):
        (tmp_path / "empty").mkdir()
        copy_contents(tmp_path / "empty", tmp_path / "out")
    assert not list(tmp_path.glob("**/.*copying*"))


def test_a_stage_ingested_from_a_source_is_copied_where_the_pods_read_it(tmp_path):
    """A stage under data.root and one in the laptop's evaluate.cache_dir: each copied to the volume, the
    config pointing at the copies (the pods resolve ``evaluate.cache_dir/<dataset>`` as this step did)."""
    write_optical_scenes(tmp_path / "laptop-data" / "default" / "optical", seed=0, per_class=2)
    write_optical_scenes(tmp_path / "laptop-cache" / "stages" / "rsscn7", seed=1, per_class=2)
    stages = [{"name": "optical", "dataset": "rsscn7", "source": {"format": "class-folder", "path": "/data/rsscn7"}},
              {"name": "synthetic", "dataset": "default/optical"}, {"name": "sar"}]
    cfg = RunConfig.model_validate(deep_merge(kuberay_config(tmp_path, stages=stages).model_dump(mode="json"), {
        "data": {"root": str(tmp_path / "laptop-data")}, "evaluate": {"cache_dir": str(tmp_path / "laptop-cache")}}))
    shared = tmp_path / "shared" / "runs" / "r"
    on_pods = _inputs_for_pods(cfg, tmp_path / "sar", shared)
    assert (on_pods.data.root, on_pods.evaluate.cache_dir) == (str(shared / "data"), str(shared / "evaluate"))
    for stage, copied in zip(on_pods.train.stages, (shared / "evaluate" / "stages" / "rsscn7", shared / "data" / "default" / "optical")):
        assert stage_dataset(on_pods, stage, None) == copied
        assert (copied / "manifest.parquet").read_bytes() == (stage_dataset(cfg, stage, None) / "manifest.parquet").read_bytes()
