"""The caption step's RS5M path: rows without captions get [top-cap, ssl-cap], the rest pass through.

A small pool (its ``uncaptioned`` rows, with and without position and time, and one whose label is
removed here so it has no metadata at all) is captioned by the ``nearest`` captioner with a tiny
random scorer saved to a weights file; the expected captions are computed again outside the step
with :func:`rsvl.caption.rs5m.rs5m_captions` and the geo sentences with
:func:`rsvl.caption.geo_template.geo_sentence_for`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rsvl.caption.captioners import NearestCaptions
from rsvl.caption.dataset import copy_row
from rsvl.caption.geo_template import geo_sentence_for
from rsvl.caption.rs5m import SSL_CAP, TOP_CAP, rs5m_captions
from rsvl.caption.rs5m_dataset import META_KEY, RS5M_FILE, read_rs5m_captions
from rsvl.config import load_config
from rsvl.data.dataset import ManifestDataset
from rsvl.data.generate import write_optical_scenes
from rsvl.data.store import (
    DatasetWriter,
    QuarantineRecord,
    read_manifest,
    read_meta,
    read_quarantine,
    write_quarantine,
)
from rsvl.data.synthetic.rs5m_pool import PoolSpec, read_truth, write_rs5m_pool
from rsvl.errors import ModelError
from rsvl.models import build_model
from rsvl.steps.data_steps import run_caption

REPO = Path(__file__).resolve().parents[2]
SPEC = PoolSpec(per_class=2, exact_duplicates=1, near_duplicates=1, mismatched=1, photos=1, keyword_photos=1,
                corrupt=0, tiny=0, uncaptioned=5)


def config(root: Path, weights: Path | str, *extra: str):
    return load_config(REPO / "pipelines" / "georsclip" / "config.yaml", overrides=[
        "model.name=rsvl-tiny", f"model.pretrained={weights}", "model.image_size=null",
        f"data.root={root / 'data'}", "curation.fit=null", "curation.captions.k=3", "curation.captions.beams=3",
        "curation.captions.batch_size=2", *extra])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rs5m")
    write_optical_scenes(root / "data" / "default" / "optical", seed=0, per_class=2)
    write_rs5m_pool(root / "raw", seed=0, classes=["forest", "water", "farmland"], spec=SPEC)
    truth = read_truth(root / "raw")
    stripped = next(s for s, row in sorted(truth.items()) if row["variant"] == "label only")
    # the pool's rows, one of them without its label: an uncaptioned row with no metadata at all
    with DatasetWriter(root / "pool", name="pool", kind="captioning", adapter="test", source="raw") as writer:
        for row in read_manifest(root / "raw").to_dict("records"):
            row = copy_row(writer, root / "raw", row)
            writer.add_row(**{**row, "label": None} if row["sample_id"] == stripped else row)
    write_quarantine(root / "pool", [QuarantineRecord("ingest", "source.csv:3", "unreadable_image", "test: kept")],
                     append=True)
    torch.manual_seed(0)
    model, _, _, _ = build_model("rsvl-tiny")
    torch.save(model.state_dict(), root / "tiny.pt")
    cfg = config(root, root / "tiny.pt")
    outcome = run_caption(cfg, root / "pool", root / "captioned")
    return root, cfg, truth, stripped, outcome


@pytest.fixture(scope="module")
def expected(setup):
    """rs5m_captions over the rows without captions, with a scorer and captioner built here."""
    root, cfg = setup[0], setup[1]
    model, _, preprocess, tokenizer = build_model("rsvl-tiny", str(root / "tiny.pt"))
    model.eval()
    reference = ManifestDataset(root / "data" / "default" / "optical", split="train")
    captioner = NearestCaptions(model, preprocess, reference)
    pool = ManifestDataset(root / "pool")
    pending = pool.subset([len(captions) == 0 for captions in pool.frame["captions"]])
    settings = cfg.curation.captions
    return rs5m_captions(captioner, preprocess, model, preprocess, tokenizer, pending, k=settings.k,
                         angles=settings.angles, spread=settings.spread, batch_size=settings.batch_size)


def test_uncaptioned_rows_get_top_and_ssl_with_the_geo_sentence_iff_they_have_metadata(setup, expected):
    root, cfg, truth, stripped, _ = setup
    before = {row["sample_id"]: row for row in read_manifest(root / "pool").to_dict("records")}
    after = {row["sample_id"]: row for row in read_manifest(root / "captioned").to_dict("records")}
    assert sorted(expected) == sorted(s for s, row in truth.items() if row["kind"] == "uncaptioned")
    assert list(after) == list(before)
    variants = set()
    for sample_id, row in after.items():
        source = before[sample_id]
        if sample_id not in expected:
            assert row["captions"] == source["captions"] and len(row["captions"]) == 1
            continue
        chosen = expected[sample_id]
        sentence = geo_sentence_for(source)
        has_metadata = any(source[key] is not None for key in ("label", "lat", "lon", "timestamp"))
        assert bool(sentence) == has_metadata == (sample_id != stripped)
        prefix = sentence + " " if sentence else ""
        assert row["captions"] == [prefix + chosen.top_cap, prefix + chosen.ssl_cap]
        variants.add(truth[sample_id]["variant"])
        assert {k: v for k, v in row.items() if k != "captions"} == {k: v for k, v in source.items() if k != "captions"}
    assert variants == {"located", "label only"}
    located = next(s for s in expected if truth[s]["variant"] == "located")
    assert ", taken in " in after[located]["captions"][0] and " in the " in after[located]["captions"][0]


def test_the_side_table_is_rs5m_captions_output(setup, expected):
    root, cfg, _, _, _ = setup
    table = read_rs5m_captions(root / "captioned")
    assert [row["sample_id"] for row in table] == list(expected)
    for row in table:
        want = expected[row["sample_id"]].as_dict()
        assert len(row["candidates"]) == cfg.curation.captions.k
        for key, value in want.items():
            if key in ("scores", "rotation_mean", "rotation_spread"):
                assert row[key] == pytest.approx(value, abs=1e-6), key
            else:
                assert row[key] == value, key


def test_counts_in_dataset_json_and_the_summary(setup, expected):
    root, cfg, truth, stripped, outcome = setup
    same = sum(chosen.top_cap == chosen.ssl_cap for chosen in expected.values())
    counts = read_meta(root / "captioned")[META_KEY]
    rows = len(truth)
    assert counts["images_captioned"] == SPEC.uncaptioned == len(expected)
    assert counts["top_equals_ssl"] == same
    assert counts["geo_sentences"] == SPEC.uncaptioned - 1  # all but the stripped row
    assert counts["passed_through"] == rows - SPEC.uncaptioned
    assert counts["captioner"] == "nearest" and counts["table"] == RS5M_FILE
    assert counts["settings"]["k"] == 3 and counts["settings"]["angles"] == [0.0, 90.0, 180.0, 270.0]
    assert outcome.rows == rows and outcome.dataset_dir == root / "captioned"
    first = next(iter(expected.values()))
    assert (f"{SPEC.uncaptioned} of {rows} rows had no captions" in outcome.summary
            and f"the same text for {same}" in outcome.summary
            and f"{SPEC.uncaptioned - 1} of them with the geo-metadata sentence" in outcome.summary
            and f"{rows - SPEC.uncaptioned} captioned rows passed through" in outcome.summary)
    assert f"Example, `{first.sample_id}`" in outcome.summary and first.caption(SSL_CAP) in outcome.summary
    assert first.caption(TOP_CAP) in outcome.summary
    quarantine = read_quarantine(root / "captioned")
    assert list(quarantine["reason"]) == ["test: kept"]
    assert json.loads((root / "captioned" / "dataset.json").read_text())["counts"]["rows"] == rows


def test_nothing_to_caption_builds_no_model(setup, tmp_path):
    root, _, _, _, _ = setup
    # the scorer's weights file does not exist: building it would fail
    cfg = config(root, tmp_path / "absent.pt")
    outcome = run_caption(cfg, root / "captioned", tmp_path / "again")
    assert "every one of the" in outcome.summary
    assert read_manifest(tmp_path / "again")["captions"].map(list).tolist() == \
        read_manifest(root / "captioned")["captions"].map(list).tolist()
    assert read_rs5m_captions(tmp_path / "again") == []
    with pytest.raises(ModelError):
        run_caption(cfg, root / "pool", tmp_path / "fails")
