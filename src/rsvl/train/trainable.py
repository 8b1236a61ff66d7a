"""Which parameters train: per-tower modes, weight-decay groups, and the adapter (LoRA) hook.

Each tower (``image``, ``text``) of an open_clip model is found by parameter-name prefixes and
set to one of four modes (``train.trainable``):

* ``train``: every parameter of the tower trains;
* ``freeze``: none does, and the tower runs in eval mode (no dropout, BatchNorm statistics kept);
* ``projection``: only the projection into the shared embedding space (``visual.proj``,
  ``visual.head``, ``text_projection``, ``text.proj``);
* ``last_blocks``: the last ``last_blocks`` blocks, the norms after them and the projection.

Parameters outside both towers (``logit_scale``, a CoCa decoder) are left to the objective. A text
tower stretched by LRSCLIP's KPS (:mod:`rsvl.models.kps`) trains its stretched positional rows
whatever its mode, unless ``stretched_positions: tower``.

**Adapter hook.** ``train.trainable.adapter`` names a function registered with
:func:`register_adapter`; it runs after the tower modes, before DDP wrapping and the optimizer,
and may add trainable parameters (LoRA matrices) to the model. It must leave the model's state
dict loadable by the architecture it was built from (merge its weights in place, or register
them outside the saved modules), since checkpoints and the final model are written with
:func:`rsvl.models.save_model`. A hook that adds parameters lists their names in the model's
``rsvl_adapter_params`` attribute (:data:`ADAPTER_PARAMS`): checkpoints keep them beside the
model (:func:`adapter_state_dict`, :func:`load_adapter_state_dict`) so a resumed run continues
with them, and :func:`apply_trainable` counts them. A module with a true ``rsvl_always_train``
attribute (:data:`ALWAYS_TRAIN`, an adapter's dropout) stays in train mode inside a frozen tower.
``lora`` and ``ia3`` are registered by :mod:`rsvl.train.peft_tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from rsvl.config import TrainableConfig
from rsvl.errors import ConfigError, ModelError
from rsvl.models.kps import stretched_rows

BLOCK_LISTS = ("transformer.resblocks", "transformer.encoder.layer", "trunk.blocks", "trunk.stages", "trunk.layers")
HEAD_NAMES = ("ln_post", "ln_final", "attn_pool", "trunk.conv_head", "trunk.bn2", "trunk.norm", "trunk.head")
PROJECTION_NAMES = ("proj", "head", "text_projection")
# parametrizations.positional_embedding: a KPS-stretched table (rsvl.models.kps) keeps its trained rows there
BUILTIN_TEXT = ("token_embedding", "positional_embedding", "parametrizations.positional_embedding", "transformer",
                "ln_final", "text_projection")
# ia3_l: IA3's scaling vectors start at 1, and decay would pull them towards 0 (switching layers off)
NO_DECAY_MARKERS = ("bn", "ln", "bias", "logit_scale", "norm", "ia3_l")
ADAPTER_PARAMS = "rsvl_adapter_params"
"""Model attribute: the names of the parameters an adapter hook added (a tuple of str)."""
ALWAYS_TRAIN = "rsvl_always_train"
"""Module attribute: when true, :func:`set_train_mode` keeps the module in train mode even in a frozen tower."""

Adapter = Callable[[nn.Module, TrainableConfig], None]
_ADAPTERS: dict[str, Adapter] = {}


@dataclass(frozen=True)
class Tower:
    """Dotted names (modules or parameters) that make up one tower.

    Attributes:
        name: ``image`` or ``text``.
        roots: Everything in the tower.
        blocks: Each repeated block, in order.
        head: Norms and heads after the last block.
        projection: The projection into the shared space.
    """

    name: str
    roots: tuple[str, ...]
    blocks: tuple[str, ...]
    head: tuple[str, ...]
    projection: tuple[str, ...]


def _exists(model: nn.Module, dotted: str) -> bool:
    parent, _, attr = dotted.rpartition(".")
    try:
        owner = model.get_submodule(parent) if parent else model
    except AttributeError:
        return False
    return attr in owner._modules or attr in owner._parameters


def _tower(model: nn.Module, name: str, base: str, roots: tuple[str, ...]) -> Tower:
    prefix = f"{base}." if base else ""
    blocks: tuple[str, ...] = ()
    for path in BLOCK_LISTS:
        if _exists(model, prefix + path):
            count = len(model.get_submodule(prefix + path))
            blocks = tuple(f"{prefix}{path}.{i}" for i in range(count))
            break
    head = tuple(prefix + h for h in HEAD_NAMES if _exists(model, prefix + h))
    projection = tuple(prefix + p for p in PROJECTION_NAMES if _exists(model, prefix + p))
    return Tower(name, roots, blocks, head, projection)


def towers(model: nn.Module) -> dict[str, Tower]:
    """Find the image and text towers of an open_clip CLIP, CustomTextCLIP or CoCa model.

    A sensor model (:class:`rsvl.models.multisensor.SensorCLIP`) has one image tower per sensor,
    ``image_s1``, ``image_s2``; ``train.trainable.image_tower`` sets them all.

    Raises:
        ModelError: The model has no ``visual`` tower.
    """
    if not isinstance(getattr(model, "visual", None), nn.Module):
        raise ModelError(f"{type(model).__name__} has no image tower (model.visual)")
    if isinstance(model.visual, nn.ModuleDict):
        found = {f"image_{sensor}": _tower(model, f"image_{sensor}", f"visual.{sensor}", (f"visual.{sensor}",))
                 for sensor in model.visual}
    else:
        found = {"image": _tower(model, "image", "visual", ("visual",))}
    if isinstance(getattr(model, "text", None), nn.Module):
        found["text"] = _tower(model, "text", "text", ("text",))
    else:
        found["text"] = _tower(model, "text", "", tuple(n for n in BUILTIN_TEXT if _exists(model, n)))
    return found


def tower_trains(model: nn.Module, name: str) -> bool:
    """Whether any parameter of tower ``name`` (``image``, ``text``) requires a gradient.

    Args:
        model: The unwrapped open_clip model.
        name: A key of :func:`towers`.
    """
    roots = towers(model)[name].roots
    return any(param.requires_grad for param_name, param in model.named_parameters() if _under(param_name, roots))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _trainable_prefixes(tower: Tower, mode: str, last_blocks: int) -> tuple[str, ...]:
    if mode == "train":
        return tower.roots
    if mode == "freeze":
        return ()
    if mode == "projection":
        return tower.projection
    if last_blocks > len(tower.blocks):
        raise ConfigError(
            f"train.trainable.last_blocks={last_blocks} but the {tower.name} tower has {len(tower.blocks)} blocks"
        )
    return tower.blocks[len(tower.blocks) - last_blocks:] + tower.head + tower.projection


def _mode(cfg: TrainableConfig, tower: str) -> str:
    """The mode of tower ``tower``: ``image`` and a sensor model's ``image_<sensor>`` follow ``image_tower``."""
    return cfg.image_tower if tower.startswith("image") else cfg.text_tower


