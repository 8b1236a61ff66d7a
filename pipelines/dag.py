"""The shared DAG of every paper, with the paper's tracks and optional steps as its config says.

``configure → ingest → caption → filter``, then for each track (``main``, and any under the
config's ``tracks``, e.g. SAR-TEXT's captioner) ``train → [vqa] → evaluate → register → gate →
(If) promote`` on the same filtered data. ``train`` runs the track's progressive stages and
ablations when ``train.stages`` lists them; ``vqa`` joins when the track has a ``vqa`` section.
Every paper's pipeline is this DAG over the shared components, with the paper's resolved configs
for one profile compiled in as the default of the ``config_json`` parameter (``{track: config}``).
The run parameters the Kubeflow UI shows are the data version, the main track's epochs and
learning rate, the train backend and free ``dotted.key=value`` overrides (``<track>:key=value``
for one track); each track's ``configure`` applies them and validates the result, and ``ingest``
waits for every track's ``configure``, so a bad override for any track fails before any work
starts. Which steps exist (the tracks, ``vqa``) is decided here, when the pipeline is compiled,
from the compiled-in configs: a run-time override cannot add or remove a step. ``register``,
``gate`` and ``promote`` never come from the cache: they read and move registry state. A track with a
``search`` section adds ``index`` after ``promote``: the new champion indexes the archive into a new
index version (:mod:`rsvl.steps.search_index`). With a
``local`` train backend and ``train.use_gpu`` a train task requests ``train.num_workers`` GPUs
(at least one); a ``kuberay`` train task only submits a RayJob, which carries the GPU requests
itself. In the cluster profile every step's pod mounts the shared volume (``rsvl-shared``:
checkpoints, the RayJob hand-over, the eval cache) and the data volume (``rsvl-data``) its
track's ``train.kuberay`` names (the data steps: the main track's); pipelines are submitted to
run as the ``rsvl-pipeline-runner`` service account, which may create RayJobs.
"""


from pathlib import Path
from typing import Any, Callable

from kfp import dsl, kubernetes

from components.caption.component import caption
from components.configure.component import configure
from components.evaluate.component import evaluate
from components.filter.component import filter_rows
from components.gate.component import gate, promote
from components.index.component import index
from components.ingest.component import ingest
from components.register.component import register
from components.train.component import train
from components.vqa.component import vqa
from pipelines import PIPELINES_DIR, require_paper
from rsvl.config import MAIN_TRACK, RunConfig, load_config, load_tracks, tracks_json

GPU = "nvidia.com/gpu"


def config_path(paper: str) -> Path:
    """``pipelines/<paper>/config.yaml``.

    Raises:
        UnknownPaper: No pipeline of that name (the message lists the known ones).
    """
    return PIPELINES_DIR / require_paper(paper) / "config.yaml"


def paper_config(paper: str, profile: str, overrides: "list[str] | tuple[str, ...]" = ()) -> RunConfig:
    """The paper's resolved config for ``profile`` (what the compiled pipeline carries)."""
    return load_config(config_path(paper), profile, overrides)


def paper_tracks(paper: str, profile: str, overrides: "list[str] | tuple[str, ...]" = ()) -> dict[str, RunConfig]:
    """Every track's resolved config for ``profile`` (``main`` first), as the compiled pipeline carries them."""
    return load_tracks(config_path(paper), profile, overrides)


def _cluster_volumes(tasks: list, cfg: RunConfig) -> None:
    """Mount ``cfg``'s shared (checkpoints, RayJob hand-over, eval cache) and data volumes into the tasks' pods.

    Each track's steps get their own track's claims: a track may name other volumes than the main track.
    Without ``data_volume_claim`` only the shared volume is mounted.
    """
    kuberay = cfg.train.kuberay
    for task in tasks:
        kubernetes.mount_pvc(task, pvc_name=kuberay.shared_volume_claim, mount_path=kuberay.shared_mount_path)
        if kuberay.data_volume_claim:
            kubernetes.mount_pvc(task, pvc_name=kuberay.data_volume_claim, mount_path=kuberay.data_mount_path)


def _train_resources(task: Any, cfg: RunConfig) -> None:
    if cfg.train.backend == "local" and cfg.train.use_gpu:
        task.set_accelerator_type(GPU).set_accelerator_limit(max(cfg.train.num_workers, 1))
    if cfg.profile == "cluster":
        task.set_cpu_limit(str(max(cfg.train.cpus_per_worker, 1))).set_memory_limit("32G")


