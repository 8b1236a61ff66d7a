"""Land-cover label vocabularies and the label text CLOSP trains on.

CLOSP / CrisisLandMark describe every patch with the 9 Dynamic World classes plus three event
classes; the text of a patch is its unique labels, lower-cased, joined with ``". "``
("trees. water").

CORINE-19 (BigEarthNet) to Dynamic World, ours: the table ships as package data,
``rsvl/data/tables/corine19_to_crisis.csv`` (:data:`CORINE19_TABLE`), one row per CORINE-19 class
with its CrisisLandMark class, its CORINE level-3 members (BigEarthNet's 43-to-19 conversion) with
the Dynamic World class the CLOSP authors' code (``dataset/mapping.py``) gives each member, and a
note. A CORINE-19 class takes the class most of its members get; a tie goes to the member with the
lowest CORINE code. No CORINE-19 class maps to ``snow and ice`` (glaciers are not among the 19
classes' members).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from typing import Final, NamedTuple

from rsvl.data.csv_table import table_rows
from rsvl.errors import DataError

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

CORINE19_TABLE: Final[str] = "tables/corine19_to_crisis.csv"
"""The CORINE-19 mapping table, relative to the ``rsvl.data`` package."""
TABLE_COLUMNS: Final[tuple[str, ...]] = ("corine19_class", "crisis_class", "level3_members", "note")


class Level3Member(NamedTuple):
    """A CORINE level-3 class inside a CORINE-19 class, with the Dynamic World class CLOSP gives it."""

    code: int
    name: str
    dynamic_world: str


class Corine19Row(NamedTuple):
    """One row of the CORINE-19 table."""

    corine19_class: str
    crisis_class: str
    level3_members: tuple[Level3Member, ...]
    note: str


def _parse_members(cell: str, where: str) -> tuple[Level3Member, ...]:
    """Read ``"111 Continuous urban fabric: built; 112 ...: built"``."""
    members = []
    for part in cell.split(";"):
        head, sep, target = part.strip().rpartition(":")
        code, _, name = head.strip().partition(" ")
        if not sep or not code.isdigit() or not name.strip():
            raise DataError(f"{where}: level3_members entry {part.strip()!r} is not '<code> <name>: <class>'")
        if target.strip() not in CRISIS_CLASSES:
            raise DataError(f"{where}: level-3 class {name.strip()!r} maps to {target.strip()!r}, "
                            f"not a CrisisLandMark class")
        members.append(Level3Member(int(code), name.strip(), target.strip()))
    return tuple(members)


def parse_corine19_table(text: str, source: str = CORINE19_TABLE) -> tuple[Corine19Row, ...]:
    """Parse and check the CORINE-19 table.

    Args:
        text: The CSV text (header :data:`TABLE_COLUMNS`).
        source: File name used in error messages.

    Returns:
        The rows in file order.

    Raises:
        DataError: A column is missing, a row has an empty cell, names a CORINE-19 class twice, or
            maps to a class outside :data:`CRISIS_CLASSES`; the message names the file and row.
    """
    rows: list[Corine19Row] = []
    seen: set[str] = set()
    for where, cells in table_rows(text, source, TABLE_COLUMNS, required=TABLE_COLUMNS[:3]):
        if cells["corine19_class"] in seen:
            raise DataError(f"{where}: CORINE-19 class {cells['corine19_class']!r} is listed twice")
        if cells["crisis_class"] not in CRISIS_CLASSES:
            raise DataError(f"{where}: {cells['crisis_class']!r} is not a CrisisLandMark class {CRISIS_CLASSES}")
        seen.add(cells["corine19_class"])
        rows.append(Corine19Row(cells["corine19_class"], cells["crisis_class"],
                                _parse_members(cells["level3_members"], where), cells["note"]))
    return tuple(rows)


def load_corine19_table() -> tuple[Corine19Row, ...]:
    """Read the packaged CORINE-19 table (:data:`CORINE19_TABLE`).

    Returns:
        The 19 rows, in BigEarthNet's class order.
    """
    path = resources.files("rsvl.data").joinpath(CORINE19_TABLE)
    return parse_corine19_table(path.read_text(encoding="utf-8"), str(path))


CORINE19_ROWS: Final[tuple[Corine19Row, ...]] = load_corine19_table()
CORINE19_TO_DYNAMIC_WORLD: Final[dict[str, str]] = {row.corine19_class: row.crisis_class for row in CORINE19_ROWS}
"""CORINE-19 class name to its CrisisLandMark (Dynamic World) class, from the packaged table."""
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
