"""The keyword vocabulary of iEBAKER's Keyword Explicit Reasoning (KER): rule, build, file.

iEBAKER masks domain keywords in captions and trains a head to predict them. Its vocabulary is
published only as word lists ("the union of the top-512 tag words of RSICD, RSITMD and NWPU
captions"); the rule that made them is not. This module's rule, ours, is:

1. **Caption words**: the runs of ASCII letters of a caption, lower-cased (``"U-shaped
   pool's"`` -> ``u``, ``shaped``, ``pool``, ``s``). Digits, punctuation and other characters
   end a word and are never part of one.
2. **Stop words**: :data:`STOP_WORDS` (our list: articles, pronouns, auxiliaries, the
   non-spatial prepositions, conjunctions, a few adverbs and the fragments that contractions
   leave) are dropped. Spatial words (``near``, ``next``, ``around``, ``beside``), numerals
   (``two``, ``several``, ``many``) and everything else stay, as in the published lists.
3. **Per dataset** (:data:`DATASET_FILES`): count every word occurrence over all the
   dataset's captions available here; the top 512 by count, ties broken alphabetically.
4. **Vocabulary**: the union of the three lists, sorted alphabetically.

Measured against the published lists (``keyword/*_tag_vocab_512.txt`` and
``keyword/merged_words.txt`` of github.com/zhangy0822/iEBAKER, read, not copied), on the
captions in ``../shared/data/captions_text``: RSICD 450 of its 512 words, RSITMD 464 of 512,
NWPU 362 of its 458 (only the 15,750 test captions of NWPU are available here; the published
NWPU list holds words such as ``19r``, ``camouflage`` and ``paved`` that never occur in them).
The union has 799 words; 682 of them are in the published union (``merged_words.txt``, 800
words; the paper says 799) and 117 are not, so 118 published words are missing. Other rules
measured no closer: document frequency instead of counts, de-duplicated captions, train
(+ val) captions only, one caption per image.

The vocabulary file (:func:`write_vocabulary`) starts with ``#`` lines naming the rule, the
stop-word list's size and hash, and each source file with its caption count and sha256; then
one word per line, sorted. ``rsvl data ker-vocabulary`` writes the packaged
:data:`KER_VOCABULARY` from ``../shared/data/captions_text``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rsvl.data.keywords import read_word_lines
from rsvl.errors import DataError

KER_VOCABULARY = Path(__file__).resolve().parent / "resources" / "ker_vocabulary.txt"
"""The packaged KER vocabulary (written by ``rsvl data ker-vocabulary``)."""

TOP_WORDS = 512
"""Words kept per dataset (the paper's top-512)."""

DATASET_FILES: dict[str, tuple[str, ...]] = {
    # the AMFMN train/test lines are every RSICD/RSITMD caption once (train holds the val
    # images too); the iEBAKER test CSVs repeat the test lines, so they are not read again
    "rsicd": ("AMFMN_precomp/rsicd_precomp/train_caps.txt", "AMFMN_precomp/rsicd_precomp/test_caps.txt"),
    "rsitmd": ("AMFMN_precomp/rsitmd_precomp/train_caps.txt", "AMFMN_precomp/rsitmd_precomp/test_caps.txt"),
    "nwpu": ("iEBAKER_test_csv/nwpu_test.csv",),
}
"""Caption files of each dataset, relative to the ``captions_text`` folder of the shared data.

A ``.txt`` file holds one caption a line (blank lines are no caption); a ``.csv`` file holds the
captions in its ``title`` column. NWPU-Captions is available only as its test CSV.
"""

_STOP_GROUPS = (
    # articles, determiners and quantifiers that say nothing about the scene
    "a an the this that these those all any both each few more most other some such no nor not only own same",
    # pronouns and question words
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers "
    "herself it its itself they them their theirs themselves what which who whom",
    # auxiliary and modal verbs
    "am is are was were be been being have has had having do does did doing can will should",
    # prepositions without a spatial layout of their own (near, next, around, beside... stay)
    "of at by for with about against between into through during before after above below to from up down "
    "in out on off over under",
    # conjunctions
    "and or but if then than so as because while until",
    # adverbs of discourse
    "again further once here there when where why how too very just now",
    # what contractions leave once the apostrophe splits a word: "aren't" -> aren, t
    "s t d ll m o re ve y ma ain aren isn wasn weren doesn didn don hasn haven hadn couldn shouldn wouldn won "
    "mustn needn shan mightn",
)

STOP_WORDS: frozenset[str] = frozenset(" ".join(_STOP_GROUPS).split())
"""The stop words of the rule (ours; see the module docstring)."""

_LETTERS = re.compile(r"[A-Za-z]+")
_WORD_LINE = re.compile(r"[a-z]+")


def caption_words(text: str) -> list[str]:
    """Split a caption into its words: runs of ASCII letters, lower-cased, in caption order.

    Args:
        text: A caption.

    Returns:
        The words, repeats kept (``"Two planes, 2 cars."`` -> ``["two", "planes", "cars"]``).
    """
    return [match.lower() for match in _LETTERS.findall(text)]


def top_tag_words(captions: Iterable[str], top: int = TOP_WORDS) -> list[str]:
    """Rank the non-stop words of some captions by count and keep the first ``top``.

    Args:
        captions: Caption texts.
        top: How many words to keep (all of them when fewer are left).

    Returns:
        The words, most frequent first; equal counts in alphabetical order.

    Raises:
        ValueError: ``top`` is not positive.
    """
    if top < 1:
        raise ValueError(f"top must be a positive number of words, got {top}")
    counts = Counter(word for caption in captions for word in caption_words(caption) if word not in STOP_WORDS)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:top]]


