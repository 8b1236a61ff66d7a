"""Reading the package's small CSV tables (``rsvl/data/tables/*.csv``) with errors that name file and line."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence

from rsvl.errors import DataError


def table_rows(text: str, source: str, columns: Sequence[str],
               required: Sequence[str] | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield each data row of a CSV table as ``(where, stripped cells)``.

    Args:
        text: The table's text (a header line, then one line per row).
        source: The file, for messages.
        columns: The columns every row is read for.
        required: Columns no row may leave empty (default: all of ``columns``).

    Yields:
        ``("<source>:<line>", {column: stripped text})``, lines counted from 1 with the header.

    Raises:
        DataError: A column is missing from the header, or a row leaves a required cell empty.
    """
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{source}: missing columns {missing} (expected {list(columns)})")
    for line, record in enumerate(reader, start=2):
        where = f"{source}:{line}"
        cells = {c: (record.get(c) or "").strip() for c in columns}
        empty = [c for c in (columns if required is None else required) if not cells[c]]
        if empty:
            raise DataError(f"{where}: empty {', '.join(empty)}")
        yield where, cells
