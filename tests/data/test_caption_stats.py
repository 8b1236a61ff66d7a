"""Text statistics of caption CSVs: a small table worked by hand, the real test CSVs re-counted with csv,
in words and in tokens (captions and long-text proxies)."""

from __future__ import annotations

import csv
import json
import re
import statistics

import pytest
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.data.caption_stats import caption_text_stats, caption_token_stats, length_stats
from rsvl.data.ker_vocabulary import default_vocabulary
from rsvl.errors import DataError
from rsvl.models.token_counts import tokenizer_by_name

runner = CliRunner()
CLIP, MINILM = "ViT-B-32", "rsvl-effnetlite0-minilm"


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return {CLIP: tokenizer_by_name(CLIP), MINILM: tokenizer_by_name(MINILM)}

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


def test_token_stats_of_a_small_table_by_hand(tmp_path, tokenizers):
    path = tmp_path / "caps.csv"
    path.write_text(TABLE, encoding="utf-8")
    stats = caption_token_stats(path, tokenizers)
    # tokens with start and end, the same under both tokenizers: "two green trees near a river ." 7 + 2,
    # "a road , 2 cars" 5 + 2, "storage tanks" 2 + 2, "" 0 + 2; proxies of x.jpg "Two green trees near a
    # river. A road, 2 cars." 13 + 2 and y.png "Storage tanks." 3 + 2; z.png (blank only) has none
    captions = {"count": 4, "mean": 5.5, "median": 5.5, "p95": 7 + 0.85 * (9 - 7), "max": 9,
                "over_77": 0, "over_77_share": 0.0, "over_248": 0, "over_248_share": 0.0}
    proxies = {"count": 2, "mean": 10.0, "median": 10.0, "p95": 5 + 0.95 * (15 - 5), "max": 15,
               "over_77": 0, "over_77_share": 0.0, "over_248": 0, "over_248_share": 0.0}
    assert stats == {CLIP: {"context_length": 77, "captions": pytest.approx(captions),
                            "long_text_proxies": pytest.approx(proxies)},
                     MINILM: {"context_length": 64, "captions": pytest.approx(captions),
                              "long_text_proxies": pytest.approx(proxies)}}


def test_length_stats_counts_texts_over_each_limit():
    assert length_stats([3, 80, 77, 300, 249], limits=(77, 248)) == pytest.approx({
        "count": 5, "mean": 709 / 5, "median": 80.0, "p95": 249 + 0.8 * (300 - 249), "max": 300,
        "over_77": 3, "over_77_share": 0.6, "over_248": 2, "over_248_share": 0.4})
    assert length_stats([10, 20], limits=(15,))["over_15"] == 1


def test_text_stats_command_prints_the_stats_as_json(tmp_path, tokenizers):
    path = tmp_path / "caps.csv"
    path.write_text(TABLE, encoding="utf-8")
    result = runner.invoke(app, ["data", "text-stats", str(path), "--no-tokens"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == caption_text_stats(path)
    result = runner.invoke(app, ["data", "text-stats", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {**caption_text_stats(path), "tokens": caption_token_stats(path, tokenizers)}
    result = runner.invoke(app, ["data", "text-stats", str(path), "--tokenizer", CLIP])
    assert list(json.loads(result.output)["tokens"]) == [CLIP]
    result = runner.invoke(app, ["data", "text-stats", str(path), "--tokenizer", "no-such-model"])
    assert result.exit_code == 1 and "unknown architecture 'no-such-model'" in result.output


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


def _sentence(caption: str) -> str:
    """A caption as a sentence, the rule of rsvl.data.long_text.as_sentence written out again."""
    text = " ".join(caption.split())
    while len(text) > 1 and text[-1] in ".!?" and text[-2] == " ":
        text = text[:-2] + text[-1]
    if text[-1] not in ".!?":
        text += "."
    return text[0].upper() + text[1:]


def _lengths(tokenizer, texts: list[str]) -> list[int]:
    """Token counts read off the tokenizer's own output: ids before the zero padding of a wide context."""
    ids = tokenizer(texts, context_length=512)
    assert (ids[:, -1] == 0).all()  # every text fits, so nothing was truncated
    return [int((row != 0).sum()) for row in ids]


# texts over 77 tokens as measured (the direct tokenization below agrees): every caption fits, some proxies do not
# (NWPU, left out for time: 473 of 3,150 proxies under CLIP's BPE, 431 under MiniLM's WordPiece)
OVER_77 = {"rsicd": {CLIP: 36, MINILM: 37}, "rsitmd": {CLIP: 61, MINILM: 59}}


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["rsicd", "rsitmd"])
def test_real_token_stats_match_a_direct_tokenization(shared_data, tokenizers, dataset):
    path = shared_data / "captions_text" / "iEBAKER_test_csv" / f"{dataset}_test.csv"
    by_image: dict[str, dict[str, str]] = {}
    captions = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            captions.append(row["title"])
            seen = by_image.setdefault(row["filename"].rsplit("/", 1)[-1], {})
            if row["title"].strip():
                seen.setdefault(_sentence(row["title"]).lower(), _sentence(row["title"]))
    proxies = [" ".join(seen.values()) for seen in by_image.values() if seen]
    stats = caption_token_stats(path, tokenizers)
    for name, tokenizer in tokenizers.items():
        for key, texts in (("captions", captions), ("long_text_proxies", proxies)):
            lengths = _lengths(tokenizer, texts)
            measured = stats[name][key]
            assert measured["count"] == len(texts)
            assert measured["mean"] == pytest.approx(statistics.fmean(lengths))
            assert measured["median"] == statistics.median(lengths)
            assert measured["p95"] == pytest.approx(percentile_95(lengths))
            assert measured["max"] == max(lengths)
            for limit in (77, 248):
                over = sum(length > limit for length in lengths)
                assert measured[f"over_{limit}"] == over
                assert measured[f"over_{limit}_share"] == pytest.approx(over / len(texts))
        assert stats[name]["captions"]["over_77"] == 0
        assert stats[name]["long_text_proxies"]["over_77"] == OVER_77[dataset][name]
