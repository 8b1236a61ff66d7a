"""Per-sensor image-tower weights: an architecture's ``sensor_weights``, loaded by ``pretrained="sensor"``.

A sensor model (:mod:`rsvl.models.multisensor`) builds the architecture's image tower once per
sensor; with ``pretrained="sensor"`` each tower's trunk is filled from that sensor's own weights
file (the CLOSP encoders: torchgeo's SSL4EO-S12 MoCo ResNet-50 for Sentinel-1 VV/VH and for
Sentinel-2), and the other towers from the config's ``packaged_weights``.

**Where the file comes from.** An entry with ``repo`` is a file of that Hugging Face repo at the
pinned ``revision``, fetched through ``huggingface_hub`` into its cache. Offline
(``HF_HUB_OFFLINE=1``) and not cached, :func:`sensor_weights_file` raises
:class:`rsvl.errors.WeightsNotCachedError` naming the repo, revision and file before any model is
built. An entry without ``repo`` names a local file, and :func:`load_sensor_weights` takes any
local path in place of the download (tests use it with a file of the same layout).

**How it loads.** The file's keys (``drop_prefixes`` removed, e.g. the ``fc.`` classifier the
tower does not have) are matched to the submodule by name (a torchgeo ResNet state dict is timm's
layout, which is open_clip's ``visual.trunk``) or by order (``.pth`` files only: safetensors keeps
no key order), strictly: a key left over on either side, or a shape that differs, is an error.
``.safetensors`` files are read with safetensors, others with ``torch.load(weights_only=True)``.

**Bands (ours).** ``bands`` names the input channels of the file's first convolution. The tower
takes the dataset's bands (``band_stats["bands"]``), so the first convolution keeps, in the
dataset's order, the input columns of the bands the dataset has (names compared as
:func:`rsvl.models.bands.canonical_band`: ``B8a`` = ``B8A``, ``B1`` = ``B01``); a dataset band the
weights lack is an error. The SSL4EO-S12 Sentinel-2 weights take the 13 L1C bands while our
Sentinel-2 data has 12 (B10, the 1375 nm cirrus band, is absent from L2A products), so the B10
column is dropped and nothing else is rescaled. Dropping a column is exactly feeding that band as
0, and with the weights' input scaling (reflectance / 10000) B10 was nearly 0 in pretraining:
mean 0.0022, std 0.0048 over SSL4EO-S12 (22 and 47.5 before scaling), against 0.08 to 0.26 for
the other bands, so the first convolution's response moves by a negligible amount.

**Normalisation.** A frozen pretrained trunk must see inputs scaled as in its pretraining, so an
entry's ``normalisation`` (mean/std per file band, chosen with the same columns) replaces the
dataset's statistics for that tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from torch import nn

from rsvl.errors import ModelError, WeightsNotCachedError
from rsvl.models.architectures import Architecture, SensorWeights, get_architecture
from rsvl.models.bands import canonical_band, first_conv
from rsvl.models.weights import hub_offline, read_state_dict

SENSOR = "sensor"
"""The ``pretrained`` value that loads each sensor tower from the architecture's ``sensor_weights``."""


def sensor_entry(architecture: Architecture | None, name: str, sensor: str | None) -> SensorWeights:
    """The ``sensor_weights`` entry of ``sensor`` in architecture ``name``.

    Args:
        architecture: The registered architecture (``None`` for an open_clip built-in).
        name: Its name, for messages.
        sensor: The sensor the tower is built for (``s1``, ``s2``).

    Raises:
        ModelError: The architecture has no ``sensor_weights``, no sensor was given, or it has none for it.
    """
    entries = architecture.sensor_weights if architecture is not None else {}
    if not entries:
        raise ModelError(f"architecture {name!r} has no sensor_weights; pretrained={SENSOR!r} needs them")
    if sensor is None:
        raise ModelError(f"pretrained={SENSOR!r} loads one sensor's weights: build {name!r} for a sensor "
                         f"(one of {sorted(entries)}) with rsvl.models.multisensor.build_sensor_model")
    if sensor not in entries:
        raise ModelError(f"architecture {name!r} has sensor_weights for {sorted(entries)}, not {sensor!r}")
    return entries[sensor]


