"""The CrisisLandMark-like default set: unpaired sensors, CLOSP label text, events in their zones, plausible physics."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from rsvl.data.generate import CRISIS_PER_SENSOR, write_crisis_patches
from rsvl.data.labels import CRISIS_CLASSES, EVENT_CLASSES, labels_to_text
from rsvl.data.media import load_raster
from rsvl.data.store import read_files, read_manifest, read_meta, relative_to_dataset
from rsvl.data.synthetic import crisis_patches, sample_rng
from rsvl.data.synthetic.s1s2_patches import LAT_RANGE, LON_RANGE, SIZE

SENSOR_MODALITY = {"s1": "sar", "s2": "multispectral"}
NIR, RED, GREEN, SWIR2 = 7, 3, 2, 11  # B08, B04, B03, B12 in the 12-band order


@pytest.fixture(scope="module")
def crisis(tmp_path_factory) -> tuple[Path, object, dict]:
    out = tmp_path_factory.mktemp("crisis") / "crisis"
    write_crisis_patches(out, seed=0)
    return out, read_manifest(out), json.loads((out / "dataset.json").read_text())


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Path, object, dict]:
    """Four times the default count: class means unmixed from patch means carry the per-patch S1
    calibration offset (1 dB), so the physics checks need more patches than the default has."""
    out = tmp_path_factory.mktemp("crisis_large") / "crisis"
    write_crisis_patches(out, seed=0, count_per_sensor=4 * CRISIS_PER_SENSOR)
    return out, read_manifest(out), json.loads((out / "dataset.json").read_text())


def _array(dataset: Path, rel: str) -> np.ndarray:
    return load_raster(relative_to_dataset(dataset, rel)).astype(np.float64)


def _sensor_rows(manifest, sensor: str):
    return manifest[manifest[sensor].notna()]


def test_rows_are_single_sensor_scenes_counted_per_sensor_and_split(crisis):
    out, manifest, meta = crisis
    assert (meta["kind"], meta["name"]) == ("multisensor", "synthetic-crisislandmark")
    assert (manifest["s1"].notna() ^ manifest["s2"].notna()).all()  # exactly one sensor per row
    assert manifest["image"].isna().all()
    for sensor, modality in SENSOR_MODALITY.items():
        rows = _sensor_rows(manifest, sensor)
        assert set(rows["modality"]) == {modality}
        assert list(rows["sample_id"]) == [f"crisis_{sensor}_{i:05d}" for i in range(CRISIS_PER_SENSOR)]
        assert rows["split"].value_counts().to_dict() == {"train": 168, "val": 36, "test": 36}
        shape = (2 if sensor == "s1" else 12, SIZE, SIZE)
        for row in rows.iloc[::40].itertuples():
            assert _array(out, getattr(row, sensor)).shape == shape
            assert (row.bands, row.width, row.height) == shape
    assert len(read_files(out)) == 2 * CRISIS_PER_SENSOR


def test_the_two_sensors_show_different_places_and_do_not_depend_on_the_count(crisis, tmp_path):
    out, manifest, _ = crisis
    places = {sensor: set(zip(rows["lat"], rows["lon"])) for sensor, rows in
              ((s, _sensor_rows(manifest, s)) for s in SENSOR_MODALITY)}
    assert not places["s1"] & places["s2"]
    write_crisis_patches(tmp_path / "small", seed=0, count_per_sensor=12)
    small = read_files(tmp_path / "small").set_index("path")["sha256"]
    full = read_files(out).set_index("path")["sha256"]
    assert small.to_dict() == full.loc[small.index].to_dict()


def test_labels_captions_dominant_label_and_shares(crisis):
    _, manifest, meta = crisis
    shares = meta["class_shares"]
    assert set(meta["classes"]) <= set(CRISIS_CLASSES) and set(EVENT_CLASSES) <= set(meta["classes"])
    assert sorted(shares) == sorted(manifest["sample_id"])
    for row in manifest.itertuples():
        assert row.labels == sorted(set(row.labels)) and set(row.labels) <= set(CRISIS_CLASSES)
        assert row.captions == [labels_to_text(row.labels)]
        assert row.captions[0] == ". ".join(row.labels)  # CLOSP's text: the labels joined with ". "
        cover = shares[row.sample_id]
        assert sorted(cover) == row.labels and abs(sum(cover.values()) - 1) < 1e-12
        assert all(share * SIZE * SIZE == round(share * SIZE * SIZE) for share in cover.values())
        assert cover[row.label] == max(cover.values())
        events = [label for label in row.labels if label in EVENT_CLASSES]
        assert len(events) <= 1
        if events:
            assert 2 <= len(row.labels) <= 3, row.labels  # the event plus one or two land-cover classes
            assert row.long_caption.endswith(crisis_patches.EVENT_SENTENCES[events[0]][1:] + ".")
        if events == ["earthquake damage"]:
            assert "built" in row.labels


def test_times_follow_each_sensors_overpass(crisis):
    _, manifest, _ = crisis
    for sensor, (start, end) in (("s1", (16.5, 18.0)), ("s2", (9.5, 11.0))):
        for stamp in _sensor_rows(manifest, sensor)["timestamp"]:
            moment = dt.datetime.fromisoformat(stamp)
            assert moment.utcoffset() == dt.timedelta(0)
            assert start <= moment.hour + moment.minute / 60 + moment.second / 3600 < end
            assert dt.date(2017, 1, 1) <= moment.date() < dt.date(2022, 1, 1)


def _zone_of(zones: list[dict], lat: float, lon: float) -> dict | None:
    inside = [z for z in zones if z["lat_min"] <= lat <= z["lat_max"] and z["lon_min"] <= lon <= z["lon_max"]]
    assert len(inside) <= 1
    return inside[0] if inside else None


def test_zones_are_disjoint_boxes_inside_the_map_one_event_each(crisis):
    _, _, meta = crisis
    zones = meta["zones"]
    assert zones == crisis_patches.zones_as_dicts()
    assert {z["event"] for z in zones} == set(EVENT_CLASSES)
    for i, a in enumerate(zones):
        assert LAT_RANGE[0] <= a["lat_min"] < a["lat_max"] <= LAT_RANGE[1]
        assert LON_RANGE[0] <= a["lon_min"] < a["lon_max"] <= LON_RANGE[1]
        assert 0 < a["event_probability"] < 1
        for b in zones[i + 1:]:
            apart = a["lat_max"] < b["lat_min"] or b["lat_max"] < a["lat_min"] or \
                a["lon_max"] < b["lon_min"] or b["lon_max"] < a["lon_min"]
            assert apart, (a["name"], b["name"])


def test_events_occur_only_inside_their_zones_at_about_the_stated_rate(crisis):
    _, manifest, meta = crisis
    zones = meta["zones"]
    in_zone, expected, seen = 0, 0.0, {sensor: set() for sensor in SENSOR_MODALITY}
    for row in manifest.itertuples():
        zone = _zone_of(zones, row.lat, row.lon)
        events = [label for label in row.labels if label in EVENT_CLASSES]
        if zone is None:
            assert not events, f"{row.sample_id}: {events} outside every zone at {row.lat}, {row.lon}"
            continue
        assert events in ([], [zone["event"]]), f"{row.sample_id}: {events} in the {zone['name']} zone"
        in_zone += bool(events)
        expected += zone["event_probability"]
        if events:
            seen["s1" if row.modality == "sar" else "s2"].add(zone["name"])
    assert seen == {sensor: {z["name"] for z in zones} for sensor in SENSOR_MODALITY}  # every zone has events
    # in-zone scenes: a binomial count; 4 sigma around the stated probabilities
    variance = sum(z["event_probability"] * (1 - z["event_probability"]) for row in manifest.itertuples()
                   if (z := _zone_of(zones, row.lat, row.lon)))
    assert abs(in_zone - expected) < 4 * variance ** 0.5
    zone_rows = sum(_zone_of(zones, r.lat, r.lon) is not None for r in manifest.itertuples())
    assert zone_rows > crisis_patches.ZONE_SHARE * len(manifest) * 0.8


def _class_means(dataset: Path, rows, shares: dict, classes: list[str], band: int) -> dict[str, float]:
    """Per-class mean of one band, unmixed by least squares: a patch's mean is the share-weighted class means."""
    mix = np.array([[shares[sid].get(c, 0.0) for c in classes] for sid in rows["sample_id"]])
    sensor = "s1" if rows["s1"].notna().all() else "s2"
    means = np.array([_array(dataset, rel)[band].mean() for rel in rows[sensor]])
    solution, *_ = np.linalg.lstsq(mix, means, rcond=None)
    return dict(zip(classes, solution))


