"""Run a RayJob on Kubernetes to the end: create it, follow its status, clean up when it fails.

On success the RayJob is left to KubeRay, which deletes the Ray cluster when the job finishes
(``shutdownAfterJobFinishes``) and the RayJob itself ``ttlSecondsAfterFinished`` later, so its
status stays readable for a while. On failure, on timeout and on Ctrl-C the RayJob is deleted at
once: a failed or abandoned cluster would otherwise hold GPUs. Checkpoints are on the shared
volume, so re-running with the same run name resumes either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsvl.config.cluster import KubeRayConfig
from rsvl.cluster.rayjob import ANNOTATION_PREFIX
from rsvl.errors import ConfigError, TrainError

GROUP = "ray.io"
VERSION = "v1"
PLURAL = "rayjobs"
JOB_DONE = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
DEPLOYMENT_DONE = frozenset({"Complete", "Failed"})
MAX_POLL_ERRORS = 3


class RayJobError(TrainError):
    """A RayJob could not be created, failed, was stopped or ran past its deadline."""


@dataclass(frozen=True)
class RayJobOutcome:
    """How a RayJob ended and where its results are.

    Attributes:
        name: The RayJob's name.
        namespace: Its namespace.
        job_status: Ray's job status (``SUCCEEDED``, ...).
        deployment_status: KubeRay's deployment status (``Complete``, ``Running``, ...).
        message: KubeRay's status message, if any.
        run_name: The training run's name (resume key).
        checkpoint_dirs: ``train.storage_path/<fit>`` on the shared volume, one per fit of the run.
        out_dir: The run's output folder on the shared volume (model, metrics).
        seconds: Time from creation to the end.
        ray_cluster_name: The Ray cluster KubeRay made for the job, if it reported one.
        dashboard_url: The Ray dashboard address, if it reported one.
    """

    name: str
    namespace: str
    job_status: str
    deployment_status: str
    message: str
    run_name: str
    checkpoint_dirs: tuple[str, ...]
    out_dir: str
    seconds: float
    ray_cluster_name: str | None = None
    dashboard_url: str | None = None


def default_api_client() -> Any:
    """A Kubernetes API client from the pod's service account, else from the local kubeconfig.

    Raises:
        ConfigError: Neither is available.
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as err:
            raise ConfigError(
                "no Kubernetes credentials: not running in a pod with a service account, "
                f"and no usable kubeconfig ({err})"
            ) from err
    return client.ApiClient()


def _reason(err: Any) -> str:
    try:
        detail = json.loads(err.body).get("message")
    except (TypeError, ValueError, AttributeError):
        detail = None
    return f"HTTP {err.status} {err.reason}" + (f": {detail}" if detail else "")


def _describe(status: dict[str, Any]) -> str:
    deployment = status.get("jobDeploymentStatus") or "-"
    job = status.get("jobStatus") or "-"
    text = f"deployment {deployment}, job {job}"
    detail = status.get("message") or status.get("reason")
    return f"{text} ({detail})" if detail else text


def _delete(api: Any, name: str, namespace: str, on_status: Callable[[str], Any]) -> None:
    from kubernetes.client.rest import ApiException

    try:
        api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background")
    except ApiException as err:
        if err.status != 404:
            on_status(f"RayJob {namespace}/{name}: could not delete it ({_reason(err)}); delete it by hand")
            return
    on_status(f"RayJob {namespace}/{name} deleted")


