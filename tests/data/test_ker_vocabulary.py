"""The KER vocabulary rule on small captions worked by hand, its file, and the packaged file from the real captions."""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsvl.cli import app
from rsvl.data.ker_vocabulary import (
    DATASET_FILES,
    KER_VOCABULARY,
    STOP_WORDS,
    CaptionSource,
    build_vocabulary,
    caption_words,
    dataset_captions,
    default_vocabulary,
    load_vocabulary,
    top_tag_words,
    write_vocabulary,
)
from rsvl.errors import DataError

runner = CliRunner()

CAPTIONS = [
    "Many green trees near a river.",
    "Two green trees and a red roof; the roof is red.",
    "A U-shaped pool's edge, 2 pools.",
]


def test_caption_words_are_lower_cased_ascii_letter_runs():
    assert caption_words(CAPTIONS[2]) == ["a", "u", "shaped", "pool", "s", "edge", "pools"]
    assert caption_words("Storage-Tanks x2,naïve") == ["storage", "tanks", "x", "na", "ve"]
    assert caption_words(" 12 . ") == []


def test_top_tag_words_ranks_counts_then_letters_without_stop_words():
    # by hand: green, red, roof, trees twice; edge, many, near, pool, pools, river, shaped, two, u once;
    # a, and, the, is, s are stop words
    assert top_tag_words(CAPTIONS, top=6) == ["green", "red", "roof", "trees", "edge", "many"]
    assert top_tag_words(CAPTIONS) == ["green", "red", "roof", "trees", "edge", "many", "near", "pool", "pools",
                                       "river", "shaped", "two", "u"]
    assert top_tag_words(["the a of is"]) == []
    with pytest.raises(ValueError, match="positive"):
        top_tag_words(CAPTIONS, top=0)


def test_stop_words_keep_spatial_words_and_numerals():
    assert {"a", "the", "is", "of", "and", "aren", "t"} <= STOP_WORDS
    assert not {"near", "next", "around", "beside", "two", "several", "many"} & STOP_WORDS
    assert all(word.isascii() and word.isalpha() and word.islower() for word in STOP_WORDS)