def test_s1_flood_water_is_as_dark_as_water_and_rubble_darker_than_built(large):
    out, manifest, meta = large
    rows = _sensor_rows(manifest, "s1")
    for band in (0, 1):  # VV, VH
        db = _class_means(out, rows, meta["class_shares"], meta["classes"], band)
        assert abs(db["flooded area"] - db["water"]) < 1.5, db
        land = [c for c in meta["classes"] if c not in ("water", "flooded area")]
        assert max(db["flooded area"], db["water"]) < min(db[c] for c in land) - 4, db
        assert 2 < db["built"] - db["earthquake damage"] < 6, db
        assert abs(db["burned area"] - db["bare"]) < 3 and db["burned area"] < db["shrub and scrub"], db


def test_s2_burned_area_has_low_nir_and_raised_swir_unlike_bare_and_flood_water_is_turbid(large):
    out, manifest, meta = large
    rows = _sensor_rows(manifest, "s2")
    means = {band: _class_means(out, rows, meta["class_shares"], meta["classes"], band)
             for band in (GREEN, RED, NIR, SWIR2)}
    nir, swir = means[NIR], means[SWIR2]
    assert nir["burned area"] < 0.5 * nir["bare"]
    assert swir["burned area"] > 1.3 * nir["burned area"] and nir["trees"] > 2 * swir["trees"]  # NBR < 0 vs > 0
    assert nir["flooded area"] < 0.15 * nir["trees"] and nir["water"] < 0.15 * nir["trees"]
    for band in (GREEN, RED):
        assert means[band]["water"] < means[band]["flooded area"] < 2 * means[band]["water"]
    for band in (GREEN, RED, NIR, SWIR2):
        assert abs(means[band]["earthquake damage"] / means[band]["built"] - 1) < 0.15


