"""COCO object-detection JSON (``images``, ``annotations`` with ``bbox``, ``categories``).

Layout: ``SOURCE`` is the COCO JSON file, or a directory holding it (``annotations.json``, else the
only ``*.json`` there). Image ``file_name``\\ s are looked up under ``images/`` beside the JSON when
that folder exists, else beside the JSON itself.

Rows: one per image entry, ``kind`` detection, boxes converted from ``[x, y, w, h]`` to
``x_min=x, y_min=y, x_max=x+w, y_max=y+h`` (COCO's pixel-edge convention, the manifest's too),
``label`` = the category ``name``. Images with no annotation are kept with no boxes (negatives).

- ``modality`` (ours): ``info.modality`` of the JSON when it is one of the manifest modalities
  (set ``"sar"`` for SAR sets such as HRSID or SSDD), else ``optical``.
- ``split`` (ours): the image entry's non-standard ``split`` field; else the split named in the
  JSON file name (``instances_train2017.json`` → train, ``val``/``validation`` → val, ``test``);
  else :func:`rsvl.data.adapters.class_folder.hash_split` of ``file_name``.

Quarantine rules: ``image_fields`` (an image entry without ``file_name``), ``file_exists`` and ``image_decode`` (image missing or unreadable),
``image_size`` (declared width/height differ from the file), ``unique_id`` (an image id repeats),
``split_value`` (an unknown ``split`` field), and per annotation ``image_ref`` (its ``image_id``
names no image entry), ``box_label`` (unknown ``category_id``), ``box_fields`` (``bbox`` is not
four numbers) and ``box_bounds`` (empty or outside the image).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from rsvl.data.adapters import register
from rsvl.data.adapters.class_folder import hash_split
from rsvl.data.adapters.row_checks import accept_image, images_dir
from rsvl.data.boxes import box_problem, make_box
from rsvl.data.schema import MODALITIES
from rsvl.data.splits import canonical_split
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError

_SPLIT_IN_NAME = re.compile(r"(?:^|[^a-z])(train|validation|val|test)(?:[^a-z]|$)")


def find_coco_json(source: Path) -> Path:
    """Return the COCO JSON that ``source`` names or holds.

    Args:
        source: A JSON file, or a directory with ``annotations.json`` or exactly one ``*.json``.

    Raises:
        DataError: No JSON, or several without an ``annotations.json`` among them.
    """
    if source.is_file():
        return source
    if (source / "annotations.json").is_file():
        return source / "annotations.json"
    candidates = sorted(source.glob("*.json"))
    if len(candidates) != 1:
        raise DataError(f"{source}: expected annotations.json or exactly one *.json, found "
                        f"{[p.name for p in candidates]}")
    return candidates[0]


def split_from_name(name: str) -> str | None:
    """Return the split a COCO file name announces (``instances_val2017.json`` → ``val``), if any."""
    match = _SPLIT_IN_NAME.search(Path(name).stem.lower())
    return canonical_split(match.group(1)) if match else None


def coco_box(bbox: object, label: str) -> dict:
    """Convert a COCO ``[x, y, w, h]`` into a manifest box.

    Args:
        bbox: The annotation's ``bbox`` value.
        label: Category name.

    Returns:
        The box as ``x_min=x, y_min=y, x_max=x+w, y_max=y+h``.

    Raises:
        ValueError: ``bbox`` is not four numbers.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"bbox must be [x, y, w, h], got {bbox!r}")
    x, y, w, h = (float(v) for v in bbox)
    return make_box(x, y, x + w, y + h, label)


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not valid UTF-8 JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: a COCO file needs an 'images' list")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise DataError(f"{path}: '{key}' must be a list")
    return data


