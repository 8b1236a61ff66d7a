"""LLaVA conversation files: the format SAR-GPT (TinyGPT-V based) fine-tunes on (PAPERS.md §1).

A file is a JSON list of records::

    [{"id": "sar_00001", "image": "media/sar_00001.png",
      "conversations": [{"from": "human", "value": "<image>\\nIs there a ship in the image?"},
                        {"from": "gpt", "value": "yes"}, ...]}]

Turns alternate ``human``/``gpt``, starting with ``human``; the first human turn carries the
``<image>`` token (LLaVA's convention; later turns refer to the same image). ``image`` is relative
to an image folder (LLaVA's ``--image_folder``; here the dataset directory). Extra keys are kept
on read and written back unchanged, since LLaVA tooling ignores them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from rsvl.errors import DataError

IMAGE_TOKEN = "<image>"
HUMAN, GPT = "human", "gpt"


def make_record(record_id: str, image: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Build one LLaVA record from question/answer pairs about one image.

    Args:
        record_id: Unique id of the record (the sample id).
        image: Image path relative to the image folder.
        pairs: ``(question, answer)`` turns, in order; at least one.

    Returns:
        ``{"id", "image", "conversations"}`` with ``<image>\\n`` before the first question.

    Raises:
        DataError: ``pairs`` is empty.
    """
    if not pairs:
        raise DataError(f"record {record_id!r}: a conversation needs at least one question")
    turns = []
    for index, (question, answer) in enumerate(pairs):
        value = f"{IMAGE_TOKEN}\n{question}" if index == 0 else question
        turns += [{"from": HUMAN, "value": value}, {"from": GPT, "value": answer}]
    return {"id": record_id, "image": image, "conversations": turns}


def qa_pairs(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(question, answer)`` turns of a valid record, ``<image>`` token removed.

    Args:
        record: A record that passed :func:`check_record`.

    Returns:
        One pair per human/gpt exchange, in order.
    """
    turns = record["conversations"]
    return [(strip_image_token(turns[i]["value"]), turns[i + 1]["value"]) for i in range(0, len(turns), 2)]


def strip_image_token(question: str) -> str:
    """Remove LLaVA's ``<image>`` token (and the newline beside it) from a human turn."""
    # the newline variants go first, so no stray newline is left behind
    return question.replace(IMAGE_TOKEN + "\n", "").replace("\n" + IMAGE_TOKEN, "").replace(IMAGE_TOKEN, "").strip()


def check_record(entry: Any, where: str) -> None:
    """Raise when ``entry`` is not a well-formed LLaVA record.

    Rules: a JSON object with a non-empty string ``id`` and ``image``; ``conversations`` a non-empty
    list of an even number of ``{"from", "value"}`` objects alternating ``human``/``gpt`` from
    ``human``, with string values.

    Args:
        entry: One element of the file's list.
        where: Its location for the message (``file.json[3]``).

    Raises:
        DataError: The first rule broken, with ``where`` and the record id when known.
    """
    if not isinstance(entry, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(entry).__name__}")
    label = f"{where} (id {entry.get('id')!r})"
    for key in ("id", "image"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise DataError(f"{label}: {key!r} must be a non-empty string")
    turns = entry.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{label}: 'conversations' must be a non-empty list")
    if len(turns) % 2:
        raise DataError(f"{label}: 'conversations' has {len(turns)} turns; each human turn needs a gpt answer")
    for index, turn in enumerate(turns):
        expected = HUMAN if index % 2 == 0 else GPT
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise DataError(f"{label}: turn {index} must be an object with a string 'value'")
        if turn.get("from") != expected:
            raise DataError(f"{label}: turn {index} is from {turn.get('from')!r}, expected {expected!r} "
                            "(turns alternate human/gpt, starting with human)")


def read_llava(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a LLaVA conversation file.

    Args:
        path: The JSON file.

    Returns:
        The records, as stored (extra keys kept).

    Raises:
        DataError: Missing or not JSON, not a list, a record breaks :func:`check_record`, or an id repeats.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise DataError(f"{path}: a LLaVA file must be a JSON list of records, got {type(data).__name__}")
    seen: dict[str, int] = {}
    for index, entry in enumerate(data):
        where = f"{path}[{index}]"
        check_record(entry, where)
        if entry["id"] in seen:
            raise DataError(f"{where}: id {entry['id']!r} repeats the id of record {seen[entry['id']]}")
        seen[entry["id"]] = index
    return data


def write_llava(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Check the records and write them as one LLaVA JSON file.

    Args:
        records: LLaVA records (e.g. from :func:`rsvl.vqa.questions.vqa_from_dataset`).
        path: Destination file; parent folders are created.

    Returns:
        The path written.

    Raises:
        DataError: A record is malformed (its index is named); nothing is written then.
    """
    path = Path(path)
    for index, entry in enumerate(records):
        check_record(entry, f"records[{index}] for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(records), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
