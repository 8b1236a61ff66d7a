"""CPU-independent randomness and arithmetic for the procedural datasets.

The default data is pinned by its DVC md5, so every byte the generator writes must be the same on
every CPU (x86-64 with or without AVX-512, ARM) and every libm. NumPy and glibc choose float
kernels by CPU at run time, and the transcendental ones (``exp``, ``log``, ``log10``, ``pow``,
``sin``, ``cos``, NumPy's Gamma and Dirichlet draws, Pillow's resampling filters and polygon
rasteriser) differ in the last bits between those kernels, which flips rounded pixels. The
generator therefore uses only:

* **Integer random streams.** PCG64 is integer arithmetic; ``integers``, ``permutation`` and
  uniform ``choice`` are integer algorithms; ``random()`` is ``(next_uint64 >> 11) * 2**-53``,
  exact in binary64.
* **Exactly rounded operations.** IEEE 754 ``+ - * /`` and ``sqrt`` are correctly rounded, so
  SIMD and scalar kernels agree bit for bit; NumPy applies one operation per ufunc call, so no
  fused multiply-add can form between two of them; ``floor``, ``rint``, ``frexp``, ``ldexp``,
  ``min``/``max``, comparisons and integer sums are exact; Python float literals are parsed with
  correct rounding. Every function below is a fixed sequence of these operations, so its result
  is a pure function of its inputs on any machine.
* **No float reductions whose order a kernel may choose.** Sums of floats are written out in a
  fixed order or done with :func:`math.fsum` (correctly rounded, so order-free).

Transcendental functions are polynomial approximations evaluated with those operations (far
more accurate than the pictures need); normal deviates are Irwin–Hall sums of twelve integer
uniforms; SAR speckle is the sum of ``L`` looks of squared circular-Gaussian deviates, which is
how multi-look intensity arises physically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_LN2 = 0.6931471805599453
_LN10 = 2.302585092994046
_TWO_PI = 6.283185307179586
_IRWIN_HALL_BITS = 16
_IRWIN_HALL_TERMS = 12  # twelve uniforms: variance exactly 1 (up to the 16-bit grid)


def uniform(rng: np.random.Generator, low: float, high: float, size=None):
    """Draw uniform values in ``[low, high)`` with exact arithmetic.

    Args:
        rng: Generator.
        low: Lower bound.
        high: Upper bound.
        size: Output shape; ``None`` for one Python float.

    Returns:
        A float (``size=None``) or a float64 array.
    """
    if size is None:
        return low + (high - low) * float(rng.random())
    return low + (high - low) * rng.random(size)


def normal(rng: np.random.Generator, mean: float = 0.0, std: float = 1.0, size=None):
    """Draw approximately normal values: an Irwin–Hall sum of twelve 16-bit integer uniforms.

    The sum of twelve uniforms minus six has mean 0 and variance 1 and is bounded by ±6, which is
    all the pictures need; it is computed on integers, then scaled by a power of two (exact).

    Args:
        rng: Generator.
        mean: Mean.
        std: Standard deviation.
        size: Output shape; ``None`` for one Python float.

    Returns:
        A float (``size=None``) or a float64 array.
    """
    shape = () if size is None else (size if isinstance(size, tuple) else (size,))
    draws = rng.integers(0, 1 << _IRWIN_HALL_BITS, size=(_IRWIN_HALL_TERMS, *shape), dtype=np.int64)
    # (sum of k + 0.5) / 2**16 over twelve terms, minus six: integer numerator, power-of-two scale.
    numerator = draws.sum(axis=0) * 2 + _IRWIN_HALL_TERMS - _IRWIN_HALL_TERMS * (1 << _IRWIN_HALL_BITS)
    z = numerator / float(1 << (_IRWIN_HALL_BITS + 1))
    value = mean + std * z
    return float(value) if size is None else value


def speckle(rng: np.random.Generator, looks: int, shape: tuple[int, ...]) -> np.ndarray:
    """Draw multi-look intensity speckle: mean 1, variance ``0.95 / looks`` (Gamma-like).

    Each look is ``|x + iy|^2 / 2`` with circular-Gaussian ``x, y``; the looks are averaged in a
    fixed order. With true Gaussians this is Gamma(L, 1/L) with variance ``1 / L``; the Irwin–Hall
    deviates' fourth moment is 2.9 instead of 3, hence 0.95.

    Args:
        rng: Generator.
        looks: Number of looks ``L`` (a positive integer).
        shape: Output shape.

    Returns:
        float64 array of the given shape.
    """
    if looks < 1:
        raise ValueError(f"looks must be a positive integer, got {looks}")
    total = np.zeros(shape)
    for _ in range(looks):
        x, y = normal(rng, size=shape), normal(rng, size=shape)
        total = total + (x * x + y * y)
    return total / (2.0 * looks)


def choose(rng: np.random.Generator, items: Sequence, weights: Sequence[float]):
    """Pick one item with probability proportional to its weight (one uniform draw, exact CDF).

    Args:
        rng: Generator.
        items: The candidates.
        weights: Non-negative weights, one per item, not all zero.

    Returns:
        The picked item.
    """
    if len(items) != len(weights) or not items:
        raise ValueError("choose needs one weight per item and at least one item")
    threshold = float(rng.random()) * math.fsum(weights)
    running = 0.0
    for item, weight in zip(items, weights):
        running += weight
        if threshold < running:
            return item
    return items[-1]


def choose_distinct(rng: np.random.Generator, count: int, weights: Sequence[float]) -> list[int]:
    """Pick ``count`` distinct indices, each draw proportional to the remaining weights.

    Args:
        rng: Generator.
        count: How many indices.
        weights: Weight of each index.

    Returns:
        The picked indices, in draw order.
    """
    remaining = list(range(len(weights)))
    picked = []
    for _ in range(count):
        index = choose(rng, remaining, [weights[i] for i in remaining])
        picked.append(index)
        remaining.remove(index)
    return picked


def _horner(x, coefficients: Sequence[float]):
    result = coefficients[0]
    for c in coefficients[1:]:
        result = result * x + c
    return result


# 2 * atanh(z) = 2 * (z + z^3/3 + z^5/5 + ...), in powers of z^2 (highest first) for Horner.
_ATANH_SERIES = [2.0 / (2 * k + 1) for k in range(15, -1, -1)]
# exp(r) = sum r^k / k!, highest power first; |r| <= ln(2)/2 needs k <= 17 for double precision.
_EXP_SERIES = [1.0 / math.factorial(k) for k in range(18, -1, -1)]
# sin(x) = sum (-1)^k x^(2k+1)/(2k+1)!, in powers of x^2; cos likewise; for |x| <= pi/2.
_SIN_SERIES = [(-1.0) ** k / math.factorial(2 * k + 1) for k in range(12, -1, -1)]
_COS_SERIES = [(-1.0) ** k / math.factorial(2 * k) for k in range(12, -1, -1)]


def log(x):
    """Natural logarithm of positive values (``frexp`` split, then an atanh series).

    Args:
        x: Positive float or array.

    Returns:
        float64 array (or 0-d array for a scalar).
    """
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))  # mantissa in [0.5, 1)
    z = (mantissa - 1.0) / (mantissa + 1.0)  # in [-1/3, 0)
    return z * _horner(z * z, _ATANH_SERIES) + exponent * _LN2


def log10(x):
    """Base-10 logarithm of positive values, see :func:`log`."""
    return log(x) / _LN10


def exp(x):
    """Exponential: ``2**n * exp(r)`` with ``r`` within ``ln(2)/2`` of zero, ``exp(r)`` by Taylor series.

    Args:
        x: Float or array (no overflow handling: arguments stay far below 700 here).

    Returns:
        float64 array (or 0-d array for a scalar).
    """
    x = np.asarray(x, dtype=np.float64)
    n = np.floor(x / _LN2 + 0.5)
    r = x - n * _LN2
    return np.ldexp(_horner(r, _EXP_SERIES), n.astype(np.int64))


def pow10(x):
    """``10**x``, see :func:`exp`."""
    return exp(np.asarray(x, dtype=np.float64) * _LN10)


def _reduce_angle(theta):
    """Reduce angles to ``[-pi/2, pi/2]``: return the reduced angle and the sign of sin/cos."""
    theta = np.asarray(theta, dtype=np.float64)
    theta = theta - _TWO_PI * np.floor(theta / _TWO_PI + 0.5)  # now in [-pi, pi]
    flip = np.abs(theta) > math.pi / 2
    # sin(pi - t) = sin(t), cos(pi - t) = -cos(t): fold the outer quarters back.
    folded = np.where(flip, np.where(theta > 0, math.pi - theta, -math.pi - theta), theta)
    return folded, np.where(flip, -1.0, 1.0)


def sin(theta):
    """Sine by range reduction and a Taylor series (float or array in, float64 array out)."""
    x, _ = _reduce_angle(theta)
    return x * _horner(x * x, _SIN_SERIES)


def cos(theta):
    """Cosine by range reduction and a Taylor series (float or array in, float64 array out)."""
    x, sign = _reduce_angle(theta)
    return sign * _horner(x * x, _COS_SERIES)


def fsum_mean(values: np.ndarray) -> float:
    """Correctly rounded mean of an array (``math.fsum``), the same whatever the summation kernel."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return math.fsum(flat.tolist()) / flat.size
