"""Parameter-efficient tuning through the ``peft`` library: the ``lora`` and ``ia3`` adapter hooks.

``train.trainable.adapter: lora`` wraps the tower layers named by ``train.trainable.adapter_targets``
(module-name suffixes) in peft's LoRA layers: each learns ``W + (lora_alpha / lora_rank) * B @ A``
with ``B = 0`` at the start, so the model's output is unchanged until it trains.
``adapter: ia3`` wraps them in peft's IA3 layers instead: one learned scale per output channel,
or per input channel for the ``ia3_feedforward`` targets, all 1 at the start. Both freeze the
layers they wrap (weight and bias, peft's ``bias="none"``); the tower modes keep deciding every
other parameter, so pure parameter-efficient tuning is ``image_tower: freeze, text_tower: freeze``
(the logit scale is left to the objective) and ``projection`` towers train their projections too.

What peft can wrap in our towers:

* open_clip ViT (``ViT-B-32``, ``rsvl-tiny``): ``mlp.c_fc`` and ``mlp.c_proj`` are ``nn.Linear``.
  The attention is an ``nn.MultiheadAttention`` whose query/key/value projection is a bare
  parameter (``in_proj_weight``) and whose ``out_proj`` forward is never called (the attention
  reads ``out_proj.weight`` directly), so a wrapper on ``attn.out_proj`` would never train: it is
  refused. LoRA can target the whole attention as ``attn``: peft's ``MultiheadAttention`` layer
  adapts ``in_proj`` and ``out_proj`` together by merging before each forward and unmerging after,
  which leaves float rounding (about 1e-7) on the frozen weights at every step, so it is not a
  default; IA3 cannot wrap it.
* Hugging Face text towers (MiniLM): ``query``, ``key``, ``value`` and the ``dense`` layers.
* timm EfficientNet-Lite0: the 1x1 convolutions ``conv_pw``, ``conv_pwl`` and ``conv_head`` (a
  1x1 convolution is a linear map per pixel). Depthwise (grouped) convolutions are refused: peft
  cannot merge LoRA into them. The image projection (``head.proj``) is the tower's own and
  starts random there; train it with ``image_tower: projection``.

**Saving.** Each wrapped layer gets two state-dict hooks, so the model's state dict stays the one
of the architecture it was built from: ``state_dict()`` gives the merged weights (peft merges a
copy of the layer; the live layer stays unmerged and keeps training), which
:func:`rsvl.models.save_model` writes and :func:`rsvl.models.load_model` reads without peft;
``load_state_dict`` of such merged weights checks that they equal the layer's frozen weights
merged with its current adapter parameters and keeps the layer unmerged. The adapter parameters
themselves are listed in ``model.rsvl_adapter_params``, which checkpoints save beside the model
(:func:`rsvl.train.trainable.adapter_state_dict`) and restore before the weights, so a resumed
run, rebuilt from the same starting weights, continues with exactly the same adapter.
"""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import torch
from torch import nn

from rsvl.config import TrainableConfig
from rsvl.errors import ConfigError
from rsvl.train.trainable import ADAPTER_PARAMS, ALWAYS_TRAIN, register_adapter, towers

LORA_TARGETS = ("mlp.c_fc", "mlp.c_proj", "query", "key", "value", "dense", "conv_pw", "conv_pwl", "conv_head")
"""LoRA's default targets: ViT MLPs, Hugging Face text towers' linear layers, EfficientNet's 1x1 convolutions."""
IA3_TARGETS = ("mlp.c_proj", "key", "value", "output.dense", "conv_pwl")
"""IA3's default targets: keys and values where they are layers (Hugging Face towers) and each MLP's second layer."""
IA3_FEEDFORWARD = ("mlp.c_proj", "output.dense", "conv_pwl")
"""IA3's default feed-forward targets: the scale applies to their input, the MLP's hidden activation (as in IA3)."""
CANDIDATES = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)
ADAPTER_NAME = "default"
MERGE_TOLERANCE = 1e-5
"""Largest difference, relative to the weight's magnitude (at least 1), between saved merged weights and
the frozen weights merged with the restored adapter, before loading refuses them."""


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ConfigError(
            "train.trainable.adapter lora/ia3 needs the peft package (pinned in requirements.lock; run make setup)"
        ) from err
    return peft


def _suffix_of(name: str, pattern: str) -> bool:
    return name == pattern or name.endswith("." + pattern)


def _refusal(model: nn.Module, name: str, module: nn.Module, attention: bool) -> str | None:
    """Why ``module`` cannot be wrapped, or ``None`` when it can."""
    parent, _, attr = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    if attr == "out_proj" and isinstance(owner, nn.MultiheadAttention):
        return ("the out_proj of an nn.MultiheadAttention, whose forward is never called (the attention reads "
                "its weight directly), so an adapter there would not train"
                + ("; target the attention itself instead" if attention else ""))
    if isinstance(module, nn.Conv2d) and module.groups > 1:
        return f"a grouped (depthwise, groups={module.groups}) convolution, which peft cannot merge into"
    if isinstance(module, nn.MultiheadAttention) and not attention:
        return "an nn.MultiheadAttention, which only LoRA can wrap"
    if isinstance(module, nn.MultiheadAttention) and not module._qkv_same_embed_dim:
        return "an nn.MultiheadAttention with separate key/value sizes, which peft cannot wrap"
    return None


