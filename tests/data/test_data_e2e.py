"""The documented data flow end to end: generate → validate → DVC version, and real-data ingests."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsvl.data.generate import (CRISIS_PER_SENSOR, DEFAULT_SETS, LOCALISATION_SCENES, S1S2_PATCHES, SAR_CHIPS,
                                 optical_rows)
from rsvl.data.store import read_manifest

RSVL = Path(sys.executable).parent / "rsvl"


def dvc_dir_md5(root: Path, under: str) -> str:
    """The md5 DVC records for directory ``root`` (``<md5>.dir``), computed without DVC over ``root/under``.

    DVC hashes a directory as the md5 of the JSON list (keys sorted) of its files' ``{md5, relpath}``
    in path order; ``under`` limits the files to one subfolder (the rest of a shared data root).
    """
    files = sorted(path for path in (root / under).rglob("*") if path.is_file())
    entries = sorted(({"md5": hashlib.md5(path.read_bytes()).hexdigest(), "relpath": path.relative_to(root).as_posix()}
                      for path in files), key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def test_generated_default_validates_clean_and_is_the_version_data_dvc_records(default_data, repo_root):
    recorded = yaml.safe_load((repo_root / "data.dvc").read_text())["outs"][0]
    # the committed data.dvc holds exactly data/default: generation + validation reproduce it bit for bit
    assert f"{dvc_dir_md5(default_data.parent, 'default')}.dir" == recorded["md5"]
    assert sum(1 for path in default_data.rglob("*") if path.is_file()) == recorded["nfiles"]
    expected_rows = {"optical": sum(optical_rows().values()), "sar": SAR_CHIPS, "s1s2": S1S2_PATCHES,
                     "crisis": 2 * CRISIS_PER_SENSOR, "localisation": LOCALISATION_SCENES}
    assert not (default_data / "rs5m" / "validation.json").exists()  # a raw pool: the funnel cleans it
    for name in (name for name in DEFAULT_SETS if name != "rs5m"):
        report = json.loads((default_data / name / "validation.json").read_text())
        assert (report["rows"], report["bad_rows"], report["passed"]) == (expected_rows[name], 0, True)
        assert len(read_manifest(default_data / name)) == expected_rows[name]


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
def test_cli_validate_fails_past_the_limit_naming_rule_and_quarantine(default_data, tmp_path):
    out = tmp_path / "default"
    shutil.copytree(default_data / "optical", out / "optical")
    rows = len(read_manifest(out / "optical"))
    broken = next((out / "optical" / "media").glob("*.png"))
    broken.write_bytes(b"")
    ok = subprocess.run([str(RSVL), "data", "validate", str(out), "--max-bad-fraction", "0.01"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert f"1 of {rows}" in ok.stdout, ok.stdout
    failed = subprocess.run([str(RSVL), "data", "validate", str(out), "--max-bad-fraction", "0"],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"1 of {rows} rows" in failed.stderr and str(out / "optical" / "quarantine.parquet") in failed.stderr
    assert "decode" in failed.stderr or "empty" in failed.stderr


@pytest.mark.slow  # a subprocess or real-data end-to-end path: in `make test`, not `make test-fast`
@pytest.mark.real_data
def test_documented_real_ingests(shared_data, tmp_path):
    for fmt, source, rows in (("class-folder", "rsscn7", 2380), ("hrsid-boxes", "hrsid_samples", 3)):
        result = subprocess.run([str(RSVL), "data", "ingest", "--format", fmt, "--source",
                                 str(shared_data / source), "--out", str(tmp_path / source)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{rows} rows")
    boxes = read_manifest(tmp_path / "hrsid_samples")["boxes"]
    assert sum(len(b) for b in boxes) == 140
    validated = subprocess.run([str(RSVL), "data", "validate", str(tmp_path)], capture_output=True, text=True)
    assert validated.returncode == 0, validated.stderr
