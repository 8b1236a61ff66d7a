"""Planted mismatched pairs: a share of a captioned dataset's rows given another class's captions.

iEBAKER's Eliminate-Before-Align claims to drop weakly aligned pairs before they are aligned. To
measure that, :func:`plant_mismatches` rewrites chosen rows of a split so their captions describe
a scene of another class (the captions of a row of the next class, in the dataset's class order),
and writes which rows it changed to ``mismatches.json`` beside the manifest; the dropped-pairs
table of a fit (``eba_dropped.csv``) is then scored against that truth by
:func:`drop_precision`. The choice of rows is a function of the seed only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from rsvl.data.schema import MANIFEST_SCHEMA
from rsvl.data.store import MANIFEST_FILE, read_manifest, write_parquet
from rsvl.errors import DataError

TRUTH_FILE = "mismatches.json"


def plant_mismatches(dataset_dir: str | Path, fraction: float, *, seed: int = 0, split: str = "train") -> list[str]:
    """Give ``fraction`` of ``split``'s rows the captions of a row of another class, in place.

    Args:
        dataset_dir: A canonical captioned dataset with a ``label`` per row (two classes or more).
        fraction: Share of the split's rows to change, in (0, 1).
        seed: Chooses the rows and the donors.
        split: The split to change.

    Returns:
        The changed rows' sample ids (also written to ``mismatches.json``).

    Raises:
        DataError: Fewer than two classes, no labels, or the fraction leaves no row to change.
    """
    root = Path(dataset_dir)
    frame = read_manifest(root, include_quarantined=True)
    rows = [i for i in range(len(frame)) if frame.at[i, "split"] == split]
    labels = sorted({str(frame.at[i, "label"]) for i in rows if frame.at[i, "label"] is not None})
    if len(labels) < 2:
        raise DataError(f"{root}: planting mismatches needs labelled rows of two classes or more in {split!r}")
    count = int(round(fraction * len(rows)))
    if not 0.0 < fraction < 1.0 or count == 0:
        raise DataError(f"{root}: fraction {fraction} of {len(rows)} {split!r} rows changes no row")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(rows, size=count, replace=False).tolist())
    by_label = {label: [i for i in rows if str(frame.at[i, "label"]) == label] for label in labels}
    captions = list(frame["captions"])
    for row in chosen:
        other = labels[(labels.index(str(frame.at[row, "label"])) + 1) % len(labels)]
        donor = by_label[other][int(rng.integers(len(by_label[other])))]
        captions[row] = list(frame.at[donor, "captions"])
    frame["captions"] = captions
    table = pa.Table.from_pylist(frame.to_dict("records"), schema=MANIFEST_SCHEMA)
    write_parquet(table, root / MANIFEST_FILE)
    ids = [str(frame.at[row, "sample_id"]) for row in chosen]
    (root / TRUTH_FILE).write_text(json.dumps({"split": split, "fraction": fraction, "seed": seed,
                                               "sample_ids": ids}, indent=2), encoding="utf-8")
    return ids


def drop_precision(dropped_ids: list[str], planted: list[str]) -> dict[str, float]:
    """How well a set of dropped pairs matches the planted mismatches.

    Args:
        dropped_ids: Sample ids EBA dropped (repeats count once).
        planted: The planted rows' sample ids.

    Returns:
        ``dropped`` (distinct rows), ``precision`` (share of them planted; NaN when none dropped) and
        ``recall`` (share of the planted rows dropped at least once).
    """
    dropped, truth = set(dropped_ids), set(planted)
    hits = len(dropped & truth)
    return {"dropped": float(len(dropped)), "precision": hits / len(dropped) if dropped else float("nan"),
            "recall": hits / len(truth) if truth else float("nan")}
