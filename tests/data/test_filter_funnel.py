"""The filter step with ``curation.funnel``: the RS5M funnel, scored by a real model, then validation.

A small mixed pool (:func:`rsvl.data.synthetic.rs5m_pool.write_rs5m_pool`) goes through
``run_filter`` (through the ``filter`` component's body) with a seeded, untrained ``rsvl-tiny`` as
the scorer. The references are computed here without the step: the funnel's counts and removals by
:func:`rsvl.data.funnel.run_funnel` called directly with scorers built here; the rows validation
removes from the caption lengths (``str.split``, the rule's definition) against a ``max_words``
set so the longest kept captions break it; each stage's precision and recall from the pool's
``truth.json`` and the reference removals, by the definition in :mod:`rsvl.data.funnel_truth`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from kfp import dsl
from mlflow import MlflowClient

from components.filter.component import filter_rows
from rsvl.config import RunConfig
from rsvl.config.funnel import FunnelConfig, NearDuplicateConfig, OutlierConfig
from rsvl.data.funnel import STAGES, funnel_metrics, metrics_of, near_duplicate_stage, read_rows, run_funnel, truth_file
from rsvl.data.funnel_scorers import ClipScorers
from rsvl.data.funnel_truth import KEPT, funnel_table, score_stages
from rsvl.data.store import META_FILE, read_files, read_manifest, read_meta, read_quarantine
from rsvl.data.synthetic.rs5m_pool import TRUTH_FILE, PoolSpec, read_truth, write_rs5m_pool
from rsvl.errors import DataError
from rsvl.models import build_model
from rsvl.train.tracking import log_dataset_counts

CLASSES = ("forest", "water", "farmland")
MAX_WORDS_RULE = "expect_column_values_to_be_between[caption_max_words]"
SPEC = PoolSpec(per_class=4, exact_duplicates=2, near_duplicates=3, mismatched=3, photos=3, keyword_photos=3,
                corrupt=1, tiny=1, uncaptioned=0)  # the filter step sees captioned rows: the caption step ran first


def _tiny(weights: Path) -> ClipScorers:
    model, _, preprocess, tokenizer = build_model("rsvl-tiny", str(weights))
    return ClipScorers(model, preprocess, tokenizer, batch_size=4)


def _words(captions) -> int:
    return max(len(caption.split()) for caption in captions)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """The pool, the scorer's weights, the config and the reference funnel run."""
    root = tmp_path_factory.mktemp("funnel-step")
    pool = root / "pool"
    write_rs5m_pool(pool, seed=0, classes=CLASSES, spec=SPEC)
    torch.manual_seed(0)
    torch.save(build_model("rsvl-tiny")[0].state_dict(), root / "tiny.pt")
    scorers = _tiny(root / "tiny.pt")
    # thresholds at the lower quartiles of the untrained model's scores, so the outlier stage both removes and keeps
    decodable = []
    for row in read_rows(pool):
        try:
            decodable.append((row.load(), row.texts()[0]))
        except DataError:
            continue
    images, texts = [image for image, _ in decodable], [text for _, text in decodable]
    outliers = OutlierConfig(min_image_text_score=float(np.quantile(scorers.image_text_score(images, texts), 0.25)),
                             min_rs_score=float(np.quantile(scorers.rs_score()(images), 0.25)))
    funnel = FunnelConfig(outliers=outliers, batch_size=4, workers=2)
    reference = run_funnel(pool, root / "reference", funnel, **scorers.funnel_kwargs(funnel))
    kept = read_manifest(root / "reference")
    # the longest kept captions break max_words: validation then removes rows the funnel kept
    max_words = int(kept["captions"].map(_words).max()) - 1
    cfg = RunConfig.model_validate({
        "paper": "georsclip", "profile": "local", "model": {"name": "rsvl-tiny", "pretrained": str(root / "tiny.pt")},
        "data": {"max_bad_fraction": 0.5, "captions": {"max_words": max_words}},
        "curation": {"funnel": funnel.model_dump(mode="json")}})
    return root, pool, cfg, reference, max_words


