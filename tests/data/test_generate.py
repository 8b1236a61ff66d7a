"""The embedded default dataset: deterministic, well-formed, truthful captions and learnable."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rsvl.config import RunConfig
from rsvl.data.generate import (
    LOCALISATION_SCENES,
    CRISIS_PER_SENSOR,
    DEFAULT_SETS,
    OPTICAL_PER_CLASS,
    OPTICAL_TWINS_FILE,
    S1S2_PATCHES,
    SAR_CHIPS,
    SHIP_SCENES,
    SHIP_SCENES_PER_CLASS,
    TWIN_CAPTIONS,
    generate_default,
    write_default_set,
    write_sar_chips,
)
from rsvl.data import generate
from rsvl.data.long_text import first_sentence
from rsvl.data.synthetic import optical_captions, optical_scenes, sample_rng
from rsvl.data.synthetic.rs5m_pool import PoolSpec
from rsvl.data.validate import raw_pools
from rsvl.data.labels import DYNAMIC_WORLD_CLASSES
from rsvl.data.media import load_raster
from rsvl.data.schema import MEDIA_COLUMNS, SPLITS
from rsvl.data.store import read_files, read_manifest, read_meta, relative_to_dataset, sha256_file
from rsvl.steps.data_steps import run_ingest

NUMBERS = {w: i for i, w in enumerate(
    ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"])}
COUNT_PHRASE = re.compile(r"\b(" + "|".join(NUMBERS) + r"|\d+) ships?\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def default(tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("default")
    return out, generate_default(out, seed=0, processes=2)  # the sets written two at a time


def _load(dataset: Path, rel: str) -> np.ndarray:
    return load_raster(relative_to_dataset(dataset, rel))


def _sentences(text: str) -> int:
    return len([part for part in re.split(r"(?<=\.)\s+", text.strip()) if part])


def test_counts_and_kinds(default):
    """Rows from the generator's sizes; files per row by kind: an optical image; a SAR chip, its sea/land
    mask and its optical twin; a Sentinel-1 and a Sentinel-2 patch; one single-sensor crisis scene."""
    out, reports = default
    optical = len(optical_scenes.DRAWERS) * OPTICAL_PER_CLASS + len(SHIP_SCENES) * SHIP_SCENES_PER_CLASS
    spec = PoolSpec()  # per_class scenes of each land-cover class, then each other kind's count
    pool = spec.per_class * len(optical_scenes.DRAWERS) + sum(
        getattr(spec, name) for name in PoolSpec.__dataclass_fields__ if name != "per_class")
    rows = [optical, SAR_CHIPS, S1S2_PATCHES, 2 * CRISIS_PER_SENSOR, pool, LOCALISATION_SCENES]
    assert DEFAULT_SETS == ("optical", "sar", "s1s2", "crisis", "rs5m", "localisation")
    # files per row: an image; chip, mask, twin; S1 and S2; one scene; one pool image; a scene and its mask
    assert [(r.rows, r.files, r.quarantined) for r in reports] == [
        (n, n * files, 0) for n, files in zip(rows, (1, 3, 2, 1, 1, 2))]
    assert SAR_CHIPS < optical / 4  # SAR pairs are scarce next to optical ones, as in SAR-RS-CLIP
    for name, report in zip(DEFAULT_SETS, reports):  # the reports say what is on disk
        assert len(read_manifest(out / name)) == report.rows and len(read_files(out / name)) == report.files
    kinds = {name: read_meta(out / name)["kind"] for name in DEFAULT_SETS}
    assert kinds == {"optical": "captioning", "sar": "detection", "s1s2": "multisensor", "crisis": "multisensor",
                     "rs5m": "captioning", "localisation": "captioning"}
    assert [pool.name for pool in raw_pools(out)] == ["rs5m"]  # left out of validation: the funnel cleans it


def test_same_seed_gives_identical_files_and_manifests(default, tmp_path):
    """Also one set after another in this process (the fixture wrote them in two processes at a time)."""
    out, _ = default
    generate_default(tmp_path, seed=0, processes=1)
    for name in DEFAULT_SETS:
        assert read_files(out / name).equals(read_files(tmp_path / name))
        first, second = read_manifest(out / name), read_manifest(tmp_path / name)
        assert first.to_json() == second.to_json()
        assert (out / name / "manifest.parquet").read_bytes() == (tmp_path / name / "manifest.parquet").read_bytes()


def test_other_seed_differs_and_samples_do_not_depend_on_count(default, tmp_path):
    out, _ = default
    write_sar_chips(tmp_path / "seed0", seed=0, count=10)
    write_sar_chips(tmp_path / "seed1", seed=1, count=10)
    full = read_files(out / "sar").set_index("path")["sha256"]
    small = read_files(tmp_path / "seed0").set_index("path")["sha256"]
    other = read_files(tmp_path / "seed1").set_index("path")["sha256"]
    assert small.to_dict() == full.loc[small.index].to_dict()
    assert (small != other.loc[small.index]).all()


def test_the_ingest_step_writes_only_the_missing_default_sets_and_leaves_present_ones_alone(default, tmp_path):
    out, _ = default
    root = tmp_path / "data"
    cfg = RunConfig.model_validate({"paper": "sar_text", "profile": "local", "model": {"name": "rsvl-tiny"},
                                    "data": {"root": str(root)}, "train": {"dataset": "default/optical"}})
    run_ingest(cfg, tmp_path / "run1")
    assert sorted(p.name for p in root.iterdir()) == ["default"]
    for name in DEFAULT_SETS:
        written = root / "default" / name
        assert (written / "manifest.parquet").read_bytes() == (out / name / "manifest.parquet").read_bytes()
        assert (written / "validation.json").is_file() == (name != "rs5m")
    assert (tmp_path / "run1" / "files.parquet").read_bytes() == (out / "optical" / "files.parquet").read_bytes()

    shutil.rmtree(root / "default" / "sar")
    (root / "default" / "sar").mkdir()
    (root / "default" / "sar" / "half-written.png").write_bytes(b"")
    kept = {name: (root / "default" / name / "manifest.parquet").stat().st_mtime_ns
            for name in ("optical", "s1s2", "crisis")}
    run_ingest(cfg, tmp_path / "run2")
    assert {name: (root / "default" / name / "manifest.parquet").stat().st_mtime_ns for name in kept} == kept
    assert (root / "default" / "sar" / "files.parquet").read_bytes() == (out / "sar" / "files.parquet").read_bytes()
    assert not (root / "default" / "sar" / "half-written.png").exists()
    assert sorted(p.name for p in root.iterdir()) == ["default"]


def test_rejects_bad_scale_and_seed(tmp_path):
    with pytest.raises(ValueError, match="scale"):
        generate_default(tmp_path, scale=0)
    with pytest.raises(ValueError, match="seed"):
        generate_default(tmp_path, seed=-1)
    with pytest.raises(ValueError, match="unknown default set 'radar'"):
        write_default_set("radar", tmp_path)


def test_round_trip_media_files_and_hashes(default):
    out, _ = default
    shapes = {"optical": {"image": {(3, 96, 96), (3, 128, 128)}},
              "sar": {"image": {(1, 128, 128)}, "mask": {(1, 128, 128)}},
              "s1s2": {"s1": {(2, 32, 32)}, "s2": {(12, 32, 32)}},
              "crisis": {"s1": {(2, 32, 32)}, "s2": {(12, 32, 32)}}}
    for name, expected in shapes.items():
        dataset = out / name
        manifest = read_manifest(dataset)
        files = read_files(dataset).set_index("path")
        assert set(manifest["split"]) <= set(SPLITS) and set(manifest["split"]) == set(SPLITS)
        assert manifest["sample_id"].is_unique
        media = [rel for column in MEDIA_COLUMNS for rel in manifest[column] if rel is not None]
        twins = [f"media/{sample_id}_optical.png" for sample_id in manifest["sample_id"]] if name == "sar" else []
        assert sorted(media + twins) == sorted(files.index)
        for column, allowed in expected.items():
            for rel in manifest[column].dropna().iloc[::25]:
                assert _load(dataset, rel).shape in allowed
                assert files.loc[rel, "sha256"] == sha256_file(relative_to_dataset(dataset, rel))


def test_optical_classes_splits_and_captions(default):
    out, _ = default
    manifest = read_manifest(out / "optical")
    per_class = manifest.groupby("label")["split"].value_counts().unstack()
    wanted = {**{label: OPTICAL_PER_CLASS for label in optical_scenes.DRAWERS},
              **{label: SHIP_SCENES_PER_CLASS for label in SHIP_SCENES}}
    assert per_class.sum(axis=1).to_dict() == wanted
    assert (per_class["train"] == (per_class.sum(axis=1) * 0.7).round()).all() and (per_class["test"] >= 7).all()
    for captions, long_caption in zip(manifest["captions"], manifest["long_caption"]):
        assert len(set(captions)) >= 3
        assert _sentences(long_caption) >= 3
    water = manifest[manifest["label"] == "water"]
    assert all(any(("river" in c or "lake" in c) for c in caps) for caps in water["captions"])


def _colour_features(rgb: np.ndarray) -> np.ndarray:
    histogram = [np.histogram(channel, bins=8, range=(0, 256))[0] / channel.size for channel in rgb]
    grey = rgb.mean(axis=0)
    edges = [np.abs(np.diff(grey, axis=0)).mean() / 32, np.abs(np.diff(grey, axis=1)).mean() / 32]
    return np.concatenate([*histogram, edges])


def test_optical_is_learnable_by_nearest_class_mean(default):
    out, _ = default
    dataset = out / "optical"
    manifest = read_manifest(dataset)
    features = np.stack([_colour_features(_load(dataset, rel)) for rel in manifest["image"]])
    labels = manifest["label"].to_numpy()
    train, test = (manifest["split"] == "train").to_numpy(), (manifest["split"] == "test").to_numpy()
    classes = sorted(set(labels))
    means = np.stack([features[train & (labels == c)].mean(axis=0) for c in classes])
    distances = ((features[test][:, None, :] - means[None]) ** 2).sum(axis=2)
    predicted = np.array(classes)[distances.argmin(axis=1)]
    accuracy = (predicted == labels[test]).mean()
    assert accuracy >= 3 / len(classes), f"nearest-class-mean accuracy {accuracy:.2f}"


def test_sar_boxes_match_the_drawn_ships(default):
    out, _ = default
    dataset = out / "sar"
    manifest = read_manifest(dataset)
    assert manifest["boxes"].map(len).sum() > 150
    for row in manifest.itertuples():
        chip, land = _load(dataset, row.image)[0], _load(dataset, row.mask)[0].astype(bool)
        assert set(np.unique(land.astype(int))) <= {0, 1}
        in_box = np.zeros(chip.shape, dtype=bool)
        for box in row.boxes:
            x0, y0, x1, y1 = (int(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            assert box["label"] == "ship"
            assert 0 <= x0 < x1 <= chip.shape[1] and 0 <= y0 < y1 <= chip.shape[0]
            in_box[y0:y1, x0:x1] = True
        sea = ~land & ~in_box
        for box in row.boxes:
            x0, y0, x1, y1 = (int(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            # A hull fills at least ~15% of its box (a thin one lying diagonally), so the box's
            # brightest tenth is hull, whatever the angle.
            hull = np.percentile(chip[y0:y1, x0:x1], 90)
            assert hull > 3 * chip[sea].mean(), f"{row.sample_id}: box not brighter than sea"
        assert (chip[sea] < 150).all(), f"{row.sample_id}: a bright target at sea has no box"
        if land.any() and (~land).any():
            assert chip[land].mean() > 2 * chip[~land & ~in_box].mean()


def test_sar_captions_state_the_box_count(default):
    out, _ = default
    manifest = read_manifest(out / "sar")
    for row in manifest.itertuples():
        assert len(row.captions) >= 3 and _sentences(row.long_caption) >= 3
        for text in [*row.captions, row.long_caption]:
            match = COUNT_PHRASE.search(text)
            assert match, f"{row.sample_id}: no ship count in {text!r}"
            word = match.group(1).lower()
            assert NUMBERS.get(word, int(word) if word.isdigit() else -1) == len(row.boxes), text


def test_optical_ship_scenes_state_the_ship_count(default):
    """Every caption of a harbour or open-sea scene that counts ships gives the same count (the twin test
    below checks the drawing against the boxes)."""
    out, _ = default
    manifest = read_manifest(out / "optical")
    ships = manifest[manifest["label"].isin(list(SHIP_SCENES))]
    for row in ships.itertuples():
        counts = {COUNT_PHRASE.search(text) for text in row.captions}
        stated = {NUMBERS.get(m.group(1).lower(), -1) for m in counts if m}
        assert len(stated) == 1, f"{row.sample_id}: captions disagree on the count: {row.captions}"
    assert set(ships["label"]) == set(SHIP_SCENES)


def _light_blobs(rgb: np.ndarray, water: np.ndarray) -> np.ndarray:
    """Pixels on the water brighter than any sea colour (hulls: white, light grey or orange)."""
    return (rgb.max(axis=0) > 150) & water


def test_each_sar_chip_has_a_co_registered_optical_twin_with_captions(default):
    """The twin shows the chip's ships where its boxes are, and its captions count them."""
    out, _ = default
    dataset = out / "sar"
    manifest = read_manifest(dataset)
    twins = json.loads((dataset / OPTICAL_TWINS_FILE).read_text(encoding="utf-8"))
    assert sorted(twins) == sorted(manifest["sample_id"])
    for row in manifest.itertuples():
        twin = _load(dataset, f"media/{row.sample_id}_optical.png")
        assert twin.shape == (3, 128, 128)
        water = _load(dataset, row.mask)[0] == 0
        in_box = np.zeros(water.shape, dtype=bool)
        for box in row.boxes:
            x0, y0, x1, y1 = (int(box[k]) for k in ("x_min", "y_min", "x_max", "y_max"))
            in_box[y0:y1, x0:x1] = True
            assert _light_blobs(twin, water)[y0:y1, x0:x1].any(), f"{row.sample_id}: no hull in the twin's box"
        assert not (_light_blobs(twin, water) & ~in_box).any(), f"{row.sample_id}: a twin hull outside every box"
        assert len(twins[row.sample_id]) == TWIN_CAPTIONS
        for text in twins[row.sample_id]:
            match = COUNT_PHRASE.search(text)
            if match:
                assert NUMBERS[match.group(1).lower()] == len(row.boxes), text