def cached_sensor_file(entry: SensorWeights, cache_dir: str | None = None) -> str | None:
    """The local copy of an entry's file, or ``None`` when it is not on this machine.

    Args:
        entry: The sensor weights.
        cache_dir: Hugging Face cache folder (``None``: the hub's default).
    """
    if entry.repo is None:
        return entry.file if Path(entry.file).is_file() else None
    found = try_to_load_from_cache(entry.repo, entry.file, cache_dir=cache_dir, revision=entry.revision)
    return found if isinstance(found, str) else None


def _not_cached(entry: SensorWeights, cache_dir: str | None, why: str) -> WeightsNotCachedError:
    cache = cache_dir or hf_constants.HF_HUB_CACHE
    revision = f" --revision {entry.revision}" if entry.revision else ""
    return WeightsNotCachedError(
        f"sensor weights {entry.file!r} of Hugging Face repo {entry.repo!r}"
        f"{' at revision ' + entry.revision if entry.revision else ''} are not cached in {cache} and {why}. "
        f"Provide them by, on a machine with network, running `huggingface-cli download {entry.repo} {entry.file}"
        f"{revision}` and copying the Hugging Face cache here, pointing HF_HOME (or HF_HUB_CACHE) at it; "
        "or by writing an architecture config under RSVL_MODELS_DIR whose sensor_weights entry names the "
        "local file (no repo)."
    )


def ensure_sensor_weights_available(entry: SensorWeights, cache_dir: str | None = None) -> None:
    """Fail at once when an entry's file is neither on this machine nor downloadable.

    Args:
        entry: The sensor weights.
        cache_dir: Hugging Face cache folder.

    Raises:
        ModelError: A local file (no ``repo``) does not exist.
        WeightsNotCachedError: The hub is offline (``HF_HUB_OFFLINE``) and the file is not cached.
    """
    if cached_sensor_file(entry, cache_dir) is not None:
        return
    if entry.repo is None:
        raise ModelError(f"{entry.file}: sensor weights file does not exist")
    if hub_offline():
        raise _not_cached(entry, cache_dir, "the Hugging Face Hub is offline (HF_HUB_OFFLINE=1)")


def sensor_weights_file(entry: SensorWeights, cache_dir: str | None = None) -> str:
    """The local path of an entry's file, downloaded into the Hugging Face cache when needed.

    Args:
        entry: The sensor weights.
        cache_dir: Hugging Face cache folder.

    Returns:
        A path :func:`load_sensor_weights` can read.

    Raises:
        WeightsNotCachedError: Not cached and the hub is offline or cannot be reached.
        ModelError: A local file is missing, or the hub refuses the repo, revision or file.
    """
    ensure_sensor_weights_available(entry, cache_dir)
    cached = cached_sensor_file(entry, cache_dir)
    if cached is not None:
        return cached
    try:
        return hf_hub_download(entry.repo, entry.file, revision=entry.revision, cache_dir=cache_dir)
    except LocalEntryNotFoundError as err:  # no connection and no cached copy
        raise _not_cached(entry, cache_dir, f"the hub cannot be reached ({err})") from err
    except HfHubHTTPError as err:
        raise ModelError(f"cannot download sensor weights {entry.source()}: {err}") from err


