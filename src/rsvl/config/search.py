"""Settings of the optional ``index`` step: rebuild the archive search index when the champion changes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rsvl.config.base import StrictModel


class SearchConfig(StrictModel):
    """After a promotion, index ``dataset`` with the new champion (``rsvl.search``).

    Each champion version gets its own index folder, ``<out_dir>/<registered name>/v<version>``,
    and ``<out_dir>/<registered name>/CURRENT`` names the newest; a service started on an older
    folder keeps answering with the model that built it.

    Attributes:
        dataset: The archive: a canonical dataset under ``data.root`` (``default/sar``) or an absolute path.
        out_dir: Where index versions are written.
        kind: ``auto`` (exact up to 250k images, HNSW above), ``flat-ip`` or ``hnsw-ip``.
        batch_size: Images per forward pass.
    """

    dataset: str = Field(min_length=1)
    out_dir: str = "build/search"
    kind: Literal["auto", "flat-ip", "hnsw-ip"] = "auto"
    batch_size: int = Field(64, ge=1)
