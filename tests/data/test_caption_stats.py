"""Text statistics of caption CSVs: a small table worked by hand, the real RSICD test CSV re-counted with csv."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.data.caption_stats import caption_text_stats
from rsvl.data.ker_vocabulary import default_vocabulary
from rsvl.errors import DataError

runner = CliRunner()

TABLE = (
    "filename,title\n"
    "/a/x.jpg,Two green trees near a river .\n"
    "C:\\b\\x.jpg,\"a road, 2 cars\"\n"
    "/c/y.png,storage tanks\n"
    "/c/z.png,\n"
)
VOCAB = ["green", "river", "tanks", "trees"]


def test_stats_of_a_small_table_by_hand(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text(TABLE, encoding="utf-8")
    stats = caption_text_stats(path, VOCAB)
    # words per caption 6, 3, 2, 0; keywords 3 (green trees river), 0, 1 (tanks), 0; images x.jpg twice
    assert stats.pop("csv") == str(path)
    assert stats == pytest.approx({
        "rows": 4, "images": 3,
        "captions_per_image_min": 1, "captions_per_image_mean": 4 / 3, "captions_per_image_max": 2,
        "words_per_caption_mean": 2.75, "words_per_caption_median": 2.5,
        "words_per_caption_p95": 3 + 0.85 * (6 - 3), "words_per_caption_max": 6,
        "distinct_words": 10, "keyword_vocabulary": 4,
        "keyword_caption_share": 0.5, "keywords_per_caption_mean": 1.0,
    }, rel=1e-12)


def test_text_stats_command_prints_the_stats_as_json(tmp_path):
    path = tmp_path / "caps.csv"
    path.write_text(TABLE, encoding="utf-8")
    result = runner.invoke(app, ["data", "text-stats", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == caption_text_stats(path)


@pytest.mark.parametrize(("body", "message"), [
    ("image,title\nx.jpg,a\n", r"caps\.csv: header .* lacks the columns \['filename'\]"),
    ("filename,title\n/a/,a road\n", r"caps\.csv:2: filename is empty"),
    ("filename,title\n", r"caps\.csv: no caption row"),
])
def test_bad_tables_name_file_line_and_rule(tmp_path, body, message):
    (tmp_path / "caps.csv").write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        caption_text_stats(tmp_path / "caps.csv", VOCAB)


def test_bad_title_bytes_and_missing_file(tmp_path):
    (tmp_path / "caps.csv").write_bytes(b"filename,title\nx.jpg,ok\ny.jpg,caf\xe9\n")
    with pytest.raises(DataError, match=r"caps\.csv:3: title is not valid UTF-8.*caption_utf8"):
        caption_text_stats(tmp_path / "caps.csv", VOCAB)
    with pytest.raises(DataError, match="caption CSV not found"):
        caption_text_stats(tmp_path / "nope.csv")
    result = runner.invoke(app, ["data", "text-stats", str(tmp_path / "nope.csv")])
    assert result.exit_code == 1 and "caption CSV not found" in result.output


def percentile_95(values: list[int]) -> float:
    """Linear interpolation between the closest ranks (numpy's default method), written out."""
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


@pytest.mark.real_data
def test_real_rsicd_test_csv_stats_match_an_independent_count(shared_data):
    path = shared_data / "captions_text" / "iEBAKER_test_csv" / "rsicd_test.csv"
    vocabulary = set(default_vocabulary())
    per_image: dict[str, int] = {}
    words: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            image = row["filename"].rsplit("/", 1)[-1]
            per_image[image] = per_image.get(image, 0) + 1
            words.append([w.lower() for w in re.findall("[A-Za-z]+", row["title"])])
    lengths = [len(w) for w in words]
    hits = [sum(word in vocabulary for word in w) for w in words]
    stats = caption_text_stats(path)
    assert (stats["rows"], stats["images"]) == (len(words), len(per_image)) == (5465, 1093)
    assert (stats["captions_per_image_min"], stats["captions_per_image_max"]) == (min(per_image.values()),
                                                                                   max(per_image.values()))
    assert stats["captions_per_image_mean"] == pytest.approx(len(words) / len(per_image))
    assert stats["words_per_caption_mean"] == pytest.approx(statistics.fmean(lengths))
    assert stats["words_per_caption_median"] == statistics.median(lengths)
    assert stats["words_per_caption_p95"] == pytest.approx(percentile_95(lengths))
    assert stats["words_per_caption_max"] == max(lengths)
    assert stats["distinct_words"] == len({word for w in words for word in w})
    assert stats["keyword_vocabulary"] == len(vocabulary)
    assert stats["keyword_caption_share"] == pytest.approx(sum(h > 0 for h in hits) / len(hits))
    assert stats["keywords_per_caption_mean"] == pytest.approx(statistics.fmean(hits))
