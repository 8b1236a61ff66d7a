"""The shared DAG: ``configure → ingest → caption → filter → train → evaluate → register → gate → (If) promote``.

Every paper's pipeline is this DAG over the shared components, with the paper's config for one
profile compiled in as the default of the ``config_json`` parameter. The run parameters the
Kubeflow UI shows are the data version, epochs, learning rate, train backend and free
``dotted.key=value`` overrides; ``configure`` applies them and validates the result before any
work starts. ``register``, ``gate`` and ``promote`` never come from the cache: they read and move
registry state. With a ``local`` train backend and ``train.use_gpu`` the train task requests
``train.num_workers`` GPUs (at least one); a ``kuberay`` train task only submits a RayJob, which
carries the GPU requests itself. In the cluster profile every step's pod mounts the shared volume
(``rsvl-shared``: checkpoints, the RayJob hand-over, the eval cache) and the data volume
(``rsvl-data``); pipelines are submitted to run as the ``rsvl-pipeline-runner`` service account,
which may create RayJobs.
"""


from pathlib import Path
from typing import Any, Callable

from kfp import dsl, kubernetes

from components.caption.component import caption
from components.configure.component import configure
from components.evaluate.component import evaluate
from components.filter.component import filter_rows
from components.gate.component import gate, promote
from components.ingest.component import ingest
from components.register.component import register
from components.train.component import train
from rsvl.config import RunConfig, load_config

PIPELINES_DIR = Path(__file__).resolve().parent
GPU = "nvidia.com/gpu"


def config_path(paper: str) -> Path:
    """``pipelines/<paper>/config.yaml``."""
    return PIPELINES_DIR / paper / "config.yaml"


def paper_config(paper: str, profile: str, overrides: "list[str] | tuple[str, ...]" = ()) -> RunConfig:
    """The paper's resolved config for ``profile`` (what the compiled pipeline carries)."""
    return load_config(config_path(paper), profile, overrides)


def _cluster_volumes(tasks: list, cfg: RunConfig) -> None:
    """Mount the shared (checkpoints, RayJob hand-over, eval cache) and data volumes into every step's pod."""
    kuberay = cfg.train.kuberay
    for task in tasks:
        kubernetes.mount_pvc(task, pvc_name=kuberay.shared_volume_claim, mount_path=kuberay.shared_mount_path)
        kubernetes.mount_pvc(task, pvc_name=kuberay.data_volume_claim, mount_path=kuberay.data_mount_path)


def _train_resources(task: Any, cfg: RunConfig) -> None:
    if cfg.train.backend == "local" and cfg.train.use_gpu:
        task.set_accelerator_type(GPU).set_accelerator_limit(max(cfg.train.num_workers, 1))
    if cfg.profile == "cluster":
        task.set_cpu_limit(str(max(cfg.train.cpus_per_worker, 1))).set_memory_limit("32G")


def build_pipeline(cfg: RunConfig) -> Callable[..., Any]:
    """Build the KFP pipeline of ``cfg.paper`` with ``cfg`` compiled in.

    Args:
        cfg: The paper's resolved config for the profile the pipeline targets.

    Returns:
        The ``@dsl.pipeline`` function (call it under ``kfp.local`` or compile it).
    """

    @dsl.pipeline(name=f"rsvl-{cfg.paper.replace('_', '-')}",
                  description=f"{cfg.paper} ({cfg.profile} profile): ingest, caption, filter, train, evaluate, "
                              "register and gate the paper's model")
    def pipeline(
        config_json: str = cfg.model_dump_json(),
        data_version: str = "",
        epochs: int = 0,
        lr: float = 0.0,
        backend: str = "",
        overrides: list = [],
    ) -> None:
        configured = configure(config_json=config_json, epochs=epochs, lr=lr, backend=backend, overrides=overrides)
        configured.set_display_name("configure")
        run_config = configured.output
        ingested = ingest(config_json=run_config, data_version=data_version)
        captioned = caption(config_json=run_config, dataset=ingested.outputs["dataset"])
        filtered = filter_rows(config_json=run_config, dataset=captioned.outputs["captioned"])
        filtered.set_display_name("filter")
        trained = train(config_json=run_config, dataset=filtered.outputs["filtered"])
        _train_resources(trained, cfg)
        evaluated = evaluate(config_json=run_config, model=trained.outputs["model"],
                             mlflow_run_id=trained.outputs["Output"])
        registered = register(config_json=run_config, model=trained.outputs["model"],
                              dataset=filtered.outputs["filtered"], mlflow_run_id=trained.outputs["Output"],
                              pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        registered.after(evaluated)
        registered.set_caching_options(False)
        decided = gate(config_json=run_config, version=registered.output)
        decided.set_caching_options(False)
        with dsl.If(decided.outputs["Output"] == True, name="candidate-passed"):  # noqa: E712 - a KFP condition
            promoted = promote(config_json=run_config, version=registered.output)
            promoted.set_caching_options(False)
        if cfg.profile == "cluster":
            _cluster_volumes([ingested, captioned, filtered, trained, evaluated, registered, decided, promoted], cfg)

    return pipeline
