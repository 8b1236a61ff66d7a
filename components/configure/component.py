"""``configure``: the run's config, with the UI's run parameters applied, for every later step."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def configure(config_json: str, epochs: int, lr: float, backend: str, overrides: list) -> str:
    """Apply the run parameters to the compiled-in config and validate the result.

    Args:
        config_json: The paper's config for the profile, resolved when the pipeline was compiled.
        epochs: ``train.epochs``; 0 keeps the config's value.
        lr: ``train.lr``; 0 keeps the config's value.
        backend: ``train.backend`` (``local`` or ``kuberay``); empty keeps the config's value.
        overrides: More ``dotted.key=value`` overrides, applied last.

    Returns:
        The resolved run config (JSON) the other steps read.
    """
    from rsvl.config import RunConfig, apply_overrides

    chosen = [f"train.epochs={epochs}"] if epochs else []
    chosen += [f"train.lr={lr}"] if lr else []
    chosen += [f"train.backend={backend}"] if backend else []
    return apply_overrides(RunConfig.model_validate_json(config_json), chosen + list(overrides)).model_dump_json()
