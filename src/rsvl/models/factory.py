"""The one way to build a model: an open_clip CLIP/CoCa chosen by name, with its weights and inputs.

``pretrained`` selects the weights:

* ``None``: random initialisation (no tower weights are fetched either);
* ``"packaged"``: the tower weights shipped in installed packages, as the architecture config lists
  them (the local default ``rsvl-effnetlite0-minilm``);
* ``"sensor"``: the packaged weights, and the image trunk from the architecture's ``sensor_weights``
  entry of ``sensor`` (a Hugging Face file, cached or downloaded; :mod:`rsvl.models.sensor_weights`),
  its first convolution cut to the dataset's bands and its input scaling replacing the dataset's;
* an open_clip tag (``openai``, ``laion2b_s32b_b79k``): checked against the local cache first, so an
  offline machine fails at once with :class:`rsvl.errors.WeightsNotCachedError`;
* a path to a local weights file (safetensors preferred; ``.pt``/``.bin`` load with
  ``weights_only=True``).

A timm image tower whose config asks for ``output_tokens`` becomes a
:class:`rsvl.models.towers.TimmTokenTower`, so a CoCa decoder can read a pretrained CNN.

Inputs with ``in_bands != 3`` get a widened first convolution (:mod:`rsvl.models.bands`) and need
the dataset's ``band_stats``. The returned model carries ``rsvl_spec``, everything
:func:`rsvl.models.io.save_model` needs to write it in open_clip's local-dir format.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from typing import Any, Callable, Iterator

import open_clip
import torch
from open_clip.utils import to_2tuple
from torch import nn

from rsvl.errors import ModelError
from rsvl.models.bands import normalisation_from_stats, widen_first_conv
from rsvl.models.preprocess import Preprocess, make_preprocess, rgb_normalisation
from rsvl.models.architectures import Architecture, get_architecture
from rsvl.models.kps import apply_kps, set_text_context_length
from rsvl.models.sensor_weights import (
    SENSOR,
    load_sensor_weights,
    sensor_entry,
    sensor_normalisation,
    sensor_weights_file,
)
from rsvl.models.towers import attach_timm_tokens
from rsvl.models.weights import ensure_tag_available, load_packaged

PACKAGED = "packaged"
WIDENING_RULE = "rgb-match-else-mean x 3/in_bands"

Tokenizer = Callable[..., Any]
BuiltModel = tuple[nn.Module, Preprocess, Preprocess, Tokenizer]


class _DropInitNotices(logging.Filter):
    """Hide open_clip's "initialized randomly/partially" notices: rsvl loads tower weights itself."""

    NOTICES = ("No pretrained weights loaded for model", "initialized partially")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(notice in record.getMessage() for notice in self.NOTICES)


@contextlib.contextmanager
def quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's misleading weight-init notices (it logs on the root logger) for a block."""
    notice_filter = _DropInitNotices()
    logging.getLogger().addFilter(notice_filter)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice_filter)


def _weights_source(
    name: str,
    pretrained: str | None,
    architecture: Architecture | None,
    cache_dir: str | None,
) -> tuple[str | None, dict[str, Any]]:
    """Return what to hand open_clip as ``pretrained`` and extra create_model arguments."""
    if pretrained is None:
        return None, {}
    if pretrained == PACKAGED:
        if architecture is None or not architecture.packaged_weights:
            raise ModelError(f"architecture {name!r} has no packaged weights; use pretrained=None or a tag")
        return None, {}
    if pretrained == SENSOR:
        return None, {}
    if os.path.isfile(pretrained):
        return pretrained, {}
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ModelError(
            f"pretrained={pretrained!r} is neither a file nor a tag of {name!r}; its tags: {tags}, or 'packaged'"
        )
    ensure_tag_available(name, pretrained, tag_cfg, cache_dir)
    return pretrained, {"force_quick_gelu": True} if tag_cfg.get("quick_gelu") else {}


def _normalisation(
    model: nn.Module, in_bands: int, band_stats: dict[str, Any] | None
) -> tuple[list[float], list[float], list[str] | None]:
    if band_stats is not None:
        return normalisation_from_stats(band_stats, in_bands)
    if in_bands != 3:
        raise ModelError(f"in_bands={in_bands} needs band_stats (per-band mean/std of the dataset)")
    mean, std = rgb_normalisation(model.visual.preprocess_cfg)
    return mean, std, None


def assemble_inputs(spec: dict[str, Any], tokenizer_source: str) -> tuple[Preprocess, Preprocess, Tokenizer]:
    """Build the train/val preprocessing and the tokenizer a model spec describes.

    Args:
        spec: ``model.rsvl_spec``.
        tokenizer_source: Name given to ``open_clip.get_tokenizer`` (architecture or ``local-dir:``).
    """
    norm = spec["normalisation"]
    train, val = make_preprocess(spec["image_size"], norm["mean"], norm["std"], spec["interpolation"])
    return train, val, open_clip.get_tokenizer(tokenizer_source)


def init_coca_decoder_projection(model: torch.nn.Module) -> None:
    """Initialise a fresh CoCa decoder's output projection, which open_clip 3.3 leaves unset.

    open_clip allocates ``text_decoder.text_projection`` with ``torch.empty`` and never calls
    the decoder's ``init_parameters``, so a CoCa built without pretrained weights starts from
    whatever memory held (NaN or huge losses). Use the transformer's usual ``width ** -0.5``.

    Args:
        model: Any open_clip model; only CoCa models are changed.
    """
    decoder = getattr(model, "text_decoder", None)
    projection = getattr(decoder, "text_projection", None)
    if isinstance(projection, torch.nn.Parameter):
        with torch.no_grad():
            torch.nn.init.normal_(projection, std=decoder.width ** -0.5)