def _annotations_by_image(data: dict, json_name: str, image_ids: set, writer: DatasetWriter) -> dict:
    by_image: dict = defaultdict(list)
    for index, annotation in enumerate(data.get("annotations", [])):
        where = f"{json_name}:annotations[{index}]"
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in image_ids:
            writer.quarantine(where=where, rule="image_ref",
                              reason=f"{where}: image_id {image_id!r} names no entry of 'images'")
            continue
        by_image[image_id].append((where, annotation))
    return by_image


def _image_boxes(annotations: list, categories: dict, writer: DatasetWriter, sample_id: str,
                 width: int, height: int) -> list[dict]:
    boxes = []
    for where, annotation in annotations:
        label = categories.get(annotation.get("category_id"))
        if not label:
            writer.quarantine(where=where, rule="box_label", sample_id=sample_id,
                              reason=f"{where}: category_id {annotation.get('category_id')!r} is not in 'categories'")
            continue
        try:
            box = coco_box(annotation.get("bbox"), label)
        except (TypeError, ValueError) as err:
            writer.quarantine(where=where, rule="box_fields", reason=f"{where}: {err}", sample_id=sample_id)
            continue
        problem = box_problem(box, width, height)
        if problem:
            writer.quarantine(where=where, rule="box_bounds", reason=f"{where}: {problem}", sample_id=sample_id)
            continue
        boxes.append(box)
    return boxes


@register("coco")
def ingest_coco(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest a COCO detection JSON and its images.

    Args:
        source: The COCO JSON file or the directory holding it.
        out: Destination dataset directory.
        name: Dataset name (default: the JSON's folder name).

    Returns:
        The ingest report.

    Raises:
        DataError: The JSON is unreadable or lacks an ``images`` list.
    """
    json_path = find_coco_json(source)
    data = _load(json_path)
    root = images_dir(json_path.parent)
    categories = {c.get("id"): str(c.get("name", "")) for c in data.get("categories", []) if isinstance(c, dict)}
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    modality = info.get("modality") if info.get("modality") in MODALITIES else "optical"
    file_split = split_from_name(json_path.name)
    images = [image for image in data["images"] if isinstance(image, dict)]
    with DatasetWriter(out, name=name or json_path.parent.name, kind="detection", adapter="coco",
                       source=str(json_path)) as writer:
        annotations = _annotations_by_image(data, json_path.name, {i.get("id") for i in images}, writer)
        seen: set = set()
        for index, image in enumerate(data["images"]):
            where = f"{json_path.name}:images[{index}]"
            if not isinstance(image, dict) or not str(image.get("file_name") or "").strip():
                writer.quarantine(where=where, rule="image_fields",
                                  reason=f"{where}: an image entry needs a 'file_name', got {image!r}")
                continue
            file_name = str(image["file_name"])
            sample_id = Path(file_name).with_suffix("").as_posix()
            if image.get("id") in seen:
                writer.quarantine(where=where, rule="unique_id", sample_id=sample_id,
                                  reason=f"{where}: image id {image.get('id')!r} repeats an earlier entry")
                continue
            seen.add(image.get("id"))
            split = canonical_split(image["split"]) if "split" in image else file_split or hash_split(file_name)
            if split is None:
                writer.quarantine(where=where, rule="split_value", sample_id=sample_id,
                                  reason=f"{where}: split {image['split']!r} is not train/val/test")
                continue
            header = accept_image(writer, root / file_name, [where], sample_id)
            if header is None:
                continue
            width, height, bands = header
            declared = (image.get("width", width), image.get("height", height))
            if declared != (width, height):
                writer.quarantine(where=where, rule="image_size", sample_id=sample_id,
                                  reason=f"{where}: declared size {declared} but {file_name} is {(width, height)}")
                continue
            boxes = _image_boxes(annotations.get(image.get("id"), []), categories, writer, sample_id,
                                 width, height)
            writer.add_row(
                sample_id=sample_id,
                split=split,
                modality=modality,
                image=writer.copy_media(root / file_name, file_name),
                bands=bands,
                width=width,
                height=height,
                boxes=boxes,
                source=where,
            )
    return writer.report
