"""Shape masks for the procedural scenes, rasterised with exact arithmetic.

A pixel belongs to a shape when its centre ``(x + 0.5, y + 0.5)`` does. Each test is a fixed
sequence of IEEE ``+ - * /`` on float64 (see :mod:`rsvl.data.synthetic.exact`), so shapes cover
the same pixels on every CPU, unlike a library rasteriser compiled with fused multiply-adds.
"""

from __future__ import annotations

import numpy as np

from rsvl.data.synthetic import exact


def pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (xs, ys): float64 (height, width) arrays of pixel-centre coordinates."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return xs + 0.5, ys + 0.5


def rectangle(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Mask of the pixels from (x0, y0) to (x1, y1), both corners included, clipped to the image.

    Args:
        shape: (height, width).
        x0: First column.
        y0: First row.
        x1: Last column (inclusive).
        y1: Last row (inclusive).

    Returns:
        (height, width) bool.
    """
    mask = np.zeros(shape, dtype=bool)
    # clamp at 0 so a negative corner clips instead of wrapping around as a negative index
    mask[max(int(y0), 0):max(int(y1) + 1, 0), max(int(x0), 0):max(int(x1) + 1, 0)] = True
    return mask


def ellipse(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Mask of an axis-aligned ellipse (a disc when ``rx == ry``).

    Args:
        shape: (height, width).
        cx: Centre column in pixels.
        cy: Centre row in pixels.
        rx: Radius along x.
        ry: Radius along y.

    Returns:
        (height, width) bool.
    """
    xs, ys = pixel_centres(*shape)
    dx, dy = xs - cx, ys - cy
    return dx * dx * (ry * ry) + dy * dy * (rx * rx) <= (rx * rx) * (ry * ry)


def oriented_ellipse(shape: tuple[int, int], cx: float, cy: float, length: float, width: float,
                     angle: float) -> np.ndarray:
    """Mask of an ellipse whose long axis (``length``) points at ``angle`` radians (0 = along x).

    Args:
        shape: (height, width).
        cx: Centre column in pixels.
        cy: Centre row in pixels.
        length: Full length of the long axis.
        width: Full length of the short axis.
        angle: Direction of the long axis.

    Returns:
        (height, width) bool.
    """
    along, across = _rotated(shape, cx, cy, angle)
    half_l, half_w = length / 2, width / 2
    return along * along * (half_w * half_w) + across * across * (half_l * half_l) <= (half_l * half_l) * (half_w * half_w)


def oriented_rectangle(shape: tuple[int, int], cx: float, cy: float, length: float, width: float,
                       angle: float) -> np.ndarray:
    """Mask of a rectangle centred at (cx, cy) whose long side points at ``angle`` radians.

    Args:
        shape: (height, width).
        cx: Centre column.
        cy: Centre row.
        length: Long side.
        width: Short side.
        angle: Direction of the long side.

    Returns:
        (height, width) bool.
    """
    along, across = _rotated(shape, cx, cy, angle)
    return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)


def wavy_band(shape: tuple[int, int], offset: float, amplitude: float, phase: float, vertical: bool,
              width: float) -> np.ndarray:
    """Mask of a gently curving line across the image (a road, path or track).

    Pixels within ``width / 2`` (across the line) of ``offset + amplitude * sin(phase + 2 pi t / n)``.

    Args:
        shape: (height, width).
        offset: Mean cross position in pixels.
        amplitude: Wiggle in pixels.
        phase: Phase in radians.
        vertical: The line runs top to bottom (cross position = column).
        width: Line width in pixels.

    Returns:
        (height, width) bool.
    """
    xs, ys = pixel_centres(*shape)
    along, across = (ys, xs) if vertical else (xs, ys)
    span = shape[0] if vertical else shape[1]
    # exact.sin, not np.sin, whose result depends on the CPU's SIMD kernels
    centre = offset + amplitude * exact.sin(phase + along * (2 * np.pi / span))
    return np.abs(across - centre) <= width / 2


def _rotated(shape: tuple[int, int], cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = pixel_centres(*shape)
    dx, dy = xs - cx, ys - cy
    # exact cos/sin so the rotation, and thus the pixels covered, are the same on every CPU
    c, s = float(exact.cos(angle)), float(exact.sin(angle))
    return dx * c + dy * s, dy * c - dx * s
