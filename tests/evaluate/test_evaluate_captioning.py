"""Captioning metrics against hand-computed references, tokenisation, and CoCa decoding."""

from __future__ import annotations

import json
import math
from collections import Counter

import open_clip
import pytest
import torch

from rsvl.errors import DataError, ModelError
from rsvl.evaluate.captioning import (
    caption_metrics,
    decode_tokens,
    generate_captions,
    java_missing_reason,
    python_tokenize,
    spice_missing_reason,
    tokenize,
)
from rsvl.models import build_model
from rsvl.models.decoder_rows import decoder_rows

JAVA = java_missing_reason() is None
BETA = 1.2


def test_exact_match_scores_one_on_every_bleu():
    refs = {"a": ["a small boat next to a long pier"], "b": ["two large ships in the harbour"]}
    scores = caption_metrics(refs, {k: v[0] for k, v in refs.items()}, use_java=False)
    for n in range(1, 5):
        assert scores.metrics[f"BLEU_{n}"] == pytest.approx(1.0, abs=1e-6)
    assert scores.metrics["ROUGE_L"] == pytest.approx(1.0)


def test_papineni_modified_unigram_precision():
    # BLEU paper example: "the" seven times against refs holding it at most twice: p1 = 2/7;
    # the closest reference length is 7, so there is no brevity penalty.
    refs = {"x": ["The cat is on the mat.", "There is a cat on the mat."]}
    scores = caption_metrics(refs, {"x": "the the the the the the the"}, use_java=False)
    assert scores.metrics["BLEU_1"] == pytest.approx(2 / 7, rel=1e-6)


def test_brevity_penalty():
    refs = {"x": ["one two three four five six seven eight"]}
    scores = caption_metrics(refs, {"x": "one two three four"}, use_java=False)
    assert scores.metrics["BLEU_1"] == pytest.approx(math.exp(1 - 8 / 4), rel=1e-6)


def test_rouge_l_by_hand():
    scores = caption_metrics({"x": ["the cat sat on the mat"]}, {"x": "the cat on mat"}, use_java=False)
    precision, recall = 4 / 4, 4 / 6  # LCS "the cat on mat"
    expected = (1 + BETA**2) * precision * recall / (recall + BETA**2 * precision)
    assert scores.metrics["ROUGE_L"] == pytest.approx(expected)


def _ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _tfidf(words, n, df, n_images):
    """n-gram counts × log(|I| / max(1, df)): the paper's g_n vector."""
    return {g: c * math.log(n_images / max(1, df[g])) for g, c in _ngrams(words, n).items()}


def cider_d_by_the_paper(refs, cands, sigma=6.0):
    """CIDEr-D (Vedantam et al. 2015) written from the paper: tf-idf n-gram cosines, clipped, ×10."""
    images = sorted(refs)
    ref_words = {i: [r.split() for r in refs[i]] for i in images}
    per_image = []
    for image in images:
        total = 0.0
        words = cands[image].split()
        for n in range(1, 5):
            df = Counter(g for i in images for g in set().union(*(_ngrams(w, n) for w in ref_words[i])))
            cand = _tfidf(words, n, df, len(images))
            for ref in ref_words[image]:
                target = _tfidf(ref, n, df, len(images))
                dot = sum(min(v, target.get(g, 0.0)) * target.get(g, 0.0) for g, v in cand.items())
                norms = math.sqrt(sum(v * v for v in cand.values())) * math.sqrt(sum(v * v for v in target.values()))
                penalty = math.exp(-((len(words) - len(ref)) ** 2) / (2 * sigma**2))
                total += 10.0 / len(ref_words[image]) * penalty * (dot / norms if norms else 0.0) / 4
        per_image.append(total)
    return sum(per_image) / len(per_image)