@pytest.fixture(scope="module")
def filtered(case):
    """The ``filter`` component's body on the pool: its output folder, metadata and summary."""
    root, pool, cfg, _, _ = case
    out, summary = dsl.Dataset(uri=str(root / "filtered")), dsl.Markdown(uri=str(root / "summary.md"))
    filter_rows.python_func(config_json=cfg.model_dump_json(), dataset=dsl.Dataset(uri=str(pool)), filtered=out,
                            summary=summary)
    return root / "filtered", out.metadata, (root / "summary.md").read_text(encoding="utf-8")


def _records(folder: Path, stage: str) -> set[tuple[str, str]]:
    quarantine = read_quarantine(folder)
    return {(row.sample_id, row.rule) for row in quarantine[quarantine["stage"] == stage].itertuples()}


def test_the_funnel_removes_what_run_funnel_removes_and_validation_then_filters_the_kept_rows(case, filtered):
    root, pool, _, reference, max_words = case
    out, metadata, _ = filtered
    assert reference.stages[-1].removed > 0 and reference.rows_kept > 0, "the thresholds should split the outliers"
    for stage in STAGES:
        assert _records(out, f"funnel.{stage}") == _records(root / "reference", f"funnel.{stage}"), stage
    kept = read_manifest(root / "reference")
    too_long = set(kept[kept["captions"].map(_words) > max_words]["sample_id"])
    assert 0 < len(too_long) < len(kept)
    assert _records(out, "validate") == {(sample_id, MAX_WORDS_RULE) for sample_id in too_long}
    manifest = read_manifest(out, include_quarantined=True)
    assert set(manifest["sample_id"]) == set(kept["sample_id"]) - too_long  # readers never see a removed row
    assert set(read_quarantine(out)["stage"]) == {"validate"} | {f"funnel.{s.stage}" for s in reference.stages
                                                                 if s.removed}
    removed = set(read_quarantine(out)["sample_id"])
    assert all(f"media/{sample_id}.png" not in set(read_files(out)["path"]) for sample_id in removed)
    assert len(manifest) + len(removed) == reference.rows_in  # every pool row is kept or listed with its stage
    assert metadata["rows_kept"] == metadata["rows"] == len(manifest)
    assert metadata["rows_quarantined"] == len(removed)


def _expected_scores(pool: Path, reference: Path) -> dict[str, tuple[float | None, float | None]]:
    """Precision and recall per stage (and of the kept rows) from the truth and the reference removals."""
    truth = read_truth(pool)
    quarantine = read_quarantine(reference)
    scores = {}
    for stage in (*STAGES, KEPT):
        if stage == KEPT:
            removed = set(read_manifest(reference)["sample_id"])
            expected = {sample_id for sample_id, row in truth.items() if row["stage"] is None}
        else:
            removed = set(quarantine[quarantine["stage"] == f"funnel.{stage}"]["sample_id"])
            expected = {sample_id for sample_id, row in truth.items() if row["stage"] == stage}
        hits = len(removed & expected)
        scores[stage] = (hits / len(removed) if removed else None, hits / len(expected) if expected else None)
    return scores


def test_counts_and_truth_scores_reach_dataset_json_metadata_and_summary(case, filtered):
    root, pool, _, reference, _ = case
    out, metadata, summary = filtered
    expected = _expected_scores(pool, root / "reference")
    assert any(p is not None and p < 1 for p, _ in expected.values()), "an untrained scorer errs somewhere"
    entry = read_meta(out)["funnel"]
    assert entry["stages"] == json.loads(json.dumps(reference.to_dict()))["stages"]
    assert (entry["rows_in"], entry["rows_kept"]) == (reference.rows_in, reference.rows_kept)
    assert entry["scorer"] == {"model": "rsvl-tiny", "pretrained": str(root / "tiny.pt"), "fit_run": None}
    assert (out / TRUTH_FILE).read_bytes() == (pool / TRUTH_FILE).read_bytes()
    recorded = {score["stage"]: (score["precision"], score["recall"]) for score in entry["truth"]["stages"]}
    assert recorded == expected

    funnel = {key: value for key, value in metadata.items() if key.startswith("funnel.")}
    counts = reference.metrics()
    assert {key: funnel[key] for key in counts} == counts
    for stage, (precision, recall) in expected.items():
        for name, value in (("precision", precision), ("recall", recall)):
            key = f"funnel.{stage}.{name}"
            assert (funnel.get(key) is None) == (value is None) and (value is None or math.isclose(funnel[key], value))
    assert set(funnel) == set(counts) | {f"funnel.{s}.{m}" for s, pr in expected.items()
                                         for m, v in zip(("precision", "recall"), pr) if v is not None}
    assert funnel_metrics(out) == funnel

    for counts_of in reference.stages:
        rules = ", ".join(f"{rule}: {n}" for rule, n in sorted(counts_of.by_rule.items())) or "–"
        precision, recall = ("–" if v is None else f"{v:.3f}" for v in expected[counts_of.stage])
        line = (f"| {counts_of.stage} | {counts_of.rows_in} | {counts_of.removed} | {counts_of.kept} | {rules} | "
                f"{precision} | {recall} |")
        assert line in summary, line
    assert "Validation of the kept rows:" in summary and "caption_max_words" in summary


