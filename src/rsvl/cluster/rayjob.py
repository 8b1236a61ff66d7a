"""Build the KubeRay ``ray.io/v1`` RayJob that runs one ``rsvl train`` on a Ray cluster of its own.

A head pod runs the ``rsvl train`` driver; one worker group is sized from the ``train`` section.
Every pod mounts the shared ReadWriteMany volume so checkpoints and outputs outlive the cluster.
Pod templates use the ``kubernetes`` client's typed models; the RayJob around them is plain dicts
(see ``docs/kubernetes.md``).
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kubernetes import client as k8s

from rsvl.config.cluster import KubeRayConfig
from rsvl.config.plan import fit_run_names
from rsvl.errors import ConfigError

if TYPE_CHECKING:
    from rsvl.config import RunConfig

API_VERSION = "ray.io/v1"
KIND = "RayJob"
# KubeRay appends 6 characters to a RayJob's name for its RayCluster, whose name may have 53 (its
# longest Service, "<cluster>-serve-svc", must fit 63): RayJob names over 47 are refused.
MAX_NAME_LENGTH = 47
# Inside the cluster the same command must train right there, not submit another RayJob.
IN_CLUSTER_OVERRIDES = ("train.backend=local",)
ANNOTATION_PREFIX = "rsvl/"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DIGEST_IMAGE = re.compile(r"@sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHARED_VOLUME = "rsvl-shared"
_DATA_VOLUME = "rsvl-data"
_SHM_VOLUME = "dshm"


def rayjob_name(run_name: str) -> str:
    """Return the RayJob name for a run: a DNS-1035 label of at most 47 characters.

    A shortened name keeps its end (time stamp and random suffix) and gains a short hash of the
    full run name, so two long run names sharing a prefix stay apart.

    Args:
        run_name: The training run's name (``train.storage_path/<run_name>`` holds its checkpoints).

    Returns:
        A name KubeRay accepts, stable for a given run name.
    """
    if not run_name.strip():
        raise ConfigError("the run name is empty; a RayJob needs a name")
    cleaned = re.sub(r"[^a-z0-9]+", "-", run_name.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        # DNS-1035 labels must start with a letter
        cleaned = f"rsvl-{cleaned}".strip("-")
    if len(cleaned) <= MAX_NAME_LENGTH:
        return cleaned
    # 5 hex digits keep long names with a common prefix apart at little cost to the 47-char budget
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:5]
    # keep the end: new_run_name puts the time stamp and random suffix there
    tail = cleaned[-22:].strip("-")
    head = cleaned[: MAX_NAME_LENGTH - len(tail) - len(digest) - 2].strip("-")
    return f"{head}-{digest}-{tail}"


def require_pinned_image(image: str) -> str:
    """Refuse an image that could change under a run: no tag, ``:latest``, or a malformed digest.

    Args:
        image: A container image reference.

    Returns:
        The reference, unchanged.

    Raises:
        ConfigError: The reference is empty, untagged, tagged ``latest`` or has a bad digest.
    """
    if not image or image != image.strip() or any(c.isspace() for c in image):
        raise ConfigError(f"container image {image!r} is empty or contains whitespace")
    if "@" in image:
        if not _DIGEST_IMAGE.search(image):
            raise ConfigError(f"container image {image!r}: a digest must be '@sha256:' and 64 hex digits")
        return image
    # only the last segment, since a registry host may carry a port (host:5000/repo)
    last_segment = image.rsplit("/", 1)[-1]
    repo, sep, tag = last_segment.partition(":")
    if not sep or not repo:
        raise ConfigError(
            f"container image {image!r} has no tag: pin it with a version tag or '@sha256:<digest>' "
            "so the run can be reproduced"
        )
    if tag == "latest":
        raise ConfigError(f"container image {image!r} uses ':latest', which moves; pin a version tag or a digest")
    if not _TAG.match(tag):
        raise ConfigError(f"container image {image!r}: tag {tag!r} is not a valid image tag")
    return image


def resolve_image(kuberay: KubeRayConfig) -> str:
    """Return ``kuberay.image`` when set, else the project's CUDA image (it also runs CPU-only workers).

    Args:
        kuberay: The KubeRay settings.

    Returns:
        A pinned image reference.

    Raises:
        ConfigError: The image is not pinned.
    """
    if kuberay.image is not None:
        return require_pinned_image(kuberay.image)
    from rsvl.images import image_ref

    return require_pinned_image(image_ref("cuda"))


def under_mount(path: str, mounts: str | Sequence[str], what: str) -> str:
    """Check that ``path`` is an absolute path inside one of the mounted volumes; return it normalised.

    Args:
        path: The path the pods will use.
        mounts: Where the volume(s) that may hold it are mounted in every pod.
        what: What the path holds, for the error message.

    Raises:
        ConfigError: The path is relative, a URI, or outside every mount.
    """
    mounts = [mounts] if isinstance(mounts, str) else list(mounts)
    # normalise so a path such as <mount>/../etc cannot pass as being under the mount
    normal = posixpath.normpath(path) if path.startswith("/") else ""
    if not normal or not any(normal == m or normal.startswith(m + "/") for m in mounts):
        where = " or ".join(repr(m) for m in mounts)
        raise ConfigError(
            f"{what} {path!r} is not on the shared volume ({where}): every Ray pod must reach it and it must "
            "outlive the cluster; use an absolute path under it"
        )
    return normal


def _require_durable_tracking(tracking_uri: str, mount: str) -> None:
    """A tracking store inside a pod would vanish with the cluster: servers pass, files must be shared."""
    if tracking_uri.startswith("sqlite:///"):
        path = tracking_uri[len("sqlite:///") :]
    elif tracking_uri.startswith("file:"):
        path = urlparse(tracking_uri).path
    # a tracking server (http://, https://, databricks://) lives outside the cluster
    elif "://" in tracking_uri:
        return
    else:
        path = tracking_uri
    under_mount(path, mount, f"the MLflow store of mlflow.tracking_uri {tracking_uri!r}")


def _label_value(value: str, fallback: str) -> str:
    # Kubernetes label values are at most 63 characters; anything else falls back to the RayJob name
    return value if len(value) <= 63 and _LABEL_VALUE.match(value) else fallback


def entrypoint(
    cfg: RunConfig, *, run_name: str, config_path: str, dataset: str, out_dir: str, overrides: Sequence[str] = ()
) -> str:
    """The shell command the RayJob runs on the head pod (every value shell-quoted).

    Args:
        cfg: The resolved run config (its ``profile`` is passed on).
        run_name: The run's name (resumes from its checkpoints when they exist).
        config_path: The config file's path inside the image.
        dataset: The dataset directory on the shared volume.
        out_dir: The output folder on the shared volume.
        overrides: The ``--set`` overrides ``cfg`` was loaded with.

    Returns:
        One command line.
    """
    argv = ["rsvl", "train", "--config", config_path, "--profile", cfg.profile, "--track", cfg.track,
            "--run-name", run_name]
    argv += ["--data", dataset, "--out", out_dir]
    # in-cluster overrides come last, so they win over any --set the user gave
    for override in (*overrides, *IN_CLUSTER_OVERRIDES):
        argv += ["--set", override]
    return shlex.join(argv)


class _Serializer(k8s.ApiClient):
    """The client's model-to-JSON conversion (camelCase keys, unset fields left out), nothing else."""

    def __init__(self) -> None:
        # ApiClient.__init__ only builds a REST client (a urllib3 pool) that serialising never uses.
        pass