def test_s1s2_labels_captions_location_and_band_stats(default):
    out, _ = default
    dataset = out / "s1s2"
    manifest = read_manifest(dataset)
    meta = json.loads((dataset / "dataset.json").read_text())
    classes = set(meta["classes"])
    assert len(classes) >= 6 and classes <= set(DYNAMIC_WORLD_CLASSES)
    for row in manifest.itertuples():
        assert row.labels == sorted(set(row.labels)) and set(row.labels) <= classes
        assert row.captions == [". ".join(row.labels)]
        assert 34 <= row.lat <= 72 and -12 <= row.lon <= 32
        assert dt.datetime.fromisoformat(row.timestamp).tzinfo is not None
    train = manifest[manifest["split"] == "train"]
    assert meta["band_stats"]["split"] == "train"
    for sensor in ("s1", "s2"):
        stacked = np.stack([_load(dataset, rel) for rel in train[sensor]])
        stats = meta["band_stats"][sensor]
        assert np.allclose(stats["mean"], stacked.mean(axis=(0, 2, 3)), rtol=1e-3, atol=1e-3)
        assert np.allclose(stats["std"], stacked.std(axis=(0, 2, 3)), rtol=1e-3, atol=1e-3)
        assert stats["bands"] == meta["band_names"][sensor] and stats["pixels"] == stacked[:, 0].size