@dataclass(frozen=True)
class CaptionSource:
    """One caption file a vocabulary was counted from.

    Attributes:
        dataset: ``rsicd``, ``rsitmd`` or ``nwpu``.
        path: The file, relative to the ``captions_text`` folder (POSIX separators).
        captions: How many captions it gave.
        sha256: Hex SHA-256 of its bytes.
    """

    dataset: str
    path: str
    captions: int
    sha256: str


@dataclass
class KerVocabulary:
    """A KER vocabulary and where it came from.

    Attributes:
        words: The union of the per-dataset lists, sorted alphabetically.
        sources: Every caption file read, in :data:`DATASET_FILES` order.
        per_dataset: Each dataset's top words, most frequent first.
        top: The per-dataset cut-off the lists were made with.
    """

    words: list[str]
    sources: list[CaptionSource]
    per_dataset: dict[str, list[str]] = field(default_factory=dict)
    top: int = TOP_WORDS


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: caption text is not UTF-8 ({err.reason} at byte {err.start}) "
                        f"(rule: caption_utf8)") from err


def _file_captions(path: Path) -> tuple[list[str], str]:
    """Read one caption file; return its captions and the sha256 of its bytes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataError(f"{path}: caption file not found; the KER vocabulary reads {path.name} "
                        f"under captions_text/ of the shared data (../shared/data)") from err
    text = _decode(path, data)
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if "title" not in (reader.fieldnames or []):
            raise DataError(f"{path}: header {reader.fieldnames} lacks the column 'title' (rule: csv_columns)")
        captions = [row["title"] or "" for row in reader]
    else:
        captions = text.splitlines()
    return [caption.strip() for caption in captions if caption.strip()], hashlib.sha256(data).hexdigest()


def _check_dataset(dataset: str) -> tuple[str, ...]:
    if dataset not in DATASET_FILES:
        raise DataError(f"unknown KER dataset {dataset!r}; known: {sorted(DATASET_FILES)}")
    return DATASET_FILES[dataset]


def dataset_captions(captions_text_root: str | Path, dataset: str) -> list[str]:
    """Return every caption of a dataset available in the shared caption text, blank lines dropped.

    Args:
        captions_text_root: The ``captions_text`` folder (``../shared/data/captions_text``).
        dataset: ``rsicd``, ``rsitmd`` or ``nwpu`` (its files: :data:`DATASET_FILES`).

    Returns:
        The captions, stripped, in file order.

    Raises:
        DataError: Unknown dataset, a missing or non-UTF-8 file, or a CSV without ``title``.
    """
    root = Path(captions_text_root)
    return [caption for rel in _check_dataset(dataset) for caption in _file_captions(root / rel)[0]]


def build_vocabulary(captions_text_root: str | Path, top: int = TOP_WORDS) -> KerVocabulary:
    """Build the KER vocabulary from the RSICD, RSITMD and NWPU captions (rule: module docstring).

    Args:
        captions_text_root: The ``captions_text`` folder (``../shared/data/captions_text``).
        top: Words kept per dataset.

    Returns:
        The vocabulary, its per-dataset lists and its sources.

    Raises:
        DataError: A caption file is missing or unreadable.
    """
    root = Path(captions_text_root)
    sources: list[CaptionSource] = []
    per_dataset: dict[str, list[str]] = {}
    for dataset, files in DATASET_FILES.items():
        captions: list[str] = []
        for rel in files:
            found, digest = _file_captions(root / rel)
            captions.extend(found)
            sources.append(CaptionSource(dataset, rel, len(found), digest))
        per_dataset[dataset] = top_tag_words(captions, top)
    words = sorted(set().union(*per_dataset.values()))
    return KerVocabulary(words=words, sources=sources, per_dataset=per_dataset, top=top)


def stop_words_digest() -> str:
    """Return the hex SHA-256 of the stop words, sorted and newline-joined (names the list in files).

    Returns:
        The digest.
    """
    return hashlib.sha256("\n".join(sorted(STOP_WORDS)).encode("ascii")).hexdigest()


def write_vocabulary(vocab: KerVocabulary, path: str | Path) -> Path:
    """Write a vocabulary file: ``#`` header lines (rule, sources, sha256s), then one word a line.

    Args:
        vocab: The vocabulary.
        path: The file to write (its folder is created).

    Returns:
        The path written.
    """
    path = Path(path)
    header = [
        "KER keyword vocabulary (iEBAKER Keyword Explicit Reasoning); written by `rsvl data ker-vocabulary`",
        "rule (rsvl.data.ker_vocabulary): caption words = runs of ASCII letters, lower-cased;",
        f"  minus {len(STOP_WORDS)} stop words (sha256 of the sorted list {stop_words_digest()});",
        f"  per dataset the top {vocab.top} by count, ties alphabetical; the union, sorted",
    ]
    for dataset, words in vocab.per_dataset.items():
        captions = sum(source.captions for source in vocab.sources if source.dataset == dataset)
        header.append(f"dataset {dataset}: {len(words)} words from {captions} captions")
    header += [f"source {s.dataset} captions_text/{s.path} {s.captions} captions sha256 {s.sha256}"
               for s in vocab.sources]
    header.append(f"words: {len(vocab.words)}")
    text = "".join(f"# {line}\n" for line in header) + "".join(f"{word}\n" for word in vocab.words)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_vocabulary(path: str | Path) -> list[str]:
    """Read a vocabulary file: ``#`` lines are skipped, every other line is one word.

    Args:
        path: The file (UTF-8).

    Returns:
        The words, in file order (sorted, as the file must be).

    Raises:
        DataError: The file is missing or empty, or a line is not one lower-case ASCII word, or
            the words are not sorted and unique; the message names the file and line.
    """
    path = Path(path)
    lines = read_word_lines(path, "KER vocabulary", " (write it with `rsvl data ker-vocabulary`)")
    words: list[str] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#"):
            continue
        if not _WORD_LINE.fullmatch(line):
            raise DataError(f"{path}:{number}: {line!r} is not one lower-case ASCII word (rule: ker_word)")
        if words and line <= words[-1]:
            raise DataError(f"{path}:{number}: {line!r} does not come after {words[-1]!r}; "
                            f"the words must be sorted and unique (rule: ker_sorted)")
        words.append(line)
    if not words:
        raise DataError(f"{path}: KER vocabulary holds no word (rule: ker_nonempty)")
    return words


def default_vocabulary() -> list[str]:
    """Return the packaged KER vocabulary (:data:`KER_VOCABULARY`).

    Returns:
        The words, sorted.

    Raises:
        DataError: The packaged file is missing or malformed.
    """
    return load_vocabulary(KER_VOCABULARY)
