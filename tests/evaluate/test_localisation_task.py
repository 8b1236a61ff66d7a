"""Semantic localisation as a pinned eval task: the scenes' dataset writer and the ``localisation`` task.

The writer's rows are checked against :func:`localisation_scenes` drawn again; the task's numbers
against :func:`localisation_report` run directly on those drawn scenes (uint8 pixels, boolean
masks), so the dataset round trip (PNG files, float rasters, 0/1 masks) is checked too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from rsvl.config.evaluate import EvalSet
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes
from rsvl.data.store import read_manifest, read_meta
from rsvl.data.synthetic import png_bytes
from rsvl.data.synthetic.localisation_scenes import (
    MASK_VALUES,
    TARGET_QUERIES,
    localisation_scenes,
    sample_id_of,
    write_localisation_dataset,
)
from rsvl.data.validate import validate_dataset
from rsvl.errors import DataError
from rsvl.evaluate.localisation import DEFAULT_MEDIAN, DEFAULT_STEPS, localisation_report, resolved_sizes
from rsvl.evaluate.runner import evaluate_model
from rsvl.models import build_model

PNG = b"\x89PNG\r\n\x1a\n"
SEED, SIZE = 3, 192
STEPS, MEDIAN = [0.25, 0.5], 0.05  # 48 and 96 px crops, a 9 px median on 192 px scenes: quick
BASELINE_CPU = {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR", "ATEN_CPU_CAPABILITY": "default"}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seloc_data")
    write_localisation_dataset(root / "seloc", count=2, seed=SEED, size=SIZE)
    return root


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("rsvl-tiny")


@pytest.fixture(scope="module")
def evaluated(tiny, data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("seloc_out")
    sets = [{"name": "seloc", "dataset": "seloc", "tasks": ["localisation"], "localisation_steps": STEPS,
             "localisation_median": MEDIAN}]
    return evaluate_model(tiny, sets, out, data_root=data_root)


# ---------------------------------------------------------------- the writer


def test_written_rows_are_the_generators_scenes(tmp_path):
    size = 256  # the seventh scene holds two 96 px lakes
    report = write_localisation_dataset(tmp_path / "ds", count=7, seed=SEED, size=size)
    scenes = localisation_scenes(7, seed=SEED, size=size)
    assert (report.rows, report.files, report.quarantined) == (7, 14, 0)
    rows = read_manifest(tmp_path / "ds")
    assert list(rows["sample_id"]) == [f"loc_{i:03d}_{s.target.replace(' ', '_')}" for i, s in enumerate(scenes)]
    assert list(rows["sample_id"]) == [sample_id_of(i, s.target) for i, s in enumerate(scenes)]
    meta = read_meta(tmp_path / "ds")
    assert meta["mask_values"] == {"0": "background", "1": "target"} == MASK_VALUES
    for scene, row in zip(scenes, rows.itertuples()):
        assert (row.split, row.modality, row.label, list(row.captions)) == ("test", "optical", scene.target,
                                                                            [TARGET_QUERIES[scene.target]])
        assert (row.bands, row.width, row.height) == (3, size, size)
        assert np.array_equal(decoded(tmp_path / "ds" / row.image), scene.image)
        mask = decoded(tmp_path / "ds" / row.mask)
        assert mask.shape == (size, size) and mask.dtype == np.uint8  # single band
        assert set(np.unique(mask)) == {0, 1} and np.array_equal(mask == 1, scene.mask)
        layout = meta["scenes"][row.sample_id]
        assert layout == {"background": scene.background, "patches": [list(box) for box in scene.boxes]}
    assert validate_dataset(tmp_path / "ds").passed


def test_writing_twice_gives_the_same_bytes_and_the_seed_matters(tmp_path):
    write_localisation_dataset(tmp_path / "a", count=2, seed=SEED, size=SIZE)
    write_localisation_dataset(tmp_path / "b", count=2, seed=SEED, size=SIZE)
    write_localisation_dataset(tmp_path / "c", count=2, seed=SEED + 1, size=SIZE)
    first = snapshot(tmp_path / "a")
    assert first == snapshot(tmp_path / "b") and len(first) == 8  # 4 PNGs, manifest, files, quarantine, meta
    other = snapshot(tmp_path / "c")
    assert other["media/loc_000_lake.png"] != first["media/loc_000_lake.png"]


@pytest.mark.slow  # a subprocess: in `make test`, not `make test-fast`
def test_same_bytes_under_the_baseline_cpu_dispatch(tmp_path):
    """Written again with NumPy's AVX2/AVX-512 kernels and torch's vector kernels disabled."""
    write_localisation_dataset(tmp_path / "native", count=12)
    code = ("from rsvl.data.synthetic.localisation_scenes import write_localisation_dataset; "
            f"write_localisation_dataset({str(tmp_path / 'base')!r}, count=12)")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, **BASELINE_CPU}, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert snapshot(tmp_path / "base") == snapshot(tmp_path / "native")


# ---------------------------------------------------------------- the task


def test_metrics_equal_the_report_on_the_drawn_scenes(tiny, evaluated):
    model, _, preprocess, tokenizer = tiny
    model.eval()
    scenes = localisation_scenes(2, seed=SEED, size=SIZE)
    direct = localisation_report(model, preprocess, tokenizer, scenes, steps=STEPS, median=MEDIAN)
    want = {f"seloc.{key}": value for key, value in direct["metrics"].items()}
    # one scene per target kind here, so each class mean is that scene's Rmi
    want.update({f"seloc.Rmi_class.{scene.target}": row["Rmi"] for scene, row in zip(scenes, direct["scenes"])})
    assert set(evaluated.metrics) == set(want) == {"seloc.Rsu", "seloc.Ras", "seloc.Rda", "seloc.Rmi",
                                                   "seloc.Rmi_class.lake", "seloc.Rmi_class.harbour"}
    assert evaluated.metrics == pytest.approx(want, abs=1e-9)
    assert evaluated.unavailable == {}


def test_heat_maps_are_pictures_of_the_report_and_the_details(evaluated):
    out = evaluated.report_md.parent
    assert set(evaluated.pictures) == {"seloc.heat_map_loc_000_lake", "seloc.heat_map_loc_001_harbour"}
    for key, path in evaluated.pictures.items():
        assert path.read_bytes().startswith(PNG) and path.parent == out / "seloc" / "localisation"
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", evaluated.report_md.read_text(encoding="utf-8"))
    assert sorted(links) == sorted(p.relative_to(out).as_posix() for p in evaluated.pictures.values())
    markdown = evaluated.report_md.read_text(encoding="utf-8")
    assert "| loc_001_harbour | harbour | a harbour with ships along the quay |" in markdown
    assert evaluated.report_html.read_text(encoding="utf-8").count("data:image/png;base64,") == 2
    details = json.loads(evaluated.details.read_text(encoding="utf-8"))["eval_sets"]["seloc"]["localisation"]
    assert (details["steps"], details["median"]) == (STEPS, MEDIAN)
    assert [row["figure"] for row in details["scenes"]] == ["seloc/localisation/localisation_loc_000_lake.png",
                                                           "seloc/localisation/localisation_loc_001_harbour.png"]
    assert [(row["steps_px"], row["median_px"]) for row in details["scenes"]] == [([48, 96], 9)] * 2
    assert details["per_label_Rmi"] == {"harbour": details["scenes"][1]["Rmi"], "lake": details["scenes"][0]["Rmi"]}


def test_a_cases_picture_is_drawn_instead_of_its_raster(tiny, tmp_path):
    model, _, preprocess, tokenizer = tiny
    model.eval()
    scene = localisation_scenes(1, seed=SEED, size=SIZE)[0]
    raster = scene.image.astype(np.float32)  # a dataset row's pixels: floats in 0..255
    cases = {"drawn": [scene],
             "picture": [SimpleNamespace(name=scene.name, image=raster, mask=scene.mask, query=scene.query,
                                         picture=scene.image)],
             "raster": [SimpleNamespace(name=scene.name, image=raster, mask=scene.mask, query=scene.query)]}
    reports = {key: localisation_report(model, preprocess, tokenizer, case, steps=STEPS, median=MEDIAN,
                                        out_dir=tmp_path / key) for key, case in cases.items()}
    assert reports["picture"]["metrics"] == reports["raster"]["metrics"] == reports["drawn"]["metrics"]
    figures = {key: Path(report["scenes"][0]["figure"]).read_bytes() for key, report in reports.items()}
    assert figures["picture"] == figures["drawn"] != figures["raster"]  # floats above 1 draw clipped to white


def test_default_steps_and_median_are_the_papers_scaled(tiny, data_root, tmp_path):
    sets = [{"name": "one", "dataset": "seloc", "tasks": ["localisation"], "limit": 1}]
    result = evaluate_model(tiny, sets, tmp_path, data_root=data_root)
    details = json.loads(result.details.read_text(encoding="utf-8"))["eval_sets"]["one"]["localisation"]
    steps_px, median_px = resolved_sizes((SIZE, SIZE), DEFAULT_STEPS, DEFAULT_MEDIAN)
    assert (steps_px, median_px) == ([16, 33, 49], 17)  # 256/512/768 and 251 px of 3000, on 192 px
    assert [(row["name"], row["steps_px"], row["median_px"]) for row in details["scenes"]] == [
        ("loc_000_lake", steps_px, median_px)]
    assert details["steps"] == pytest.approx(list(DEFAULT_STEPS))


def test_rows_without_masks_are_refused_before_any_work(tiny, tmp_path):
    write_optical_scenes(tmp_path / "data" / "optical", per_class=2)
    first = str(ManifestDataset(tmp_path / "data" / "optical", split="test").record(0)["sample_id"])
    sets = [{"name": "plain", "dataset": "optical", "tasks": ["retrieval", "localisation"]}]
    with pytest.raises(DataError, match=rf"eval set 'plain': sample '{first}' \(row 0 of .*\) has no mask"):
        evaluate_model(tiny, sets, tmp_path / "out", data_root=tmp_path / "data")
    assert not (tmp_path / "out").exists()


def test_a_mask_that_is_not_0_1_is_named(tiny, tmp_path):
    root = tmp_path / "data"
    write_localisation_dataset(root / "seloc", count=2, seed=SEED, size=SIZE)
    bad = root / "seloc" / "media" / "loc_001_harbour_mask.png"
    bad.write_bytes(png_bytes(decoded(bad) * 255))  # the 0/255 convention this task does not read
    sets = [{"name": "s", "dataset": "seloc", "tasks": ["localisation"], "localisation_steps": STEPS}]
    with pytest.raises(DataError, match=r"eval set 's': sample 'loc_001_harbour' \(row 1 .*holds the values 255; "
                                        r"every pixel must be 0 \(background\) or 1 \(target\)"):
        evaluate_model(tiny, sets, tmp_path / "out", data_root=root)


def test_localisation_sizes_in_the_eval_set():
    ok = EvalSet(name="s", dataset="d", tasks=["localisation"], localisation_steps=[256, 0.5], localisation_median=251)
    assert ok.localisation_steps == [256, 0.5] and isinstance(ok.localisation_steps[0], int)
    assert EvalSet(name="s", dataset="d", tasks=["localisation"]).localisation_steps is None
    for bad, message in (([0], "at least 1 pixel"), ([1.5], r"fraction of the image side must be in \(0, 1\]"),
                         ([], "at least 1 item")):
        with pytest.raises(ValueError, match=message):
            EvalSet(name="s", dataset="d", tasks=["localisation"], localisation_steps=bad)
    with pytest.raises(ValueError, match="localisation_median 0.0 as a fraction"):
        EvalSet(name="s", dataset="d", tasks=["localisation"], localisation_median=0.0)
