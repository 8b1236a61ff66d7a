"""Caption tables with one row per caption (the iEBAKER ``filename,title`` test CSVs).

Layout: ``SOURCE`` is a ``.csv`` file, or a folder holding exactly one. Columns ``filename``
(any path; only its basename names the image, ``/home/x/RSICD_image/airport_348.jpg`` ->
``airport_348.jpg``) and ``title`` (the caption), optionally ``split``. Rows naming the same
basename are one image with several captions.

Images are looked up by basename in ``images/`` beside the CSV when that folder exists, else
beside the CSV itself. Images are required: a row whose image is not there is quarantined
with rule ``file_exists``. When not one of the images the rows name is there (a text-only CSV
such as the published iEBAKER test tables, whose paths point at the authors' machine), the
ingest stops before writing anything with a :class:`DataError` (rule ``images_present``) that
says how many rows and images, the first missing path and what to do; ``rsvl data text-stats``
reads such a CSV's text without images.

The split is the row's ``split`` value when the column exists (one of train/val/test, else
rule ``split_value``), else the split named by a ``_``/``-`` separated word of the file name
(``rsitmd_test.csv`` -> test), else a stable hash of the basename (70/10/20, as for class
folders).
"""

from __future__ import annotations

from pathlib import Path

from rsvl.data.adapters import register
from rsvl.data.adapters.caption_lines import CaptionLine, write_caption_lines
from rsvl.data.adapters.class_folder import hash_split
from rsvl.data.adapters.row_checks import images_dir
from rsvl.data.adapters.text_files import basename, lenient_text, read_csv_rows, split_from_name
from rsvl.data.schema import SPLITS
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

def find_csv(source: Path) -> Path:
    """Return the caption CSV a source names: the file itself or the one ``.csv`` in a folder.

    Raises:
        DataError: The folder holds no CSV or several.
    """
    if source.is_file():
        return source
    found = sorted(source.glob("*.csv"))
    if len(found) != 1:
        raise DataError(f"{source}: expected exactly one .csv caption table, found {[p.name for p in found]}")
    return found[0]


def check_some_image_present(table: Path, rows: list[tuple[int, dict[str, bytes]]], root: Path) -> None:
    """Refuse a caption table none of whose images is in ``root`` (a text-only table).

    Some images missing is normal and left to the per-row ``file_exists`` quarantine; all of
    them missing means the images were never put beside the table.

    Args:
        table: The CSV (for the message).
        rows: Its rows, as :func:`read_csv_rows` yields them.
        root: Where images are looked up by basename.

    Raises:
        DataError: Rows name images and not one of them is in ``root`` (rule ``images_present``).
    """
    named = [(line_no, lenient_text(row["filename"])) for line_no, row in rows]
    named = [(line_no, name) for line_no, name in named if basename(name)]
    images = {basename(name) for _, name in named}
    if not images or any((root / image).is_file() for image in images):
        return
    line_no, first = named[0]
    raise DataError(
        f"{table}: images absent: none of the {len(images)} images named by its {len(rows)} rows is in {root} "
        f"(first missing: {first!r} at line {line_no}, looked up as {root / basename(first)}) "
        f"(rule: images_present). Put the images, by basename, in {table.parent / 'images'} (or beside the CSV) "
        f"and ingest again; for the caption text alone run `rsvl data text-stats {table}`"
    )


def _caption_lines(writer: DatasetWriter, table: Path, rows: list[tuple[int, dict[str, bytes]]]) -> list[CaptionLine]:
    named_split = split_from_name(table.stem)
    lines = []
    for line_no, row in rows:
        where = f"{table.name}:{line_no}"
        image = basename(lenient_text(row["filename"]))
        if not image:
            writer.quarantine(where=where, rule="record_fields", reason=f"{where}: filename is empty")
            continue
        split = lenient_text(row["split"]).lower() if "split" in row else named_split or hash_split(image)
        if split not in SPLITS:
            writer.quarantine(where=where, rule="split_value", sample_id=Path(image).stem,
                              reason=f"{where}: split {split!r} is not one of {SPLITS}")
            continue
        lines.append(CaptionLine(table.name, line_no, image, split, row["title"]))
    return lines


@register("caption-csv")
def ingest_caption_csv(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest a ``filename,title`` caption table with its images.

    Args:
        source: The CSV file or a folder holding exactly one CSV (and the images).
        out: Destination dataset directory.
        name: Dataset name (default: the CSV's stem).

    Returns:
        The ingest report; rows without their image and bad captions are quarantined.

    Raises:
        DataError: No or several CSVs, missing columns, or not one named image present.
    """
    table = find_csv(source)
    rows = list(read_csv_rows(table, ("filename", "title")))
    check_some_image_present(table, rows, images_dir(table.parent))
    with DatasetWriter(out, name=name or table.stem, kind="captioning",
                       adapter="caption-csv", source=str(source)) as writer:
        write_caption_lines(writer, _caption_lines(writer, table, rows), images_dir(table.parent))
    return writer.report
