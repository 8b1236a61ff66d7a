"""How good a result list is, from what the archive itself records: boxes (ships) and land masks.

The default SAR chips carry ship boxes and a land/sea mask, so a query such as "ships near the
coast" can be judged without hand labels: a result *has ships* when its row has at least one box,
and *is coastal* when its mask has land pixels. Precision@k is printed beside the archive's own
share of such rows (the precision of a random ranking), which is what a ranking has to beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rsvl.data.store import read_manifest, relative_to_dataset


@dataclass(frozen=True)
class Facts:
    """Per sample id: whether the row has boxes, and whether its mask shows land (``None``: no mask)."""

    objects: dict[str, bool]
    land: dict[str, bool | None]


def archive_facts(dataset_root: str | Path) -> Facts:
    """Read each row's box count and mask from a canonical dataset.

    Args:
        dataset_root: The dataset the index was built from.
    """
    from rsvl.data.media import load_raster

    root = Path(dataset_root)
    frame = read_manifest(root)
    objects, land = {}, {}
    for record in frame.to_dict("records"):
        boxes = record.get("boxes")
        objects[record["sample_id"]] = boxes is not None and len(boxes) > 0
        mask = record.get("mask")
        land[record["sample_id"]] = bool((load_raster(relative_to_dataset(root, mask)) > 0).any()) if mask else None
    return Facts(objects, land)


def precision_lines(ranked_ids: Sequence[str], facts: Facts, k: int = 10) -> list[str]:
    """``precision@k`` of the top ``k`` for "has ships", "coastal" and both, each beside the archive's share.

    Args:
        ranked_ids: Result sample ids, best first.
        facts: :func:`archive_facts` of the archive.
        k: Cut-off.
    """
    top = list(ranked_ids[:k])
    if not top:
        return [f"precision@{k}: no results"]
    lines = []
    judges = {
        "with ships (>= 1 box)": lambda i: facts.objects.get(i, False),
        "coastal (land in the mask)": lambda i: bool(facts.land.get(i)),
        "both": lambda i: facts.objects.get(i, False) and bool(facts.land.get(i)),
    }
    for name, judge in judges.items():
        if name != "with ships (>= 1 box)" and all(value is None for value in facts.land.values()):
            continue
        hits = sum(judge(i) for i in top)
        share = float(np.mean([judge(i) for i in facts.objects])) if facts.objects else 0.0
        lines.append(f"precision@{k} {name}: {hits / len(top):.2f} ({hits}/{len(top)}); archive share {share:.2f}")
    return lines
