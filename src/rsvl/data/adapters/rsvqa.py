"""Remote-sensing VQA sets: RSVQA-LR / RSVQA-HR and HRVQA, one row per image with its questions.

RSVQA layout: ``SOURCE/<stem>_images.json`` (``{"images": [{"id", "active", ...}]}``),
``<stem>_questions.json`` (``{"questions": [{"id", "img_id", "type", "question", "active"}]}``)
and ``<stem>_answers.json`` (``{"answers": [{"question_id", "answer", "active"}]}``) for each
stem such as ``LR_split_train`` or ``USGS_split_test_phili``; the split is the train/val/test word
of the stem (so RSVQA-HR's Philadelphia set joins ``test``; its rows' ``source`` names its files).
Upstream split files list entries of other splits too, marked ``"active": false`` (the images
files do, as the real cut shows); inactive entries are therefore skipped, not quarantined, and
the metadata counts inactive questions as ``questions_inactive``. A row's ``source`` is its ``<stem>_images.json#i``.

HRVQA layout: ``SOURCE/jsons/{split}_question.json`` (``{"questions": [{"image_id",
"question_id", "question", "question_type", "image_name"}]}``) and ``{split}_answer.json``
(``{"annotations": [{"question_id", "multiple_choice_answer"}]}``). Upstream withholds the test
answers: a split without an answer file keeps its questions with a null ``answer``. A row's
``source`` names its questions (``train_question.json#0-4``).

Images: every image file below ``SOURCE`` is indexed by its stem, the image id (``Images_LR/72.tif``,
``images/9342.png``); two files with one stem are an error. Only images on disk become rows.

Quarantine, one record per question, so the counts say how many questions were lost:
``image_absent`` (the question's image is not on disk: sample cuts and partial downloads keep
the full question files, so this is honest, if large, and the report counts it by rule),
``image_listed`` (RSVQA: the image is not an active image of the split), ``answer_exists`` (an
answer file exists but lacks this question), ``record_fields`` (missing or mistyped keys, blank
question), ``unique_id`` (the image is already a row of another split), ``image_decode``; and
one record per image entry for ``questions_present`` (an active RSVQA image with no question).
The metadata also records ``layout`` and ``questions_ingested``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rsvl.data.adapters import register
from rsvl.data.adapters.row_checks import accept_image, index_images
from rsvl.data.adapters.text_files import read_json, source_ref, split_from_name
from rsvl.data.media import decode_caption
from rsvl.data.store import DatasetWriter, IngestReport
from rsvl.errors import DataError


@dataclass
class Question:
    """One question of a split file, resolved to its image and answer."""

    where: str
    index: int
    image: str
    question: str
    answer: str | None
    type: str | None


@dataclass
class SplitQuestions:
    """The accepted questions of one split's files and the images they may refer to."""

    split: str
    questions: list[Question] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)
    """Image id -> the source reference its row will carry, in source order."""
    inactive: int = 0


def _listed(document, key: str, path: Path) -> list:
    if not isinstance(document, dict) or not isinstance(document.get(key), list):
        raise DataError(f"{path}: expected an object with a {key!r} list")
    return document[key]


def _text(value) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return decode_caption(value, "") if isinstance(value, str) else None