def band_columns(entry: SensorWeights, band_names: Sequence[str] | None, in_bands: int) -> list[int]:
    """The first-convolution input columns of the weights, in the order of the data's bands.

    Args:
        entry: The sensor weights (``bands``: the file's input channels).
        band_names: The data's band names in channel order, or ``None``.
        in_bands: The data's band count.

    Returns:
        For each data band, the index of its column in the file's first convolution.

    Raises:
        ModelError: A data band is not among the weights' bands, or unnamed bands differ in count.
    """
    if band_names is None:
        if in_bands != len(entry.bands):
            raise ModelError(f"{entry.source()}: the weights take bands {list(entry.bands)}; {in_bands} unnamed "
                             "bands cannot be matched to them (give band_stats with band names)")
        return list(range(in_bands))
    if len(band_names) != in_bands:
        raise ModelError(f"{len(band_names)} band names {list(band_names)} for in_bands={in_bands}")
    file_bands = [canonical_band(band) for band in entry.bands]
    columns = []
    for band in band_names:
        if canonical_band(band) not in file_bands:
            raise ModelError(f"{entry.source()}: band {band!r} of the data is not among the weights' input bands "
                             f"{list(entry.bands)}")
        columns.append(file_bands.index(canonical_band(band)))
    return columns


def sensor_normalisation(entry: SensorWeights, columns: Sequence[int]) -> tuple[list[float], list[float]] | None:
    """The weights' own input mean/std for the chosen columns, or ``None`` when the entry has none."""
    if entry.normalisation is None:
        return None
    return ([entry.normalisation["mean"][c] for c in columns], [entry.normalisation["std"][c] for c in columns])


def _renamed(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], match: str, path: str,
             where: str) -> dict[str, torch.Tensor]:
    if match == "name":
        return source
    if Path(path).suffix == ".safetensors":
        raise ModelError(f"{where}: match 'order' needs a .pth/.pt/.bin file; safetensors keeps no key order "
                         "(it stores tensors by dtype and name); use match 'name'")
    if len(source) != len(target):
        raise ModelError(f"{where}: {len(source)} tensors in the file, {len(target)} in the module")
    return dict(zip(target, source.values()))


def load_sensor_weights(model: nn.Module, entry: SensorWeights, band_names: Sequence[str] | None, in_bands: int,
                        path: str) -> list[int]:
    """Load one sensor's weights file into ``model.<entry.module>``, strictly, its first conv cut to the data's bands.

    Args:
        model: The open_clip model whose image tower is already ``in_bands`` wide.
        entry: The sensor weights.
        band_names: The data's band names in channel order, or ``None``.
        in_bands: The data's band count.
        path: The local file (from :func:`sensor_weights_file`, or any file of the same layout).

    Returns:
        The file's first-convolution columns kept, one per data band (:func:`band_columns`).

    Raises:
        ModelError: The file cannot be read, lists another band count than ``entry.bands``, or its
            tensors do not fill the submodule exactly.
    """
    module = model.get_submodule(entry.module)
    where = f"{path} -> {entry.module}"
    source = {k: v for k, v in read_state_dict(path).items() if not k.startswith(entry.drop_prefixes)}
    target = module.state_dict()
    state = _renamed(source, target, entry.match, path, where)
    conv_key = f"{first_conv(module)[0]}.weight"
    weight = state.get(conv_key)
    if weight is None or weight.dim() != 4 or weight.shape[1] != len(entry.bands):
        found = None if weight is None else tuple(weight.shape)
        raise ModelError(f"{where}: first convolution {conv_key!r} is {found}; the config lists "
                         f"{len(entry.bands)} input bands {list(entry.bands)}")
    columns = band_columns(entry, band_names, in_bands)
    state = {**state, conv_key: weight[:, columns].contiguous()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{where}: {err}") from err
    return columns


def check_sensor_weights(name: str, sensors: Sequence[str], cache_dir: str | None = None,
                         architecture: Architecture | None = None) -> None:
    """Check, before any tower is built, that every sensor has weights here or downloadable.

    Args:
        name: The architecture.
        sensors: The sensors to build.
        cache_dir: Hugging Face cache folder.
        architecture: The registered architecture (default: looked up by ``name``).

    Raises:
        ModelError: The architecture lacks an entry for a sensor, or a local file is missing.
        WeightsNotCachedError: Offline and a sensor's file is not cached.
    """
    architecture = architecture if architecture is not None else get_architecture(name)
    for sensor in sensors:
        ensure_sensor_weights_available(sensor_entry(architecture, name, sensor), cache_dir)