def _follow(
    api: Any, name: str, namespace: str, *, deadline: float, poll: float, on_status: Callable[[str], Any]
) -> dict[str, Any]:
    """Poll until the job is done; return its last status. Raise on deadline, loss, or API failure."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    seen: tuple[str, str, str] | None = None
    status: dict[str, Any] = {}
    errors = 0
    while True:
        try:
            status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name).get("status") or {}
            errors = 0
        except ApiException as err:
            if err.status == 404:
                raise RayJobError(f"RayJob {namespace}/{name} disappeared while running (deleted by someone else?)")
            errors += 1
            if errors >= MAX_POLL_ERRORS:
                raise RayJobError(
                    f"RayJob {namespace}/{name}: reading its status failed {errors} times: {_reason(err)}"
                ) from err
        except HTTPError as err:
            errors += 1
            if errors >= MAX_POLL_ERRORS:
                raise RayJobError(f"RayJob {namespace}/{name}: the API server is unreachable ({err})") from err
        state = (status.get("jobDeploymentStatus", ""), status.get("jobStatus", ""), status.get("message", ""))
        if state != seen:
            seen = state
            on_status(f"RayJob {namespace}/{name}: {_describe(status)}")
        if state[1] in JOB_DONE or state[0] in DEPLOYMENT_DONE:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(_describe(status))
        time.sleep(min(poll, remaining))


def submit_rayjob(
    manifest: dict[str, Any],
    kuberay: KubeRayConfig,
    *,
    api_client: Any = None,
    timeout: float | None = None,
    on_status: Callable[[str], Any] = print,
) -> RayJobOutcome:
    """Create a RayJob, stream its status changes, and return once it has succeeded.

    Creation uses strict field validation, so the API server refuses a field it does not know
    instead of silently dropping it.

    Args:
        manifest: From :func:`rsvl.cluster.rayjob.build_rayjob`.
        kuberay: Namespace (when the manifest has none) and polling interval.
        api_client: A ``kubernetes.client.ApiClient``; default: :func:`default_api_client`.
        timeout: Seconds to wait before giving up; default ``active_deadline_seconds`` plus
            ``timeout_grace_seconds`` (KubeRay enforces the deadline itself; this is a backstop).
        on_status: Called with one line per status change.

    Returns:
        The outcome of a job whose status is ``SUCCEEDED``.

    Raises:
        RayJobError: The RayJob could not be created, failed, was stopped, vanished or timed out;
            the message names the job, the cause and where the checkpoints are. Except on
            creation errors, the RayJob has been deleted.
        KeyboardInterrupt: After deleting the RayJob.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    meta = manifest["metadata"]
    name = meta["name"]
    namespace = meta.get("namespace") or kuberay.namespace
    annotations = meta.get("annotations") or {}
    run_name = annotations.get(f"{ANNOTATION_PREFIX}run-name", name)
    checkpoint_dirs = tuple(filter(None, annotations.get(f"{ANNOTATION_PREFIX}checkpoint-dirs", "").split(",")))
    out_dir = annotations.get(f"{ANNOTATION_PREFIX}out-dir", "")
    limit = timeout if timeout is not None else kuberay.active_deadline_seconds + kuberay.timeout_grace_seconds
    api = client.CustomObjectsApi(api_client if api_client is not None else default_api_client())

    started = time.monotonic()
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest, field_validation="Strict")
    except ApiException as err:
        hint = " (a RayJob of that name exists: delete it or use another run name)" if err.status == 409 else ""
        raise RayJobError(f"could not create RayJob {namespace}/{name}: {_reason(err)}{hint}") from err
    on_status(f"RayJob {namespace}/{name} created (run {run_name})")

    resume = f"checkpoints stay in {', '.join(checkpoint_dirs)}; run again with run name {run_name!r} to resume"
    try:
        status = _follow(
            api, name, namespace, deadline=started + limit, poll=kuberay.poll_seconds, on_status=on_status
        )
    except TimeoutError as err:
        _delete(api, name, namespace, on_status)
        raise RayJobError(
            f"RayJob {namespace}/{name} did not finish within {limit:.0f} s (last: {err}); deleted it; {resume}"
        ) from None
    except BaseException:
        _delete(api, name, namespace, on_status)
        raise
    if status.get("jobStatus") != "SUCCEEDED":
        _delete(api, name, namespace, on_status)
        raise RayJobError(f"RayJob {namespace}/{name} ended with {_describe(status)}; deleted it; {resume}")
    return RayJobOutcome(
        name=name,
        namespace=namespace,
        job_status=status.get("jobStatus", ""),
        deployment_status=status.get("jobDeploymentStatus", ""),
        message=status.get("message", ""),
        run_name=run_name,
        checkpoint_dirs=checkpoint_dirs,
        out_dir=out_dir,
        seconds=time.monotonic() - started,
        ray_cluster_name=status.get("rayClusterName"),
        dashboard_url=status.get("dashboardURL"),
    )