_SERIALIZER = _Serializer()


def to_json(model: Any) -> Any:
    """Turn a ``kubernetes.client`` model into the JSON-ready dict the API expects.

    Keys are camelCase, unset fields are omitted, and each call builds new dicts (no YAML aliases).

    Args:
        model: A model such as ``V1PodTemplateSpec``, or a list or dict of them.

    Returns:
        Dicts, lists and scalars only.
    """
    return _SERIALIZER.sanitize_for_serialization(model)


def _env(cfg: RunConfig, kuberay: KubeRayConfig) -> list[k8s.V1EnvVar]:
    env = [
        k8s.V1EnvVar(name="HF_HUB_OFFLINE", value="1"),
        k8s.V1EnvVar(name="TRANSFORMERS_OFFLINE", value="1"),
        k8s.V1EnvVar(name="MLFLOW_TRACKING_URI", value=cfg.mlflow.tracking_uri),
    ]
    if kuberay.hf_home:
        env.append(k8s.V1EnvVar(name="HF_HOME", value=kuberay.hf_home))
    s3 = kuberay.mlflow_s3
    if s3 is not None:
        if s3.endpoint_url:
            env.append(k8s.V1EnvVar(name="MLFLOW_S3_ENDPOINT_URL", value=s3.endpoint_url))
        keys = (("AWS_ACCESS_KEY_ID", s3.access_key_id_key), ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key_key))
        for name, key in keys:
            secret = k8s.V1SecretKeySelector(name=s3.secret_name, key=key)
            env.append(k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=secret)))
    clashes = sorted({item.name for item in env} & set(kuberay.env))
    if clashes:
        raise ConfigError(f"train.kuberay.env may not redefine {clashes}: the builder sets them")
    env += [k8s.V1EnvVar(name=name, value=value) for name, value in sorted(kuberay.env.items())]
    return env


