"""Settings of the train step's ``kuberay`` backend: where and how a RayJob runs on Kubernetes.

Worker count, GPUs and CPUs per worker are not repeated here: they come from ``train.num_workers``,
``train.use_gpu`` and ``train.cpus_per_worker`` so the Ray cluster always has the resources Ray
Train will ask for. Defaults match the cluster set up by ``k8s/base`` (volumes, labels, limits).
Quantities use Kubernetes notation (``"16Gi"``, ``"500m"``) and are checked when the config
loads, not when the API server refuses the manifest.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from rsvl.config.base import StrictModel

# The Kubernetes resource.Quantity pattern, as in the CRD schema (k8s/schemas/ray.io_rayjobs.json).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _quantity(value: str) -> str:
    if not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (examples: '4', '500m', '16Gi')")
    return value


Quantity = Annotated[str, AfterValidator(_quantity)]


class HeadResources(StrictModel):
    """The Ray head pod, which runs the ``rsvl train`` driver (and its evaluation) but no training task."""

    cpu: Quantity = "4"
    memory: Quantity = "24Gi"
    shm_size: Quantity = "4Gi"


class WorkerResources(StrictModel):
    """Each Ray worker pod; its GPU and base CPU count come from the ``train`` section.

    A worker pod gets ``train.cpus_per_worker + extra_cpus`` CPUs: the extra ones hold Ray's own
    processes and Ray Train's coordinating actor, which cannot go to the head (``num-cpus: 0``).
    """

    memory: Quantity = "64Gi"
    shm_size: Quantity = "16Gi"
    extra_cpus: int = Field(2, ge=1)


class Toleration(StrictModel):
    """A pod toleration (the fields of the Kubernetes ``Toleration`` type)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(None, ge=0)


class MlflowS3(StrictModel):
    """Direct access to MLflow's S3 artifact store, for servers that do not proxy artifacts.

    The project's own MLflow (``k8s/base/mlflow.yaml``) proxies artifacts, so Ray pods need no S3
    credentials and leave this unset. When set, pods read the keys through ``secretKeyRef`` (they
    never enter the manifest) and get ``MLFLOW_S3_ENDPOINT_URL`` when ``endpoint_url`` is given.
    """

    secret_name: str = Field(pattern=DNS1123_SUBDOMAIN, max_length=253)
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    endpoint_url: str | None = None


def _absolute(value: str) -> str:
    normal = posixpath.normpath(value)
    if not value.startswith("/") or normal == "/" or normal != value.rstrip("/"):
        raise ValueError(f"{value!r} must be an absolute, normalised path other than '/'")
    return normal


MountPath = Annotated[str, AfterValidator(_absolute)]


class KubeRayConfig(StrictModel):
    """Where the RayJob runs, what it may use, and how long it may take.

    ``shared_volume_claim`` is a ReadWriteMany PersistentVolumeClaim mounted at
    ``shared_mount_path`` in the head and every worker: Ray Train's checkpoints
    (``train.storage_path``) and the output folder must live there, because every pod writes or
    reads them and they must outlive the cluster. ``data_volume_claim`` (optional) holds raw
    datasets, mounted read-only at ``data_mount_path``. ``service_account`` is the identity of the
    pipeline step that submits and follows the RayJob (``k8s/base/rbac.yaml``); the Ray pods run
    as ``ray_service_account`` (``None``: the namespace default) without an API token.
    ``active_deadline_seconds`` bounds the whole job (KubeRay fails it past that); the submitter
    gives up ``timeout_grace_seconds`` later.
    """

    namespace: str = Field("rsvl", pattern=DNS1123_LABEL, max_length=63)
    image: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    service_account: str = Field("rsvl-pipeline-runner", pattern=DNS1123_SUBDOMAIN, max_length=253)
    ray_service_account: str | None = Field(None, pattern=DNS1123_SUBDOMAIN, max_length=253)
    run_as_user: int = Field(1000, ge=1)
    run_as_group: int = Field(1000, ge=0)
    fs_group: int = Field(1000, ge=0)
    head: HeadResources = HeadResources()
    worker: WorkerResources = WorkerResources()
    shared_volume_claim: str = Field("rsvl-shared", pattern=DNS1123_SUBDOMAIN, max_length=253)
    shared_mount_path: MountPath = "/mnt/rsvl-shared"
    data_volume_claim: str | None = Field("rsvl-data", pattern=DNS1123_SUBDOMAIN, max_length=253)
    data_mount_path: MountPath = "/data"
    hf_home: str | None = "/mnt/rsvl-shared/hf"
    active_deadline_seconds: int = Field(24 * 3600, gt=0)
    ttl_seconds_after_finished: int = Field(300, ge=0)
    shutdown_after_job_finishes: bool = True
    backoff_limit: int = Field(0, ge=0)
    mlflow_s3: MlflowS3 | None = None
    env: dict[str, str] = {}
    poll_seconds: float = Field(10.0, gt=0.0)
    timeout_grace_seconds: int = Field(600, ge=0)
    gpu_node_selector: dict[str, str] = {}
    gpu_tolerations: list[Toleration] = [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.match(ENV_NAME, name)]
        if bad:
            raise ValueError(f"environment variable names {bad} are not valid (letters, digits, '_')")
        return value

    @model_validator(mode="after")
    def _distinct_mounts(self) -> "KubeRayConfig":
        a, b = self.shared_mount_path, self.data_mount_path
        if self.data_volume_claim and (a == b or a.startswith(b + "/") or b.startswith(a + "/")):
            raise ValueError(f"shared_mount_path {a!r} and data_mount_path {b!r} must not contain each other")
        return self
