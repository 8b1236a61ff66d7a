"""The ``model`` section: which registered architecture a run (or a data step) builds."""

from __future__ import annotations

from pydantic import Field

from rsvl.config.base import StrictModel


class LocationConfig(StrictModel):
    """GeoCLOSP's location encoder (``rsvl.models.location``): spherical harmonics of degree < ``legendre_polys``,
    a SIREN of ``layers`` sine layers ``hidden`` wide, a linear layer into the text space."""

    legendre_polys: int = Field(10, ge=1, le=30)
    hidden: int = Field(256, ge=1)
    layers: int = Field(2, ge=1)


class ModelConfig(StrictModel):
    """Which registered architecture to build, with which weights and input size (and a location encoder)."""

    name: str
    pretrained: str | None = None
    image_size: int | None = Field(None, gt=0)
    location: LocationConfig | None = None
    """A sensor model (``train.sensors``) with a location encoder into its space: GeoCLOSP."""
