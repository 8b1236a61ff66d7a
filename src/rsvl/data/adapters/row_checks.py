"""Checks shared by adapters whose rows are one image plus text (captions or question/answer pairs).

A failed check quarantines every source record it concerns (a CSV row, a caption line, a JSON
entry, a question) under one rule name, so reports count what the source lost, record by record:

- ``caption_utf8``: caption bytes are not valid UTF-8.
- ``caption_nonempty``: a caption is blank after whitespace is normalised.
- ``caption_printable``: a caption holds a control character (``\\x00``, a terminal escape ``\\x1b[31m``)
  that would reach consoles and reports raw.
- ``file_exists``: the image the record names is not on disk.
- ``image_decode``: the image exists but its header cannot be read.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from rsvl.data.media import decode_caption, image_header  # noqa: F401 - adapters import image_header from here
from rsvl.data.schema import IMAGE_SUFFIXES
from rsvl.data.store import DatasetWriter
from rsvl.errors import DataError


def images_dir(base: Path) -> Path:
    """Return ``base/images`` when that folder exists, else ``base`` (where images are looked up)."""
    return base / "images" if (base / "images").is_dir() else base


def index_images(root: Path) -> dict[str, Path]:
    """Map the stem of every image file below ``root`` to its path.

    Args:
        root: Folder searched recursively.

    Returns:
        ``{"753": root/"Images/Data/753.png", ...}``.

    Raises:
        DataError: Two image files share a stem, so a record naming it would be ambiguous.
    """
    index: dict[str, Path] = {}
    # sorted, so the ambiguity error names the same pair on every file system
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in index:
                raise DataError(f"{root}: image name {path.stem!r} is ambiguous: {index[path.stem]} and {path}")
            index[path.stem] = path
    return index


def accept_caption(writer: DatasetWriter, raw: bytes | str, where: str, sample_id: str | None) -> str | None:
    """Decode one caption, quarantining it when it is not UTF-8 or is blank.

    Args:
        writer: The dataset being written.
        raw: Caption bytes from a text file, or text already decoded from JSON.
        where: Source record (``caps.txt:12``).
        sample_id: Image the caption belongs to, when known.

    Returns:
        The normalised caption, or ``None`` when it was quarantined.
    """
    try:
        caption = decode_caption(raw, where)
    except DataError as err:
        writer.quarantine(where=where, rule="caption_utf8", reason=str(err), sample_id=sample_id)
        return None
    if not caption:
        writer.quarantine(where=where, rule="caption_nonempty", reason=f"{where}: caption is blank",
                          sample_id=sample_id)
        return None
    control = control_character(caption)
    if control is not None:
        writer.quarantine(where=where, rule="caption_printable", sample_id=sample_id,
                          reason=f"{where}: caption holds the control character {control!r}")
        return None
    return caption


def control_character(text: str) -> str | None:
    """Return the first control character of ``text`` (Unicode category Cc), or ``None``.

    Args:
        text: Text whose whitespace is already normalised to spaces.

    Returns:
        The character (``"\\x1b"``), or ``None`` when every character is printable.
    """
    return next((char for char in text if unicodedata.category(char) == "Cc"), None)


def accept_image(writer: DatasetWriter, path: Path, wheres: list[str], sample_id: str) -> tuple[int, int, int] | None:
    """Check that an image exists and has a readable header, quarantining its records when not.

    Args:
        writer: The dataset being written.
        path: Where the image should be.
        wheres: Every source record that refers to the image; each is quarantined on failure.
        sample_id: Id of the sample the image would form.

    Returns:
        ``(width, height, bands)``, or ``None`` when the records were quarantined.
    """
    if not path.is_file():
        for where in wheres:
            writer.quarantine(where=where, rule="file_exists", reason=f"image {path} does not exist",
                              sample_id=sample_id)
        return None
    try:
        return image_header(path)
    except DataError as err:
        for where in wheres:
            writer.quarantine(where=where, rule="image_decode", reason=str(err), sample_id=sample_id)
        return None
