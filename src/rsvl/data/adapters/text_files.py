"""Read the text files of caption and VQA layouts: JSON with a known encoding, raw lines, CSV rows.

Line-based readers hand back bytes so each caption can be checked on its own
(:func:`rsvl.data.media.decode_caption`) and a bad line is quarantined instead of failing the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterator

from rsvl.data.schema import SPLITS
from rsvl.errors import DataError

_BOM = b"\xef\xbb\xbf"
_SEPARATORS = re.compile(r"[\\/]")
_WORDS = re.compile(r"[_\-.\s]+")


def read_json(path: Path, encodings: tuple[str, ...] = ("utf-8",)) -> tuple[Any, str]:
    """Parse a JSON file, trying each encoding in turn.

    Args:
        path: The JSON file.
        encodings: Codec names tried in order; a leading UTF-8 byte-order mark is ignored.

    Returns:
        The parsed document and the name of the encoding that decoded it.

    Raises:
        DataError: No encoding decodes the file, or the text is not valid JSON.
    """
    data = path.read_bytes().removeprefix(_BOM)
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as err:
            if encoding == "utf-8" and mostly_utf8(data):
                # another codec would decode it, but as mojibake: the file is UTF-8 with a few bad bytes
                raise DataError(f"{path}: text is UTF-8 but for the bytes at {err.start} ({err.reason}): "
                                "a file must be one encoding; fix or remove those bytes") from err
            continue
        try:
            return json.loads(text), encoding
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from err
    raise DataError(f"{path}: text is not valid {' or '.join(encodings)}")


def mostly_utf8(data: bytes) -> bool:
    """Whether bytes that are not valid UTF-8 still hold more valid multi-byte UTF-8 characters than bad bytes.

    Such a file is UTF-8 with a few stray bytes (a Latin-1 ``é`` pasted in), not GB18030 text:
    GB18030 decodes almost any bytes, so falling back to it would turn every accent into mojibake.

    Args:
        data: The file's bytes.

    Returns:
        ``True`` when valid non-ASCII UTF-8 characters outnumber the undecodable bytes.
    """
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = sum(1 for char in text if ord(char) > 127) - bad
    return good > bad


def read_lines(path: Path) -> list[bytes]:
    """Split a text file into lines of raw bytes (line endings and a UTF-8 BOM removed).

    Args:
        path: The text file.

    Returns:
        One bytes object per line; a final newline does not add an empty line.
    """
    data = path.read_bytes().removeprefix(_BOM)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def read_csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, bytes]]]:
    """Yield the rows of a CSV file with a header, each field as raw bytes.

    Args:
        path: The CSV file.
        required: Column names the header must hold.

    Yields:
        The 1-based line number where the row ends and the row's fields as bytes.

    Raises:
        DataError: The header lacks a required column.
    """
    text = path.read_bytes().removeprefix(_BOM).decode("utf-8", "surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [name for name in required if name not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: header {reader.fieldnames} lacks the columns {missing}")
    for record in reader:
        fields = {key: (value or "").encode("utf-8", "surrogateescape") for key, value in record.items() if key}
        yield reader.line_num, fields


def lenient_text(raw: bytes) -> str:
    """Decode a file name or id field, escaping bytes that are not UTF-8 so they stay visible."""
    return raw.decode("utf-8", "backslashreplace").strip()


def basename(name: str) -> str:
    """Return the last component of a POSIX or Windows path (``C:\\a\\b.jpg`` -> ``b.jpg``)."""
    return _SEPARATORS.split(name)[-1]


def source_ref(name: str, separator: str, numbers: list[int]) -> str:
    """Name source rows compactly: ``caps.txt:2-6`` or ``q.json#0-3,9``.

    Args:
        name: Source file name.
        separator: ``:`` before line numbers, ``#`` before JSON indexes.
        numbers: Line numbers or indexes, in source order.

    Returns:
        The file name, the separator and runs of consecutive numbers.
    """
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"{name}{separator}{text}"


def split_from_name(stem: str) -> str | None:
    """Return the split named by a ``_``/``-`` separated word of a file stem, if exactly one is.

    ``rsitmd_test`` -> ``test``, ``USGS_split_test_phili`` -> ``test``, ``captions`` -> ``None``.
    """
    named = {word for word in _WORDS.split(stem.lower()) if word in SPLITS}
    return named.pop() if len(named) == 1 else None
