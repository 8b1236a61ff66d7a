"""Image preprocessing for every tower and band count: tensors in, normalised model inputs out.

Inputs are what :class:`rsvl.data.dataset.ManifestDataset` yields, float (bands, H, W) tensors in
the dataset's units (0..255 for 8-bit images), or numpy arrays of that shape, or PIL images (taken
as 0..255 RGB). Validation resizes the shorter side to the model's size and centre-crops; training
takes a random crop of 90-100% of the area (GeoRSCLIP's scale) and random horizontal and vertical
flips (overhead imagery has no canonical orientation; CLOSP's flips). Then each band is
standardised with :class:`rsvl.models.bands.BandNormalize`. A single grey band given to a
three-band (RGB) model is repeated first (:func:`fit_bands`); training does not give an RGB model
a single band that has band statistics (dB, reflectance): it narrows the model's first convolution
to that band instead (:func:`rsvl.train.data.fit_model_to_data`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from rsvl.errors import DataError
from rsvl.models.bands import BandNormalize

TRAIN_CROP_SCALE = (0.9, 1.0)
EIGHT_BIT_MAX = 255.0


def as_chw_tensor(image: Any) -> torch.Tensor:
    """Return ``image`` as a float32 (bands, H, W) tensor in its own units.

    Args:
        image: A tensor or numpy array (bands, H, W), or a PIL image (converted to RGB, 0..255).

    Raises:
        DataError: The input is of another type or rank.
    """
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).transpose(2, 0, 1).copy())
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = getattr(image, "shape", None)
        raise DataError(f"expected a (bands, H, W) tensor, array or PIL image, not {type(image).__name__} {shape}")
    return image.float()


def fit_bands(image: Any, in_bands: int) -> torch.Tensor:
    """Return ``image`` as (bands, H, W), a grey single band repeated when the model wants three.

    SAR chips are single-band amplitude; RGB CLIP towers take three bands, and HRSID ships its
    chips as three identical channels, so repeating the band is the faithful conversion. It lets
    one RGB tower train on optical pairs and then on SAR chips (progressive transfer).

    Args:
        image: Tensor/array (bands, H, W) or PIL image.
        in_bands: Bands the model's image tower takes.

    Raises:
        DataError: The band count fits neither directly nor by repetition.
    """
    tensor = as_chw_tensor(image)
    if tensor.shape[0] == 1 and in_bands == 3:
        tensor = tensor.expand(3, -1, -1)
    if tensor.shape[0] != in_bands:
        raise DataError(f"image has {tensor.shape[0]} bands, the model takes {in_bands}")
    return tensor


class Preprocess:
    """Resize/crop (and augment when training), then standardise each band.

    Args:
        size: Model input size ``(height, width)``.
        mean: Per-band mean in input units.
        std: Per-band standard deviation in input units.
        train: Random crop and flips when True; resize and centre crop when False.
        interpolation: ``bicubic``, ``bilinear`` or ``nearest``.
    """

    def __init__(
        self,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        interpolation: str = "bicubic",
    ) -> None:
        self.size = tuple(int(s) for s in size)
        self.train = train
        mode = InterpolationMode(interpolation)
        if train:
            geometry = [
                v2.RandomResizedCrop(self.size, scale=TRAIN_CROP_SCALE, interpolation=mode, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
            ]
        else:
            geometry = [v2.Resize(min(self.size), interpolation=mode, antialias=True), v2.CenterCrop(self.size)]
        self.geometry = v2.Compose(geometry)
        self.normalize = BandNormalize(mean, std)

    def __call__(self, image: Any) -> torch.Tensor:
        """Return the normalised (bands, height, width) float32 model input.

        Raises:
            DataError: The image's bands fit the model's neither directly nor by repetition.
        """
        return self.normalize(self.geometry(fit_bands(image, self.normalize.mean.shape[0])))

    def __repr__(self) -> str:
        kind = "train" if self.train else "val"
        return f"Preprocess({kind}, size={self.size}, bands={self.normalize.mean.shape[0]})"


def rgb_normalisation(preprocess_cfg: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Scale an open_clip RGB mean/std (0..1 units) to 8-bit input units (0..255)."""
    mean = [EIGHT_BIT_MAX * float(m) for m in preprocess_cfg["mean"]]
    std = [EIGHT_BIT_MAX * float(s) for s in preprocess_cfg["std"]]
    return mean, std


def make_preprocess(
    size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bicubic",
) -> tuple[Preprocess, Preprocess]:
    """Return the ``(train, val)`` preprocessing pair for one model input.

    Args:
        size: Model input size ``(height, width)``.
        mean: Per-band mean in input units.
        std: Per-band standard deviation in input units.
        interpolation: Resize interpolation.
    """
    return (
        Preprocess(size, mean, std, train=True, interpolation=interpolation),
        Preprocess(size, mean, std, train=False, interpolation=interpolation),
    )


class RandomRotation:
    """A training preprocessing with a random rotation by an angle drawn uniformly from [0, ``degrees``].

    GeoRSCLIP trains with 0-360° rotations: an overhead scene has no "up". The rotation runs after
    the crop and flips, before the bands are standardised; the corners it uncovers are 0 in input
    units. The angle comes from torch's RNG, which the trainer forks per sample, so runs repeat.

    Args:
        preprocess: A training :class:`Preprocess`.
        degrees: Largest angle (360: any).
        interpolation: Rotation interpolation.

    Raises:
        ValueError: ``degrees`` outside (0, 360] or a validation preprocessing.
    """

    def __init__(self, preprocess: Preprocess, degrees: float, interpolation: str = "bilinear") -> None:
        if not 0.0 < degrees <= 360.0:
            raise ValueError(f"rotation degrees must be in (0, 360], got {degrees}")
        if not preprocess.train:
            raise ValueError("random rotation is a training augmentation; got a validation preprocessing")
        self.preprocess, self.degrees = preprocess, float(degrees)
        self.rotate = v2.RandomRotation((0.0, self.degrees), interpolation=InterpolationMode(interpolation), fill=0.0)

    def __call__(self, image: Any) -> torch.Tensor:
        """Return the rotated, normalised (bands, height, width) float32 model input."""
        inner = self.preprocess
        return inner.normalize(self.rotate(inner.geometry(fit_bands(image, inner.normalize.mean.shape[0]))))

    def __repr__(self) -> str:
        return f"RandomRotation({self.preprocess!r}, degrees={self.degrees:g})"