def test_the_train_run_logs_the_funnel_metrics(filtered, tmp_path):
    out, metadata, _ = filtered
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("georsclip", artifact_location=str(tmp_path / "artifacts")))
    log_dataset_counts(uri, run.info.run_id, out)
    logged = client.get_run(run.info.run_id).data
    expected = {key: float(value) for key, value in metadata.items() if key.startswith("funnel.")}
    assert logged.metrics == expected and len(expected) > 3 * len(STAGES)
    assert logged.params == {"data.rows_kept": str(metadata["rows_kept"]),
                             "data.rows_quarantined": str(metadata["rows_quarantined"])}


def test_a_dataset_without_funnel_logs_no_funnel_metrics(case, tmp_path):
    _, pool, _, _, _ = case
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("plain", artifact_location=str(tmp_path / "artifacts")))
    log_dataset_counts(uri, run.info.run_id, pool)
    data = client.get_run(run.info.run_id).data
    assert data.metrics == {} and data.params["data.rows_kept"] == str(len(read_manifest(pool)))


def test_clip_scorers_are_the_models_cosines(case):
    root, pool, _, _, _ = case
    scorers = _tiny(root / "tiny.pt")
    model, preprocess, tokenizer = scorers.model, scorers.preprocess, scorers.tokenizer
    rows = [row for row in read_rows(pool)[:12] if row.record["image"]]
    images = []
    for row in rows:
        try:
            images.append(row.load())
        except DataError:
            continue
    images = images[:5]
    texts = ["an aerial image of a forest.", "a photo.", "water", "a photo.", "farmland seen from above"]
    with torch.no_grad():  # one image and one text per forward pass: no batching, no reuse
        image_vectors = [F.normalize(model.encode_image(preprocess(image)[None]), dim=-1)[0] for image in images]
        text_vectors = [F.normalize(model.encode_text(tokenizer([text])), dim=-1)[0] for text in texts]
    pairs = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (0, 0)]
    got = scorers.image_text_score([images[i] for i, _ in pairs], [texts[j] for _, j in pairs])
    want = [float(image_vectors[i] @ text_vectors[j]) for i, j in pairs]
    np.testing.assert_allclose(got, want, atol=1e-5)

    cfg = OutlierConfig(rs_prompts=texts[:1], other_prompts=texts[1:3], logit_scale=20.0)
    margin = [20.0 * (float(v @ text_vectors[0]) - (float(v @ text_vectors[1]) + float(v @ text_vectors[2])) / 2)
              for v in image_vectors]
    np.testing.assert_allclose(scorers.rs_score(cfg)(images), [1 / (1 + math.exp(-m)) for m in margin], atol=1e-5)

    with torch.no_grad():
        embeddings = [model.encode_image(preprocess(image)[None])[0].numpy() for image in images]
    np.testing.assert_allclose(scorers.embed(images), np.stack(embeddings), atol=1e-5)
    assert scorers.funnel_kwargs(FunnelConfig())["embed"] is None
    assert scorers.funnel_kwargs(FunnelConfig(near_duplicates=NearDuplicateConfig(method="embedding")))["embed"] \
        == scorers.embed
    with pytest.raises(DataError, match="got 2 images and 1 texts"):
        scorers.image_text_score(images[:2], texts[:1])


