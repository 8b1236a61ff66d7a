"""Per-band mean and standard deviation, accumulated one array at a time.

Arrays are merged with Chan et al.'s pairwise update (count, mean, sum of squared deviations in
float64), so statistics over millions of patches never hold more than one patch in memory and do
not lose precision the way a running sum of squares does. Each patch's sums are correctly rounded
(:func:`math.fsum`), so the statistics written to ``dataset.json`` are the same on every CPU,
whatever summation order NumPy's kernels would pick.
"""

from __future__ import annotations

import math

import numpy as np


class BandStats:
    """Running mean and population standard deviation of each band of CHW arrays.

    Args:
        names: Band names, in channel order.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self.count = 0
        self._mean = np.zeros(len(names), dtype=np.float64)
        self._m2 = np.zeros(len(names), dtype=np.float64)

    def add(self, array: np.ndarray) -> None:
        """Fold one (bands, height, width) array into the statistics.

        Args:
            array: Values of one patch, bands in the order of ``names``.
        """
        if array.ndim != 3 or array.shape[0] != len(self.names):
            raise ValueError(f"expected ({len(self.names)}, H, W), got {array.shape}")
        flat = array.reshape(array.shape[0], -1).astype(np.float64)
        n = flat.shape[1]
        mean = np.array([math.fsum(band.tolist()) / n for band in flat])
        deviation = flat - mean[:, None]
        m2 = np.array([math.fsum(band.tolist()) for band in deviation * deviation])
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * n / total
        self._m2 = self._m2 + m2 + delta * delta * self.count * n / total
        self.count = total

    def to_dict(self) -> dict | None:
        """Return ``{"bands", "mean", "std", "pixels"}`` (JSON-ready), or ``None`` when empty."""
        if not self.count:
            return None
        return {
            "bands": self.names,
            "mean": self._mean.tolist(),
            "std": np.sqrt(self._m2 / self.count).tolist(),
            "pixels": self.count,
        }
