"""GeoCLOSP's location encoder: real spherical harmonics of a point on the Earth, read by a SIREN.

The design follows SatCLIP (Klemmer et al.), written here from its description:

1. :class:`SphericalHarmonics` turns a point ``[latitude, longitude]`` in degrees into the ``L²``
   real, orthonormal spherical harmonics ``Y_l^m(theta, phi)`` for ``l = 0..L-1``, ``m = -l..l``
   (feature ``l*l + l + m``), with ``phi`` = longitude in radians and ``theta`` = the polar angle
   (colatitude, ``90° - latitude``) in radians. They are computed in float64 in closed form and
   returned as float32.
2. :class:`LocationEncoder` feeds them to a SIREN (sine activations; ``w0_initial`` on the first
   layer, ``w0 = 1`` after) and a final linear layer to ``embed_dim``. The caller L2-normalises
   the output (or passes ``normalize=True``).

Conventions, stated once:

* Input rows are ``[latitude, longitude]`` in degrees, the order of the ``location`` field of
  the training batches (:mod:`rsvl.train.data`); latitude in ``[-90, 90]``, longitude in
  ``[-180, 180]`` (:func:`check_latlon`).
* ``P_l^m`` is the associated Legendre function *with* the Condon-Shortley phase ``(-1)^m``
  (as in scipy and most physics texts). The real harmonics are
  ``Y_l0 = N_l0 P_l^0(cos theta)``,
  ``Y_lm = sqrt(2) N_lm P_l^m(cos theta) cos(m phi)`` for ``m > 0`` and
  ``Y_lm = sqrt(2) N_l|m| P_l^|m|(cos theta) sin(|m| phi)`` for ``m < 0``, with
  ``N_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)``; i.e. ``sqrt(2)`` times the real or imaginary part
  of the complex ``Y_l^|m|``. Because the phase is kept, odd-``m`` functions have the opposite
  sign of tables that drop it (e.g. ``Y_1,1 = -sqrt(3/(4 pi)) x`` here). The set is orthonormal
  over the unit sphere either way.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsvl.errors import DataError, ModelError

#: Frequency of the sine layers after the first (SIREN's ``w0``).
HIDDEN_W0 = 1.0
#: SIREN's init constant ``c``: hidden weights are uniform in ``±sqrt(c / fan_in) / w0``.
SIREN_C = 6.0


def check_latlon(latlon: Tensor, where: str = "location") -> None:
    """Check that ``latlon`` holds valid ``[latitude, longitude]`` rows in degrees.

    Args:
        latlon: ``(N, 2)`` tensor, columns latitude then longitude, in degrees.
        where: What the rows are, named in the error (a field, a file).

    Raises:
        DataError: ``latlon`` is not ``(N, 2)``, or a row is not finite, has ``|latitude| > 90``
            or ``|longitude| > 180``; the message names the first bad row, its values and the
            rule it breaks, and how many rows are bad in all.
    """
    if not isinstance(latlon, Tensor) or latlon.ndim != 2 or latlon.shape[1] != 2:
        shape = tuple(latlon.shape) if isinstance(latlon, Tensor) else type(latlon).__name__
        raise DataError(f"{where}: expected a tensor of shape (N, 2) = [latitude, longitude] in degrees, got {shape}")
    if latlon.numel() == 0:
        return
    values = latlon.detach().to(torch.float64)
    lat, lon = values[:, 0], values[:, 1]
    # NaN compares False, so the range masks only flag finite out-of-range values.
    not_finite = ~torch.isfinite(values).all(dim=1)
    bad_lat = lat.abs() > 90.0
    bad_lon = lon.abs() > 180.0
    bad = not_finite | bad_lat | bad_lon
    if not bool(bad.any()):
        return
    row = int(torch.nonzero(bad)[0, 0])
    count = int(bad.sum())
    found = f"[{lat[row].item()!r}, {lon[row].item()!r}]"
    if bool(not_finite[row]):
        rule = "latitude and longitude must be finite"
    elif bool(bad_lat[row]):
        rule = "latitude must lie in [-90, 90] degrees"
    else:
        rule = "longitude must lie in [-180, 180] degrees"
    raise DataError(
        f"{where}: row {row} is {found} (columns [latitude, longitude]): {rule}; "
        f"{count} of {latlon.shape[0]} rows break a rule"
    )


class SphericalHarmonics(nn.Module):
    """Real orthonormal spherical harmonics ``Y_l^m`` of ``[latitude, longitude]`` points.

    No parameters. Feature ``l*l + l + m`` is ``Y_l^m`` for ``l = 0..legendre_polys-1``,
    ``m = -l..l``; conventions in the module docstring.

    Args:
        legendre_polys: Number of degrees ``L`` (``l`` runs ``0..L-1``); ``L²`` features.

    Raises:
        ModelError: ``legendre_polys`` is below 1.
    """

    def __init__(self, legendre_polys: int = 10) -> None:
        super().__init__()
        if int(legendre_polys) != legendre_polys or legendre_polys < 1:
            raise ModelError(f"legendre_polys must be an integer >= 1, got {legendre_polys!r}")
        self.legendre_polys = int(legendre_polys)
        self.embedding_dim = self.legendre_polys**2

    def forward(self, latlon: Tensor) -> Tensor:
        """The harmonics of each point.

        Args:
            latlon: ``(N, 2)`` ``[latitude, longitude]`` in degrees.

        Returns:
            ``(N, L*L)`` float32 on ``latlon``'s device.

        Raises:
            DataError: ``latlon`` breaks a rule of :func:`check_latlon`.
        """
        check_latlon(latlon)
        rad = torch.deg2rad(latlon.to(torch.float64))
        lat, phi = rad[:, 0], rad[:, 1]
        # cos(theta) = sin(latitude), sin(theta) = cos(latitude) >= 0 for |latitude| <= 90.
        x, s = torch.sin(lat), torch.cos(lat)
        legendre = _normalised_legendre(x, s, self.legendre_polys)
        out = torch.empty(latlon.shape[0], self.embedding_dim, dtype=torch.float64, device=latlon.device)
        sqrt2 = math.sqrt(2.0)
        for l in range(self.legendre_polys):
            out[:, l * l + l] = legendre[(l, 0)]
            for m in range(1, l + 1):
                out[:, l * l + l + m] = sqrt2 * legendre[(l, m)] * torch.cos(m * phi)
                out[:, l * l + l - m] = sqrt2 * legendre[(l, m)] * torch.sin(m * phi)
        return out.to(torch.float32)

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"legendre_polys={self.legendre_polys}, embedding_dim={self.embedding_dim}"


def _normalised_legendre(x: Tensor, s: Tensor, degrees: int) -> dict[tuple[int, int], Tensor]:
    """``N_lm P_l^m(x)`` for ``0 <= m <= l < degrees``, Condon-Shortley phase included.

    The fully normalised recurrence (no factorials, so no overflow at any degree):
    ``Pbar_00 = 1/sqrt(4 pi)``; along the diagonal
    ``Pbar_mm = -sqrt((2m+1)/(2m)) s Pbar_{m-1,m-1}`` (the minus sign is the Condon-Shortley phase);
    one step off it ``Pbar_{m+1,m} = sqrt(2m+3) x Pbar_mm``; then upwards in ``l``
    ``Pbar_lm = a_lm (x Pbar_{l-1,m} - b_lm Pbar_{l-2,m})`` with
    ``a_lm = sqrt((4l²-1)/(l²-m²))`` and ``b_lm = sqrt(((l-1)²-m²)/(4(l-1)²-1))``.

    Args:
        x: ``cos(theta)``, float64.
        s: ``sin(theta)`` (non-negative), float64.
        degrees: ``L``; degrees ``0..L-1``.

    Returns:
        ``(l, m)`` → tensor shaped like ``x``.
    """
    out: dict[tuple[int, int], Tensor] = {}
    diagonal = torch.full_like(x, 1.0 / math.sqrt(4.0 * math.pi))
    for m in range(degrees):
        if m > 0:
            diagonal = -math.sqrt((2 * m + 1) / (2 * m)) * s * diagonal
        out[(m, m)] = diagonal
        if m + 1 < degrees:
            out[(m + 1, m)] = math.sqrt(2 * m + 3) * x * diagonal
        for l in range(m + 2, degrees):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt(((l - 1) ** 2 - m * m) / (4 * (l - 1) ** 2 - 1))
            out[(l, m)] = a * (x * out[(l - 1, m)] - b * out[(l - 2, m)])
    return out


class _SineLayer(nn.Module):
    """``sin(w0 * (x W^T + b))`` with SIREN's uniform init.

    Weights and bias are uniform in ``±1/fan_in`` on the first layer and in
    ``±sqrt(6/fan_in)/w0`` after it.

    Args:
        fan_in: Input width.
        fan_out: Output width.
        w0: Frequency multiplying the pre-activation.
        first: Whether this is the network's first layer.
    """

    def __init__(self, fan_in: int, fan_out: int, w0: float, first: bool) -> None:
        super().__init__()
        self.w0 = float(w0)
        self.linear = nn.Linear(fan_in, fan_out)
        _siren_init(self.linear, 1.0 / fan_in if first else math.sqrt(SIREN_C / fan_in) / self.w0)

    def forward(self, x: Tensor) -> Tensor:
        """The layer's output.

        Args:
            x: ``(N, fan_in)``.

        Returns:
            ``(N, fan_out)`` in ``[-1, 1]``.
        """
        return torch.sin(self.w0 * self.linear(x))

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return f"w0={self.w0}"


def _siren_init(linear: nn.Linear, bound: float) -> None:
    """Draw ``linear``'s weight and bias uniformly from ``[-bound, bound]`` (torch's global RNG)."""
    with torch.no_grad():
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.uniform_(linear.bias, -bound, bound)


class LocationEncoder(nn.Module):
    """Spherical harmonics, a SIREN and a linear layer: ``[latitude, longitude]`` → ``embed_dim``.

    The SIREN is ``layers`` sine layers of width ``hidden`` (the first with ``w0_initial``, the
    others with ``w0 = 1``); the head is a linear layer ``hidden → embed_dim`` with SIREN's hidden
    init (``±sqrt(6/hidden)``) and no activation. Parameters are drawn from torch's global RNG,
    so ``torch.manual_seed`` fixes them.

    Args:
        embed_dim: Output width (the text encoder's width in GeoCLOSP).
        legendre_polys: Degrees ``L`` of the harmonics (``L²`` input features).
        hidden: Width of the sine layers.
        layers: Number of sine layers (at least 1).
        w0_initial: Frequency of the first sine layer.

    Raises:
        ModelError: A width or count is below 1, or ``w0_initial`` is not a positive finite number.
    """

    def __init__(
        self,
        embed_dim: int,
        legendre_polys: int = 10,
        hidden: int = 256,
        layers: int = 2,
        w0_initial: float = 30.0,
    ) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("hidden", hidden), ("layers", layers)):
            if int(value) != value or value < 1:
                raise ModelError(f"LocationEncoder: {name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(w0_initial) and w0_initial > 0):
            raise ModelError(f"LocationEncoder: w0_initial must be a positive finite number, got {w0_initial!r}")
        self._config: dict[str, Any] = {
            "embed_dim": int(embed_dim),
            "legendre_polys": int(legendre_polys),
            "hidden": int(hidden),
            "layers": int(layers),
            "w0_initial": float(w0_initial),
        }
        self.harmonics = SphericalHarmonics(legendre_polys)
        widths = [self.harmonics.embedding_dim] + [int(hidden)] * int(layers)
        self.siren = nn.Sequential(
            *(
                _SineLayer(widths[i], widths[i + 1], w0_initial if i == 0 else HIDDEN_W0, first=i == 0)
                for i in range(int(layers))
            )
        )
        self.head = nn.Linear(int(hidden), int(embed_dim))
        _siren_init(self.head, math.sqrt(SIREN_C / hidden) / HIDDEN_W0)

    def forward(self, latlon: Tensor, normalize: bool = False) -> Tensor:
        """Embed points.

        Args:
            latlon: ``(N, 2)`` ``[latitude, longitude]`` in degrees (the batches' ``location``).
            normalize: Return unit-length rows.

        Returns:
            ``(N, embed_dim)`` in the parameters' dtype, on ``latlon``'s device.

        Raises:
            DataError: ``latlon`` breaks a rule of :func:`check_latlon`.
        """
        features = self.harmonics(latlon).to(self.head.weight.dtype)
        out = self.head(self.siren(features))
        return F.normalize(out, dim=-1) if normalize else out

    def config(self) -> dict:
        """The constructor arguments, JSON-ready: ``LocationEncoder(**config())`` rebuilds the shape.

        Returns:
            ``{"embed_dim", "legendre_polys", "hidden", "layers", "w0_initial"}``.
        """
        return dict(self._config)
