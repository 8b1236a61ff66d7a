"""AMFMN ``*_precomp`` caption folders (the RSICD/RSITMD/UCM/Sydney retrieval splits).

Layout: ``SOURCE/{split}_caps.txt`` (one caption a line) and ``SOURCE/{split}_filename.txt``
(image basenames) for each split of train/val/test that is present. As in AMFMN's own loader,
the two files either have the same number of lines (line i of the captions belongs to line i of
the file names, which then repeats each image) or the captions have five lines per file name
(caption lines 5i..5i+4 belong to file-name line i); any other pair of line counts is a
:class:`~rsvl.errors.DataError` naming both files. Other files (Sydney's ``*_verify.txt``
re-split of train) are not read; their names are recorded in the metadata as ``ignored_files``.

Images are looked up by basename in ``SOURCE/images/`` when that folder exists, else in
``SOURCE``; caption lines whose image is absent are quarantined (``file_exists``), one record
per caption line. Each row's ``source`` names its caption lines (``test_caps.txt:1-5``).
"""

from __future__ import annotations

from pathlib import Path

from rsvl.data.adapters import register
from rsvl.data.adapters.caption_lines import CaptionLine, write_caption_lines
from rsvl.data.adapters.row_checks import images_dir
from rsvl.data.adapters.text_files import basename, lenient_text, read_lines
from rsvl.data.schema import SPLITS
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

CAPTIONS_PER_IMAGE = 5


def split_files(source: Path) -> dict[str, tuple[Path, Path]]:
    """Find the ``(captions, file names)`` pair of every split present in an AMFMN folder.

    Args:
        source: The ``*_precomp`` folder.

    Returns:
        ``{split: (caps_path, filename_path)}`` in train/val/test order.

    Raises:
        DataError: One file of a pair is missing, or no split is present.
    """
    pairs = {}
    for split in SPLITS:
        caps, names = source / f"{split}_caps.txt", source / f"{split}_filename.txt"
        if caps.is_file() != names.is_file():
            missing = names if caps.is_file() else caps
            raise DataError(f"{missing}: missing; it pairs with {caps if missing == names else names}")
        if caps.is_file():
            pairs[split] = (caps, names)
    if not pairs:
        raise DataError(f"{source}: no {{train,val,test}}_caps.txt with a matching _filename.txt")
    return pairs


def captions_per_name(caps: Path, n_caps: int, names: Path, n_names: int) -> int:
    """Return how many caption lines each file-name line covers (1 or 5).

    Raises:
        DataError: The line counts fit neither rule; the message names both files.
    """
    if n_caps == n_names:
        return 1
    if n_caps == CAPTIONS_PER_IMAGE * n_names:
        return CAPTIONS_PER_IMAGE
    raise DataError(
        f"{caps} has {n_caps} lines and {names} has {n_names}: captions must match file names "
        f"line for line or come {CAPTIONS_PER_IMAGE} per file name"
    )


def read_split(caps: Path, names: Path) -> tuple[list[bytes], list[bytes], int]:
    """Read a split's caption and file-name lines and how many captions each name covers.

    Raises:
        DataError: The line counts fit neither rule (see :func:`captions_per_name`).
    """
    captions, images = read_lines(caps), read_lines(names)
    return captions, images, captions_per_name(caps, len(captions), names, len(images))


def _caption_lines(writer: DatasetWriter, split: str, caps: Path, names: Path,
                   content: tuple[list[bytes], list[bytes], int]) -> list[CaptionLine]:
    captions, images, per_name = content
    lines = []
    for index, caption in enumerate(captions):
        line_no = index + 1
        image = basename(lenient_text(images[index // per_name]))
        if not image:
            where = f"{caps.name}:{line_no}"
            writer.quarantine(where=where, rule="record_fields",
                              reason=f"{where}: {names.name}:{index // per_name + 1} names no image")
            continue
        lines.append(CaptionLine(caps.name, line_no, image, split, caption))
    return lines


@register("amfmn")
def ingest_amfmn(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest an AMFMN ``*_precomp`` caption folder with its images.

    Args:
        source: The folder holding ``{split}_caps.txt`` / ``{split}_filename.txt`` pairs.
        out: Destination dataset directory.
        name: Dataset name (default: the folder name without ``_precomp``).

    Returns:
        The ingest report; lines without their image and bad captions are quarantined.
    """
    if not source.is_dir():
        raise DataError(f"{source}: the amfmn format reads a folder of _caps.txt/_filename.txt pairs")
    pairs = split_files(source)
    used = {path.name for pair in pairs.values() for path in pair}
    ignored = sorted(p.name for p in source.glob("*.txt") if p.name not in used)
    contents = {split: read_split(caps, names) for split, (caps, names) in pairs.items()}
    with DatasetWriter(out, name=name or source.name.removesuffix("_precomp"), kind="captioning",
                       adapter="amfmn", source=str(source), extra_meta={"ignored_files": ignored}) as writer:
        lines = [line for split, (caps, names) in pairs.items()
                 for line in _caption_lines(writer, split, caps, names, contents[split])]
        write_caption_lines(writer, lines, images_dir(source))
    return writer.report