def test_rubble_adds_s1_texture_to_built_land():
    pixel_class = np.zeros((SIZE, SIZE), dtype=np.int64)
    variance = {}
    for name in ("built", "earthquake damage"):
        images = [crisis_patches.render_scene(sample_rng(1, 7, i), "s1", [name], pixel_class) for i in range(40)]
        variance[name] = np.mean([image.astype(np.float64).var(axis=(1, 2)) for image in images], axis=0)
    # the texture is independent of the speckle, so its variance adds: at least 1 dB of extra std in VV and VH
    assert (variance["earthquake damage"] - variance["built"] > 1.0).all(), variance


def test_band_stats_are_numpy_statistics_of_the_train_split(crisis):
    out, manifest, meta = crisis
    stats = meta["band_stats"]
    assert stats["split"] == "train"
    for sensor in SENSOR_MODALITY:
        train = manifest[(manifest["split"] == "train") & manifest[sensor].notna()]
        stack = np.stack([_array(out, rel) for rel in train[sensor]])
        np.testing.assert_allclose(stats[sensor]["mean"], stack.mean(axis=(0, 2, 3)), rtol=1e-9)
        np.testing.assert_allclose(stats[sensor]["std"], stack.std(axis=(0, 2, 3)), rtol=1e-9)
        assert stats[sensor]["bands"] == meta["band_names"][sensor]
        assert stats[sensor]["pixels"] == len(train) * SIZE * SIZE
    assert meta["units"] == {"s1": "dB", "s2": "reflectance x 10000"}
    assert read_meta(out)["generator_seed"] == 0


def test_draw_scene_rejects_an_unknown_sensor():
    with pytest.raises(ValueError, match="sensor"):
        crisis_patches.draw_scene(np.random.default_rng(0), "s3")