def test_cider_d_matches_the_paper_formula():
    refs = {
        "car": ["a red car on the road", "a car parked on a street"],
        "boats": ["two boats in the harbour", "two ships in the port"],
        "field": ["green field near a river", "a field near the water"],
    }
    cands = {"car": "a blue car on the road", "boats": "two boats in the harbour", "field": "a field by the river"}
    scores = caption_metrics(refs, cands, use_java=False)
    assert scores.metrics["CIDEr"] == pytest.approx(cider_d_by_the_paper(refs, cands), rel=1e-9)
    assert scores.metrics["CIDEr"] > 0


def test_java_metrics_are_reported_unavailable_with_a_reason_never_zero():
    scores = caption_metrics({"x": ["a ship at sea"]}, {"x": "a ship at sea"}, use_java=False)
    assert scores.tokenizer == "python"
    assert set(scores.unavailable) == {"METEOR", "SPICE"}
    assert "METEOR" not in scores.metrics and "SPICE" not in scores.metrics
    assert all(reason for reason in scores.unavailable.values())


@pytest.mark.skipif(not JAVA, reason="java not on PATH: PTB tokenizer and METEOR need it")
def test_with_java_ptb_tokenises_and_meteor_runs():
    refs = {"x": ["A ship is moored at the quay."], "y": ["Two boats, side by side!"]}
    scores = caption_metrics(refs, {"x": "A ship is moored at the quay.", "y": "a boat"})
    assert scores.tokenizer == "ptb"
    assert 0.0 < scores.metrics["METEOR"] <= 1.0
    spice_reason = spice_missing_reason()
    if spice_reason is None:
        assert "SPICE" in scores.metrics or "SPICE" in scores.unavailable
    else:
        assert scores.unavailable["SPICE"] == spice_reason and "SPICE" not in scores.metrics


@pytest.mark.skipif(not JAVA, reason="java not on PATH: METEOR needs it")
def test_meteor_keeps_one_jvm_per_process_and_scores_each_call_alone():
    """The scorer is reused (its JVM loads once), and one call's captions never leak into the next one's score."""
    from rsvl.evaluate import captioning

    first_refs = {"x": ["a ship is moored at the quay"], "y": ["two boats side by side"]}
    first_cands = {"x": "a ship at the quay", "y": "a boat"}
    other_refs = {"z": ["many buildings and green trees"]}
    other_cands = {"z": "buildings and trees"}
    alone = caption_metrics(other_refs, other_cands).metrics["METEOR"]
    jvm = captioning._METEOR[0].meteor_p.pid
    captioning._close_meteor()
    first = caption_metrics(first_refs, first_cands).metrics["METEOR"]
    serving = captioning._METEOR[0].meteor_p.pid
    after = caption_metrics(other_refs, other_cands).metrics["METEOR"]
    again = caption_metrics(first_refs, first_cands).metrics["METEOR"]
    assert serving != jvm and captioning._METEOR[0].meteor_p.pid == serving  # one new JVM served all three
    assert after == alone and again == first and first != alone


@pytest.mark.skipif(not JAVA, reason="java not on PATH: METEOR needs it")
def test_a_started_meteor_scorer_serves_the_later_scoring():
    """start_meteor launches the JVM at once (it loads while other work runs); scoring then uses that one."""
    from rsvl.evaluate import captioning

    captioning._close_meteor()
    assert captioning.start_meteor() is True
    started = captioning._METEOR[0].meteor_p
    assert started.poll() is None  # running before any caption is scored
    assert captioning.start_meteor() is True and captioning._METEOR[0].meteor_p is started
    refs = {"x": ["a ship is moored at the quay"]}
    assert 0 < caption_metrics(refs, {"x": "a ship at the quay"}).metrics["METEOR"] < 1
    assert captioning._METEOR[0].meteor_p is started  # the scorer started early did the scoring


def test_start_meteor_without_java_starts_nothing(monkeypatch):
    from rsvl.evaluate import captioning

    captioning._close_meteor()
    monkeypatch.setattr(captioning.shutil, "which", lambda _name: None)
    assert captioning.start_meteor() is False and captioning._METEOR == []


