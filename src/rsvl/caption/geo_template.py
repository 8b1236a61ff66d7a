"""RS5M's geo-metadata sentence: what, where and when an image shows, prepended to its caption.

RS5M writes a template sentence from an image's metadata (``{month_year}``, ``{country}``,
``{class_label}``, ``{relative_location}``) before the generated caption; the paper does not
print its template. Ours, with every part present::

    a satellite image of {class_label} in the {relative_location} of {country}, taken in {month_year}.

Each part is used only when present: no class label gives ``a satellite image``, no relative
location gives ``in {country}``, no date drops the ``taken in`` clause; no metadata at all gives
an empty sentence, and the caption is left as it is (:func:`with_geo`). A relative location is
meaningless without its country and is refused alone.

From a manifest row (:func:`geo_sentence_for`): month and year from the ISO 8601 ``timestamp``;
the country from a ``country`` field when the row has one, else from ``lat``/``lon`` through the
packaged European country boxes (:mod:`rsvl.data.countries`; approximate near borders); the
relative location from ``lat``/``lon`` against that country's box (left out for a country the table
lacks, or a point outside its box); the class label from ``label``, else ``labels``.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from typing import Any, Final, Mapping, Sequence

from rsvl.caption.words import join_words
from rsvl.data.countries import country_at, find_country, relative_location as box_location
from rsvl.errors import DataError

MONTHS: Final[tuple[str, ...]] = ("January", "February", "March", "April", "May", "June", "July", "August",
                                  "September", "October", "November", "December")
"""English month names (fixed here: ``strftime("%B")`` follows the machine's locale)."""
SUBJECT: Final[str] = "a satellite image"


def month_year(timestamp: str) -> str:
    """``"March 2019"`` from an ISO 8601 date or date-time (``2019-03-14``, ``2019-03-14T10:12:00Z``).

    Raises:
        DataError: The text is not an ISO 8601 date or date-time.
    """
    text = str(timestamp).strip()
    try:
        when = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError as err:
        raise DataError(f"timestamp {timestamp!r} is not an ISO 8601 date or date-time") from err
    return f"{MONTHS[when.month - 1]} {when.year}"


def class_phrase(label: str | Sequence[str]) -> str:
    """A label (or labels) as caption words: ``_`` as spaces, lower case, several joined ``a, b and c``."""
    labels = [label] if isinstance(label, str) else list(label)
    words = [" ".join(str(item).replace("_", " ").lower().split()) for item in labels]
    return join_words([word for word in words if word])


def geo_sentence(
    month_year: str | None = None,
    country: str | None = None,
    class_label: str | None = None,
    relative_location: str | None = None,
    *,
    subject: str = SUBJECT,
) -> str:
    """The metadata sentence from whichever parts are given (see the module docstring).

    Args:
        month_year: ``"March 2019"`` (:func:`month_year`).
        country: Country name.
        class_label: What the image shows, as caption words (:func:`class_phrase`).
        relative_location: Where in the country (``north-west``, ``centre``, ...).
        subject: The sentence's opening noun phrase.

    Returns:
        The sentence ending in a full stop, or ``""`` when no part is given.

    Raises:
        ValueError: A relative location without a country.
    """
    month_year, country, class_label, relative_location = (
        (value.strip() or None) if isinstance(value, str) else value
        for value in (month_year, country, class_label, relative_location))
    if relative_location and not country:
        raise ValueError(f"relative location {relative_location!r} needs a country to be relative to")
    if not (month_year or country or class_label):
        return ""
    text = f"{subject} of {class_label}" if class_label else subject
    if country:
        text += f" in the {relative_location} of {country}" if relative_location else f" in {country}"
    if month_year:
        text += f", taken in {month_year}"
    return text + "."


def with_geo(caption: str, sentence: str) -> str:
    """``sentence`` and ``caption`` joined by a space; the caption alone when the sentence is empty."""
    return f"{sentence} {caption}".strip() if sentence else caption


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, numbers.Real):
        return not math.isnan(float(value))
    if isinstance(value, str):
        return bool(value.strip())
    try:
        return len(value) > 0
    except TypeError:
        return True


def geo_sentence_for(record: Mapping[str, Any], *, subject: str = SUBJECT) -> str:
    """The metadata sentence of a manifest row (or any mapping with the same keys).

    Args:
        record: A row with any of ``timestamp``, ``lat`` and ``lon`` (both or neither),
            ``country`` (a name or ISO alpha-2 code; one the table knows is written with the
            table's name), ``label``, ``labels``, and ``sample_id`` for messages.
        subject: The sentence's opening noun phrase.

    Returns:
        The sentence, or ``""`` when the row has none of the metadata.

    Raises:
        DataError: A bad timestamp, only one of ``lat``/``lon``, or an invalid position; the
            message names the sample.
    """
    where = f"sample {record.get('sample_id')!r}"
    has_lat, has_lon = _present(record.get("lat")), _present(record.get("lon"))
    if has_lat != has_lon:
        raise DataError(f"{where}: has {'lat' if has_lat else 'lon'} but not {'lon' if has_lat else 'lat'}; "
                        "a position needs both")
    try:
        when = month_year(record["timestamp"]) if _present(record.get("timestamp")) else None
        country_name = str(record["country"]).strip() if _present(record.get("country")) else None
        box = find_country(country_name) if country_name else None
        if box is not None:
            country_name = box.name  # a code in the row ("PT") reads as the table's name
        location = None
        if has_lat:
            lat, lon = float(record["lat"]), float(record["lon"])
            if country_name is None:
                box = country_at(lat, lon)
                country_name = box.name if box is not None else None
            if box is not None:
                location = box_location(lat, lon, box)
    except DataError as err:
        raise DataError(f"{where}: {err}") from err
    label = record.get("label") if _present(record.get("label")) else record.get("labels")
    phrase = class_phrase(label) if _present(label) else None
    return geo_sentence(when, country_name, phrase or None, location, subject=subject)
