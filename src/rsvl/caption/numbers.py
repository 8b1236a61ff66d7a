"""Counts in words and back: captions spell counts ("three ships"), the quality filter reads them.

Spelling every count (not digits) keeps captions natural and gives the contradiction check one
format to parse; numbers up to 999 are spelled, larger ones fall back to digits.
"""

from __future__ import annotations

import re

_UNITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
          "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_VALUES = {word: i for i, word in enumerate(_UNITS)} | {w: 10 * i for i, w in enumerate(_TENS) if w}
_VALUES |= {"no": 0, "a": 1, "an": 1, "single": 1}

NUMBER_PATTERN = (r"(?:\d+|(?:(?:no|an?|single|zero|one|two|three|four|five|six|seven|eight|nine|ten|"
                  r"eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|"
                  r"thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|and)(?:[\s-]+|\b))+)")
"""A regex fragment matching a count written in digits or words ("one hundred and twenty-two")."""


def number_to_words(count: int) -> str:
    """Spell a count in words, as captions state it.

    Args:
        count: A non-negative integer.

    Returns:
        ``"zero"`` ... ``"nine hundred ninety-nine"``; digits from 1000 on.
    """
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    if count < 20:
        return _UNITS[count]
    if count < 100:
        tens, unit = divmod(count, 10)
        return _TENS[tens] + (f"-{_UNITS[unit]}" if unit else "")
    if count < 1000:
        hundreds, rest = divmod(count, 100)
        return f"{_UNITS[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    return str(count)


def words_to_number(text: str) -> int | None:
    """Read a count written in words or digits ("twenty-two", "one hundred and five", "no").

    Args:
        text: The count phrase alone.

    Returns:
        The integer, or ``None`` when the phrase is not a count.
    """
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    total, current, seen = 0, 0, False
    for word in re.split(r"[\s-]+", text):
        if word == "and" or not word:
            continue
        if word == "hundred":
            current = max(current, 1) * 100
        elif word in _VALUES:
            current += _VALUES[word]
        else:
            return None
        seen = True
    return total + current if seen else None
