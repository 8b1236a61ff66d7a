"""Land-cover label vocabularies and the label text CLOSP trains on.

CLOSP / CrisisLandMark describe every patch with the 9 Dynamic World classes plus three event
classes; the text of a patch is its unique labels, lower-cased, joined with ``". "``
("trees. water").

CORINE-19 (BigEarthNet) to Dynamic World, ours: each CORINE-19 class merges several CORINE level-3
classes; the CLOSP authors' code (``dataset/mapping.py``) assigns each level-3 class a Dynamic World
class, and a CORINE-19 class takes the class most of its level-3 members get (a tie goes to the
member named first in the CORINE-19 name).

============================================================================================  =====================
CORINE-19 class (level-3 members)                                                             Dynamic World class
============================================================================================  =====================
Urban fabric (continuous, discontinuous urban fabric)                                         built
Industrial or commercial units                                                                built
Arable land (non-irrigated, permanently irrigated, rice fields)                               crops
Permanent crops (vineyards, fruit trees and berry plantations, olive groves)                  crops
Pastures                                                                                      grass
Complex cultivation patterns                                                                  crops
Land principally occupied by agriculture, with significant areas of natural vegetation        crops
Agro-forestry areas                                                                           trees
Broad-leaved forest                                                                           trees
Coniferous forest                                                                             trees
Mixed forest                                                                                  trees
Natural grassland and sparsely vegetated areas (grass, bare: tie, first named)                grass
Moors, heathland and sclerophyllous vegetation                                                shrub and scrub
Transitional woodland, shrub                                                                  shrub and scrub
Beaches, dunes, sands                                                                         bare
Inland wetlands (inland marshes, peatbogs)                                                    flooded vegetation
Coastal wetlands (salt marshes: flooded vegetation; salines, intertidal flats: bare)           bare
Inland waters (water courses, water bodies)                                                   water
Marine waters (coastal lagoons, estuaries, sea and ocean)                                     water
============================================================================================  =====================

No CORINE-19 class maps to ``snow and ice`` (glaciers are not among the 19 classes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

DYNAMIC_WORLD_CLASSES: Final[tuple[str, ...]] = (
    "water",
    "trees",
    "grass",
    "flooded vegetation",
    "crops",
    "shrub and scrub",
    "built",
    "bare",
    "snow and ice",
)
EVENT_CLASSES: Final[tuple[str, ...]] = ("flooded area", "earthquake damage", "burned area")
CRISIS_CLASSES: Final[tuple[str, ...]] = DYNAMIC_WORLD_CLASSES + EVENT_CLASSES
"""The 12 classes of CrisisLandMark text."""

CORINE19_TO_DYNAMIC_WORLD: Final[dict[str, str]] = {
    "Urban fabric": "built",
    "Industrial or commercial units": "built",
    "Arable land": "crops",
    "Permanent crops": "crops",
    "Pastures": "grass",
    "Complex cultivation patterns": "crops",
    "Land principally occupied by agriculture, with significant areas of natural vegetation": "crops",
    "Agro-forestry areas": "trees",
    "Broad-leaved forest": "trees",
    "Coniferous forest": "trees",
    "Mixed forest": "trees",
    "Natural grassland and sparsely vegetated areas": "grass",
    "Moors, heathland and sclerophyllous vegetation": "shrub and scrub",
    "Transitional woodland, shrub": "shrub and scrub",
    "Beaches, dunes, sands": "bare",
    "Inland wetlands": "flooded vegetation",
    "Coastal wetlands": "bare",
    "Inland waters": "water",
    "Marine waters": "water",
}
CORINE19_CLASSES: Final[tuple[str, ...]] = tuple(CORINE19_TO_DYNAMIC_WORLD)

_CORINE19_BY_LOWER: Final[dict[str, str]] = {k.lower(): v for k, v in CORINE19_TO_DYNAMIC_WORLD.items()}


def unique_labels(labels: Iterable[str]) -> list[str]:
    """Strip labels and drop blanks and repeats, keeping first-seen order.

    Args:
        labels: Label names, possibly repeated.

    Returns:
        The distinct non-blank labels.
    """
    return list(dict.fromkeys(label.strip() for label in labels if label and label.strip()))


def labels_to_text(labels: Iterable[str]) -> str:
    """Build CLOSP's label text: unique labels, lower-cased, joined with ``". "``.

    Args:
        labels: Label names, for example ``["Trees", "water", "trees"]``.

    Returns:
        ``"trees. water"``; an empty string when there are no labels.
    """
    return ". ".join(unique_labels(label.lower() for label in labels))


def to_crisis_class(label: str) -> str | None:
    """Map one label to a CrisisLandMark class (Dynamic World or event), case-insensitively.

    CORINE-19 names are mapped with :data:`CORINE19_TO_DYNAMIC_WORLD`; Dynamic World and event
    names pass through lower-cased.

    Args:
        label: A CORINE-19, Dynamic World or event class name.

    Returns:
        The lower-case CrisisLandMark class, or ``None`` when the name is in neither vocabulary.
    """
    key = " ".join(label.lower().replace("_", " ").split())
    if key in CRISIS_CLASSES:
        return key
    return _CORINE19_BY_LOWER.get(key)


def corine19_to_dynamic_world(labels: Iterable[str]) -> list[str]:
    """Map CORINE-19 labels to their unique Dynamic World classes.

    Args:
        labels: CORINE-19 class names (BigEarthNet v2 ``labels``).

    Returns:
        Distinct Dynamic World classes in first-seen order.

    Raises:
        KeyError: A label is not one of the 19 CORINE classes.
    """
    mapped = []
    for label in labels:
        if label not in CORINE19_TO_DYNAMIC_WORLD:
            raise KeyError(f"{label!r} is not a CORINE-19 class")
        mapped.append(CORINE19_TO_DYNAMIC_WORLD[label])
    return unique_labels(mapped)