def select_targets(model: nn.Module, patterns: list[str] | tuple[str, ...], *, attention: bool,
                   required: bool) -> list[str]:
    """The tower layers (``nn.Linear``, ``nn.Conv2d``, with ``attention`` ``nn.MultiheadAttention``) ``patterns`` name.

    Args:
        model: The open_clip model.
        patterns: Module-name suffixes (``mlp.c_fc`` matches ``visual.transformer.resblocks.0.mlp.c_fc``).
        attention: Whether ``nn.MultiheadAttention`` modules can be wrapped (LoRA).
        required: Whether every pattern must name at least one layer (user-given targets); otherwise
            only the whole list must.

    Returns:
        The layers' dotted names, in model order.

    Raises:
        ConfigError: A named layer cannot be wrapped, or a pattern (or, not ``required``, all of
            them) names no wrappable layer; the message lists the layers that could be.
    """
    roots = tuple(root for tower in towers(model).values() for root in tower.roots)
    kinds: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d) + ((nn.MultiheadAttention,) if attention else ())
    in_towers = [(name, module) for name, module in model.named_modules()
                 if any(name == r or name.startswith(r + ".") for r in roots)]
    wrappable = [name for name, module in in_towers if isinstance(module, kinds)
                 and _refusal(model, name, module, attention) is None]
    chosen: list[str] = []
    for pattern in patterns:
        named = [(name, module) for name, module in in_towers if _suffix_of(name, pattern)]
        for name, module in named:
            reason = _refusal(model, name, module, attention) if isinstance(module, CANDIDATES) else None
            if reason is not None:
                raise ConfigError(f"train.trainable.adapter_targets: {pattern!r} names {name}, {reason}")
        hits = [name for name, module in named if isinstance(module, kinds)]
        if required and not hits:
            raise ConfigError(
                f"train.trainable.adapter_targets: {pattern!r} names no layer the adapter can wrap in the towers "
                f"(matched: {[n for n, _ in named][:5]}); wrappable layers end in: {_suffixes(wrappable)}"
            )
        chosen += [name for name in hits if name not in chosen]
    if not chosen:
        raise ConfigError(f"train.trainable.adapter_targets: none of {list(patterns)} names a layer the adapter can "
                          f"wrap in this model's towers; wrappable layers end in: {_suffixes(wrappable)}")
    order = {name: index for index, (name, _) in enumerate(in_towers)}
    return sorted(chosen, key=order.__getitem__)


def _suffixes(names: list[str]) -> list[str]:
    """The distinct last two name parts of ``names`` (``mlp.c_fc``), for error messages."""
    return sorted({".".join(n.split(".")[-2:]) for n in names})[:20]


def _exactly(names: list[str]) -> str:
    """A peft ``target_modules`` regex (peft full-matches a string against each module name) naming only ``names``."""
    return "^(?:" + "|".join(re.escape(name) for name in names) + ")$"


def _merged_base_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict the wrapped base layer would have with ``layer``'s adapter merged in; ``layer`` is untouched."""
    with torch.no_grad():
        clone = copy.deepcopy(layer)
        unload = getattr(clone, "unload_and_optionally_merge_module", None)
        if unload is not None:  # peft's MultiheadAttention re-registers its merged weights this way
            base = unload(merge=True, safe_merge=False, adapter_names=None)
        else:
            clone.merge()
            base = clone.get_base_layer()
        return base.state_dict()


def _raw_state(layer: nn.Module) -> dict[str, torch.Tensor]:
    """``layer``'s own (unmerged, peft-named) parameters and persistent buffers, as its state dict would hold them."""
    state = {name: param.detach() for name, param in layer.named_parameters()}
    for name, buffer in layer.named_buffers():
        owner_name, _, attr = name.rpartition(".")
        owner = layer.get_submodule(owner_name) if owner_name else layer
        if attr not in owner._non_persistent_buffers_set:
            state[name] = buffer.detach()
    return state