def write_tree(root: Path) -> dict[str, bytes]:
    """A captions_text tree with the files DATASET_FILES names; returns each file's bytes."""
    files = {
        "AMFMN_precomp/rsicd_precomp/train_caps.txt": b"green trees near a river\n\nmany green trees\n",
        "AMFMN_precomp/rsicd_precomp/test_caps.txt": b"a river near the road\n",
        "AMFMN_precomp/rsitmd_precomp/train_caps.txt": b"white storage tanks\nwhite roofs\n",
        "AMFMN_precomp/rsitmd_precomp/test_caps.txt": b"two white planes\n",
        "iEBAKER_test_csv/nwpu_test.csv": b'filename,title\n/x/a.jpg,a bare desert\n/x/a.jpg,"desert, dunes and desert"\n',
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_dataset_captions_read_every_file_of_a_dataset_without_blank_lines(tmp_path):
    write_tree(tmp_path)
    assert dataset_captions(tmp_path, "rsicd") == ["green trees near a river", "many green trees",
                                                   "a river near the road"]
    assert dataset_captions(tmp_path, "nwpu") == ["a bare desert", "desert, dunes and desert"]
    with pytest.raises(DataError, match="unknown KER dataset 'ucm'"):
        dataset_captions(tmp_path, "ucm")
    (tmp_path / DATASET_FILES["rsitmd"][1]).unlink()
    with pytest.raises(DataError, match=r"test_caps\.txt: caption file not found"):
        dataset_captions(tmp_path, "rsitmd")


def test_caption_files_must_be_utf8_csv_with_title(tmp_path):
    write_tree(tmp_path)
    (tmp_path / DATASET_FILES["nwpu"][0]).write_bytes(b"filename,caption\n/x/a.jpg,a desert\n")
    with pytest.raises(DataError, match=r"nwpu_test\.csv: header \['filename', 'caption'\] lacks the column 'title'"):
        dataset_captions(tmp_path, "nwpu")
    (tmp_path / DATASET_FILES["nwpu"][0]).write_bytes(b"filename,title\n/x/a.jpg,caf\xe9\n")
    with pytest.raises(DataError, match=r"nwpu_test\.csv: caption text is not UTF-8 .*caption_utf8"):
        dataset_captions(tmp_path, "nwpu")


def test_build_vocabulary_unions_the_top_words_of_each_dataset(tmp_path):
    files = write_tree(tmp_path)
    vocab = build_vocabulary(tmp_path, top=3)
    # by hand: rsicd green/near/river/trees twice (alphabetical cut at 3), rsitmd white 3 times then
    # planes, roofs, storage, tanks, two once; nwpu desert 3 times, bare and dunes once
    assert vocab.per_dataset == {"rsicd": ["green", "near", "river"], "rsitmd": ["white", "planes", "roofs"],
                                 "nwpu": ["desert", "bare", "dunes"]}
    assert vocab.words == ["bare", "desert", "dunes", "green", "near", "planes", "river", "roofs", "white"]
    assert vocab.sources == [CaptionSource(dataset, rel, count, hashlib.sha256(files[rel]).hexdigest())
                             for (dataset, rel), count in zip(
                                 [(d, rel) for d, rels in DATASET_FILES.items() for rel in rels], [2, 1, 2, 1, 2])]


def test_vocabulary_file_names_rule_and_sources_then_lists_the_words(tmp_path):
    files = write_tree(tmp_path)
    vocab = build_vocabulary(tmp_path, top=3)
    path = write_vocabulary(vocab, tmp_path / "out" / "ker.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert lines[:len(header)] == header and lines[len(header):] == vocab.words
    assert any("top 3 by count, ties alphabetical" in line for line in header)
    for rel, data in files.items():
        assert any(f"captions_text/{rel}" in line and hashlib.sha256(data).hexdigest() in line for line in header)
    assert f"# words: {len(vocab.words)}" in header
    assert load_vocabulary(path) == vocab.words
    again = write_vocabulary(build_vocabulary(tmp_path, top=3), tmp_path / "again.txt")
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("body", "message"), [
    ("# h\nriver\nbare\n", r"ker\.txt:3: 'bare' does not come after 'river'.*ker_sorted"),
    ("bare\nbare\n", r"ker\.txt:2: 'bare' does not come after 'bare'"),
    ("bare\nRiver\n", r"ker\.txt:2: 'River' is not one lower-case ASCII word.*ker_word"),
    ("bare\n\n", r"ker\.txt:2: '' is not one"),
    ("# only a header\n", r"holds no word.*ker_nonempty"),
])
def test_load_vocabulary_names_the_line_and_rule(tmp_path, body, message):
    (tmp_path / "ker.txt").write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_vocabulary(tmp_path / "ker.txt")


def test_load_vocabulary_missing_file_says_how_to_write_it(tmp_path):
    with pytest.raises(DataError, match="rsvl data ker-vocabulary"):
        load_vocabulary(tmp_path / "nope.txt")


def test_the_packaged_vocabulary_ships_with_the_package(repo_root):
    words = default_vocabulary()
    assert words == load_vocabulary(KER_VOCABULARY) and not set(words) & STOP_WORDS
    patterns = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rsvl"]
    relative = KER_VOCABULARY.relative_to(repo_root / "src" / "rsvl").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


@pytest.mark.real_data
def test_real_captions_regenerate_the_packaged_vocabulary_byte_for_byte(shared_data, tmp_path):
    root = shared_data / "captions_text"
    out = tmp_path / "ker_vocabulary.txt"
    result = runner.invoke(app, ["data", "ker-vocabulary", "--captions", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == KER_VOCABULARY.read_bytes()
    words = load_vocabulary(out)
    assert result.output == f"{len(words)} words (rsicd 512, rsitmd 512, nwpu 512) written to {out}\n"


@pytest.mark.real_data
def test_real_dataset_captions_are_every_caption_once(shared_data):
    root = shared_data / "captions_text"
    rsicd = dataset_captions(root, "rsicd")
    lines = [line for rel in DATASET_FILES["rsicd"] for line in (root / rel).read_text().splitlines()]
    # the README's RSICD size: 10,921 images with 5 captions each, none blank
    assert len(rsicd) == len(lines) == 10921 * 5
    assert dataset_captions(root, "nwpu")[0] == "A gray plane on the runway and the lawn beside ."
    assert len(dataset_captions(root, "nwpu")) == 15750

