"""One embedding space for several sensors: an image tower per sensor, one shared text tower (CLOSP).

A :class:`SensorCLIP` holds ``visual`` as a module dict, sensor name → image tower (the media
column it reads: ``s1`` for Sentinel-1 VV/VH in dB, ``s2`` for Sentinel-2 reflectance × 10000),
one text tower all sensors align to, and, for GeoCLOSP, a location encoder
(:class:`rsvl.models.location.LocationEncoder`) into the same space. Each sensor's tower is the
architecture's image tower built for that sensor's band count (the widening rule of
:mod:`rsvl.models.bands`), so the text space is the bridge: S1 and S2 are never aligned to each
other directly, yet S1→S2 retrieval works through it.

**Which tower reads an image.** The sensors of one model take different band counts (2 and 12),
so ``encode_image`` and the :class:`SensorPreprocess` pick the tower by the input's band count
(as the CLOSP authors' code does); ``sensor=`` names it explicitly. Every consumer that embeds
one media column (evaluation, the registry's pyfunc) therefore works unchanged.

``forward`` takes ``image`` and ``text`` as dicts by sensor (one batch each, never mixed) and
returns features by sensor: one call, so DDP sees every tower used in each step.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from rsvl.errors import DataError, ModelError
from rsvl.models.preprocess import Preprocess, as_chw_tensor, make_preprocess
from rsvl.models.sensor_weights import SENSOR, check_sensor_weights

SENSORS = ("s1", "s2")
"""Media columns a sensor tower may read (``rsvl.data.schema``)."""
DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)


class SensorCLIP(nn.Module):
    """Image towers by sensor and a shared text tower (and optionally a location encoder).

    Args:
        visual: Sensor name → image tower (``tower(images) -> (N, embed_dim)``).
        text: The text tower (``text(tokens) -> (N, embed_dim)``).
        bands: Sensor name → band count its tower takes; the counts must differ.
        location: A location encoder into the same space, or ``None``.
    """

    def __init__(self, visual: Mapping[str, nn.Module], text: nn.Module, bands: Mapping[str, int],
                 location: nn.Module | None = None) -> None:
        super().__init__()
        if set(visual) != set(bands) or not visual:
            raise ModelError(f"need a band count for every sensor tower: towers {sorted(visual)}, bands {dict(bands)}")
        if len(set(bands.values())) != len(bands):
            raise ModelError(f"sensor towers must take different band counts to be told apart, got {dict(bands)}")
        self.visual = nn.ModuleDict(dict(visual))
        self.text = text
        self.sensor_bands = dict(bands)
        self.location = location
        self.logit_scale = nn.Parameter(torch.tensor(DEFAULT_LOGIT_SCALE))
        self.logit_bias = None

    @property
    def sensors(self) -> list[str]:
        """The sensors, in tower order."""
        return list(self.visual)

    def sensor_of(self, image: torch.Tensor) -> str:
        """The sensor whose tower takes ``image``'s band count (dimension 1 of a batch).

        Raises:
            DataError: No tower takes that many bands.
        """
        bands = int(image.shape[1])
        for sensor, count in self.sensor_bands.items():
            if count == bands:
                return sensor
        raise DataError(f"images with {bands} bands fit no sensor tower of this model ({self.sensor_bands})")

    def encode_image(self, image: torch.Tensor, normalize: bool = False, sensor: str | None = None) -> torch.Tensor:
        """Embed a batch of one sensor's images with that sensor's tower.

        Args:
            image: (N, bands, H, W), preprocessed.
            normalize: L2-normalise the embeddings.
            sensor: The tower; default: the one taking the batch's band count.
        """
        sensor = sensor or self.sensor_of(image)
        if sensor not in self.visual:
            raise ModelError(f"no {sensor!r} tower; this model has {self.sensors}")
        features = self.visual[sensor](image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embed tokenized texts with the shared text tower."""
        features = self.text(text)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_location(self, latlon: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Embed (N, 2) [latitude, longitude] degrees with the location encoder.

        Raises:
            ModelError: The model has no location encoder (CLOSP without Geo).
        """
        if self.location is None:
            raise ModelError("this model has no location encoder (GeoCLOSP has one; CLOSP does not)")
        return self.location(latlon, normalize=normalize)

    def forward(self, image: Mapping[str, torch.Tensor] | torch.Tensor | None = None,
                text: Mapping[str, torch.Tensor] | torch.Tensor | None = None,
                location: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Embed per-sensor batches (dicts by sensor) or one batch (plain tensors), normalised.

        Returns:
            ``image_features``, ``text_features`` (and ``location_features`` when given), each a
            dict by sensor for dict inputs or a tensor for tensor inputs, and ``logit_scale`` (exp).
        """
        out: dict[str, Any] = {"logit_scale": self.logit_scale.exp()}
        if image is not None:
            out["image_features"] = ({s: self.encode_image(x, True, s) for s, x in image.items()}
                                     if isinstance(image, Mapping) else self.encode_image(image, True))
        if text is not None:
            out["text_features"] = ({s: self.encode_text(t, True) for s, t in text.items()}
                                    if isinstance(text, Mapping) else self.encode_text(text, True))
        if location is not None:
            out["location_features"] = {s: self.encode_location(x, True) for s, x in location.items()}
        return out


class SensorPreprocess:
    """Preprocessing by sensor, chosen by the input's band count (as :meth:`SensorCLIP.encode_image`).

    Args:
        by_bands: Band count → the sensor's :class:`rsvl.models.preprocess.Preprocess`.
    """

    def __init__(self, by_bands: Mapping[int, Preprocess]) -> None:
        self.by_bands = dict(by_bands)

    def __call__(self, image: Any) -> torch.Tensor:
        """Preprocess one (bands, H, W) image with its sensor's transform.

        Raises:
            DataError: No sensor takes the image's band count.
        """
        tensor = as_chw_tensor(image)
        bands = int(tensor.shape[0])
        if bands not in self.by_bands:
            raise DataError(f"image has {bands} bands; this model's sensors take {sorted(self.by_bands)}")
        return self.by_bands[bands](tensor)

    def __repr__(self) -> str:
        return f"SensorPreprocess({self.by_bands})"


def sensor_preprocess(spec: Mapping[str, Any]) -> tuple[SensorPreprocess, SensorPreprocess]:
    """The ``(train, val)`` preprocessing of a sensor model's ``rsvl_spec``.

    Args:
        spec: ``model.rsvl_spec`` with ``sensors`` (each ``in_bands`` and ``normalisation``),
            ``image_size`` and ``interpolation``.
    """
    train: dict[int, Preprocess] = {}
    val: dict[int, Preprocess] = {}
    for sensor in spec["sensors"].values():
        norm = sensor["normalisation"]
        train[sensor["in_bands"]], val[sensor["in_bands"]] = make_preprocess(
            spec["image_size"], norm["mean"], norm["std"], spec["interpolation"])
    return SensorPreprocess(train), SensorPreprocess(val)


def is_sensor_model(model: nn.Module) -> bool:
    """Whether ``model`` (possibly DDP-wrapped) is a :class:`SensorCLIP`."""
    return isinstance(getattr(model, "module", model), SensorCLIP)


def build_sensor_model(name: str, pretrained: str | None, sensors: Mapping[str, tuple[int, dict[str, Any] | None]],
                       *, image_size: int | None = None, location: Mapping[str, Any] | None = None,
                       cache_dir: str | None = None, build: Callable[..., Any] | None = None) -> tuple:
    """Build a :class:`SensorCLIP` from a registered architecture: its image tower once per sensor.

    Each sensor's tower is the architecture's image tower with that sensor's weights and band
    count (:func:`rsvl.models.build_model`, told the sensor); the text tower is the first build's.
    With ``pretrained="sensor"`` every sensor's weights file is checked first (:mod:`rsvl.models.sensor_weights`),
    so a missing one fails before any tower is built.

    Args:
        name: Architecture (``rsvl-effnetlite0-minilm-cls``, ``rsvl-resnet50-ssl4eo-minilm``).
        pretrained: As :func:`rsvl.models.build_model`; ``"sensor"`` loads each tower from the
            architecture's ``sensor_weights`` entry for its sensor.
        sensors: Sensor → ``(in_bands, band_stats)`` of its training data.
        image_size: Input size override.
        location: :class:`rsvl.models.location.LocationEncoder` settings (``legendre_polys``,
            ``hidden``, ``layers``) for GeoCLOSP, or ``None``.
        cache_dir: Weights cache folder for tags.
        build: The single-tower builder (default :func:`rsvl.models.build_model`).

    Returns:
        ``(model, preprocess_train, preprocess_val, tokenizer)`` as :func:`rsvl.models.build_model`.

    Raises:
        ModelError: No sensors, an unknown sensor, equal band counts, or no sensor weights for a sensor.
        WeightsNotCachedError: Offline and a sensor's weights are not cached.
    """
    from rsvl.models.factory import build_model

    build = build or build_model
    unknown = sorted(set(sensors) - set(SENSORS))
    if not sensors or unknown:
        raise ModelError(f"sensor towers must be among {list(SENSORS)}, got {sorted(sensors)}")
    if pretrained == SENSOR:
        check_sensor_weights(name, list(sensors), cache_dir)
    towers: dict[str, nn.Module] = {}
    specs: dict[str, dict[str, Any]] = {}
    text = tokenizer = first = None
    for sensor, (in_bands, band_stats) in sensors.items():
        model, _, _, tokenizer = build(name, pretrained, in_bands, band_stats, image_size=image_size,
                                       cache_dir=cache_dir, sensor=sensor)
        towers[sensor] = model.visual
        specs[sensor] = {key: model.rsvl_spec[key] for key in ("in_bands", "bands", "widening", "normalisation")}
        if text is None:
            text, first = model.text, model.rsvl_spec
    encoder = None
    if location is not None:
        from rsvl.models.location import LocationEncoder

        encoder = LocationEncoder(int(first["model_cfg"]["embed_dim"]), **dict(location))
    net = SensorCLIP(towers, text, {sensor: spec["in_bands"] for sensor, spec in specs.items()}, encoder)
    net.rsvl_spec = {
        "architecture": name, "pretrained": pretrained, "in_bands": None, "bands": None, "widening": None,
        "normalisation": None, "sensors": specs, "location": encoder.config() if encoder is not None else None,
        "image_size": first["image_size"], "interpolation": first["interpolation"], "model_cfg": first["model_cfg"],
    }
    return (net, *sensor_preprocess(net.rsvl_spec), tokenizer)