def _answers(entries: list, answer_key: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in entries:
        answer = _text(entry.get(answer_key)) if isinstance(entry, dict) and entry.get("active", True) else None
        if answer is not None:
            found.setdefault(str(entry.get("question_id")), answer)
    return found


def find_rsvqa_stems(source: Path) -> list[str]:
    """Return the RSVQA file stems (``LR_split_train`` ...) in a folder, checking each is complete.

    Raises:
        DataError: No ``*_questions.json``, a stem lacks its answers or images file, or names no split.
    """
    stems = sorted(p.name.removesuffix("_questions.json") for p in source.glob("*_questions.json"))
    if not stems:
        raise DataError(f"{source}: no RSVQA *_questions.json files and no HRVQA jsons/ folder")
    for stem in stems:
        for part in ("answers", "images"):
            if not (source / f"{stem}_{part}.json").is_file():
                raise DataError(f"{source / f'{stem}_{part}.json'}: missing; it pairs with {stem}_questions.json")
        if split_from_name(stem) is None:
            raise DataError(f"{source / f'{stem}_questions.json'}: the name says no split (train/val/test)")
    return stems


def load_rsvqa(source: Path) -> list[dict]:
    """Read every RSVQA split file set.

    Returns:
        Per stem: ``{"stem", "images", "questions", "answers"}``, the lists as stored.

    Raises:
        DataError: A file is missing, not UTF-8 JSON, or lacks its list.
    """
    loaded = []
    for stem in find_rsvqa_stems(source):
        files = {"stem": stem}
        for part in ("images", "questions", "answers"):
            path = source / f"{stem}_{part}.json"
            files[part] = _listed(read_json(path)[0], part, path)
        loaded.append(files)
    return loaded


def load_hrvqa(source: Path) -> list[dict]:
    """Read every HRVQA split under ``source/jsons``.

    Returns:
        Per split: ``{"split", "file", "questions", "answers"}``; ``answers`` is ``None`` when the
        split has no answer file (HRVQA's test set).

    Raises:
        DataError: No ``*_question.json`` is present, one names no split, or a file is malformed.
    """
    folder = source / "jsons"
    loaded = []
    for path in sorted(folder.glob("*_question.json")):
        split = split_from_name(path.name.removesuffix("_question.json"))
        if split is None:
            raise DataError(f"{path}: the name says no split (train/val/test)")
        answers_path = folder / path.name.replace("_question.json", "_answer.json")
        answers = _listed(read_json(answers_path)[0], "annotations", answers_path) if answers_path.is_file() else None
        loaded.append({"split": split, "file": path.name,
                       "questions": _listed(read_json(path)[0], "questions", path), "answers": answers})
    if not loaded:
        raise DataError(f"{folder}: no HRVQA {{train,val,test}}_question.json files")
    return loaded


def _question(writer: DatasetWriter, where: str, index: int, entry, keys: tuple[str, str, str, str],
              answer_of: dict[str, str] | None) -> Question | None:
    image_key, id_key, text_key, type_key = keys
    text = _text(entry.get(text_key)) if isinstance(entry, dict) else None
    if not text or entry.get(image_key) is None or entry.get(id_key) is None:
        writer.quarantine(where=where, rule="record_fields",
                          reason=f"{where}: needs {image_key!r}, {id_key!r} and a non-blank {text_key!r}")
        return None
    image = str(entry[image_key])
    answer = None
    if answer_of is not None:
        answer = answer_of.get(str(entry[id_key]))
        if answer is None:
            writer.quarantine(where=where, rule="answer_exists", sample_id=image,
                              reason=f"{where}: question {entry[id_key]} has no answer")
            return None
    return Question(where, index, image, text, answer, _text(entry.get(type_key)))


def _rsvqa_split(writer: DatasetWriter, files: dict) -> SplitQuestions:
    stem = files["stem"]
    found = SplitQuestions(split_from_name(stem))
    for index, entry in enumerate(files["images"]):
        if isinstance(entry, dict) and entry.get("active") and "id" in entry:
            found.images[str(entry["id"])] = f"{stem}_images.json#{index}"
    answer_of = _answers(files["answers"], "answer")
    for index, entry in enumerate(files["questions"]):
        where = f"{stem}_questions.json#{index}"
        if isinstance(entry, dict) and entry.get("active") is False:
            found.inactive += 1
            continue
        question = _question(writer, where, index, entry, ("img_id", "id", "question", "type"), answer_of)
        if question is None:
            continue
        if question.image not in found.images:
            writer.quarantine(where=where, rule="image_listed", sample_id=question.image,
                              reason=f"{where}: image {question.image} is not an active image of {stem}_images.json")
            continue
        found.questions.append(question)
    return found


def _hrvqa_split(writer: DatasetWriter, files: dict) -> SplitQuestions:
    found = SplitQuestions(files["split"])
    answer_of = None if files["answers"] is None else _answers(files["answers"], "multiple_choice_answer")
    for index, entry in enumerate(files["questions"]):
        keys = ("image_id", "question_id", "question", "question_type")
        question = _question(writer, f"{files['file']}#{index}", index, entry, keys, answer_of)
        if question is not None:
            found.questions.append(question)
    for image in dict.fromkeys(q.image for q in found.questions):
        indexes = [q.index for q in found.questions if q.image == image]
        found.images[image] = source_ref(files["file"], "#", indexes)
    return found


def _write_split(writer: DatasetWriter, split: SplitQuestions, index: dict[str, Path], source: Path,
                 taken: dict[str, str]) -> int:
    by_image: dict[str, list[Question]] = {}
    for question in split.questions:
        by_image.setdefault(question.image, []).append(question)
    written = 0
    for image, image_where in split.images.items():
        questions = by_image.get(image, [])
        if not questions:
            writer.quarantine(where=image_where, rule="questions_present", sample_id=image,
                              reason=f"{image_where}: image {image} is active but has no question")
            continue
        path = index.get(image)
        rule, reason = None, ""
        if path is None:
            rule, reason = "image_absent", f"image {image} is not under {source}"
        elif image in taken:
            rule, reason = "unique_id", f"image {image} is already a row of split {taken[image]!r}"
        if rule:
            for question in questions:
                writer.quarantine(where=question.where, rule=rule, sample_id=image,
                                  reason=f"{question.where}: {reason}")
            continue
        header = accept_image(writer, path, [q.where for q in questions], image)
        if header is None:
            continue
        taken[image] = split.split
        width, height, bands = header
        writer.add_row(
            sample_id=image,
            split=split.split,
            modality="optical",
            image=writer.copy_media(path, path.relative_to(source).as_posix()),
            width=width,
            height=height,
            bands=bands,
            vqa=[{"question": q.question, "answer": q.answer, "type": q.type} for q in questions],
            source=image_where,
        )
        written += len(questions)
    return written


@register("rsvqa")
def ingest_rsvqa(source: Path, out: Path, *, name: str | None = None) -> IngestReport:
    """Ingest an RSVQA-LR/HR or HRVQA folder: one row per image on disk with its questions.

    Args:
        source: The dataset folder (RSVQA JSON files at its top, or HRVQA's ``jsons/``) and images.
        out: Destination dataset directory.
        name: Dataset name (default: the folder name).

    Returns:
        The ingest report; questions whose image is absent are quarantined as ``image_absent``.
    """
    if not source.is_dir():
        raise DataError(f"{source}: the rsvqa format reads a dataset folder")
    layout = "hrvqa" if (source / "jsons").is_dir() else "rsvqa"
    loaded = load_hrvqa(source) if layout == "hrvqa" else load_rsvqa(source)
    index = index_images(source)
    with DatasetWriter(out, name=name or source.name, kind="vqa", adapter="rsvqa", source=str(source)) as writer:
        read_split = _hrvqa_split if layout == "hrvqa" else _rsvqa_split
        splits = [read_split(writer, files) for files in loaded]
        taken: dict[str, str] = {}
        written = sum(_write_split(writer, split, index, source, taken) for split in splits)
        writer.meta.update(layout=layout, questions_ingested=written,
                           questions_inactive=sum(split.inactive for split in splits))
    return writer.report
