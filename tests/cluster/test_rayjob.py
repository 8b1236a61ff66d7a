"""The kuberay backend: RayJob manifests (checked against the vendored CRD schema) and submission.

Submission talks to a small Kubernetes API server on loopback (the RayJob endpoints only) through
the real ``kubernetes`` client: it validates what is POSTed with the strict CRD schema, as an API
server with ``fieldValidation=Strict`` does, and scripts the status KubeRay would report.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest

from rsvl.config.cluster import KubeRayConfig
from rsvl.cluster.rayjob import build_rayjob, rayjob_name, require_pinned_image, resolve_image
from rayjob_schema import load_rayjob_schema, strict_schema, validate_rayjob
from rsvl.cluster.submit import RayJobError, submit_rayjob
from rsvl.config import load_config
from rsvl.errors import ConfigError
from fake_kube import FakeKube, serving

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "pipelines/sar_text/config.yaml"
SCHEMA_PATH = ROOT / "k8s" / "schemas" / "ray.io_rayjobs.json"
IMAGE = "registry.example.com/rsvl/train:0.1.0-cuda12"
MOUNT = "/mnt/rsvl-shared"
DATASET = f"{MOUNT}/data/hrsid"
OUT = f"{MOUNT}/train/out"
RUN = "sar_text-20260101-120000-abc123"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def cluster_config(*overrides: str):
    return load_config(ROOT / CONFIG, "cluster", list(overrides))


@pytest.fixture(scope="module")
def schema():
    return load_rayjob_schema(SCHEMA_PATH)


def build(cfg=None, kuberay=None, **kwargs):
    args = dict(run_name=RUN, config_path=CONFIG, dataset=DATASET, out_dir=OUT, image=IMAGE)
    args.update(kwargs)
    return build_rayjob(cfg or cluster_config(), kuberay or KubeRayConfig(), **args)


def pods(manifest):
    cluster = manifest["spec"]["rayClusterSpec"]
    return cluster["headGroupSpec"]["template"], cluster["workerGroupSpecs"][0]["template"]


# --- the manifest -------------------------------------------------------------------------------


def test_manifest_of_the_cluster_profile_validates_against_the_crd(schema):
    kuberay = KubeRayConfig()
    manifest = build(kuberay=kuberay)
    validate_rayjob(manifest, schema)
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayJob")
    spec = manifest["spec"]
    assert spec["submissionMode"] == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is kuberay.shutdown_after_job_finishes
    assert spec["ttlSecondsAfterFinished"] == kuberay.ttl_seconds_after_finished
    assert spec["activeDeadlineSeconds"] == kuberay.active_deadline_seconds
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "rsvl"
    assert (labels["rsvl/paper"], labels["rsvl/run-name"]) == ("sar_text", RUN)
    assert manifest["metadata"]["namespace"] == kuberay.namespace


def test_the_schema_bites_on_broken_manifests(schema):
    good = build()
    misspelt = copy.deepcopy(good)
    misspelt["spec"]["shutdownAfterJobFinish"] = misspelt["spec"].pop("shutdownAfterJobFinishes")
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "4"
    missing = copy.deepcopy(good)
    del missing["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    bad_quantity = copy.deepcopy(good)
    pods(bad_quantity)[1]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "64 GB"
    nested_typo = copy.deepcopy(good)
    pods(nested_typo)[0]["spec"]["containers"][0]["volumeMount"] = []
    cases = {
        "shutdownAfterJobFinish": misspelt,
        "replicas": wrong_type,
        "rayStartParams": missing,
        "64 GB": bad_quantity,
        "volumeMount'": nested_typo,
    }
    for needle, manifest in cases.items():
        with pytest.raises(ConfigError) as caught:
            validate_rayjob(manifest, schema)
        assert needle in str(caught.value), (needle, str(caught.value))


@pytest.mark.skipif(not (ROOT / "k8s/base/rayjob-template.yaml").is_file(), reason="no RayJob template in k8s/base")
def test_the_reference_rayjob_template_validates(schema):
    import yaml

    validate_rayjob(yaml.safe_load((ROOT / "k8s/base/rayjob-template.yaml").read_text()), schema)


def test_strict_schema_leaves_string_maps_and_the_source_alone():
    raw = json.loads(SCHEMA_PATH.read_text())
    strict = strict_schema(raw)
    assert "additionalProperties" not in raw
    assert strict["additionalProperties"] is False
    labels = strict["properties"]["spec"]["properties"]["rayClusterSpec"]["properties"]["headGroupSpec"]
    assert labels["properties"]["rayStartParams"]["additionalProperties"] == {"type": "string"}


def test_gpu_workers_get_gpu_limits_and_the_head_none():
    manifest = build(cluster_config("train.use_gpu=true"))
    head, worker = pods(manifest)
    resources = worker["spec"]["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in head["spec"]["containers"][0]["resources"]["limits"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in worker["spec"]["tolerations"]


def test_cpu_only_workers_ask_for_no_gpu():
    manifest = build(cluster_config("train.use_gpu=false"))
    worker = pods(manifest)[1]
    resources = worker["spec"]["containers"][0]["resources"]
    assert not any("gpu" in key for part in resources.values() for key in part)
    assert "tolerations" not in worker["spec"]


def test_worker_group_is_sized_from_the_train_section(schema):
    cfg = cluster_config("train.num_workers=3", "train.cpus_per_worker=5")
    kuberay = KubeRayConfig()
    manifest = build(cfg, kuberay)
    validate_rayjob(manifest, schema)
    cluster = manifest["spec"]["rayClusterSpec"]
    group = cluster["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
    resources = group["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"] == str(5 + kuberay.worker.extra_cpus)
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_local_mode_is_refused():
    with pytest.raises(ConfigError, match="num_workers"):
        build(cluster_config("train.num_workers=0"))


@pytest.mark.parametrize(
    "image",
    ["rsvl/train:latest", "rsvl/train", "registry.local:5000/rsvl/train", "rsvl/train@sha256:abc", "rsvl/train: 1"],
)
def test_unpinned_images_are_refused(image):
    with pytest.raises(ConfigError, match="image"):
        build(image=image)


@pytest.mark.parametrize(
    "image", ["registry.local:5000/rsvl/train:1.2.0", "rsvl/train@sha256:" + "0" * 64, "rsvl/train:0.1.0-cuda12"]
)
def test_pinned_images_are_accepted(image):
    assert require_pinned_image(image) == image
    assert pods(build(image=image))[1]["spec"]["containers"][0]["image"] == image


def test_configured_image_is_used_and_checked_else_the_checkouts_cuda_image():
    from rsvl.images import image_ref

    assert resolve_image(KubeRayConfig(image=IMAGE)) == IMAGE
    assert resolve_image(KubeRayConfig()) == image_ref("cuda")
    with pytest.raises(ConfigError, match="latest"):
        resolve_image(KubeRayConfig(image="rsvl/train:latest"))


@pytest.mark.parametrize(
    "storage", ["/data/ray_results", ".ray_results", "/mnt/rsvl-shared-other/r", "/mnt/rsvl-shared/../etc", "s3://b/r"]
)
def test_checkpoints_off_the_shared_volume_are_refused(storage):
    with pytest.raises(ConfigError, match="train.storage_path"):
        build(cluster_config(f"train.storage_path={storage}"))


def test_dataset_and_outputs_must_be_on_the_shared_volumes():
    assert "--data /data/hrsid " in build(dataset="/data/hrsid")["spec"]["entrypoint"]
    with pytest.raises(ConfigError, match="dataset"):
        build(dataset="/data/hrsid", kuberay=KubeRayConfig(data_volume_claim=None))
    with pytest.raises(ConfigError, match="dataset"):
        build(dataset="data/default/optical")
    with pytest.raises(ConfigError, match="output"):
        build(out_dir="/data/out")
    with pytest.raises(ConfigError, match="output"):
        build(out_dir="build/train/x")


def test_mlflow_store_must_outlive_the_cluster():
    with pytest.raises(ConfigError, match="tracking_uri"):
        build(cluster_config("mlflow.tracking_uri=sqlite:///mlflow/mlflow.db"))
    shared = f"sqlite:///{MOUNT}/mlflow/mlflow.db"
    env = pods(build(cluster_config(f"mlflow.tracking_uri={shared}")))[0]["spec"]["containers"][0]["env"]
    assert {"name": "MLFLOW_TRACKING_URI", "value": shared} in env


def test_every_ray_pod_mounts_the_volumes_and_every_pod_runs_as_non_root():
    kuberay = KubeRayConfig()
    manifest = build(kuberay=kuberay)
    for pod in pods(manifest):
        spec = pod["spec"]
        pvcs = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        claims = {v["persistentVolumeClaim"]["claimName"]: v["name"] for v in pvcs}
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        shared = mounts[claims[kuberay.shared_volume_claim]]
        data = mounts[claims[kuberay.data_volume_claim]]
        assert shared["mountPath"] == kuberay.shared_mount_path and not shared.get("readOnly")
        assert (data["mountPath"], data["readOnly"]) == (kuberay.data_mount_path, True)
        assert "/dev/shm" in {m["mountPath"] for m in mounts.values()}
    for pod in [*pods(manifest), manifest["spec"]["submitterPodTemplate"]]:
        spec = pod["spec"]
        container = spec["containers"][0]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["image"] == IMAGE
    components = [p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods(manifest)]
    assert components == ["ray-head", "ray-worker"]


def test_pod_templates_round_trip_through_the_kubernetes_models():
    """Every key of every pod template is a field of the Kubernetes API: none is dropped on the way back."""
    from types import SimpleNamespace

    from kubernetes.client import ApiClient

    from rsvl.config.cluster import MlflowS3, Toleration

    kuberay = KubeRayConfig(
        ray_service_account="rsvl-ray",
        mlflow_s3=MlflowS3(secret_name="mlflow-s3", endpoint_url="http://minio:9000"),
        env={"NCCL_DEBUG": "INFO"},
        gpu_node_selector={"nvidia.com/gpu.present": "true"},
        gpu_tolerations=[Toleration(key="dedicated", value="ml", effect="NoExecute", toleration_seconds=60)],
    )
    manifest = build(cluster_config("train.use_gpu=true"), kuberay)
    templates = [*pods(manifest), manifest["spec"]["submitterPodTemplate"]]
    with ApiClient() as api:
        for template in templates:
            model = api.deserialize(SimpleNamespace(data=json.dumps(template)), "V1PodTemplateSpec")
            assert api.sanitize_for_serialization(model) == template
    worker = templates[1]["spec"]
    assert worker["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}
    ]
    assert worker["serviceAccountName"] == "rsvl-ray" and worker["nodeSelector"] == kuberay.gpu_node_selector
    secret = {"secretKeyRef": {"name": "mlflow-s3", "key": "AWS_ACCESS_KEY_ID"}}
    assert {"name": "AWS_ACCESS_KEY_ID", "valueFrom": secret} in worker["containers"][0]["env"]


def test_pods_get_mlflow_settings_and_no_s3_keys_when_mlflow_proxies_artifacts():
    cfg = cluster_config()
    kuberay = KubeRayConfig()
    for pod in pods(build(cfg, kuberay)):
        env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
        assert env["MLFLOW_TRACKING_URI"]["value"] == cfg.mlflow.tracking_uri
        assert env["HF_HUB_OFFLINE"]["value"] == "1"
        assert env["HF_HOME"]["value"] == kuberay.hf_home
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"} & set(env)


def test_direct_s3_access_uses_secret_references_only(schema):
    s3 = {"secret_name": "rsvl-minio", "access_key_id_key": "MINIO_ROOT_USER", "endpoint_url": "http://minio:9000"}
    kuberay = KubeRayConfig.model_validate({"mlflow_s3": s3})
    manifest = build(kuberay=kuberay)
    validate_rayjob(manifest, schema)
    for pod in pods(manifest):
        env = {item["name"]: item for item in pod["spec"]["containers"][0]["env"]}
        assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == s3["endpoint_url"]
        for name, key in (("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"), ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "rsvl-minio", "key": key}


def test_extra_env_may_not_override_the_builders_variables():
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        build(kuberay=KubeRayConfig(env={"MLFLOW_TRACKING_URI": "http://elsewhere"}))


def test_long_and_odd_run_names_give_valid_distinct_rayjob_names(schema):
    long_a = "SAR_text." + "x" * 100 + "-20260101-120000-abc123"
    long_b = "SAR_text." + "x" * 100 + "-20260101-120000-def456"
    names = [rayjob_name(n) for n in (long_a, long_b, "7up run", RUN)]
    for name in names:
        assert DNS1035.match(name) and len(name) <= 47, name
    assert names[0] != names[1]
    assert names[0].endswith("20260101-120000-abc123")
    assert names[3] == RUN.replace("_", "-")
    manifest = build(run_name=long_a)
    validate_rayjob(manifest, schema)
    assert manifest["metadata"]["name"] == names[0]
    assert manifest["metadata"]["annotations"]["rsvl/run-name"] == long_a


def test_entrypoint_round_trips_through_the_shell():
    run = "it's a run; rm -rf /"
    out = f"{MOUNT}/out dir/$HOME"
    overrides = ["train.epochs=3", "train.lr=1e-4 ", "model.name=ViT-L-14; echo"]
    manifest = build(run_name=run, out_dir=out, overrides=overrides)
    expected = ["rsvl", "train", "--config", CONFIG, "--profile", "cluster", "--track", "main", "--run-name", run]
    expected += ["--data", DATASET, "--out", out]
    for item in [*overrides, "train.backend=local"]:
        expected += ["--set", item]
    assert shlex.split(manifest["spec"]["entrypoint"]) == expected


def test_results_locations_are_recorded_in_annotations():
    cfg = cluster_config()
    annotations = build(cfg)["metadata"]["annotations"]
    storage = cfg.train.storage_path
    assert [stage.name for stage in cfg.train.stages] == ["optical", "sar"]
    assert annotations["rsvl/checkpoint-dirs"].split(",") == [
        f"{storage}/{RUN}-optical", f"{storage}/{RUN}-sar", f"{storage}/{RUN}-sar_only-sar",
        f"{storage}/{RUN}-sar_direct-sar"]
    single = cluster_config("train.stages=[]", "train.ablations=[]")
    assert build(single)["metadata"]["annotations"]["rsvl/checkpoint-dirs"] == f"{storage}/{RUN}"
    assert annotations["rsvl/out-dir"] == OUT
    assert annotations["rsvl/config-digest"] == cfg.digest()


def test_kuberay_config_rejects_bad_values():
    bad_values = [{"namespace": "RSVL"}, {"worker": {"shm_size": "8 GB"}}, {"head": {"memory": "lots"}}]
    bad_paths = [{"shared_mount_path": "mnt"}, {"shared_mount_path": "/"}, {"data_mount_path": "/mnt/rsvl-shared/d"}]
    for bad in [*bad_values, *bad_paths]:
        with pytest.raises(ValueError):
            KubeRayConfig.model_validate(bad)
    assert KubeRayConfig.model_validate({"poll_seconds": 2}).poll_seconds == 2.0


# --- submission -----------------------------------------------------------------------------------


@pytest.fixture
def kube(schema):
    fake = FakeKube(schema)
    with serving(fake) as api_client:
        yield fake, api_client


FAST = KubeRayConfig(poll_seconds=0.02)


def _running(job="RUNNING"):
    return {"jobDeploymentStatus": "Running", "jobStatus": job}


def test_success_streams_each_status_change_once_and_keeps_the_job(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    fake.scripts[name] = [
        {},
        {"jobDeploymentStatus": "Initializing"},
        _running("PENDING"),
        _running(),
        _running(),
        {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "rayClusterName": f"{name}-x1y2z"},
    ]
    lines: list[str] = []
    outcome = submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=lines.append)
    assert lines[0].startswith(f"RayJob rsvl/{name} created")
    assert [line.split(": ", 1)[1] for line in lines[1:]] == [
        "deployment -, job -",
        "deployment Initializing, job -",
        "deployment Running, job PENDING",
        "deployment Running, job RUNNING",
        "deployment Complete, job SUCCEEDED",
    ]
    assert (outcome.job_status, outcome.deployment_status) == ("SUCCEEDED", "Complete")
    assert outcome.ray_cluster_name == f"{name}-x1y2z"
    assert ",".join(outcome.checkpoint_dirs) == manifest["metadata"]["annotations"]["rsvl/checkpoint-dirs"]
    assert outcome.out_dir == OUT and outcome.run_name == RUN
    assert fake.calls("DELETE") == []
    post = [(path, query) for method, path, query in fake.requests if method == "POST"]
    assert post == [("/apis/ray.io/v1/namespaces/rsvl/rayjobs", {"fieldValidation": ["Strict"]})]
    assert fake.objects[("rsvl", name)]["body"] == manifest


def test_failure_deletes_the_job_and_raises_with_its_message(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    why = "Job entrypoint command failed with exit code 1"
    fake.scripts[name] = [_running(), {"jobDeploymentStatus": "Complete", "jobStatus": "FAILED", "message": why}]
    with pytest.raises(RayJobError) as caught:
        submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=lambda _: None)
    text = str(caught.value)
    assert name in text and why in text and "FAILED" in text and RUN in text
    assert f"checkpoints stay in {', '.join(manifest['metadata']['annotations']['rsvl/checkpoint-dirs'].split(','))};" in text
    assert fake.calls("DELETE") == [f"/apis/ray.io/v1/namespaces/rsvl/rayjobs/{name}"]
    assert ("rsvl", name) not in fake.objects


def test_kuberay_deadline_failure_is_reported_and_cleaned_up(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    deadline = {"jobDeploymentStatus": "Failed", "jobStatus": "RUNNING", "reason": "DeadlineExceeded"}
    fake.scripts[name] = [_running(), deadline]
    with pytest.raises(RayJobError, match="DeadlineExceeded"):
        submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=lambda _: None)
    assert ("rsvl", name) not in fake.objects


def test_local_timeout_deletes_the_job(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    fake.scripts[name] = [_running()]
    with pytest.raises(RayJobError, match="did not finish within") as caught:
        submit_rayjob(manifest, FAST, api_client=api_client, timeout=0.3, on_status=lambda _: None)
    assert "RUNNING" in str(caught.value)
    assert fake.calls("DELETE") == [f"/apis/ray.io/v1/namespaces/rsvl/rayjobs/{name}"]


def test_interrupt_deletes_the_job_and_propagates(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    fake.scripts[name] = [_running()]

    def interrupt_when_running(line: str) -> None:
        if "RUNNING" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=interrupt_when_running)
    assert ("rsvl", name) not in fake.objects


def test_missing_kubernetes_credentials_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(ConfigError, match="no Kubernetes credentials"):
        submit_rayjob(build(), FAST, on_status=lambda _: None)


def test_creation_errors_name_the_job_and_the_cause(kube):
    fake, api_client = kube
    manifest = build(kuberay=FAST)
    name = manifest["metadata"]["name"]
    fake.scripts[name] = [{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]
    submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=lambda _: None)
    with pytest.raises(RayJobError, match="409.*already exists.*another run name"):
        submit_rayjob(manifest, FAST, api_client=api_client, timeout=30, on_status=lambda _: None)
    typo = copy.deepcopy(build(kuberay=FAST, run_name="other-run"))
    typo["spec"]["ttlSecondsAfterFinish"] = 60
    with pytest.raises(RayJobError, match="(?s)other-run.*422.*ttlSecondsAfterFinish"):
        submit_rayjob(typo, FAST, api_client=api_client, timeout=30, on_status=lambda _: None)