def _label(step: str, track: str) -> str:
    return step if track == MAIN_TRACK else f"{step}-{track}"


def _track_steps(cfg: RunConfig, run_config: Any, filtered: Any) -> list:
    """``train → [vqa] → evaluate → register → gate → (If) promote → [index]`` of one track; returns its tasks."""
    track = cfg.track
    trained = train(config_json=run_config, dataset=filtered.outputs["filtered"])
    trained.set_display_name(_label("train", track))
    _train_resources(trained, cfg)
    tasks = [trained]
    evaluated = evaluate(config_json=run_config, model=trained.outputs["model"], mlflow_run_id=trained.outputs["Output"])
    evaluated.set_display_name(_label("evaluate", track))
    registered = register(config_json=run_config, model=trained.outputs["model"], dataset=filtered.outputs["filtered"],
                          mlflow_run_id=trained.outputs["Output"], pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    registered.set_display_name(_label("register", track))
    registered.after(evaluated)
    registered.set_caching_options(False)
    if cfg.vqa is not None:
        answered = vqa(config_json=run_config, model=trained.outputs["model"], dataset=filtered.outputs["filtered"],
                       mlflow_run_id=trained.outputs["Output"])
        answered.set_display_name(_label("vqa", track))
        evaluated.after(answered)
        tasks.append(answered)
    decided = gate(config_json=run_config, version=registered.output)
    decided.set_display_name(_label("gate", track))
    decided.set_caching_options(False)
    with dsl.If(decided.outputs["Output"] == True, name=_label("candidate-passed", track)):  # noqa: E712 - a KFP condition
        promoted = promote(config_json=run_config, version=registered.output)
        promoted.set_display_name(_label("promote", track))
        promoted.set_caching_options(False)
        after_promotion = [promoted]
        if cfg.search is not None:  # the champion changed: a new index version built with it
            indexed = index(config_json=run_config, version=promoted.output)
            indexed.set_display_name(_label("index", track))
            indexed.set_caching_options(False)
            after_promotion.append(indexed)
    return [*tasks, evaluated, registered, decided, *after_promotion]


def build_pipeline(tracks: dict[str, RunConfig]) -> Callable[..., Any]:
    """Build the KFP pipeline of a paper with its tracks' configs compiled in.

    Args:
        tracks: The paper's resolved config of each track for the profile the pipeline targets
            (:func:`paper_tracks`; ``main`` first).

    Returns:
        The ``@dsl.pipeline`` function (call it under ``kfp.local`` or compile it).
    """
    main = tracks[MAIN_TRACK]
    models = ", ".join(cfg.registry.model_name for cfg in tracks.values())

    @dsl.pipeline(name=f"rsvl-{main.paper.replace('_', '-')}",
                  description=f"{main.paper} ({main.profile} profile): ingest, caption, filter, then train, evaluate, "
                              f"register and gate {models}")
    def pipeline(
        config_json: str = tracks_json(tracks),
        data_version: str = "",
        epochs: int = 0,
        lr: float = 0.0,
        backend: str = "",
        overrides: list = [],
    ) -> None:
        configs = {}
        for name in tracks:
            configured = configure(config_json=config_json, track=name, epochs=epochs, lr=lr, backend=backend,
                                   overrides=overrides)
            configured.set_display_name(_label("configure", name))
            configs[name] = configured
        run_config = configs[MAIN_TRACK].output
        ingested = ingest(config_json=run_config, data_version=data_version)
        for configured in configs.values():
            ingested.after(configured)  # every track's overrides are checked before any work starts
        captioned = caption(config_json=run_config, dataset=ingested.outputs["dataset"])
        filtered = filter_rows(config_json=run_config, dataset=captioned.outputs["captioned"])
        filtered.set_display_name("filter")
        steps = {MAIN_TRACK: [ingested, captioned, filtered]}
        for name, cfg in tracks.items():
            steps[name] = steps.get(name, []) + _track_steps(cfg, configs[name].output, filtered)
        if main.profile == "cluster":
            for name, tasks in steps.items():
                _cluster_volumes(tasks, tracks[name])

    return pipeline