def test_the_embedding_method_runs_on_the_models_embeddings(case):
    root, pool, _, _, _ = case
    scorers = _tiny(root / "tiny.pt")
    truth = read_truth(pool)
    rows = [row for row in read_rows(pool) if truth[row.sample_id]["kind"] in ("rs", "exact_duplicate")]
    result = near_duplicate_stage(rows, NearDuplicateConfig(method="embedding", min_cosine=0.999999),
                                  embed=scorers.embed, batch_size=3)
    removed = {removal.row.sample_id for removal in result.removed}
    # pixel copies embed to the same vector: cosine 1, whatever the model
    assert {s for s, row in truth.items() if row["kind"] == "exact_duplicate"} <= removed
    assert all("embedding cosine" in removal.reason for removal in result.removed)


def test_stage_scores_follow_the_definition():
    truth = {"a": {"stage": None}, "b": {"stage": "keyword"}, "c": {"stage": "outliers"},
             "d": {"stage": "outliers"}, "e": {"stage": "decode"}, "z": {"stage": "keyword"}}
    # c is removed by keyword (too early), d is kept (missed), e is removed by decode as expected; z never entered
    scores = {s.stage: s for s in score_stages(truth, "abcde", {"keyword": {"b", "c"}, "decode": {"e"}}, {"a", "d"})}
    assert (scores["keyword"].removed, scores["keyword"].expected, scores["keyword"].correct) == (2, 1, 1)
    assert (scores["keyword"].precision, scores["keyword"].recall) == (0.5, 1.0)
    assert (scores["outliers"].precision, scores["outliers"].recall) == (None, 0.0)
    assert (scores["decode"].precision, scores["decode"].recall) == (1.0, 1.0)
    assert (scores["exact_duplicates"].precision, scores["exact_duplicates"].recall) == (None, None)
    assert (scores[KEPT].precision, scores[KEPT].recall) == (0.5, 1.0)
    with pytest.raises(DataError, match="truth.json: 1 row.*sample_id 'q'"):
        score_stages(truth, "aq", {}, {"a"}, where="truth.json")
    with pytest.raises(DataError, match="sample_id 'x' names stage 'dedup'"):
        score_stages({"x": {"stage": "dedup"}}, "x", {}, set())


def test_metrics_and_table_of_a_funnel_entry():
    entry = {"rows_in": 3, "rows_kept": 1, "stages": [
        {"stage": "keyword", "rows_in": 3, "removed": 2, "kept": 1, "by_rule": {"rs_keyword": 2}}]}
    assert metrics_of(entry) == {"funnel.rows_in": 3, "funnel.rows_kept": 1, "funnel.keyword.in": 3,
                                 "funnel.keyword.removed": 2, "funnel.keyword.kept": 1}
    assert funnel_table(entry).splitlines() == ["| stage | rows in | removed | kept | removed by rule |",
                                                "|---|---|---|---|---|", "| keyword | 3 | 2 | 1 | rs_keyword: 2 |"]
    entry["truth"] = {"file": "truth.json", "stages": [
        {"stage": "keyword", "precision": 0.5, "recall": None}, {"stage": "kept", "precision": 1.0, "recall": 0.25}]}
    assert metrics_of(entry)["funnel.keyword.precision"] == 0.5 and "funnel.keyword.recall" not in metrics_of(entry)
    assert metrics_of(entry)["funnel.kept.recall"] == 0.25
    lines = funnel_table(entry).splitlines()
    assert lines[2] == "| keyword | 3 | 2 | 1 | rs_keyword: 2 | 0.500 | – |"
    assert lines[3] == "| **kept** | 3 | – | 1 | – | 1.000 | 0.250 |"


def test_a_truth_file_outside_the_dataset_is_refused(case, tmp_path):
    _, pool, _, _, _ = case
    assert truth_file(pool) == pool / TRUTH_FILE
    meta = read_meta(pool)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / META_FILE).write_text(json.dumps({**meta, "truth_file": "../truth.json"}))
    with pytest.raises(DataError, match="truth_file must be a file name beside the manifest"):
        truth_file(tmp_path / "copy")