def _s1s2_features(dataset: Path, manifest, sensors: tuple[str, ...]) -> np.ndarray:
    rows = []
    for _, row in manifest.iterrows():
        parts = []
        for sensor in sensors:
            bands = _load(dataset, row[sensor])
            bands = bands / 10000 if sensor == "s2" else bands / 10
            parts += [bands.mean(axis=(1, 2)), bands.std(axis=(1, 2))]
        rows.append(np.concatenate([*parts, [1.0]]))
    return np.stack(rows)


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return 0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean())


@pytest.mark.parametrize("sensors, floor", [(("s2",), 0.75), (("s1",), 0.6)])
def test_s1s2_labels_are_learnable(default, sensors, floor):
    out, _ = default
    dataset = out / "s1s2"
    manifest = read_manifest(dataset)
    classes = read_meta(dataset)["classes"]
    targets = np.array([[c in labels for c in classes] for labels in manifest["labels"]])
    features = _s1s2_features(dataset, manifest, sensors)
    train = (manifest["split"] == "train").to_numpy()
    held_out = ~train
    weights, *_ = np.linalg.lstsq(features[train], targets[train].astype(float), rcond=None)
    predicted = features[held_out] @ weights > 0.5
    scores = [_balanced_accuracy(targets[held_out][:, k], predicted[:, k]) for k in range(len(classes))
              if 0 < targets[held_out][:, k].sum() < held_out.sum()]
    assert len(scores) >= 5
    assert np.mean(scores) >= floor, f"{sensors}: mean balanced accuracy {np.mean(scores):.2f} (chance 0.5)"


