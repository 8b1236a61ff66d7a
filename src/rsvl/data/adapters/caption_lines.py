"""Turn line-per-caption sources (CSV rows, ``*_caps.txt`` lines) into one row per image.

Lines that name the same image basename form one sample, in order of first appearance. Each
line is checked on its own (``caption_utf8``, ``caption_nonempty``, ``split_consistent``: the
line puts its image in another split than the image's first line did); image checks
(``file_exists``, ``image_decode``, ``unique_id`` when two basenames share a stem such as
``a.jpg``/``a.png``) quarantine every remaining line of that image. The sample id is the
basename without its suffix; a row's ``source`` names its lines (``caps.csv:2-6``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rsvl.data.adapters.row_checks import accept_caption, accept_image
from rsvl.data.adapters.text_files import source_ref
from rsvl.data.store import DatasetWriter


@dataclass
class CaptionLine:
    """One caption line of a text source and the image it names."""

    file: str
    line: int
    image: str
    split: str
    caption: bytes

    @property
    def where(self) -> str:
        """The line as ``file:line``."""
        return f"{self.file}:{self.line}"


@dataclass
class _ImageGroup:
    split: str
    lines: list[CaptionLine] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)


def sample_id_of(image: str) -> str:
    """Return the sample id of an image basename (the name without its suffix)."""
    return Path(image).stem


def write_caption_lines(writer: DatasetWriter, lines: list[CaptionLine], root: Path) -> None:
    """Group caption lines by image, check them and add one captioned row per image.

    Args:
        writer: The dataset being written.
        lines: Caption lines in source order.
        root: Folder that holds the images (looked up by basename).
    """
    groups: dict[str, _ImageGroup] = {}
    for line in lines:
        sample_id = sample_id_of(line.image)
        caption = accept_caption(writer, line.caption, line.where, sample_id)
        if caption is None:
            continue
        group = groups.setdefault(line.image, _ImageGroup(line.split))
        if line.split != group.split:
            writer.quarantine(where=line.where, rule="split_consistent", sample_id=sample_id,
                              reason=f"{line.where}: puts {line.image} in split {line.split!r}, "
                                     f"an earlier line put it in {group.split!r}")
            continue
        group.lines.append(line)
        group.captions.append(caption)
    taken: dict[str, str] = {}
    for image, group in groups.items():
        sample_id = sample_id_of(image)
        if sample_id in taken:
            for line in group.lines:
                writer.quarantine(where=line.where, rule="unique_id", sample_id=sample_id,
                                  reason=f"{image} and {taken[sample_id]} both form sample id {sample_id!r}")
            continue
        taken[sample_id] = image
        path = root / image
        header = accept_image(writer, path, [line.where for line in group.lines], sample_id)
        if header is None:
            continue
        width, height, bands = header
        files = dict.fromkeys(line.file for line in group.lines)
        source = "; ".join(
            source_ref(name, ":", [line.line for line in group.lines if line.file == name]) for name in files
        )
        writer.add_row(
            sample_id=sample_id,
            split=group.split,
            modality="optical",
            image=writer.copy_media(path, image),
            width=width,
            height=height,
            bands=bands,
            captions=group.captions,
            source=source,
        )
