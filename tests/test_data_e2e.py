"""The documented data flow end to end: generate → validate → DVC version, and real-data ingests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rsvl.config import load_config
from rsvl.data.generate import generate_default
from rsvl.data.store import read_manifest
from rsvl.data.validate import validate_tree
from rsvl.data.versioning import init_repo, track

RSVL = Path(sys.executable).parent / "rsvl"


def _project(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    init_repo(path, remote_url=str(path.parent / f"{path.name}-remote"))
    return path


def test_generated_default_validates_clean_and_has_a_reproducible_dvc_version(tmp_path, repo_root):
    rules = load_config(repo_root / "pipelines/sar_text/config.yaml").data
    versions = []
    for name in ("a", "b"):
        project = _project(tmp_path / name)
        generate_default(project / "data" / "default", seed=0)
        reports = validate_tree(project / "data" / "default", rules=rules.captions,
                                max_bad_fraction=rules.max_bad_fraction)
        assert [r.rows for r in reports] == [400, 200, 150]  # optical, s1s2, sar (sorted dirs)
        assert all(r.passed and r.bad_rows == 0 for r in reports), [r.summary() for r in reports]
        versions.append(track(project, "data"))
    assert versions[0] == versions[1], "same seed must give the same DVC data version"


def test_cli_validate_fails_past_the_limit_naming_rule_and_quarantine(tmp_path):
    out = tmp_path / "default"
    generate_default(out, seed=3)
    broken = next((out / "optical" / "media").glob("*.png"))
    broken.write_bytes(b"")
    ok = subprocess.run([str(RSVL), "data", "validate", str(out), "--max-bad-fraction", "0.01"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "1 of 400" in ok.stdout or "1 bad" in ok.stdout, ok.stdout
    failed = subprocess.run([str(RSVL), "data", "validate", str(out), "--max-bad-fraction", "0"],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert "1 of 400 rows" in failed.stderr and str(out / "optical" / "quarantine.parquet") in failed.stderr
    assert "decode" in failed.stderr or "empty" in failed.stderr


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
