"""Whole-word keyword matching of captions: the remote-sensing keyword list and its matcher.

Text and keywords are normalised alike before matching: lower case, typographic apostrophes
made plain, and every run of characters other than letters, digits and ``'`` turned into one
space, so "Remote-Sensing" matches ``remote sensing`` and "bird’s-eye view" matches
``bird's eye view``. A keyword matches only as whole words (no letter or digit on either side),
and its last word may carry a plural ``s`` or ``es``: ``satellite`` matches "satellites" but
not "satellited", ``uav`` matches "UAVs" but not "uavx".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from rsvl.errors import DataError

KEYWORDS_FILE = Path(__file__).resolve().parent / "tables" / "rs_keywords.txt"
"""The packaged remote-sensing keyword list (its header says where the words come from)."""

_SEPARATORS = re.compile(r"[^a-z0-9']+")


def normalise(text: str) -> str:
    """Lower-case ``text``, make apostrophes plain and turn other punctuation runs into one space.

    Args:
        text: Caption or keyword.

    Returns:
        The normalised text, stripped.
    """
    lowered = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _SEPARATORS.sub(" ", lowered).strip()


def read_word_lines(path: str | Path, what: str, missing_hint: str = "") -> list[str]:
    """The lines of a UTF-8 word-list file (keyword lists, the KER vocabulary).

    Args:
        path: The file.
        what: What the file is, for the messages ("keyword list").
        missing_hint: Said after "not found" (how to make the file).

    Raises:
        DataError: The file is missing or not UTF-8; the message names the file.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as err:
        raise DataError(f"{path}: {what} not found{missing_hint}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: {what} is not UTF-8 ({err.reason} at byte {err.start})") from err


def read_keywords(path: str | Path) -> list[str]:
    """Read a keyword list: one keyword or phrase a line, ``#`` starts a comment, blank lines skipped.

    Args:
        path: The list file (UTF-8).

    Returns:
        The normalised keywords in file order, without repeats.

    Raises:
        DataError: The file is missing or not UTF-8, a line has no letter or digit, or the list is empty.
    """
    path = Path(path)
    lines = read_word_lines(path, "keyword list")
    keywords: list[str] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        keyword = normalise(text).strip("'")
        if not re.search(r"[a-z0-9]", keyword):
            raise DataError(f"{path}:{number}: keyword {text!r} has no letter or digit (rule: keyword_text)")
        if keyword not in keywords:
            keywords.append(keyword)
    if not keywords:
        raise DataError(f"{path}: the keyword list is empty (rule: keyword_list)")
    return keywords


class KeywordMatcher:
    """Find remote-sensing keywords in captions (see the module docstring for the matching rule).

    Args:
        keywords: Keywords or phrases (normalised here).
        source: Where the keywords came from, for messages (a file name).

    Raises:
        DataError: No keyword, or a keyword without any letter or digit.
    """

    def __init__(self, keywords: Iterable[str], source: str = "keywords") -> None:
        self.keywords = list(dict.fromkeys(normalise(k).strip("'") for k in keywords))
        self.source = source
        bad = [k for k in self.keywords if not re.search(r"[a-z0-9]", k)]
        if bad or not self.keywords:
            raise DataError(f"{source}: keywords must hold a letter or digit and not be empty, got {bad or []}")
        # longest first, so a phrase wins over its first word in the reported match
        alternatives = "|".join(re.escape(k) for k in sorted(self.keywords, key=lambda k: (-len(k), k)))
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?:s|es)?(?![a-z0-9])")

    @classmethod
    def from_file(cls, path: str | Path = KEYWORDS_FILE) -> "KeywordMatcher":
        """Build a matcher from a keyword list file (:func:`read_keywords`).

        Args:
            path: The list (default: the packaged :data:`KEYWORDS_FILE`).
        """
        return cls(read_keywords(path), source=Path(path).name)

    def find(self, text: str) -> str | None:
        """The first keyword occurring in ``text``, as it appears there (normalised), or ``None``.

        Args:
            text: A caption.
        """
        match = self._pattern.search(normalise(text))
        return match.group(0) if match else None