def test_s1s2_signatures_are_physically_plausible(default):
    out, _ = default
    dataset = out / "s1s2"
    manifest = read_manifest(dataset)
    pure = manifest[manifest["labels"].map(len) == 1]
    nir, red, vv = {}, {}, {}
    for _, row in pure.iterrows():
        s2, s1 = _load(dataset, row["s2"]), _load(dataset, row["s1"])
        name = row["labels"][0]
        nir.setdefault(name, []).append(s2[7].mean())
        red.setdefault(name, []).append(s2[3].mean())
        vv.setdefault(name, []).append(s1[0].mean())
    assert {"water", "trees"} <= set(nir)
    assert np.mean(nir["water"]) < 0.3 * np.mean(nir["trees"])
    assert np.mean(nir["trees"]) > 3 * np.mean(red["trees"])
    assert np.mean(vv["water"]) < min(np.mean(v) for name, v in vv.items() if name != "water") - 5


# --- the optical long captions: short caption, class-level text to token 77, then true details ---

CLIP, MINILM = "ViT-B-32", "rsvl-effnetlite0-minilm"
THIRD = "(upper left|upper middle|upper right|middle left|center|middle right|lower left|lower middle|lower right)"


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    from rsvl.models.token_counts import tokenizer_by_name

    return {CLIP: tokenizer_by_name(CLIP), MINILM: tokenizer_by_name(MINILM)}


