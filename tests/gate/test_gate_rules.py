"""The gate's decision rules: minimums alone without a champion, relative rules against one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rsvl.config import GateConfig
from rsvl.gate import ALREADY_CHAMPION, GateDecision, decide, gate_markdown

GATE = GateConfig(minimums={"test.mR": 20.0}, min_improvement={"test.mR": 0.5}, max_regression={"test.i2t_r1": 2.0})


def test_first_model_passes_on_the_minimums_alone():
    decision = decide(GATE, {"test.mR": 25.0, "test.i2t_r1": 10.0})
    assert decision.promote and decision.deltas == {} and decision.champion is None
    assert decision.reasons[0].startswith("PASS test.mR = 25") and "no champion" in decision.reasons[-1]


def test_first_model_below_a_minimum_fails_and_says_which():
    decision = decide(GATE, {"test.mR": 19.99})
    assert not decision.promote
    assert decision.reasons[0] == "FAIL test.mR = 19.99, minimum 20"


def test_candidate_must_beat_the_champion_by_more_than_the_margin():
    champion = {"test.mR": 30.0, "test.i2t_r1": 10.0}
    assert decide(GATE, {"test.mR": 30.6, "test.i2t_r1": 10.0}, champion, "3").promote
    equal = decide(GATE, {"test.mR": 30.5, "test.i2t_r1": 10.0}, champion, "3")
    assert not equal.promote and equal.deltas["test.mR"] == pytest.approx(0.5)
    assert any(r.startswith("FAIL test.mR = 30.5 vs champion 30") for r in equal.reasons)


def test_a_regression_past_the_allowance_fails_even_when_the_main_metric_improves():
    decision = decide(GATE, {"test.mR": 40.0, "test.i2t_r1": 7.9}, {"test.mR": 30.0, "test.i2t_r1": 10.0}, "1")
    assert not decision.promote
    assert [r.split()[0] for r in decision.reasons] == ["PASS", "PASS", "FAIL"]
    assert decision.deltas == pytest.approx({"test.mR": 10.0, "test.i2t_r1": -2.1})


def test_a_metric_nobody_measured_fails_its_rule():
    decision = decide(GATE, {"test.mR": 40.0}, {"test.mR": 30.0}, "1")
    assert not decision.promote and "FAIL test.i2t_r1: not measured for both" in decision.reasons[-1]


def test_a_nan_metric_fails_every_rule_it_meets():
    nan = float("nan")
    first = decide(GATE, {"test.mR": nan, "test.i2t_r1": 10.0})
    assert not first.promote and first.reasons[0] == "FAIL test.mR = nan, minimum 20"
    champion = {"test.mR": 30.0, "test.i2t_r1": 10.0}
    candidate = decide(GATE, {"test.mR": nan, "test.i2t_r1": nan}, champion, "1")
    assert not candidate.promote and [r.split()[0] for r in candidate.reasons] == ["FAIL", "FAIL", "FAIL"]
    # a champion scored NaN cannot be beaten by a number either: no rule passes on a NaN difference
    against_nan = decide(GATE, {"test.mR": 40.0, "test.i2t_r1": 10.0}, {"test.mR": nan, "test.i2t_r1": 10.0}, "1")
    assert not against_nan.promote and [r.split()[0] for r in against_nan.reasons] == ["PASS", "FAIL", "PASS"]


def test_gate_without_rules_or_with_negative_margins_is_refused():
    with pytest.raises(ValidationError, match="without rules would promote anything"):
        GateConfig()
    with pytest.raises(ValidationError, match="must be >= 0"):
        GateConfig(minimums={"a": 1.0}, max_regression={"a": -1.0})


def test_report_lists_every_rule_and_the_side_by_side_metrics():
    decision = decide(GATE, {"test.mR": 40.0, "test.i2t_r1": 7.9}, {"test.mR": 30.0, "test.i2t_r1": 10.0}, "1")
    text = gate_markdown(decision, "sar_rs_clip", "2")
    assert text.startswith("# Gate: `sar_rs_clip` version 2 NOT promoted")
    assert "| test.mR | 40.0000 | 30.0000 | +10.0000 |" in text
    assert all(f"- {reason}" in text for reason in decision.reasons)


def test_report_of_a_version_that_already_is_the_champion_scores_nothing_and_says_so():
    decision = GateDecision(promote=False, reasons=["version 3 already is the champion"], champion_version="3")
    text = gate_markdown(decision, "sar_rs_clip", "3")
    assert text.partition("\n")[0] == f"# Gate: `sar_rs_clip` version 3 {ALREADY_CHAMPION}"
    assert "no champion" not in text and "## Metrics" not in text
    first = gate_markdown(decide(GATE, {"test.mR": 40.0, "test.i2t_r1": 7.9}, None, None), "sar_rs_clip", "1")
    assert ALREADY_CHAMPION not in first and "no champion (first model" in first
