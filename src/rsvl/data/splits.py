"""Map the split names public datasets use onto the manifest's ``train``/``val``/``test``."""

from __future__ import annotations

from typing import Final

from rsvl.data.schema import SPLITS

SPLIT_ALIASES: Final[dict[str, str]] = {
    "training": "train",
    "validation": "val",
    "valid": "val",
    "dev": "val",
    "testing": "test",
}
"""Upstream names and the split they mean (BigEarthNet v2 writes ``validation``)."""


def canonical_split(value: object) -> str | None:
    """Return the manifest split for an upstream split name.

    Args:
        value: The split as written in the source (case and surrounding spaces ignored).

    Returns:
        ``"train"``, ``"val"`` or ``"test"``; ``None`` when the name is not recognised.
    """
    if not isinstance(value, str):
        return None
    name = value.strip().lower()
    name = SPLIT_ALIASES.get(name, name)
    return name if name in SPLITS else None