def _pod_security(kuberay: KubeRayConfig) -> k8s.V1PodSecurityContext:
    return k8s.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=kuberay.run_as_user,
        run_as_group=kuberay.run_as_group,
        fs_group=kuberay.fs_group,
        # skip the recursive chown of the whole shared volume on every pod start
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
    )


def _container_security() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(
        run_as_non_root=True, allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"])
    )


def _fixed_resources(amounts: dict[str, str]) -> k8s.V1ResourceRequirements:
    """Requests equal to limits (Guaranteed QoS), so Ray's resource counts match what the pod gets."""
    return k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def _template(component: str, labels: dict[str, str], spec: k8s.V1PodSpec) -> k8s.V1PodTemplateSpec:
    metadata = k8s.V1ObjectMeta(labels={**labels, "app.kubernetes.io/component": component})
    return k8s.V1PodTemplateSpec(metadata=metadata, spec=spec)


def _ray_pod(
    kuberay: KubeRayConfig,
    *,
    image: str,
    component: str,
    resources: k8s.V1ResourceRequirements,
    shm_size: str,
    env: list[k8s.V1EnvVar],
    labels: dict[str, str],
    ports: list[k8s.V1ContainerPort] | None = None,
    gpu_placement: bool = False,
) -> k8s.V1PodTemplateSpec:
    """A head or worker pod template: shared volume, optional read-only data volume, RAM-backed /dev/shm."""
    mounts = [k8s.V1VolumeMount(name=_SHARED_VOLUME, mount_path=kuberay.shared_mount_path)]
    volumes = [
        k8s.V1Volume(
            name=_SHARED_VOLUME,
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name=kuberay.shared_volume_claim),
        )
    ]
    if kuberay.data_volume_claim:
        mounts.append(k8s.V1VolumeMount(name=_DATA_VOLUME, mount_path=kuberay.data_mount_path, read_only=True))
        claim = k8s.V1PersistentVolumeClaimVolumeSource(claim_name=kuberay.data_volume_claim, read_only=True)
        volumes.append(k8s.V1Volume(name=_DATA_VOLUME, persistent_volume_claim=claim))
    # a container's default /dev/shm is 64 MiB, too small for Ray's object store and DataLoader workers
    mounts.append(k8s.V1VolumeMount(name=_SHM_VOLUME, mount_path="/dev/shm"))
    volumes.append(
        k8s.V1Volume(name=_SHM_VOLUME, empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=shm_size))
    )
    container = k8s.V1Container(
        name=component,
        image=image,
        image_pull_policy=kuberay.image_pull_policy,
        env=env,
        resources=resources,
        security_context=_container_security(),
        volume_mounts=mounts,
        ports=ports or None,
    )
    spec = k8s.V1PodSpec(
        automount_service_account_token=False,
        security_context=_pod_security(kuberay),
        containers=[container],
        volumes=volumes,
        service_account_name=kuberay.ray_service_account or None,
        node_selector=dict(kuberay.gpu_node_selector) if gpu_placement and kuberay.gpu_node_selector else None,
        tolerations=_tolerations(kuberay) if gpu_placement and kuberay.gpu_tolerations else None,
    )
    return _template(component, labels, spec)


def _submitter_pod(kuberay: KubeRayConfig, *, image: str, labels: dict[str, str]) -> k8s.V1PodTemplateSpec:
    """The small pod KubeRay runs ``ray job submit`` in (K8sJobMode); it needs no volume or secret."""
    container = k8s.V1Container(
        name="ray-job-submitter",
        image=image,
        image_pull_policy=kuberay.image_pull_policy,
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": "200m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        ),
        security_context=_container_security(),
    )
    spec = k8s.V1PodSpec(
        restart_policy="Never",
        automount_service_account_token=False,
        security_context=_pod_security(kuberay),
        containers=[container],
        service_account_name=kuberay.ray_service_account or None,
    )
    return _template("ray-job-submitter", labels, spec)


def _tolerations(kuberay: KubeRayConfig) -> list[k8s.V1Toleration]:
    return [
        k8s.V1Toleration(
            key=item.key,
            operator=item.operator,
            value=item.value,
            effect=item.effect,
            toleration_seconds=item.toleration_seconds,
        )
        for item in kuberay.gpu_tolerations
    ]


