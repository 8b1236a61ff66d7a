"""Karpathy-style caption JSON (``dataset_rsicd.json``, RSITMD, UCM-Captions, Sydney-Captions, NWPU).

Layout: ``{"images": [{"filename", "split", "sentences": [{"raw", ...}], "filepath"?, ...}]}``.
``SOURCE`` is the JSON file or a folder holding it: the one ``dataset*.json`` there, else the
one ``*.json``. The file is read as UTF-8, else as GB18030 (the encoding the RSICD release
uses); the encoding that worked is recorded in the metadata as ``source_encoding``.

Images: ``ROOT/<filepath>/<filename>`` (``filepath`` omitted when absent), where ``ROOT`` is
the ``images/`` folder beside the JSON when it exists, else the JSON's folder. Split ``restval``
counts as train. One quarantine record per rejected JSON entry (``dataset.json#12``):
``record_fields`` (missing or mistyped keys), ``split_value`` (not train/val/test/restval),
``unique_id`` (an image listed twice), ``captions_nonempty`` (no usable sentence),
``file_exists``, ``image_decode``. A bad sentence alone is quarantined at
``dataset.json#12.sentences[3]`` (``record_fields`` or ``caption_nonempty``) and the entry keeps
its other captions.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from rsvl.data.adapters import register
from rsvl.data.adapters.row_checks import accept_caption, accept_image, images_dir
from rsvl.data.adapters.text_files import read_json
from rsvl.data.schema import SPLITS
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

ENCODINGS = ("utf-8", "gb18030")
SPLIT_ALIASES = {"restval": "train"}


def find_json(source: Path) -> Path:
    """Return the Karpathy JSON a source names: the file itself or the one in a folder.

    Raises:
        DataError: The folder holds no candidate JSON or several.
    """
    if source.is_file():
        return source
    for pattern in ("dataset*.json", "*.json"):
        found = sorted(source.glob(pattern))
        if len(found) == 1:
            return found[0]
        if found:
            raise DataError(f"{source}: several {pattern} files, pass one of {[p.name for p in found]}")
    raise DataError(f"{source}: no Karpathy caption JSON (*.json) found")


def load_entries(path: Path) -> tuple[list, str]:
    """Read the ``images`` list of a Karpathy JSON and the encoding it was stored in.

    Raises:
        DataError: The file is not UTF-8/GB18030 JSON or has no ``images`` list.
    """
    document, encoding = read_json(path, ENCODINGS)
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise DataError(f"{path}: a Karpathy caption file is an object with an 'images' list")
    return document["images"], encoding


def _relative_name(entry: dict) -> str | None:
    filename, filepath = entry.get("filename"), entry.get("filepath") or ""
    if not isinstance(filename, str) or not filename or not isinstance(filepath, str):
        return None
    rel = PurePosixPath(filepath.replace("\\", "/"), filename)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    return rel.as_posix()


def _add_entry(writer: DatasetWriter, entry, where: str, root: Path, taken: set[str]) -> None:
    rel = _relative_name(entry) if isinstance(entry, dict) else None
    sentences = entry.get("sentences") if isinstance(entry, dict) else None
    split = entry.get("split") if isinstance(entry, dict) else None
    if rel is None or not isinstance(sentences, list) or not isinstance(split, str):
        writer.quarantine(where=where, rule="record_fields",
                          reason=f"{where}: needs a relative 'filename', a 'split' and a 'sentences' list")
        return
    sample_id = PurePosixPath(rel).with_suffix("").as_posix()
    if sample_id in taken:
        writer.quarantine(where=where, rule="unique_id", sample_id=sample_id,
                          reason=f"{where}: {rel} is listed by an earlier entry too")
        return
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS:
        writer.quarantine(where=where, rule="split_value", sample_id=sample_id,
                          reason=f"{where}: split {split!r} is not one of {SPLITS} (or restval)")
        return
    captions = []
    for index, sentence in enumerate(sentences):
        raw = sentence.get("raw") if isinstance(sentence, dict) else None
        if not isinstance(raw, str):
            writer.quarantine(where=f"{where}.sentences[{index}]", rule="record_fields", sample_id=sample_id,
                              reason=f"{where}.sentences[{index}]: has no 'raw' text")
            continue
        caption = accept_caption(writer, raw, f"{where}.sentences[{index}]", sample_id)
        if caption is not None:
            captions.append(caption)
    if not captions:
        writer.quarantine(where=where, rule="captions_nonempty", sample_id=sample_id,
                          reason=f"{where}: {rel} has no usable caption")
        return
    header = accept_image(writer, root / rel, [where], sample_id)
    if header is None:
        return
    taken.add(sample_id)
    width, height, bands = header
    writer.add_row(
        sample_id=sample_id,
        split=split,
        modality="optical",
        image=writer.copy_media(root / rel, rel),
        width=width,
        height=height,
        bands=bands,
        captions=captions,
        source=where,
    )


@register("karpathy")
def ingest_karpathy(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest a Karpathy-style caption JSON with its images.

    Args:
        source: The JSON file or the folder holding it (and the images).
        out: Destination dataset directory.
        name: Dataset name (default: the JSON stem without ``dataset_``).

    Returns:
        The ingest report; entries without their image or captions are quarantined.
    """
    path = find_json(source)
    entries, encoding = load_entries(path)
    root = images_dir(path.parent)
    with DatasetWriter(out, name=name or path.stem.removeprefix("dataset_"), kind="captioning",
                       adapter="karpathy", source=str(source),
                       extra_meta={"source_encoding": encoding}) as writer:
        taken: set[str] = set()
        for index, entry in enumerate(entries):
            _add_entry(writer, entry, f"{path.name}#{index}", root, taken)
    return writer.report
