"""Inputs with other than three bands: widening the first convolution, and per-band normalisation.

**Widening rule** (ours; the papers do not publish one). For ``in_bands != 3`` the image tower's
first convolution, pretrained on RGB with weights ``W_r, W_g, W_b``, becomes::

    W'[:, c] = (3 / in_bands) * W_rgb(c)
    W_rgb(c) = W_r, W_g or W_b when band c is the red, green or blue band
               (Sentinel-2 B04, B03, B02; also R/G/B, RED/GREEN/BLUE),
               else the mean (W_r + W_g + W_b) / 3

so true-colour bands keep their pretrained colour filters and every other band (NIR, SWIR, red
edge, SAR VV/VH) starts from the colour-blind mean filter. The factor ``3 / in_bands`` keeps the
activation scale: an input that is constant across bands (after per-band normalisation) gives
exactly the response the RGB network gives to the same constant on its three channels, because
``sum_c W'[:, c] = W_r + W_g + W_b``. The bias, stride and padding are kept. Three-band inputs
keep the pretrained convolution unchanged, whatever their band names.

**Normalisation**: each band is standardised with its dataset mean and standard deviation
(``band_stats`` as written by :class:`rsvl.data.band_stats.BandStats`), in the units the dataset
stores (reflectance x 10000, dB, 0..255).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from rsvl.errors import DataError, ModelError

RGB_ALIASES = (
    ("B04", "R", "RED"),
    ("B03", "G", "GREEN"),
    ("B02", "B", "BLUE"),
)


def canonical_band(name: str) -> str:
    """Upper-case a band name, drop a sensor prefix (``S2_B04``) and zero-pad (``B4`` -> ``B04``)."""
    band = name.strip().upper().split("_")[-1]
    if len(band) == 2 and band[0] == "B" and band[1].isdigit():
        band = f"B0{band[1]}"
    return band


def rgb_source(band_names: Sequence[str] | None, in_bands: int) -> list[int | None]:
    """For each input band, the RGB channel (0, 1, 2) whose weights it copies, or ``None`` for the mean.

    Args:
        band_names: Names of the input bands in channel order; ``None`` means all take the mean.
        in_bands: Number of input bands.

    Raises:
        ModelError: ``band_names`` does not have ``in_bands`` entries.
    """
    if band_names is None:
        return [None] * in_bands
    if len(band_names) != in_bands:
        raise ModelError(f"{len(band_names)} band names {list(band_names)} for in_bands={in_bands}")
    sources: list[int | None] = []
    for name in band_names:
        band = canonical_band(name)
        sources.append(next((i for i, aliases in enumerate(RGB_ALIASES) if band in aliases), None))
    return sources


def widened_weight(rgb_weight: torch.Tensor, band_names: Sequence[str] | None, in_bands: int) -> torch.Tensor:
    """Apply the widening rule to an RGB first-convolution weight ``(out, 3, kh, kw)``.

    Args:
        rgb_weight: The pretrained weight.
        band_names: Input band names in channel order, or ``None``.
        in_bands: Number of input bands.

    Returns:
        The ``(out, in_bands, kh, kw)`` weight.
    """
    mean = rgb_weight.mean(dim=1)
    columns = [mean if src is None else rgb_weight[:, src] for src in rgb_source(band_names, in_bands)]
    return torch.stack(columns, dim=1) * (3.0 / in_bands)


def first_conv(visual: nn.Module) -> tuple[str, nn.Conv2d]:
    """Return the dotted name and module of the first ``Conv2d`` of an image tower (its stem).

    Raises:
        ModelError: The tower has no convolution.
    """
    for name, module in visual.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ModelError(f"{type(visual).__name__} has no convolution to widen")


def widen_first_conv(visual: nn.Module, in_bands: int, band_names: Sequence[str] | None = None) -> nn.Conv2d:
    """Replace the image tower's first convolution by an ``in_bands``-channel one (rule above).

    Args:
        visual: The image tower (``model.visual``); modified in place.
        in_bands: Number of input bands (not 3).
        band_names: Input band names in channel order, or ``None``.

    Returns:
        The new convolution.
    """
    name, conv = first_conv(visual)
    if conv.in_channels != 3:
        raise ModelError(f"first convolution {name!r} takes {conv.in_channels} bands, not 3; cannot widen it")
    widened = nn.Conv2d(
        in_bands,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        widened.weight.copy_(widened_weight(conv.weight, band_names, in_bands))
        if conv.bias is not None:
            widened.bias.copy_(conv.bias)
    parent_name, _, attr = name.rpartition(".")
    setattr(visual.get_submodule(parent_name) if parent_name else visual, attr, widened)
    return widened


def normalisation_from_stats(
    band_stats: dict[str, Any], in_bands: int
) -> tuple[list[float], list[float], list[str]]:
    """Check a dataset's band statistics and return ``(mean, std, band names)``.

    Args:
        band_stats: ``{"bands", "mean", "std"[, "pixels"]}`` of one media column.
        in_bands: Number of input bands the model takes.

    Raises:
        ModelError: Keys are missing, lengths disagree with ``in_bands``, or a band has std <= 0.
    """
    missing = {"bands", "mean", "std"} - set(band_stats)
    if missing:
        raise ModelError(f"band_stats lacks {sorted(missing)}")
    bands, mean, std = list(band_stats["bands"]), list(band_stats["mean"]), list(band_stats["std"])
    if not len(bands) == len(mean) == len(std) == in_bands:
        raise ModelError(
            f"band_stats has {len(bands)} bands, {len(mean)} means and {len(std)} stds; "
            f"the model takes in_bands={in_bands}"
        )
    flat = [band for band, s in zip(bands, std) if not s > 0]
    if flat:
        raise ModelError(f"band_stats std is not positive for bands {flat}; drop constant bands or fix the stats")
    return [float(m) for m in mean], [float(s) for s in std], [str(b) for b in bands]


class BandNormalize(nn.Module):
    """Standardise a (bands, H, W) or (N, bands, H, W) tensor band by band.

    Args:
        mean: Per-band mean, in the input's units.
        std: Per-band standard deviation (all positive).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Return ``(image - mean) / std``.

        Raises:
            DataError: The band count differs from the statistics'.
        """
        bands = image.shape[-3]
        if bands != self.mean.shape[0]:
            raise DataError(f"input has {bands} bands, the normalisation expects {self.mean.shape[0]}")
        return (image - self.mean) / self.std
