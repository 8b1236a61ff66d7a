"""Per-image caption JSON keyed by image path (the ``ucm_sydney_captions_sample`` layout).

Layout: ``SOURCE/captions.json`` (or ``SOURCE`` is that file) holding
``{"<relpath>": {"split", "captions": [...], "size": [width, height]?, "mode"?}}``, with each
``relpath`` relative to the JSON's folder (``UCM_captions_imgs/1.tif``). The sample id is the
relpath without its suffix. One quarantine record per rejected entry (``captions.json#3``, the
entry's position in the file): ``record_fields`` (missing or mistyped keys, or a relpath that is
absolute or climbs out with ``..``), ``split_value``, ``captions_nonempty``, ``file_exists``,
``image_decode``, and ``image_size`` when the image's header disagrees with the recorded size.
A bad caption alone is quarantined at ``captions.json#3.captions[1]`` and the entry keeps the rest.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from rsvl.data.adapters import register
from rsvl.data.adapters.row_checks import accept_caption, accept_image
from rsvl.data.adapters.text_files import read_json
from rsvl.data.schema import SPLITS
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

CAPTIONS_FILE = "captions.json"


def load_captions(path: Path) -> dict:
    """Read a ``{relpath: entry}`` caption JSON.

    Raises:
        DataError: The file is not UTF-8 JSON or not an object.
    """
    document, _ = read_json(path)
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected an object keyed by image path")
    return document


def _valid_entry(rel: str, entry) -> bool:
    path = PurePosixPath(rel)
    return (
        isinstance(entry, dict)
        and bool(rel)
        and not path.is_absolute()
        and ".." not in path.parts
        and isinstance(entry.get("split"), str)
        and isinstance(entry.get("captions"), list)
    )


def _add_entry(writer: DatasetWriter, rel: str, entry, where: str, base: Path) -> None:
    if not _valid_entry(rel, entry):
        writer.quarantine(where=where, rule="record_fields",
                          reason=f"{where}: {rel!r} needs a relative path, a 'split' and a 'captions' list")
        return
    sample_id = PurePosixPath(rel).with_suffix("").as_posix()
    if entry["split"] not in SPLITS:
        writer.quarantine(where=where, rule="split_value", sample_id=sample_id,
                          reason=f"{where}: split {entry['split']!r} is not one of {SPLITS}")
        return
    captions = []
    for index, raw in enumerate(entry["captions"]):
        caption_where = f"{where}.captions[{index}]"
        if not isinstance(raw, str):
            writer.quarantine(where=caption_where, rule="record_fields", sample_id=sample_id,
                              reason=f"{caption_where}: caption is {type(raw).__name__}, not text")
            continue
        caption = accept_caption(writer, raw, caption_where, sample_id)
        if caption is not None:
            captions.append(caption)
    if not captions:
        writer.quarantine(where=where, rule="captions_nonempty", sample_id=sample_id,
                          reason=f"{where}: {rel} has no usable caption")
        return
    header = accept_image(writer, base / rel, [where], sample_id)
    if header is None:
        return
    width, height, bands = header
    recorded = entry.get("size")
    if recorded is not None and recorded != [width, height]:
        writer.quarantine(where=where, rule="image_size", sample_id=sample_id,
                          reason=f"{where}: size is recorded as {recorded} but {rel} is {[width, height]}")
        return
    writer.add_row(
        sample_id=sample_id,
        split=entry["split"],
        modality="optical",
        image=writer.copy_media(base / rel, rel),
        width=width,
        height=height,
        bands=bands,
        captions=captions,
        source=where,
    )


@register("captions-json")
def ingest_captions_json(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest a ``{relpath: {split, captions, size, mode}}`` caption JSON with its images.

    Args:
        source: The folder holding ``captions.json`` and the images, or the JSON file.
        out: Destination dataset directory.
        name: Dataset name (default: the JSON's folder name).

    Returns:
        The ingest report; entries without their image or captions are quarantined.
    """
    path = source if source.is_file() else source / CAPTIONS_FILE
    if not path.is_file():
        raise DataError(f"{source}: no {CAPTIONS_FILE} found")
    entries = load_captions(path)
    with DatasetWriter(out, name=name or path.parent.name, kind="captioning",
                       adapter="captions-json", source=str(source)) as writer:
        for index, (rel, entry) in enumerate(entries.items()):
            _add_entry(writer, rel, entry, f"{path.name}#{index}", path.parent)
    return writer.report