def register_adapter(name: str) -> Callable[[Adapter], Adapter]:
    """Decorator registering an adapter hook (``fn(model, trainable_cfg)``) under ``name``."""

    def decorate(fn: Adapter) -> Adapter:
        if name in _ADAPTERS:
            raise ValueError(f"adapter {name!r} is already registered")
        _ADAPTERS[name] = fn
        return fn

    return decorate


def adapter_names() -> list[str]:
    """Names of the registered adapter hooks."""
    return sorted(_ADAPTERS)


def check_adapter(cfg: TrainableConfig) -> None:
    """Fail early when ``cfg.adapter`` names no registered hook.

    Raises:
        ConfigError: The adapter is unknown (the message lists the registered ones).
    """
    if cfg.adapter is not None and cfg.adapter not in _ADAPTERS:
        raise ConfigError(
            f"train.trainable.adapter: no adapter {cfg.adapter!r} is registered (registered: {adapter_names()}); "
            "register one with rsvl.train.trainable.register_adapter"
        )


def apply_trainable(model: nn.Module, cfg: TrainableConfig) -> dict[str, int]:
    """Set ``requires_grad`` of the towers' parameters by mode, then run the adapter hook.

    Args:
        model: The unwrapped open_clip model; modified in place.
        cfg: ``train.trainable``.

    Returns:
        ``{"trainable_params": ..., "total_params": ..., "adapter_params": ...}`` after the change
        (``adapter_params``: the parameters the adapter hook added, 0 without one).

    Raises:
        ConfigError: A mode cannot apply (``projection`` on a tower without one, too many blocks)
            or the adapter is unknown.
    """
    check_adapter(cfg)
    for name, tower in towers(model).items():
        mode = _mode(cfg, name)
        keep = _trainable_prefixes(tower, mode, cfg.last_blocks)
        members = [(n, p) for n, p in model.named_parameters() if _under(n, tower.roots)]
        if mode == "projection" and not any(_under(n, keep) for n, _ in members):
            raise ConfigError(
                f"train.trainable.{name}_tower=projection but the {name} tower has no projection parameters"
            )
        for param_name, param in members:
            param.requires_grad_(_under(param_name, keep))
    positions = stretched_rows(model)
    if positions is not None and cfg.stretched_positions == "train":
        positions.requires_grad_(True)
    if cfg.adapter is not None:
        _ADAPTERS[cfg.adapter](model, cfg)
    params = list(model.parameters())
    return {
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": sum(p.numel() for p in params),
        "adapter_params": sum(p.numel() for p in _adapter_params(model).values()),
    }


