"""Saving and loading models in open_clip's local-dir format, weights in safetensors only.

A saved model is a folder with ``open_clip_config.json`` (``model_cfg``, ``preprocess_cfg`` and an
``rsvl`` section: architecture, bands, normalisation, widening rule) and
``open_clip_model.safetensors``. A Hugging Face text tower also gets its ``config.json`` and
tokenizer files there, and its ``hf_model_name``/``hf_tokenizer_name`` point at the folder, so
``open_clip.create_model("local-dir:<folder>")`` and ``open_clip.get_tokenizer("local-dir:<folder>")``
reload a three-band model with nothing else installed (except a timm tower with image tokens,
:mod:`rsvl.models.towers`, and a text tower stretched by KPS, :mod:`rsvl.models.kps`, whose frozen
and trained rows are stored apart; only :func:`load_model` rebuilds those). :func:`load_model` also
re-points the text tower at the folder when it has moved, and widens the first convolution of
multispectral and SAR models before loading their weights. Nothing is unpickled.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import open_clip
from open_clip.factory import load_checkpoint
from open_clip.transform import PreprocessCfg
from open_clip.utils import to_2tuple
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer

from rsvl.errors import ModelError
from rsvl.models.bands import widen_first_conv
from rsvl.models.files import CONFIG_NAME, WEIGHTS_NAME
from rsvl.models.factory import BuiltModel, assemble_inputs, quiet_open_clip
from rsvl.models.ker_head import rebuild_ker_head
from rsvl.models.kps import rebuild_kps
from rsvl.models.preprocess import rgb_normalisation
from rsvl.models.towers import attach_timm_tokens

HF_CONFIG_NAME = "config.json"
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


def _point_text_tower_at(model_cfg: dict[str, Any], directory: Path) -> dict[str, Any]:
    text_cfg = model_cfg["text_cfg"]
    if text_cfg.get("hf_model_name"):
        text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = str(directory)
    return model_cfg


def save_model(model: nn.Module, out_dir: str | Path) -> Path:
    """Write a model built by :func:`rsvl.models.build_model` (or loaded by :func:`load_model`).

    Args:
        model: The model, possibly wrapped (``.module`` of DDP is unwrapped).
        out_dir: Destination folder; created if needed, files in it are overwritten.

    Returns:
        The folder, resolved.

    Raises:
        ModelError: The model carries no ``rsvl_spec`` (it was not built by this package).
    """
    model = getattr(model, "module", model)
    spec = getattr(model, "rsvl_spec", None)
    if spec is None:
        raise ModelError(f"{type(model).__name__} has no rsvl_spec; build it with rsvl.models.build_model")
    directory = Path(out_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    text_cfg = spec["model_cfg"]["text_cfg"]
    if text_cfg.get("hf_model_name"):
        model.text.config.save_pretrained(directory)
        AutoTokenizer.from_pretrained(text_cfg["hf_tokenizer_name"]).save_pretrained(directory)
    model_cfg = _point_text_tower_at(copy.deepcopy(spec["model_cfg"]), directory)
    # a sensor model's towers share one architecture, so any tower's preprocess_cfg is the model's
    visual = next(iter(model.visual.values())) if isinstance(model.visual, nn.ModuleDict) else model.visual
    current = visual.preprocess_cfg
    preprocess_cfg = {key: current[key] for key in PREPROCESS_KEYS if key in current}
    rsvl = {k: v for k, v in spec.items() if k != "model_cfg"}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg, "rsvl": rsvl}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def saved_spec(model_dir: str | Path) -> dict[str, Any]:
    """The ``rsvl`` section of a saved model folder's config, read without touching the weights.

    Args:
        model_dir: A folder written by :func:`save_model` (empty result for a plain open_clip folder).

    Raises:
        ModelError: The folder holds no readable model config.
    """
    path = Path(model_dir) / CONFIG_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("rsvl") or {}
    # AttributeError: the JSON is not an object
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise ModelError(f"{path}: not a saved model's config ({err}); a saved model is a folder written by "
                         "rsvl.models.save_model") from err


def _spec_of_plain_open_clip(config: dict[str, Any]) -> dict[str, Any]:
    """The spec of a local-dir folder written by open_clip itself (three RGB bands)."""
    preprocess_cfg = {**asdict(PreprocessCfg()), **config.get("preprocess_cfg", {})}
    mean, std = rgb_normalisation(preprocess_cfg)
    size = config["model_cfg"]["vision_cfg"].get("image_size", 224)
    return {
        "architecture": None,
        "pretrained": None,
        "in_bands": 3,
        "bands": None,
        "widening": None,
        "normalisation": {"mean": mean, "std": std},
        "image_size": list(to_2tuple(size)),
        "interpolation": preprocess_cfg.get("interpolation", "bicubic"),
    }


def _create_local(directory: Path, model_cfg: dict[str, Any], text_here: bool) -> nn.Module:
    """open_clip's model of a local-dir folder, with no weights loaded (they come from the safetensors file)."""
    overrides: dict[str, Any] = {}
    if text_here:
        _point_text_tower_at(model_cfg, directory)
        overrides["text_cfg"] = {**model_cfg["text_cfg"], "hf_model_pretrained": False}
    with quiet_open_clip():
        model = open_clip.create_model(f"local-dir:{directory}", load_weights=False, pretrained_image=False,
                                       pretrained_text=False, **overrides)
    attach_timm_tokens(model, model_cfg)
    return model


