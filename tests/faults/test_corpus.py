"""The bad-input corpus: every kind, run through the user's command, gets its expected outcome.

The cases are written by the committed generator (``make_corpus.py``, cases in ``cases_media.py``
and ``cases_text.py``) into a temporary folder and run once per test module; the README's
kind → outcome table must be the one that run renders.
"""

from __future__ import annotations

import pytest
from corpus_case import check, table
from make_corpus import README, all_cases, readme_table, run_all

CASES = all_cases()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("corpus"), CASES, progress=lambda line: None)


def test_the_corpus_covers_at_least_thirty_kinds_in_every_group():
    assert len(CASES) >= 30
    assert {case.group for case in CASES} == {"images", "arrays", "tables", "captions", "annotations", "archives",
                                              "config"}


@pytest.mark.parametrize("case", CASES, ids=[case.kind for case in CASES])
def test_each_kind_gets_its_expected_outcome(case, outcomes):
    assert check(case, outcomes[case.kind]) == []


def test_the_readme_table_is_the_one_the_corpus_run_renders(outcomes):
    assert readme_table(README.read_text()) == table(CASES, outcomes), \
        "README.md's corpus table is stale: python tests/faults/make_corpus.py /tmp/corpus --readme"
