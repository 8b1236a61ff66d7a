"""LLaVA conversation files: round trip, and malformed input named by file, index and rule."""

from __future__ import annotations

import json

import pytest

from rsvl.errors import DataError
from rsvl.vqa import make_record, qa_pairs, read_llava, write_llava

PAIRS = [("Is there a ship in the image?", "yes"), ("How many ships are there in the image?", "3")]


def test_make_record_puts_the_image_token_on_the_first_question_only():
    record = make_record("chip_1", "media/chip_1.png", PAIRS)
    turns = record["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt", "human", "gpt"]
    assert turns[0]["value"] == "<image>\n" + PAIRS[0][0]
    assert turns[2]["value"] == PAIRS[1][0]
    assert qa_pairs(record) == PAIRS


def test_round_trip_keeps_records_and_extra_keys(tmp_path):
    records = [make_record("a", "media/a.png", PAIRS), make_record("b", "media/b.png", PAIRS[:1])]
    records[1]["source"] = "kept as is"
    path = write_llava(records, tmp_path / "sub" / "vqa.json")
    assert read_llava(path) == records
    assert json.loads(path.read_text()) == records


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "x"}', r"must be a JSON list"),
        ("[1]", r"vqa\.json\[0\]: a record must be a JSON object"),
        ('[{"id": "x", "conversations": []}]', r"vqa\.json\[0\] \(id 'x'\): 'image' must be"),
        ('[{"id": "x", "image": "i.png", "conversations": []}]', r"'conversations' must be a non-empty list"),
        ('[{"id": "x", "image": "i.png", "conversations": [{"from": "human", "value": "q"}]}]',
         r"1 turns; each human turn needs a gpt answer"),
        ('[{"id": "x", "image": "i.png", "conversations": [{"from": "gpt", "value": "a"}, '
         '{"from": "human", "value": "q"}]}]', r"turn 0 is from 'gpt', expected 'human'"),
        ('[{"id": "x", "image": "i.png", "conversations": [{"from": "human", "value": 3}, '
         '{"from": "gpt", "value": "a"}]}]', r"turn 0 must be an object with a string 'value'"),
        ("[not json", r"not valid JSON"),
    ],
)
def test_malformed_files_name_the_file_entry_and_rule(tmp_path, content, message):
    path = tmp_path / "vqa.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_llava(path)


def test_duplicate_ids_and_missing_file_are_named(tmp_path):
    path = tmp_path / "vqa.json"
    path.write_text(json.dumps([make_record("a", "a.png", PAIRS), make_record("a", "b.png", PAIRS)]))
    with pytest.raises(DataError, match=r"vqa\.json\[1\]: id 'a' repeats the id of record 0"):
        read_llava(path)
    with pytest.raises(DataError, match="file not found"):
        read_llava(tmp_path / "absent.json")


def test_write_refuses_a_bad_record_and_writes_nothing(tmp_path):
    bad = make_record("a", "a.png", PAIRS)
    bad["conversations"] = bad["conversations"][:1]
    with pytest.raises(DataError, match=r"records\[1\]"):
        write_llava([make_record("ok", "ok.png", PAIRS), bad], tmp_path / "vqa.json")
    assert not (tmp_path / "vqa.json").exists()
    with pytest.raises(DataError, match="at least one question"):
        make_record("empty", "e.png", [])