def _parts(label: str, long_caption: str) -> tuple[str, str, list[str]]:
    """Split a long caption into its first sentence, the class-level run after it and the rest."""
    first = first_sentence(long_caption)
    rest = long_caption[len(first):].strip()
    pool = [optical_captions.OVERVIEW[label], optical_captions.CONTEXT[label], *optical_captions.GENERAL[label]]
    general = []
    while (found := [s for s in pool if rest.startswith(s + " ")]):
        general.append(found[0])
        rest = rest[len(found[0]):].strip()
    return first, " ".join(general), re.split(r"(?<=[.!?]) (?=[A-Z0-9])", rest)


def test_optical_long_captions_open_with_a_short_caption_and_keep_details_past_token_77(default, tokenizers):
    """First sentence: one of the row's short captions; then the overview and class-level sentences; the
    details start at token index 77 or later (a 77-token context never sees them) under CLIP's BPE and
    MiniLM's WordPiece, and the whole caption fits LRSCLIP's 248 tokens."""
    from rsvl.models.token_counts import token_lengths

    manifest = read_manifest(default[0] / "optical")
    prefixes, fulls = [], []
    for row in manifest.itertuples():
        first, general, details = _parts(row.label, row.long_caption)
        assert first in row.captions, row.sample_id
        assert general.startswith(optical_captions.OVERVIEW[row.label]), row.sample_id
        pool = {optical_captions.CONTEXT[row.label], *optical_captions.GENERAL[row.label]}
        assert details and not pool & set(details), row.sample_id
        prefixes.append(f"{first} {general}")
        fulls.append(row.long_caption)
    for name, tokenizer in tokenizers.items():
        prefix_lengths, full_lengths = token_lengths(tokenizer, prefixes), token_lengths(tokenizer, fulls)
        detail_lengths = token_lengths(tokenizer, [full[len(prefix) + 1:] for prefix, full in zip(prefixes, fulls)])
        # tokens do not cross the sentence boundary, so the details' first index is the prefix's tokens + start
        assert [p + d - 2 for p, d in zip(prefix_lengths, detail_lengths)] == full_lengths, name
        starts = [length - 1 for length in prefix_lengths]
        assert min(starts) >= optical_captions.DETAIL_START == 77, name
        assert max(full_lengths) <= 248, name