def _load_sensor_model(directory: Path, weights_path: Path, model_cfg: dict[str, Any], spec: dict[str, Any],
                       text_here: bool) -> BuiltModel:
    """Rebuild a :class:`rsvl.models.multisensor.SensorCLIP` folder: one image tower per sensor, the text tower once."""
    from rsvl.models.multisensor import SensorCLIP, sensor_preprocess

    try:
        towers, text = {}, None
        for sensor, sensor_spec in spec["sensors"].items():
            built = _create_local(directory, copy.deepcopy(model_cfg), text_here)
            if sensor_spec["in_bands"] != 3:
                widen_first_conv(built.visual, sensor_spec["in_bands"], sensor_spec["bands"])
            towers[sensor] = built.visual
            text = text if text is not None else built.text
        location = None
        if spec.get("location"):
            from rsvl.models.location import LocationEncoder

            location = LocationEncoder(**spec["location"])
        model = SensorCLIP(towers, text, {s: v["in_bands"] for s, v in spec["sensors"].items()}, location)
        model.load_state_dict(load_file(str(weights_path)), strict=True)
    except (RuntimeError, ValueError, OSError, KeyError, TypeError) as err:
        raise ModelError(f"{directory}: cannot load the saved sensor model ({err})") from err
    if text_here:
        _point_text_tower_at(model_cfg, directory)
    model.rsvl_spec = {**spec, "model_cfg": model_cfg}
    return (model, *sensor_preprocess(model.rsvl_spec), open_clip.get_tokenizer(f"local-dir:{directory}"))


def load_model(model_dir: str | Path) -> BuiltModel:
    """Load a saved model folder through ``open_clip.create_model("local-dir:...")``.

    Args:
        model_dir: A folder written by :func:`save_model` (or an open_clip local-dir folder).

    Returns:
        ``(model, preprocess_train, preprocess_val, tokenizer)`` as :func:`build_model` returns them.

    Raises:
        ModelError: The config or the safetensors weights are missing, or the weights do not fit.
    """
    directory = Path(model_dir).resolve()
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(
                f"{path}: missing; a saved model needs {CONFIG_NAME} and {WEIGHTS_NAME} (safetensors only)"
            )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        model_cfg = copy.deepcopy(config["model_cfg"])
        text_here = bool(model_cfg["text_cfg"].get("hf_model_name")) and (directory / HF_CONFIG_NAME).is_file()
        spec = config.get("rsvl") or _spec_of_plain_open_clip(config)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise ModelError(f"{config_path}: not an open_clip local-dir config ({err})") from err
    if spec.get("sensors"):
        return _load_sensor_model(directory, weights_path, model_cfg, spec, text_here)
    try:
        model = _create_local(directory, model_cfg, text_here)
        if spec["in_bands"] != 3:
            widen_first_conv(model.visual, spec["in_bands"], spec["bands"])
        rebuild_ker_head(model, spec)
        rebuild_kps(model, spec)
        load_checkpoint(model, str(weights_path), strict=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise ModelError(f"{directory}: cannot load the saved model ({err})") from err
    model.rsvl_spec = {**spec, "model_cfg": model_cfg}
    return (model, *assemble_inputs(model.rsvl_spec, f"local-dir:{directory}"))
