"""Corpus cases of broken media: images, band arrays, tables and shards, archives.

Each builder writes a small source (good rows around the broken one) and returns the commands a
user runs on it; see ``corpus_case.py`` for the contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from corpus_case import ERROR, KEPT, QUARANTINE, Case, Expect
from forged_media import declared_png
from PIL import Image


def _scene(value: int, size: int = 32) -> Image.Image:
    """A small RGB test scene of one shade with a bright square (distinct per ``value``)."""
    pixels = np.full((size, size, 3), value, dtype=np.uint8)
    pixels[size // 4: size // 2, size // 4: size // 2] = 255 - value
    return Image.fromarray(pixels)


def class_folder(case: Path, broken: str, write_broken) -> list[list[str]]:
    """A class-folder source of four good scenes in two classes plus ``broken`` (written by ``write_broken``).

    Returns:
        ``rsvl data ingest`` then ``rsvl data validate`` of the result.
    """
    source = case / "source"
    for index, label in enumerate(("forest", "forest", "river", "river")):
        (source / label).mkdir(parents=True, exist_ok=True)
        _scene(40 * index + 20).save(source / label / f"{label}_{index}.png")
    write_broken(source / "forest" / broken)
    return [["rsvl", "data", "ingest", "--format", "class-folder", "--source", "source", "--out", "out"],
            ["rsvl", "data", "validate", "out", "--max-bad-fraction", "0.5"]]


CASES: list[Case] = [
    Case("image-zero-byte", "images", "a zero-byte `.png` among good scenes",
         lambda case: class_folder(case, "empty.png", lambda path: path.write_bytes(b"")),
         Expect(QUARANTINE, stage="validate", rule="image_decodes", rows_in=5, kept=4, quarantined=1)),
]


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _image_case(kind: str, what: str, name: str, data, rule: str, outcome: str = QUARANTINE) -> Case:
    """A class-folder case whose fifth image is ``data`` (bytes, or a function of nothing returning bytes)."""
    def write(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)

    counts = dict(rows_in=5, kept=4, quarantined=1) if outcome == QUARANTINE else dict(rows_in=5, kept=5)
    return Case(kind, "images", what, lambda case: class_folder(case, name, write),
                Expect(outcome, stage="validate" if outcome == QUARANTINE else None, rule=rule, **counts))


CASES += [
    _image_case("image-truncated-png", "a PNG cut to half its bytes", "cut.png",
                lambda: _png_bytes(_scene(90))[: len(_png_bytes(_scene(90))) // 2], "image_decodes"),
    _image_case("image-truncated-jpeg", "a JPEG cut to half its bytes", "cut.jpg",
                lambda: _jpeg_bytes(_scene(90))[: len(_jpeg_bytes(_scene(90))) // 2], "image_decodes"),
    _image_case("image-wrong-magic", "a text file named `.png` (no PNG signature)", "text.png",
                b"this is not an image\n" * 8, "image_decodes"),
    _image_case("image-jpeg-named-png", "JPEG bytes in a file named `.png`: valid, decoded by its content",
                "photo.png", lambda: _jpeg_bytes(_scene(70)), None, outcome=KEPT),
    _image_case("image-16-bit", "a 16-bit greyscale PNG (`I;16`)", "deep.png",
                lambda: _png_bytes(Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16))), "image_max"),
    _image_case("image-cmyk", "a CMYK JPEG: valid, decoded to RGB (ink is not intensity)", "print.jpg",
                lambda: _jpeg_bytes(_scene(60).convert("CMYK")), None, outcome=KEPT),
    _image_case("image-palette", "a palette PNG (mode `P`): valid, decoded to RGB (indices are not intensity)",
                "palette.png", lambda: _png_bytes(_scene(50).convert("P")), None, outcome=KEPT),
    _image_case("image-1x1", "a 1×1 image", "dot.png", lambda: _png_bytes(Image.new("RGB", (1, 1), (9, 9, 9))),
                "image_min_side"),
    _image_case("image-decompression-bomb", "a PNG whose header declares 50,000×50,000 pixels (7.5 GB decoded)",
                "bomb.png", lambda: declared_png(50_000, 50_000), "image_decodes"),
]


# --- band arrays: BigEarthNet npz patches and CrisisLandMark HDF5 shards ---------------------------

_S2_FACTORS = {"B01": 6, "B02": 1, "B03": 1, "B04": 1, "B05": 2, "B06": 2, "B07": 2, "B08": 1, "B8A": 2, "B09": 6,
               "B11": 2, "B12": 2}
_S2_NAME = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_00_0{}"


def _patch(index: int, side: int = 12) -> dict[str, np.ndarray]:
    """One BigEarthNet npz patch: S2 reflectance ×10000 (uint16) on its grids, S1 VV/VH in dB."""
    arrays = {f"S2_{band}": np.full((side // f, side // f), 900 + 37 * index + 11 * i, dtype=np.uint16)
              for i, (band, f) in enumerate(_S2_FACTORS.items())}
    ramp = np.arange(side * side, dtype=np.float32).reshape(side, side) / (side * side)
    arrays["S1_VV"] = (-18.0 + 6.0 * ramp + index).astype(np.float32)
    arrays["S1_VH"] = (-25.0 + 6.0 * ramp + index).astype(np.float32)
    return arrays


def bigearthnet(case: Path, change) -> list[list[str]]:
    """A BigEarthNet source of three patches; ``change(arrays)`` edits the third patch's arrays in place.

    Returns:
        ``rsvl data ingest --format bigearthnet`` then ``rsvl data validate``.
    """
    source = case / "source"
    (source / "npz").mkdir(parents=True)
    lines = ["patch_id,s1_name,split,country,labels,snow,cloud_or_shadow"]
    for index, split in enumerate(("train", "validation", "test")):
        arrays = _patch(index)
        if index == 2:
            change(arrays)
        np.savez(source / "npz" / f"{_S2_NAME.format(index)}.npz", **arrays)
        lines.append(f"{_S2_NAME.format(index)},S1B_IW_GRDH_1SDV_20170612T165809_33UUP_00_0{index},{split},Austria,"
                     "Coniferous forest|Pastures,False,False")
    (source / "labels.csv").write_text("\n".join(lines) + "\n")
    return [["rsvl", "data", "ingest", "--format", "bigearthnet", "--source", "source", "--out", "out"],
            ["rsvl", "data", "validate", "out", "--max-bad-fraction", "0.5"]]


def _set(key: str, value):
    def change(arrays: dict) -> None:
        arrays[key] = value(arrays[key]) if callable(value) else value
    return change


def _array_case(kind: str, what: str, change, stage: str, rule: str, outcome: str = QUARANTINE) -> Case:
    counts = dict(rows_in=3, kept=2, quarantined=1) if outcome == QUARANTINE else dict(rows_in=3, kept=3)
    return Case(kind, "arrays", what, lambda case: bigearthnet(case, change),
                Expect(outcome, stage=stage if outcome == QUARANTINE else None, rule=rule, **counts))


def _with_nan(band: np.ndarray) -> np.ndarray:
    band = band.copy()
    band[1, 2] = np.nan
    return band


def _with_inf(band: np.ndarray) -> np.ndarray:
    band = band.copy()
    band[0, 0] = np.inf
    return band


def _linear(band: np.ndarray) -> np.ndarray:
    return (10.0 ** (band / 10.0)).astype(np.float32)  # dB to linear power: 0.003..0.1


CASES += [
    _array_case("band-nan", "a NaN in an S1 VV band (npz)", _set("S1_VV", _with_nan), "ingest", "finite_values"),
    _array_case("band-inf", "an infinite value in an S1 VH band (npz)", _set("S1_VH", _with_inf), "ingest",
                "finite_values"),
    _array_case("band-complex-dtype", "an S1 band stored as complex64 (its imaginary part would be dropped)",
                _set("S1_VV", lambda band: band.astype(np.complex64)), "ingest", "band_dtype"),
    _array_case("band-object-dtype", "an S2 band stored as an object array (needs pickle to load)",
                _set("S2_B04", lambda band: np.array(band.tolist(), dtype=object)), "ingest", "array_decode"),
    _array_case("band-int64-dtype", "an S1 band stored as int64 dB values: valid, read as float32",
                _set("S1_VV", lambda band: np.round(band).astype(np.int64)), None, None, outcome=KEPT),
    _array_case("band-missing", "an S2 patch without band B8A (11 of 12 S2 bands)",
                lambda arrays: arrays.pop("S2_B8A"), "ingest", "band_count"),
    _array_case("s1-linear-not-db", "S1 VV/VH in linear power (0.003..0.1) instead of dB",
                lambda arrays: arrays.update(S1_VV=_linear(arrays["S1_VV"]), S1_VH=_linear(arrays["S1_VH"])),
                "validate", "s1_db_scaled"),
]


def crisislandmark(case: Path, key: str, image: np.ndarray, coords: bool = True) -> list[list[str]]:
    """A CrisisLandMark source: two good S1 patches and ``key`` with ``image`` (and coords unless ``coords`` is False).

    Returns:
        ``rsvl data ingest --format crisislandmark`` then ``rsvl data validate``.
    """
    import h5py
    import pandas as pd

    source = case / "source"
    (source / "shards").mkdir(parents=True)
    ramp = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8) / 128.0
    members = {"s1_a": -15.0 + 4.0 * ramp, "s1_b": -12.0 + 4.0 * ramp, key: image}
    with h5py.File(source / "shards" / "part-0.h5", "w") as handle:
        for name, pixels in members.items():
            group = handle.create_group(name)
            group.create_dataset("image", data=pixels)
            if coords or name != key:
                group.create_dataset("coords", data=np.array([12.5, 41.9]))
            group.attrs["crs"] = "EPSG:4326"
            group.attrs["timestamp"] = "2021-03-04T05:06:07"
    pd.DataFrame({"key": list(members), "split": ["train", "val", "test"],
                  "labels": [["water"], ["trees"], ["built"]]}).to_parquet(source / "metadata.parquet")
    return [["rsvl", "data", "ingest", "--format", "crisislandmark", "--source", "source", "--out", "out"],
            ["rsvl", "data", "validate", "out", "--max-bad-fraction", "0.5"]]


_S1_PATCH = (-14.0 + np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8) / 32.0)

CASES += [
    Case("band-count-for-sensor", "arrays", "a 4-band patch in a CrisisLandMark shard (S1 has 2 bands, S2 12 or 13)",
         lambda case: crisislandmark(case, "s1_four", np.concatenate([_S1_PATCH, _S1_PATCH])),
         Expect(QUARANTINE, stage="ingest", rule="band_count", rows_in=3, kept=2, quarantined=1)),
    Case("hdf5-missing-coords", "arrays",
         "a CrisisLandMark shard member without `coords`: kept without a location (lat/lon null), as Sen2Flood "
         "members upstream come",
         lambda case: crisislandmark(case, "s1_nowhere", _S1_PATCH, coords=False),
         Expect(KEPT, rows_in=3, kept=3)),
]


# --- tables: a canonical dataset whose manifest or dataset.json was edited by hand ----------------


def _edited_dataset(case: Path, edit) -> list[list[str]]:
    """Ingest a good class-folder source, then ``edit(dataset_dir)`` and validate it."""
    source = case / "source"
    for index, label in enumerate(("forest", "forest", "river", "river")):
        (source / label).mkdir(parents=True, exist_ok=True)
        _scene(40 * index + 20).save(source / label / f"{label}_{index}.png")
    from rsvl.data.adapters import ingest

    ingest("class-folder", source, case / "out")
    edit(case / "out")
    return [["rsvl", "data", "validate", "out"]]


def _edit_manifest(change):
    def edit(dataset: Path) -> None:
        import pyarrow.parquet as pq

        path = dataset / "manifest.parquet"
        pq.write_table(change(pq.read_table(path)), path)
    return edit


def _edit_meta(dataset: Path) -> None:
    import json

    path = dataset / "dataset.json"
    meta = json.loads(path.read_text())
    meta["schema_version"] += 1
    path.write_text(json.dumps(meta))


def _table_case(kind: str, what: str, edit, error: str) -> Case:
    return Case(kind, "tables", what, lambda case: _edited_dataset(case, edit), Expect(ERROR, error=error, dataset=None))


def _retyped(table):
    import pyarrow as pa

    index = table.schema.get_field_index("width")
    return table.set_column(index, "width", pa.array([str(v) for v in table.column("width").to_pylist()]))


CASES += [
    _table_case("parquet-missing-column", "a manifest.parquet without its `split` column",
                _edit_manifest(lambda table: table.drop(["split"])), r"manifest\.parquet.*split"),
    _table_case("parquet-extra-column", "a manifest.parquet with an extra `notes` column",
                _edit_manifest(lambda table: table.append_column("notes", __import__("pyarrow").array(["x"] * len(table)))),
                r"manifest\.parquet.*notes.*manifest_schema"),
    _table_case("parquet-wrong-type", "a manifest.parquet whose `width` column holds text",
                _edit_manifest(_retyped), r"manifest\.parquet.*width is string.*manifest_schema"),
    _table_case("schema-version-newer", "a dataset.json written by a newer schema version", _edit_meta,
                r"dataset\.json.*schema version 2 is newer"),
]


# --- archives: `rsvl data ingest` of a .zip or .tar.gz -----------------------------------------------


def _good_scenes(folder: Path) -> None:
    for index, label in enumerate(("forest", "river")):
        (folder / label).mkdir(parents=True, exist_ok=True)
        _scene(50 * index + 30).save(folder / label / f"{label}_{index}.png")


def _zip_with(case: Path, name: str, data: bytes | None = None, zeros: int = 0) -> list[list[str]]:
    """A zip of two good scenes plus member ``name`` (``data``, or ``zeros`` zero bytes streamed in)."""
    import zipfile

    folder = case / "scenes"
    _good_scenes(folder)
    with zipfile.ZipFile(case / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*.png")):
            bundle.write(path, f"scenes/{path.relative_to(folder)}")
        with bundle.open(name, "w", force_zip64=zeros > 2**31) as member:
            if zeros:
                block = bytes(2**20)
                for _ in range(zeros // len(block)):
                    member.write(block)
            else:
                member.write(data or b"")
    return [["rsvl", "data", "ingest", "--format", "class-folder", "--source", "bundle.zip", "--out", "out"]]


def _tar_with_link(case: Path) -> list[list[str]]:
    """A tar.gz of two good scenes plus a symlink member pointing at /etc/passwd."""
    import io
    import tarfile

    folder = case / "scenes"
    _good_scenes(folder)
    with tarfile.open(case / "bundle.tar.gz", "w:gz") as bundle:
        for path in sorted(folder.rglob("*.png")):
            bundle.add(path, f"scenes/{path.relative_to(folder)}")
        link = tarfile.TarInfo("scenes/forest/passwd.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bundle.addfile(link, io.BytesIO())
    return [["rsvl", "data", "ingest", "--format", "class-folder", "--source", "bundle.tar.gz", "--out", "out"]]


CASES += [
    Case("archive-dotdot", "archives", "a zip member named `scenes/../../escape.png`",
         lambda case: _zip_with(case, "scenes/../../escape.png", b"x"),
         Expect(ERROR, error=r"bundle\.zip: member 'scenes/\.\./\.\./escape\.png' contains '\.\.'", dataset=None)),
    Case("archive-absolute-path", "archives", "a zip member named `/tmp/escape.png`",
         lambda case: _zip_with(case, "/tmp/escape.png", b"x"),
         Expect(ERROR, error=r"bundle\.zip: member '/tmp/escape\.png' has an absolute path", dataset=None)),
    Case("archive-symlink-out", "archives", "a tar.gz symlink member pointing at `/etc/passwd`", _tar_with_link,
         Expect(ERROR, error=r"bundle\.tar\.gz: link 'scenes/forest/passwd\.png' -> '/etc/passwd' points outside",
                dataset=None)),
    Case("archive-zip-bomb", "archives", "a 200 KB zip member that inflates to 200 MB of zeros",
         lambda case: _zip_with(case, "scenes/forest/zeros.png", zeros=200 * 2**20),
         Expect(ERROR, error=r"bundle\.zip: member 'scenes/forest/zeros\.png' inflates .* \(rule archive_ratio",
                dataset=None)),
]
