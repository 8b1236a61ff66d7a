"""Text statistics of a ``filename,title`` caption CSV, read without its images.

The iEBAKER test CSVs name images on the authors' machine (``/home/mcx/...``) that are not
shipped; their text still tells how long the captions are and how many KER keywords they
carry. Words are caption words as the KER vocabulary counts them (runs of ASCII letters,
lower-cased: :func:`rsvl.data.ker_vocabulary.caption_words`); a caption's keywords are its words
in the vocabulary, repeats counted (what :func:`rsvl.data.ker_masking.mask_keywords` masks).
Images are told apart by the basename of ``filename``, as the ``caption-csv`` adapter does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsvl.data.adapters.text_files import basename, lenient_text, read_csv_rows
from rsvl.data.ker_vocabulary import caption_words, default_vocabulary
from rsvl.errors import DataError


def _title(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: title is not valid UTF-8 ({err.reason} at byte {err.start}) "
                        f"(rule: caption_utf8)") from err


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
    if not path.is_file():
        raise DataError(f"{path}: caption CSV not found")
    keywords = set(default_vocabulary() if vocabulary is None else vocabulary)
    per_image: Counter[str] = Counter()
    lengths: list[int] = []
    hits: list[int] = []
    distinct: set[str] = set()
    for line, row in read_csv_rows(path, ("filename", "title")):
        where = f"{path.name}:{line}"
        image = basename(lenient_text(row["filename"]))
        if not image:
            raise DataError(f"{where}: filename is empty (rule: record_fields)")
        words = caption_words(_title(row["title"], where))
        per_image[image] += 1
        lengths.append(len(words))
        hits.append(sum(word in keywords for word in words))
        distinct.update(words)
    if not lengths:
        raise DataError(f"{path}: no caption row (rule: csv_nonempty)")
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