def _adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    model = getattr(model, "module", model)
    names = getattr(model, ADAPTER_PARAMS, ())
    if not names:
        return {}
    params = dict(model.named_parameters())
    return {name: params[name] for name in names}


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters an adapter hook added (:data:`ADAPTER_PARAMS`), detached on the CPU; ``{}`` without one.

    Args:
        model: The model, possibly wrapped (``.module`` of DDP is unwrapped).
    """
    return {name: param.detach().cpu().clone() for name, param in _adapter_params(model).items()}


def load_adapter_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy adapter parameters saved by :func:`adapter_state_dict` back into ``model``, in place.

    Args:
        model: The model with the same adapter applied, possibly wrapped.
        state: The saved tensors (``{}`` for a model without adapter).

    Raises:
        ModelError: The saved names or shapes differ from the model's adapter parameters.
    """
    params = _adapter_params(model)
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise ModelError(
            f"adapter state does not fit the model: {len(missing)} adapter parameters missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}; was the checkpoint written with the same "
            "train.trainable adapter settings?"
        )
    with torch.no_grad():
        for name, param in params.items():
            if param.shape != state[name].shape:
                raise ModelError(f"adapter parameter {name}: saved shape {tuple(state[name].shape)} "
                                 f"!= model's {tuple(param.shape)}")
            param.copy_(state[name])


def set_train_mode(model: nn.Module, cfg: TrainableConfig) -> None:
    """``model.train()``, but frozen towers and fully frozen BatchNorm layers stay in eval mode.

    Modules marked :data:`ALWAYS_TRAIN` (an adapter's dropout) train even inside a frozen tower.
    """
    model.train()
    for name, tower in towers(model).items():
        if _mode(cfg, name) == "freeze":
            for root in tower.roots:
                parent, _, attr = root.rpartition(".")
                owner = model.get_submodule(parent) if parent else model
                if attr in owner._modules:  # a module root (a parameter root has no mode)
                    owner._modules[attr].eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()
        if getattr(module, ALWAYS_TRAIN, False):
            module.train()


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups of the trainable parameters: decay for weights, none for gains/biases/scale.

    Follows open_clip: parameters with fewer than two dimensions, norms, biases and the logit
    scale get no weight decay.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim < 2 or any(marker in name for marker in NO_DECAY_MARKERS)
        (no_decay if skip else decay).append(param)
    if not decay and not no_decay:
        raise ConfigError("train.trainable leaves no parameter to train")
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
