"""The ``caption`` component's body on the ingested default SAR chips (SAR-Narrator recaptions every chip)."""

from __future__ import annotations

import shutil

import pandas as pd
from kfp import dsl

from components.caption.component import caption
from rsvl.data.store import QuarantineRecord, read_manifest, read_meta, read_quarantine, write_quarantine


def test_the_captioned_dataset_is_the_librarys_and_carries_the_quarantine(run_config, ingested, captioned, tmp_path):
    source = shutil.copytree(ingested.dataset_dir, tmp_path / "ingested")
    planted = QuarantineRecord(stage="ingest", where="row 7", rule="unreadable_image", reason="test: truncated PNG",
                               sample_id="broken_7")
    write_quarantine(source, [planted], append=True)
    out, summary = dsl.Dataset(uri=str(tmp_path / "captioned")), dsl.Markdown(uri=str(tmp_path / "summary.md"))
    caption.python_func(config_json=run_config.model_dump_json(), dataset=dsl.Dataset(uri=str(source)), captioned=out,
                        summary=summary)

    frame = read_manifest(tmp_path / "captioned")
    pd.testing.assert_frame_equal(frame, read_manifest(captioned.dataset_dir))  # what the library writes for this input
    assert out.metadata == {"rows": captioned.rows} and captioned.rows == len(frame) == ingested.rows
    assert all(len(captions) > 0 for captions in frame["captions"])
    assert read_meta(tmp_path / "captioned")["captioned_by"]["step"] == "sar-narrator"
    # it names its output, and its input's optical-twin captions file
    expected = (captioned.summary.replace(str(captioned.dataset_dir), str(tmp_path / "captioned"))
                .replace(str(ingested.dataset_dir), str(source)))
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == expected + "\n"
    assert f"{captioned.rows} captioned, 0 passed through" in expected
    carried = read_quarantine(tmp_path / "captioned")
    assert carried["sample_id"].tolist() == ["broken_7"] and carried["reason"].tolist() == ["test: truncated PNG"]
    assert read_quarantine(ingested.dataset_dir).empty  # the session's input was not touched
