"""Text statistics of a ``filename,title`` caption CSV, read without its images.

The iEBAKER test CSVs name images on the authors' machine (``/home/mcx/...``) that are not
shipped; their text still tells how long the captions are and how many KER keywords they
carry. Words are caption words as the KER vocabulary counts them (runs of ASCII letters,
lower-cased: :func:`rsvl.data.ker_vocabulary.caption_words`); a caption's keywords are its words
in the vocabulary, repeats counted (what :func:`rsvl.data.ker_masking.mask_keywords` masks).
Images are told apart by the basename of ``filename``, as the ``caption-csv`` adapter does.

:func:`caption_token_stats` measures the same captions in tokens (untruncated, start/end tokens
included: :func:`rsvl.models.token_counts.token_lengths`) under the tokenizers it is given, and
the long-text proxies built from them (each image's distinct captions joined,
:func:`rsvl.data.long_text.long_text_proxies`), against the 77-token CLIP context and LRSCLIP's
248-token one (:data:`TOKEN_LIMITS`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsvl.data.adapters.text_files import basename, lenient_text, read_csv_rows
from rsvl.data.ker_vocabulary import caption_words, default_vocabulary
from rsvl.data.long_text import long_text_proxies
from rsvl.errors import DataError

TOKEN_LIMITS = (77, 248)
"""Context lengths texts are measured against: CLIP's and LRSCLIP's stretched one."""


def _title(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: title is not valid UTF-8 ({err.reason} at byte {err.start}) "
                        f"(rule: caption_utf8)") from err


def read_caption_rows(csv_path: str | Path) -> list[tuple[str, str]]:
    """Read a ``filename,title`` caption CSV as ``(image basename, caption)`` rows, in file order.

    Args:
        csv_path: The CSV, one row per caption.

    Returns:
        The rows.

    Raises:
        DataError: The file is missing, lacks a column, has no row, a row's filename is empty
            or its title is not UTF-8; the message names the file and line.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"{path}: caption CSV not found")
    rows = []
    for line, row in read_csv_rows(path, ("filename", "title")):
        where = f"{path.name}:{line}"
        image = basename(lenient_text(row["filename"]))
        if not image:
            raise DataError(f"{where}: filename is empty (rule: record_fields)")
        rows.append((image, _title(row["title"], where)))
    if not rows:
        raise DataError(f"{path}: no caption row (rule: csv_nonempty)")
    return rows


def length_stats(lengths: Sequence[int], limits: Sequence[int] = TOKEN_LIMITS) -> dict:
    """Summarise text lengths in tokens.

    Args:
        lengths: One token count per text (not empty).
        limits: Context lengths to count the longer texts against.

    Returns:
        ``count``, ``mean``, ``median``, ``p95`` (linear interpolation, numpy's default), ``max``,
        and per limit ``n``: ``over_<n>`` (texts with more than ``n`` tokens) and ``over_<n>_share``.
    """
    values = np.asarray(lengths)
    stats: dict[str, Any] = {"count": int(values.size), "mean": float(values.mean()),
                             "median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
                             "max": int(values.max())}
    for limit in limits:
        over = int((values > limit).sum())
        stats[f"over_{limit}"] = over
        stats[f"over_{limit}_share"] = over / values.size
    return stats


def caption_token_stats(csv_path: str | Path, tokenizers: Mapping[str, Any]) -> dict:
    """Caption and long-text-proxy lengths in tokens of a caption CSV, under each tokenizer.

    Args:
        csv_path: A ``filename,title`` CSV, one row per caption.
        tokenizers: Name (e.g. the architecture) to open_clip tokenizer.

    Returns:
        ``{name: {"context_length", "captions", "long_text_proxies"}}``: the tokenizer's own context
        length, and :func:`length_stats` of the captions (one per row, blank ones included) and of
        the proxies (one per image with a non-blank caption, its distinct captions joined).

    Raises:
        DataError: As :func:`read_caption_rows`.
    """
    from rsvl.models.token_counts import context_length, token_lengths

    rows = read_caption_rows(csv_path)
    by_image: dict[str, list[str]] = {}
    for image, title in rows:
        by_image.setdefault(image, []).append(title)
    proxies = list(long_text_proxies(by_image).values())
    captions = [title for _, title in rows]
    return {name: {"context_length": context_length(tokenizer),
                   "captions": length_stats(token_lengths(tokenizer, captions)),
                   "long_text_proxies": length_stats(token_lengths(tokenizer, proxies))}
            for name, tokenizer in tokenizers.items()}


def caption_text_stats(csv_path: str | Path, vocabulary: Sequence[str] | None = None) -> dict:
    """Count rows, images, caption lengths and KER keyword coverage of a caption CSV.

    Args:
        csv_path: A CSV with the columns ``filename`` and ``title``, one row per caption.
        vocabulary: KER keywords (default: the packaged :func:`default_vocabulary`).

    Returns:
        ``csv``, ``rows``, ``images`` (distinct basenames), ``captions_per_image_min`` /
        ``_mean`` / ``_max``, ``words_per_caption_mean`` / ``_median`` / ``_p95`` (linear
        interpolation, numpy's default) / ``_max``, ``distinct_words``, ``keyword_vocabulary``
        (its size), ``keyword_caption_share`` (captions with at least one keyword) and
        ``keywords_per_caption_mean``.

    Raises:
        DataError: The file is missing, lacks a column, has no row, a row's filename is empty
            or its title is not UTF-8; the message names the file and line.
    """
    path = Path(csv_path)
    rows = read_caption_rows(path)
    keywords = set(default_vocabulary() if vocabulary is None else vocabulary)
    per_image: Counter[str] = Counter()
    lengths: list[int] = []
    hits: list[int] = []
    distinct: set[str] = set()
    for image, title in rows:
        words = caption_words(title)
        per_image[image] += 1
        lengths.append(len(words))
        hits.append(sum(word in keywords for word in words))
        distinct.update(words)
    counts = np.array(list(per_image.values()))
    words_arr = np.array(lengths)
    hits_arr = np.array(hits)
    return {
        "csv": str(path),
        "rows": len(lengths),
        "images": len(per_image),
        "captions_per_image_min": int(counts.min()),
        "captions_per_image_mean": float(counts.mean()),
        "captions_per_image_max": int(counts.max()),
        "words_per_caption_mean": float(words_arr.mean()),
        "words_per_caption_median": float(np.median(words_arr)),
        "words_per_caption_p95": float(np.percentile(words_arr, 95)),
        "words_per_caption_max": int(words_arr.max()),
        "distinct_words": len(distinct),
        "keyword_vocabulary": len(keywords),
        "keyword_caption_share": float((hits_arr > 0).mean()),
        "keywords_per_caption_mean": float(hits_arr.mean()),
    }
