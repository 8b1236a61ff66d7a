"""Great Expectations suites over the facts table (:mod:`rsvl.data.facts`), one per dataset kind.

Every kind shares the same pieces (identity, media, captions, geometry, geo-time, QA) and adds
the columns it cannot do without (a label for classification, captions for captioning ...).
Each expectation is paired with a function that words the failure of one row for a person, so a
quarantine record says which value broke which rule. Importing this module imports Great
Expectations (seconds); :mod:`rsvl.data.validate` does so only when it validates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import great_expectations.expectations as gxe
import pandas as pd

from rsvl.config import CaptionRules
from rsvl.data.facts import MIN_SIDE, S1_DB_DARKEST, VALUE_RANGES
from rsvl.data.schema import KINDS, MODALITIES, SPLITS

Reason = Callable[[dict, dict], str]
"""Words the failure of one row from its facts and its manifest record."""


@dataclass(frozen=True)
class Check:
    """One expectation and how to explain a row that fails it."""

    expectation: gxe.Expectation
    reason: Reason

    @property
    def rule(self) -> str:
        """Expectation type and the column(s) it reads, e.g. ``expect_column_values_to_be_in_set[split]``."""
        kwargs = self.expectation.configuration.kwargs
        columns = kwargs.get("column") or f"{kwargs.get('column_A')}={kwargs.get('column_B')}"
        return f"{self.expectation.expectation_type}[{columns}]"


def _short(text: str | None, limit: int = 60) -> str:
    text = text or ""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _identity() -> list[Check]:
    checks = [
        Check(gxe.ExpectColumnValuesToNotBeNull(column=c), lambda f, r, c=c: f"{c} is missing")
        for c in ("sample_id", "split", "modality")
    ]
    checks += [
        Check(gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
              lambda f, r: f"sample_id {f['sample_id']!r} is used by more than one row"),
        Check(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
              lambda f, r: f"split {f['split']!r} is not one of {', '.join(SPLITS)}"),
        Check(gxe.ExpectColumnValuesToBeInSet(column="modality", value_set=list(MODALITIES)),
              lambda f, r: f"modality {f['modality']!r} is not one of {', '.join(MODALITIES)}"),
    ]
    return checks


def _media(column: str) -> list[Check]:
    def path(r: dict) -> str:
        return repr(r[column])

    checks = [
        Check(gxe.ExpectColumnValuesToBeInSet(column=f"{column}_exists", value_set=[True]),
              lambda f, r: f"{column} {path(r)}: {f[f'{column}_error']}"),
        Check(gxe.ExpectColumnValuesToBeInSet(column=f"{column}_decodes", value_set=[True]),
              lambda f, r: f"{column} {path(r)} does not decode: {f[f'{column}_error']}"),
        Check(gxe.ExpectColumnValuesToBeBetween(column=f"{column}_nonfinite", min_value=0, max_value=0),
              lambda f, r: f"{column} {path(r)} holds {int(f[f'{column}_nonfinite'])} NaN or infinite values"),
        Check(gxe.ExpectColumnValuesToBeBetween(column=f"{column}_min_side", min_value=MIN_SIDE),
              lambda f, r: f"{column} {path(r)} is {int(f[f'{column}_width'])}x{int(f[f'{column}_height'])} px, "
                           f"under {MIN_SIDE} px a side"),
        Check(gxe.ExpectColumnValuesToBeInSet(column=f"{column}_db_scaled", value_set=[True]),
              lambda f, r: f"{column} {path(r)}: no value below {S1_DB_DARKEST:g} dB (minimum {f[f'{column}_min']:g}): "
                           "linear power, not dB; convert with 10*log10"),
    ]
    for name, (low, high) in VALUE_RANGES.items():
        condition = f'{column}_range == "{name}"'
        checks += [
            Check(gxe.ExpectColumnValuesToBeBetween(column=f"{column}_min", min_value=low,
                                                    row_condition=condition, condition_parser="pandas"),
                  lambda f, r, name=name, low=low: f"{column} {path(r)}: minimum {f[f'{column}_min']:g} "
                                                   f"is below {low:g}, the lowest {name} value"),
            Check(gxe.ExpectColumnValuesToBeBetween(column=f"{column}_max", max_value=high,
                                                    row_condition=condition, condition_parser="pandas"),
                  lambda f, r, name=name, high=high: f"{column} {path(r)}: maximum {f[f'{column}_max']:g} "
                                                     f"is above {high:g}, the highest {name} value"),
        ]
    return checks


def _raster_shape() -> list[Check]:
    return [
        Check(gxe.ExpectColumnPairValuesToBeEqual(column_A=f"raster_{c}", column_B=c,
                                                  ignore_row_if="either_value_is_missing"),
              lambda f, r, c=c: f"{c} column says {int(f[c])} but the raster has {int(f[f'raster_{c}'])}")
        for c in ("bands", "width", "height")
    ]


def _captions(rules: CaptionRules) -> list[Check]:
    def worst(r: dict, key: Callable[[str], int], pick: Callable) -> str:
        texts = [c for c in r["captions"] if c.strip()]
        text = pick(texts, key=key)
        return f"caption {r['captions'].index(text) + 1} {_short(text)}"

    words = lambda c: len(c.split())  # noqa: E731
    return [
        Check(gxe.ExpectColumnValuesToBeBetween(column="caption_blank", min_value=0, max_value=0),
              lambda f, r: f"{int(f['caption_blank'])} of {len(r['captions'])} captions are empty or whitespace "
                           f"({', '.join(repr(c) for c in r['captions'] if not c.strip())})"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="caption_min_words", min_value=rules.min_words),
              lambda f, r: f"{worst(r, words, min)} has {int(f['caption_min_words'])} words, "
                           f"fewer than min_words={rules.min_words}"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="caption_max_words", max_value=rules.max_words),
              lambda f, r: f"{worst(r, words, max)} has {int(f['caption_max_words'])} words, "
                           f"more than max_words={rules.max_words}"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="caption_max_chars", max_value=rules.max_chars),
              lambda f, r: f"{worst(r, len, max)} has {int(f['caption_max_chars'])} characters, "
                           f"more than max_chars={rules.max_chars}"),
        Check(gxe.ExpectColumnValuesToBeInSet(column="long_caption_blank", value_set=[False]),
              lambda f, r: f"long_caption {r['long_caption']!r} is empty or whitespace"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="long_caption_chars", max_value=rules.max_chars),
              lambda f, r: f"long_caption {_short(r['long_caption'])} has {int(f['long_caption_chars'])} "
                           f"characters, more than max_chars={rules.max_chars}"),
    ]


def _annotations() -> list[Check]:
    return [
        Check(gxe.ExpectColumnValuesToBeBetween(column="boxes_bad", min_value=0, max_value=0),
              lambda f, r: f"{int(f['boxes_bad'])} of {len(r['boxes'])} boxes are empty, inverted or outside "
                           f"the {f['raster_width'] or r['width']}x{f['raster_height'] or r['height']} image"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="lat", min_value=-90, max_value=90),
              lambda f, r: f"lat {r['lat']} is outside -90..90"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="lon", min_value=-180, max_value=180),
              lambda f, r: f"lon {r['lon']} is outside -180..180"),
        Check(gxe.ExpectColumnValuesToBeInSet(column="timestamp_ok", value_set=[True]),
              lambda f, r: f"timestamp {r['timestamp']!r} is not ISO 8601"),
        Check(gxe.ExpectColumnValuesToBeBetween(column="vqa_blank", min_value=0, max_value=0),
              lambda f, r: f"{int(f['vqa_blank'])} of {len(r['vqa'])} QA pairs have an empty question or "
                           "a blank answer"),
    ]


SINGLE_SENSOR_MEDIA = {"sar": "s1", "multispectral": "s2"}
"""Media column a single-sensor row of a multisensor set needs (CrisisLandMark: S1 or S2 patches, unpaired)."""


def _multisensor() -> list[Check]:
    """Paired rows need two media; a single-sensor row needs the sensor its modality names."""
    single = list(SINGLE_SENSOR_MEDIA)
    checks = [Check(gxe.ExpectColumnValuesToBeBetween(column="media_count", min_value=2,
                                                      row_condition=f"modality not in {single!r}",
                                                      condition_parser="pandas"),
                    lambda f, r: f"media_count is {int(f['media_count'])}, a multisensor {f['modality']} sample "
                                 "needs at least 2 (single-sensor rows are modality sar or multispectral)")]
    for modality, column in SINGLE_SENSOR_MEDIA.items():
        checks.append(Check(gxe.ExpectColumnValuesToNotBeNull(column=column, row_condition=f'modality == "{modality}"',
                                                              condition_parser="pandas"),
                            lambda f, r, c=column, m=modality: f"{c} is missing, a multisensor {m} sample needs one"))
    return checks


def _required(kind: str) -> list[Check]:
    if kind == "multisensor":
        return _multisensor()
    needs = {
        "classification": [("image", "not_null"), ("label", "not_null")],
        "captioning": [("image", "not_null"), ("caption_count", 1)],
        "detection": [("image", "not_null")],
        "vqa": [("image", "not_null"), ("vqa_count", 1)],
    }[kind]
    checks = []
    for column, need in needs:
        if need == "not_null":
            checks.append(Check(gxe.ExpectColumnValuesToNotBeNull(column=column),
                                lambda f, r, c=column: f"{c} is missing, a {kind} sample needs one"))
        else:
            checks.append(Check(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=need),
                                lambda f, r, c=column, n=need: f"{c} is {int(f[c])}, a {kind} sample needs "
                                                               f"at least {n}"))
    return checks


def build_checks(kind: str, rules: CaptionRules, facts: pd.DataFrame) -> tuple[list, list[Check]]:
    """Assemble the expectations for one dataset kind that can fail on these facts.

    Args:
        kind: One of :data:`rsvl.data.schema.KINDS`.
        rules: Caption limits.
        facts: The facts table; media checks are made for the media columns in it, and checks
            that skip nulls are left out where their column holds no value at all.

    Returns:
        Table-level expectations (columns that must exist; a failure rejects the whole dataset)
        and row-level checks (a failure quarantines the row).
    """
    if kind not in KINDS:
        raise ValueError(f"dataset kind {kind!r} is not one of {KINDS}")
    checks = _identity() + _raster_shape() + _captions(rules) + _annotations() + _required(kind)
    for column in ("image", "s1", "s2", "mask"):
        if f"{column}_exists" in facts:
            checks += _media(column)
    row_columns = {c.expectation.configuration.kwargs.get("column") for c in checks} - {None}
    required = sorted(row_columns & {"sample_id", "split", "modality", "label", "image"})
    table = [gxe.ExpectColumnToExist(column=c) for c in required]
    return table, [c for c in checks if _columns_of(c) <= set(facts) and _can_fail(c, facts)]


_NULL_STRICT = ("expect_column_values_to_not_be_null", "expect_column_values_to_be_unique")


def _can_fail(check: Check, facts: pd.DataFrame) -> bool:
    expectation = check.expectation
    if expectation.expectation_type in _NULL_STRICT:
        return True
    condition = expectation.row_condition
    rows = facts.query(condition.pass_through_filter) if condition else facts
    return all(rows[c].notna().any() for c in _columns_of(check))


def _columns_of(check: Check) -> set[str]:
    kwargs = check.expectation.configuration.kwargs
    return {kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs}