def build_model(
    name: str,
    pretrained: str | None = None,
    in_bands: int = 3,
    band_stats: dict[str, Any] | None = None,
    *,
    image_size: int | None = None,
    cache_dir: str | None = None,
    sensor: str | None = None,
) -> BuiltModel:
    """Build a registered open_clip architecture with its weights, preprocessing and tokenizer.

    A derived architecture (``ViT-B-32-kps248``: a ``base`` and a text-tower change) is its base
    built with the same arguments (``pretrained="openai"`` loads the base's openai weights), then
    stretched by KPS or given its text context length (:mod:`rsvl.models.kps`).

    Args:
        name: An rsvl config under ``models/`` (``rsvl-effnetlite0-minilm``, ``rsvl-tiny``) or an
            open_clip built-in (``ViT-B-32``, ``ViT-L-14``, ``ViT-H-14``, ``coca_ViT-L-14``).
        pretrained: ``None``, ``"packaged"``, ``"sensor"``, an open_clip tag (of the base, for a
            derived architecture), or a weights file path.
        in_bands: Input bands; other than 3 widens the first convolution.
        band_stats: ``{"bands", "mean", "std"}`` of the training data (required unless
            ``in_bands == 3``); without it RGB inputs are 0..255 and use the model's mean/std.
        image_size: Override the config's input size (e.g. 120 for BigEarthNet patches on CPU).
        cache_dir: Weights cache folder for tags and sensor weights (default: Hugging Face's).
        sensor: The sensor (``s1``, ``s2``) whose ``sensor_weights`` ``pretrained="sensor"`` loads;
            ignored otherwise.

    Returns:
        ``(model, preprocess_train, preprocess_val, tokenizer)``; the model is in train mode on CPU.

    Raises:
        ModelError: Unknown name or tag, a missing package, inconsistent bands/statistics, or
            sensor weights that are missing or do not fit.
        WeightsNotCachedError: A tag's or sensor's weights are not cached and the hub is offline.
    """
    if in_bands < 1:
        raise ModelError(f"in_bands must be positive, got {in_bands}")
    architecture = get_architecture(name)
    if architecture is not None and architecture.derived:
        return _build_derived(architecture, pretrained, in_bands, band_stats, image_size=image_size,
                              cache_dir=cache_dir, sensor=sensor)
    open_clip_pretrained, extra = _weights_source(name, pretrained, architecture, cache_dir)
    entry = sensor_entry(architecture, name, sensor) if pretrained == SENSOR else None
    # fetched (or found missing) before anything is built, as a tag is
    sensor_file = sensor_weights_file(entry, cache_dir) if entry is not None else None
    model_cfg = copy.deepcopy(architecture.model_cfg if architecture else open_clip.get_model_config(name))
    if architecture is not None:
        extra["force_preprocess_cfg"] = architecture.preprocess_cfg
    if image_size is not None:
        extra["force_image_size"] = image_size
        model_cfg["vision_cfg"]["image_size"] = image_size
    if extra.get("force_quick_gelu"):
        model_cfg["quick_gelu"] = True
    try:
        with quiet_open_clip():
            model = open_clip.create_model(
                name,
                pretrained=open_clip_pretrained,
                pretrained_image=False,
                pretrained_text=False,
                cache_dir=cache_dir,
                **extra,
            )
    except (RuntimeError, FileNotFoundError, ValueError, OSError) as err:
        raise ModelError(f"cannot build {name!r} with pretrained={pretrained!r}: {err}") from err
    attach_timm_tokens(model, model_cfg)
    if pretrained in (None, PACKAGED, SENSOR):
        init_coca_decoder_projection(model)
    if pretrained in (PACKAGED, SENSOR):
        for packaged in architecture.packaged_weights:
            load_packaged(model, packaged)
    mean, std, bands = _normalisation(model, in_bands, band_stats)
    widening = WIDENING_RULE if in_bands != 3 else None
    if in_bands != 3:
        widen_first_conv(model.visual, in_bands, bands)
    if entry is not None:  # the widened stem's weights are replaced by the sensor's own
        columns = load_sensor_weights(model, entry, bands, in_bands, sensor_file)
        mean, std = sensor_normalisation(entry, columns) or (mean, std)
        widening = f"first-conv columns {[entry.bands[c] for c in columns]} of {entry.source()}"
    model.rsvl_spec = {
        "architecture": name,
        "pretrained": pretrained,
        "in_bands": in_bands,
        "bands": bands,
        "widening": widening,
        "normalisation": {"mean": mean, "std": std},
        "image_size": list(to_2tuple(model.visual.preprocess_cfg["size"])),
        "interpolation": model.visual.preprocess_cfg.get("interpolation", "bicubic"),
        "model_cfg": model_cfg,
    }
    return (model, *assemble_inputs(model.rsvl_spec, name))


def _build_derived(
    architecture: Architecture,
    pretrained: str | None,
    in_bands: int,
    band_stats: dict[str, Any] | None,
    **options: Any,
) -> BuiltModel:
    """Build a derived architecture: its base with the same arguments, then the text-tower change."""
    model = build_model(architecture.base, pretrained, in_bands, band_stats, **options)[0]
    if architecture.kps is not None:
        apply_kps(model, architecture.kps)
    else:
        set_text_context_length(model, architecture.text_context_length)
    model.rsvl_spec = {**model.rsvl_spec, "architecture": architecture.name}
    return (model, *assemble_inputs(model.rsvl_spec, architecture.name))