def _save_merged(layer: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: replace the wrapped layer's entries by its merged base layer's."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    for key, value in _merged_base_state(layer).items():
        state_dict[prefix + key] = value


def _load_merged(layer: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any, strict: bool,
                 missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
    """Load pre-hook: accept merged weights that equal this layer's merged view, keeping the layer unmerged.

    A state dict in peft's own naming (``base_layer.weight``, ``lora_A...``) is left to the normal load.
    """
    expected = _merged_base_state(layer)
    if not all(prefix + key in state_dict for key in expected):
        return
    for key, value in expected.items():
        given = state_dict[prefix + key]
        if given.shape != value.shape:
            error_msgs.append(f"{prefix}{key}: saved shape {tuple(given.shape)} != {tuple(value.shape)}")
            return
        gap = (given.to(value) - value).abs().max().item() if value.numel() else 0.0
        if gap > MERGE_TOLERANCE * max(1.0, value.abs().max().item()):
            error_msgs.append(
                f"{prefix}{key}: the saved (merged) weight differs by {gap:.3g} from this model's frozen weight "
                "merged with its adapter; restore the adapter parameters first "
                "(rsvl.train.trainable.load_adapter_state_dict) on a model rebuilt from the run's starting weights"
            )
            return
    for key in expected:
        del state_dict[prefix + key]
    state_dict.update({prefix + key: value for key, value in _raw_state(layer).items()})


def _attach(model: nn.Module, tuner_layer: type) -> tuple[str, ...]:
    """Hook the outermost peft layers, freeze what they wrap, mark their dropout; return the adapter parameter names."""
    outer: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, tuner_layer) and not any(name.startswith(o + ".") for o, _ in outer):
            outer.append((name, module))
    adapter_names: list[str] = []
    for name, layer in outer:
        layer_parts = {part for _, m in layer.named_modules() if isinstance(m, tuner_layer)
                       for part in m.adapter_layer_names}
        for param_name, param in layer.named_parameters():
            is_adapter = bool(layer_parts & set(param_name.split(".")))
            param.requires_grad_(is_adapter)
            if is_adapter:
                adapter_names.append(f"{name}.{param_name}")
        for module in layer.modules():
            for dropout in getattr(module, "lora_dropout", {}).values():
                setattr(dropout, ALWAYS_TRAIN, True)
        layer.register_state_dict_post_hook(_save_merged)
        layer.register_load_state_dict_pre_hook(_load_merged)
    return tuple(adapter_names)


def _check_bare(model: nn.Module) -> None:
    if getattr(model, ADAPTER_PARAMS, ()):
        raise ConfigError("the model already carries an adapter; apply train.trainable.adapter once")


def _inject(model: nn.Module, config: Any) -> None:
    """Inject peft ``config`` into ``model`` in place, keeping every other parameter's ``requires_grad``."""
    peft = _peft()
    flags = {id(p): p.requires_grad for p in model.parameters()}
    with warnings.catch_warnings():
        # peft warns that the model is no transformers model (it is open_clip's) and has no config
        warnings.simplefilter("ignore", UserWarning)
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    # peft froze everything but its adapters: restore the tower modes' choices, then freeze the wrapped layers
    for param in model.parameters():
        if id(param) in flags:
            param.requires_grad_(flags[id(param)])
    from peft.tuners.tuners_utils import BaseTunerLayer

    names = _attach(model, BaseTunerLayer)
    setattr(model, ADAPTER_PARAMS, names)


@register_adapter("lora")
def apply_lora(model: nn.Module, cfg: TrainableConfig) -> None:
    """Wrap the targeted tower layers in LoRA (rank ``cfg.lora_rank``, scale ``lora_alpha / lora_rank``).

    Args:
        model: The unwrapped open_clip model, modified in place.
        cfg: ``train.trainable`` (``adapter_targets``, ``lora_rank``, ``lora_alpha``, ``lora_dropout``).

    Raises:
        ConfigError: A target cannot be wrapped or names nothing, or peft is missing.
    """
    _check_bare(model)
    names = select_targets(model, cfg.adapter_targets or LORA_TARGETS, attention=True,
                           required=cfg.adapter_targets is not None)
    config = _peft().LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                target_modules=_exactly(names), bias="none")
    _inject(model, config)


@register_adapter("ia3")
def apply_ia3(model: nn.Module, cfg: TrainableConfig) -> None:
    """Wrap the targeted tower layers in IA3: learned channel scales, on the input of ``ia3_feedforward`` targets.

    Args:
        model: The unwrapped open_clip model, modified in place.
        cfg: ``train.trainable`` (``adapter_targets``, ``ia3_feedforward``).

    Raises:
        ConfigError: A target cannot be wrapped or names nothing, a feed-forward pattern names no
            target, or peft is missing.
    """
    _check_bare(model)
    names = select_targets(model, cfg.adapter_targets or IA3_TARGETS, attention=False,
                           required=cfg.adapter_targets is not None)
    feedforward = [n for n in names if any(_suffix_of(n, p) for p in cfg.ia3_feedforward or IA3_FEEDFORWARD)]
    for pattern in cfg.ia3_feedforward or ():
        if not any(_suffix_of(n, pattern) for n in names):
            raise ConfigError(f"train.trainable.ia3_feedforward: {pattern!r} names none of the IA3 targets "
                              f"(ending in {_suffixes(names)}); a feed-forward layer must be a target too")
    # a regex that matches nothing when no target is feed-forward (peft needs a value)
    config = _peft().IA3Config(target_modules=_exactly(names),
                               feedforward_modules=_exactly(feedforward) if feedforward else "(?!)")
    _inject(model, config)