def build_rayjob(
    cfg: RunConfig,
    kuberay: KubeRayConfig,
    *,
    run_name: str,
    config_path: str,
    dataset: str,
    out_dir: str,
    image: str,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Build the RayJob manifest that trains ``cfg`` on a KubeRay cluster of its own.

    Args:
        cfg: The resolved run config (``train`` sizes the cluster).
        kuberay: Namespace, image, volume, credentials and time limits.
        run_name: The run's name; checkpoints go to ``train.storage_path/<fit>`` per fit.
        config_path: The config file's path inside the image.
        dataset: The dataset directory, on the shared volume.
        out_dir: The output folder, on the shared volume.
        image: The container image (see :func:`resolve_image`); must be pinned.
        overrides: The ``--set`` overrides ``cfg`` was loaded with (repeated in the entrypoint).

    Returns:
        The manifest as a JSON-ready dict; its ``rsvl/*`` annotations say where results land.

    Raises:
        ConfigError: The image is not pinned, a path is off the shared volume, the MLflow store
            would die with the cluster, or there is no Ray Train worker.
    """

    train = cfg.train
    mount = kuberay.shared_mount_path
    require_pinned_image(image)
    if train.num_workers < 1:
        raise ConfigError(
            f"train.num_workers is {train.num_workers}: the kuberay backend needs at least one Ray Train worker "
            "(0 is local mode, for the local backend)"
        )
    storage = under_mount(train.storage_path, mount, "train.storage_path (Ray Train checkpoints)")
    readable = [mount] + ([kuberay.data_mount_path] if kuberay.data_volume_claim else [])
    dataset = under_mount(dataset, readable, "the dataset")
    out_dir = under_mount(out_dir, mount, "the output folder")
    _require_durable_tracking(cfg.mlflow.tracking_uri, mount)

    name = rayjob_name(run_name)
    labels = {
        "app.kubernetes.io/name": "rsvl-train",
        "app.kubernetes.io/part-of": "rsvl",
        "app.kubernetes.io/managed-by": "rsvl",
        "rsvl/paper": _label_value(cfg.paper, name),
        "rsvl/run-name": _label_value(run_name, name),
    }
    annotations = {
        f"{ANNOTATION_PREFIX}run-name": run_name,
        f"{ANNOTATION_PREFIX}checkpoint-dirs": ",".join(
            posixpath.join(storage, fit_name) for fit_name in fit_run_names(cfg, run_name)
        ),
        f"{ANNOTATION_PREFIX}out-dir": out_dir,
        f"{ANNOTATION_PREFIX}config-digest": cfg.digest(),
    }
    env = _env(cfg, kuberay)
    # extra_cpus: room for Ray's own processes beside the training worker
    worker_resources = {"cpu": str(train.cpus_per_worker + kuberay.worker.extra_cpus), "memory": kuberay.worker.memory}
    if train.use_gpu:
        worker_resources["nvidia.com/gpu"] = "1"
    head = _ray_pod(
        kuberay,
        image=image,
        component="ray-head",
        resources=_fixed_resources({"cpu": kuberay.head.cpu, "memory": kuberay.head.memory}),
        shm_size=kuberay.head.shm_size,
        env=env,
        labels=labels,
        ports=[
            k8s.V1ContainerPort(name="gcs-server", container_port=6379),
            k8s.V1ContainerPort(name="dashboard", container_port=8265),
            k8s.V1ContainerPort(name="client", container_port=10001),
        ],
    )
    worker = _ray_pod(
        kuberay,
        image=image,
        component="ray-worker",
        resources=_fixed_resources(worker_resources),
        shm_size=kuberay.worker.shm_size,
        env=env,
        labels=labels,
        gpu_placement=train.use_gpu,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": kuberay.namespace,
            "labels": {**labels, "app.kubernetes.io/component": "training"},
            "annotations": annotations,
        },
        "spec": {
            "entrypoint": entrypoint(
                cfg, run_name=run_name, config_path=config_path, dataset=dataset, out_dir=out_dir, overrides=overrides
            ),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": kuberay.shutdown_after_job_finishes,
            "ttlSecondsAfterFinished": kuberay.ttl_seconds_after_finished,
            "activeDeadlineSeconds": kuberay.active_deadline_seconds,
            "backoffLimit": kuberay.backoff_limit,
            "rayClusterSpec": {
                "rayVersion": metadata.version("ray"),
                # fixed size: min = max = num_workers replicas
                "enableInTreeAutoscaling": False,
                # num-cpus 0: no training task is scheduled on the head, which only runs the driver
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"}, "template": to_json(head)},
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu" if train.use_gpu else "cpu",
                        "replicas": train.num_workers,
                        "minReplicas": train.num_workers,
                        "maxReplicas": train.num_workers,
                        "rayStartParams": {},
                        "template": to_json(worker),
                    }
                ],
            },
            "submitterPodTemplate": to_json(_submitter_pod(kuberay, image=image, labels=labels)),
        },
    }