def _number(word: str) -> int:
    return int(word) if word.isdigit() else NUMBERS[word.lower()]


def _thirds(text: str) -> Counter:
    """Objects per third in ``"in the center"``, ``"both in the center"``, ``"two in the center and one in ..."``."""
    if (same := re.search(r"(?:both|all (\w+)) in the " + THIRD, text)):
        return Counter({same.group(2): 2 if same.group(1) is None else _number(same.group(1))})
    counted = re.findall(r"\b(\w+) in the " + THIRD, text)
    if counted:
        return Counter({third: _number(word) for word, third in counted})
    return Counter(re.findall(r"in the " + THIRD, text))


def _redrawn_facts(label: str, index: int) -> dict:
    """The facts of one optical scene, drawn again as write_optical_scenes draws them (seed 0)."""
    ships = {name: generate._ship_scene(coastal) for name, coastal in SHIP_SCENES.items()}
    drawers = {**optical_scenes.DRAWERS, **ships}
    class_index = list(drawers).index(label)
    return drawers[label](sample_rng(0, generate._OPTICAL, class_index * 1_000_000 + index))[1]


def _check_details(label: str, f: dict, text: str) -> None:
    """Every count the details state equals the drawn facts (each class's counts in turn)."""
    def count(pattern: str) -> int:
        match = re.search(pattern, text)
        assert match, f"{pattern!r} not in {text!r}"
        return _number(match.group(1))

    def sentence_with(words: str) -> str:
        return next(s for s in re.split(r"(?<=\.) ", text) if words in s)

    if label == "forest":
        assert count(r"made up of (\w+) round tree crowns") == f["trees"]
        assert ("clearing of light green" in text) == bool(f["clearing"])
    elif label == "water":
        share = round(f["water_share"] * 100)
        assert count(r"covers about (\d+)%") == (share if f["kind"] == "river" else 100 - share)
        assert count(r"There (?:is|are) (\w+) (?:white )?boats? on the water") == len(f["boats"])
        assert _thirds(sentence_with("on the water")) == Counter(f["boats"])
    elif label == "farmland":
        assert count(r"(\w+) light brown tracks? separates? the fields") == f["fields"] - 1
        fields = re.findall(r"the \w+ (?:field )?is ([a-z ]+?) with (\w+) stripes", text)
        assert fields == list(zip(f["colours"], f["orientations"]))
        widths = np.diff(f["edges"])
        assert count(r"covers about (\d+)%") == round(widths.max() * 100 / optical_scenes.SIZE)
    elif label == "residential":
        listed = sentence_with("houses have")
        roofs = {colour: _number(n) for n, colour in re.findall(r"(\w+) (\w+) roofs?\b", listed)}
        assert count(r"The (\w+) houses have") == f["houses"] and roofs == f["roofs"]
        for direction, roads in (("left to right", f["roads_across"]), ("top to bottom", f["roads_down"])):
            match = re.search(rf"(\w+) roads? runs? from {direction}", text)
            assert (_number(match.group(1)) if match else 0) == len(roads)
        assert (count(r"(\w+) small trees?") if f["trees"] else 0) == f["trees"]
    elif label == "industrial":
        buildings = 1 if "The only building" in text else count(r"the (\w+) buildings are")
        assert buildings == f["buildings"]
        tanks = count(r"(\w+) round white storage tanks?") if f["tanks"] else 0
        assert tanks == f["tanks"] and ("no storage tanks" in text) == (tanks == 0)
        if tanks:
            assert _thirds(sentence_with("storage tank")) == Counter(t for t, _ in f["tank_list"])
        if "Of the" in text:
            assert count(r"Of the (\w+) tanks") == tanks
    elif label == "grassland":
        assert (count(r"(\w+) dark green bush") if f["bushes"] else 0) == len(f["bushes"])
        if f["bushes"]:
            assert _thirds(sentence_with("dark green bush")) == Counter(f["bushes"])
        assert ("dirt path runs" in text) == bool(f["path"])
        if "Of the" in text:
            assert count(r"Of the (\w+) bushes") == len(f["bushes"])
    elif label == "parking lot":
        if f["cars"] > 1:
            listed = sentence_with("cars are parked:").split(": ")[1]
            colours = {colour: _number(n) for n, colour in re.findall(r"(\w+) (\w+)(?=,| and|\.)", listed)}
            assert count(r"(\w+) cars are parked") == f["cars"] and colours == f["colour_counts"]
            rows = re.search(r"rows hold ([\d, and]+) cars", text).group(1)
            assert [int(n) for n in re.findall(r"\d+", rows)] == f["cars_per_row"]
            assert count(r"the (\w+) rows hold") == f["rows"]
        assert count(r"Each row has (\w+) marked stalls") == f["stalls_per_row"]
        stalls = f["stalls_per_row"] * f["rows"]
        assert (count(r"so (\w+) of the"), count(r"of the (\w+) stalls")) == (stalls - f["cars"], stalls)
    elif label == "bare land":
        assert (count(r"(\w+) small dark rocks?") if f["rocks"] else 0) == f["rocks"]
        if f["rocks"]:
            assert _thirds(sentence_with("dark rock")) == Counter(f["rock_thirds"])
        assert (count(r"(\w+) tyre tracks? cross") if f["tracks"] else 0) == f["tracks"]
        if ":" in text:  # tracks in both directions, counted per direction
            runs = re.findall(r"(\w+) runs? from (top to bottom|left to right)", text)
            assert Counter({direction: _number(n) for n, direction in runs}) == Counter(f["track_directions"])
    else:  # harbour, open sea
        ships = f["ships"]
        if label == "harbour" and ships:
            for words, moored in (("moored along the quay", True), ("at sea away from the quay", False)):
                mine = [third for third, at_quay in ships if at_quay == moored]
                assert count(rf"(\w+) ships? (?:is|are) {words}") == len(mine)
                assert _thirds(sentence_with(words)) == Counter(mine)
        elif ships:
            assert count(r"(\w+) [a-z ]*ships? (?:is|are) on the water") == len(ships)
            assert _thirds(sentence_with("on the water")) == Counter(t for t, _ in ships)
        if "Of the" in text:
            assert count(r"Of the (\w+) ships") == len(ships)
        if len(ships) > 1 and "Both" not in text and "All" not in text:
            sizes = {size: _number(n) for n, size in re.findall(r"(\w+) (?:is|are) (small|medium|large)", text)}
            assert sizes == Counter(f["ship_sizes"])
        if not ships:
            assert "no ships" in text


def test_optical_long_caption_details_state_the_drawn_counts(default):
    manifest = read_manifest(default[0] / "optical")
    for row in manifest.itertuples():
        facts = _redrawn_facts(row.label, int(row.sample_id.rsplit("_", 1)[1]))
        details = " ".join(_parts(row.label, row.long_caption)[2])
        _check_details(row.label, facts, details)
