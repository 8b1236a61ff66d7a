"""The ``filter`` component's body on the captioned default SAR chips, one of whose images the test corrupts.

The expected bad row is known from what the test planted (a truncated PNG), not from the code under
test; every other row is what the library's ``run_filter`` keeps of the untouched input.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from kfp import dsl

from components.filter.component import filter_rows
from rsvl.data.store import read_files, read_manifest, read_quarantine

PLANTED = "sar_00007"


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_corrupt_row_is_removed_and_quarantined_and_the_rest_kept(run_config, captioned, filtered, tmp_path):
    source = shutil.copytree(captioned.dataset_dir, tmp_path / "captioned")
    image = source / "media" / f"{PLANTED}.png"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    before = _snapshot(source)
    out, summary = dsl.Dataset(uri=str(tmp_path / "filtered")), dsl.Markdown(uri=str(tmp_path / "summary.md"))
    filter_rows.python_func(config_json=run_config.model_dump_json(), dataset=dsl.Dataset(uri=str(source)),
                            filtered=out, summary=summary)

    kept = read_manifest(tmp_path / "filtered")["sample_id"].tolist()
    expected = [sample for sample in read_manifest(filtered.dataset_dir)["sample_id"] if sample != PLANTED]
    assert filtered.rows == captioned.rows and filtered.rows_quarantined == 0  # the untouched input is all good
    assert kept == expected and len(kept) == captioned.rows - 1
    assert out.metadata == {"rows": len(kept), "rows_kept": len(kept), "rows_quarantined": 1}
    quarantine = read_quarantine(tmp_path / "filtered")
    assert set(quarantine["stage"]) == {"validate"} and set(quarantine["sample_id"]) == {PLANTED}
    media = set(read_files(tmp_path / "filtered")["path"])
    assert f"media/{PLANTED}.png" not in media and not (tmp_path / "filtered" / "media" / f"{PLANTED}.png").exists()
    assert all((tmp_path / "filtered" / path).is_file() for path in media)
    assert _snapshot(source) == before  # the input is not changed
    text = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert f"The filtered dataset has {len(kept)} rows; 1 records quarantined in all (validate: 1)." in text
