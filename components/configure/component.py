"""``configure``: one track's run config, with the UI's run parameters applied, for every later step.

The DAG runs one ``configure`` per track of the paper (``configure``, ``configure-captioner``, ...);
``ingest`` waits for every track's ``configure``, so a bad override for any track fails before any work.

Library: ``rsvl.config.configure_track``
Tests: ``components/configure/tests/test_component.py`` (the body on the compiled-in configs: run parameters,
    per-track overrides, refusals), ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def configure(config_json: str, track: str, epochs: int, lr: float, backend: str, overrides: list) -> str:
    """Apply the run parameters to the compiled-in config of ``track`` and validate the result.

    ``epochs`` and ``lr`` set the ``main`` track; ``backend`` every track; ``overrides`` every
    track, or one track with a ``<track>:`` prefix (``captioner:train.epochs=20``; a prefix naming
    no track is refused). Overrides cannot add or remove the ``vqa`` step (the DAG is fixed when
    the pipeline is compiled).

    Args:
        config_json: The paper's resolved configs for the profile, ``{track: config}``, as compiled.
        track: Which track's config to resolve (``main``, or one under the paper's ``tracks``).
        epochs: ``train.epochs`` of the ``main`` track; 0 keeps the config's value. A progressive
            stage that sets its own ``epochs`` or ``max_steps`` keeps its length: it replaces
            both ``train.epochs`` and ``train.max_steps`` (see ``rsvl.config.StageConfig``);
            override ``main:train.stages`` to change it.
        lr: ``train.lr`` of the ``main`` track; 0 keeps the config's value.
        backend: ``train.backend`` (``local`` or ``kuberay``) of every track; empty keeps the config's value.
        overrides: More ``dotted.key=value`` overrides for every track (``<track>:key=value`` for one),
            applied last.

    Returns:
        The resolved run config (JSON) the track's steps read.
    """
    from rsvl.config import MAIN_TRACK, configure_track

    chosen = [f"train.backend={backend}"] if backend else []
    chosen += [f"{MAIN_TRACK}:train.epochs={epochs}"] if epochs else []
    chosen += [f"{MAIN_TRACK}:train.lr={lr}"] if lr else []
    return configure_track(config_json, track, chosen + list(overrides)).model_dump_json()
