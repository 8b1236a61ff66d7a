"""Captions from scene-class labels, so a classification set (RSSCN7) can train a CLIP stage.

Each row without captions gets :data:`CAPTIONS_PER_ROW` sentences about its class, chosen from
:data:`TEMPLATES` by a hash of the sample id, so the same data always gets the same captions and
neighbouring rows get different wordings. Class names are written as a reader would say them
(:data:`SCENE_PHRASES`: RSSCN7's ``riverlake`` is "a river or lake"); an unknown class is used as
it is. The zero-shot evaluation's prompt templates are not reused: a model trained on them would
be scored on its own training sentences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rsvl.data.adapters.class_folder import normalise_class
from rsvl.data.schema import MANIFEST_SCHEMA
from rsvl.data.store import MANIFEST_FILE, write_parquet

CAPTIONS_PER_ROW = 5
TEMPLATES = (
    "an aerial image of {scene}",
    "a remote sensing image showing {scene}",
    "{scene} seen from above",
    "a satellite view of {scene}",
    "an overhead image of {scene}",
    "the scene shows {scene}",
    "a top-down view of {scene}",
    "this image is mostly {scene}",
)
SCENE_PHRASES = {
    "grass": "grassland", "field": "farmland fields", "industry": "an industrial area",
    "riverlake": "a river or lake", "forest": "a forest", "resident": "a residential area",
    "parking": "a parking lot",
}
"""How captions name a class label (RSSCN7's seven classes); other labels are used as they are."""


def scene_captions(label: str, key: str, count: int = CAPTIONS_PER_ROW) -> list[str]:
    """Write ``count`` distinct captions of a scene class.

    Args:
        label: The class label (normalised as the class-folder adapter does).
        key: A stable key (the sample id) choosing which templates this row gets.
        count: Captions wanted (at most ``len(TEMPLATES)``).

    Returns:
        Sentences such as "An aerial image of a river or lake."
    """
    label = normalise_class(label)
    scene = SCENE_PHRASES.get(label, label)
    start = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % len(TEMPLATES)
    chosen = [TEMPLATES[(start + k) % len(TEMPLATES)] for k in range(min(count, len(TEMPLATES)))]
    return [(text := template.format(scene=scene))[:1].upper() + text[1:] + "." for template in chosen]


def add_label_captions(dataset_dir: str | Path) -> int:
    """Give every row that has a label but no captions its :func:`scene_captions`, in place.

    Args:
        dataset_dir: A canonical dataset (its manifest is rewritten; media are untouched).

    Returns:
        How many rows got captions.
    """
    manifest_path = Path(dataset_dir) / MANIFEST_FILE
    # every stored row, quarantined ones too: validation's table still names them
    rows = pq.read_table(manifest_path, schema=MANIFEST_SCHEMA).to_pylist()
    written = 0
    for row in rows:
        if not row.get("captions") and row.get("label"):
            row["captions"] = scene_captions(row["label"], row["sample_id"])
            written += 1
    write_parquet(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest_path)
    return written