@pytest.mark.skipif(not JAVA, reason="java not on PATH: nothing to compare the Python tokenizer with")
def test_python_tokenizer_agrees_with_ptb_on_caption_text():
    captions = {"a": ["Many buildings, some green trees and a road.", "It's a port: ships aren't moving!",
                      "A well-known stadium -- near the river.", "Two 3.5 m wide roads (parallel).",
                      'The U.S. harbour, e.g. at 5 p.m.', 'Cars\' roofs; "white" and grey...',
                      "There're 3 ships. They've docked; I'm sure"]}
    ptb, kind = tokenize(captions)
    assert kind == "ptb"
    assert [python_tokenize(c) for c in captions["a"]] == ptb["a"]


def test_ids_must_match():
    with pytest.raises(DataError, match="same, non-empty set of ids"):
        caption_metrics({"a": ["x"]}, {"b": "x"}, use_java=False)


def test_decode_cuts_at_end_of_text_and_drops_padding():
    tokenizer = open_clip.get_tokenizer("coca_ViT-B-32")
    ids = tokenizer(["a harbour with ships"])[0].tolist()
    assert decode_tokens(ids + [0, 0], tokenizer) == "a harbour with ships"
    end = ids.index(49407)
    assert decode_tokens(ids[:end] + [49407, 320, 320], tokenizer) == "a harbour with ships"
    assert decode_tokens(ids[:end] + [0, 0], tokenizer) == "a harbour with ships"  # hit seq_len, padded
    ships = tokenizer(["ships"])[0].tolist()[1]
    assert decode_tokens([49406, ships, 0, 49407], tokenizer) == "ships !"  # id 0 is "!" before the end: kept


def test_generation_needs_a_coca_model(tmp_path):
    model, _, preprocess, tokenizer = build_model("rsvl-tiny")
    with pytest.raises(ModelError, match="CoCa"):
        generate_captions(model, preprocess, tokenizer, dataset=None)  # refused before reading data


def test_caption_scores_are_json_ready():
    scores = caption_metrics({"x": ["a ship"]}, {"x": "a ship"}, use_java=False)
    json.dumps(scores.metrics)
    assert all(isinstance(v, float) for v in scores.metrics.values())
    assert set(scores.per_sample["x"]) == {"BLEU_4", "ROUGE_L", "CIDEr"}
    assert torch.isfinite(torch.tensor(list(scores.metrics.values()))).all()


@pytest.mark.parametrize("generation_type", ["beam_search", "top_k"])
def test_projecting_only_the_last_position_generates_the_same_tokens(generation_type):
    torch.manual_seed(0)
    model = build_model("rsvl-tiny-coca")[0].eval()
    with torch.no_grad():
        model.text_decoder.text_projection.mul_(8.0)  # a peaked vocabulary: the untrained decoder makes long captions
    images = torch.randn(13, 3, 32, 32)  # a 13-image batch: 78 beam rows
    with torch.no_grad():
        torch.manual_seed(1)
        full = model.generate(images, seq_len=12, generation_type=generation_type)
        with decoder_rows(model, lambda states: states[:, -1:]):
            torch.manual_seed(1)
            last = model.generate(images, seq_len=12, generation_type=generation_type)
            tokens = open_clip.tokenize(["a ship"] * 2, context_length=8)
            step = model(images[:2], tokens, output_labels=False)["logits"]
        whole = model(images[:2], tokens, output_labels=False)["logits"]
    assert full.shape[1] > 6 and torch.equal(full, last)
    # the same row of logits (a 2-row product may round in another order than the 16-row one)
    assert step.shape == (2, 1, whole.shape[-1])
    torch.testing.assert_close(step[:, 0], whole[:, -1], rtol=1e-6, atol=1e-5)
    assert not model.text_decoder.ln_final._forward_hooks  # removed on the way out
