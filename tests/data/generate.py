"""Generate the tiny per-adapter fixtures under ``tests/data/<format>/``, byte for byte.

Run ``python tests/data/generate.py`` (or ``--out DIR`` to write elsewhere) and commit the result.
Every fixture mimics the layout of one public dataset that an adapter in
:mod:`rsvl.data.adapters` reads, with synthetic pixels and synthetic text only (no real image,
caption or question is copied). Each holds a few valid records of every kind the adapter reads
and a few invalid ones it must quarantine; :data:`QUARANTINE` is the specification of the
quarantine records each fixture must produce (``where`` -> rule), the one thing tests take from
here rather than from the fixture files.

Bytes are the same on every machine: pixel and band values come from integer arithmetic (no RNG,
no float kernels), and PNG, TIFF, JPEG and NPZ files are written by the small encoders below
(fixed-Huffman deflate, uncompressed TIFF, a flat baseline JPEG, stored zip entries dated
1980-01-01) instead of by libraries whose output changes between versions. Only the
CrisisLandMark fixture uses library writers (``metadata.parquet`` with pyarrow, ``*.h5`` with
h5py): their bytes are those of the versions pinned in ``requirements.lock``.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import io
import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

FORMATS = (
    "amfmn",
    "bigearthnet",
    "caption-csv",
    "captions-json",
    "class-folder",
    "coco",
    "crisislandmark",
    "hrsid-boxes",
    "hrsid-tiles",
    "karpathy",
    "rsvqa",
)
"""One fixture folder per registered adapter format."""

QUARANTINE: dict[str, dict[str, str]] = {
    "captions-json": {
        "captions.json#1.captions[3]": "caption_nonempty",
        "captions.json#1.captions[4]": "record_fields",
        "captions.json#3": "file_exists",
        "captions.json#4": "split_value",
        "captions.json#5": "image_size",
        "captions.json#6": "image_decode",
        "captions.json#7": "record_fields",
        "captions.json#8": "captions_nonempty",
    },
    "karpathy": {
        "dataset_ucm.json#2.sentences[1]": "record_fields",
        "dataset_ucm.json#2.sentences[2]": "caption_nonempty",
        "dataset_ucm.json#5": "unique_id",
        "dataset_ucm.json#6": "split_value",
        "dataset_ucm.json#7.sentences[0]": "caption_nonempty",
        "dataset_ucm.json#7.sentences[1]": "caption_nonempty",
        "dataset_ucm.json#7": "captions_nonempty",
        "dataset_ucm.json#8": "file_exists",
        "dataset_ucm.json#9": "record_fields",
    },
    "caption-csv": {
        "rsitmd_test.csv:4": "caption_nonempty",
        "rsitmd_test.csv:9": "caption_utf8",
        "rsitmd_test.csv:10": "file_exists",
        "rsitmd_test.csv:11": "record_fields",
        "rsitmd_test.csv:13": "unique_id",
    },
    "amfmn": {
        "train_caps.txt:3": "caption_nonempty",
        "train_caps.txt:8": "caption_utf8",
        **{f"train_caps.txt:{line}": "file_exists" for line in range(11, 16)},
        "test_caps.txt:6": "split_consistent",
        "test_caps.txt:7": "record_fields",
    },
    "rsvqa/RSVQA-LR": {
        "LR_split_train_questions.json#3": "image_listed",
        "LR_split_train_questions.json#5": "answer_exists",
        "LR_split_train_questions.json#6": "record_fields",
        "LR_split_train_questions.json#7": "image_absent",
        "LR_split_train_questions.json#8": "unique_id",
        "LR_split_train_images.json#3": "questions_present",
    },
    "rsvqa/HRVQA": {
        "train_question.json#2": "answer_exists",
        "train_question.json#3": "record_fields",
        "train_question.json#4": "image_absent",
        "train_question.json#5": "image_decode",
    },
    "coco": {
        "instances_train.json:annotations[1]": "box_bounds",
        "instances_train.json:annotations[2]": "box_label",
        "instances_train.json:annotations[3]": "box_fields",
        "instances_train.json:annotations[5]": "image_ref",
        "instances_train.json:images[2]": "file_exists",
        "instances_train.json:images[3]": "image_size",
        "instances_train.json:images[4]": "unique_id",
        "instances_train.json:images[5]": "split_value",
        "instances_train.json:images[6]": "image_fields",
    },
    "hrsid-boxes": {
        "ship_boxes.json:P0001_0_800_0_800.png[1]": "box_bounds",
        "ship_boxes.json:P0001_0_800_0_800.png[2]": "box_fields",
        "ship_boxes.json:P0001_0_800_0_800.tif": "unique_id",
        "ship_boxes.json:P0003_0_800_1600_2400.png": "sar_single_channel",
        "ship_boxes.json:P0004_800_1600_0_800.png": "mask_size",
        "ship_boxes.json:P0005_800_1600_800_1600.png": "file_exists",
        "ship_boxes.json:P0007_1600_2400_0_800.png": "image_decode",
        "images/P0006_800_1600_1600_2400.png": "not_listed",
    },
    "hrsid-tiles": {
        "ship_boxes.json:P0101_0_400_0_400.png[2]": "tile_box_lost",
        "ship_boxes.json:P0101_0_400_0_400.png[3]": "box_bounds",
        "ship_boxes.json:P0102_0_64_0_64.png": "tile_size",
    },
    "bigearthnet": {
        "labels.csv:5": "split_value",
        "labels.csv:6": "label_value",
        "labels.csv:7": "file_exists",
        "labels.csv:8": "band_count",
        "labels.csv:9": "band_shape",
        "labels.csv:10": "finite_values",
        "labels.csv:11": "array_decode",
    },
    "crisislandmark": {
        "broken.h5": "array_decode",
        "s2_000.h5:dup_0001": "unique_id",
        "metadata.parquet:3": "split_value",
        "metadata.parquet:4": "label_value",
        "metadata.parquet:5": "label_value",
        "metadata.parquet:6": "file_exists",
        "metadata.parquet:7": "band_count",
        "metadata.parquet:8": "finite_values",
        "metadata.parquet:9": "coords",
        "metadata.parquet:10": "crs",
        "metadata.parquet:11": "timestamp",
        "metadata.parquet:12": "array_decode",
        "metadata.parquet:13": "band_shape",
    },
    "class-folder": {
        "labels.csv:5": "split_value",
        "labels.csv:7": "file_exists",
    },
}
"""Per fixture (folder below ``tests/data``): the quarantine records ingest must write, ``where`` -> rule."""

NOT_AN_IMAGE = b"synthetic fixture: these bytes are deliberately not an image\n"

# --- byte-exact encoders --------------------------------------------------------------------------

_LENGTH_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
                131, 163, 195, 227, 258)
_LENGTH_EXTRA = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)


class _BitWriter:
    """Pack bits least-significant first, as deflate stores them."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.value = 0
        self.count = 0

    def bits(self, value: int, count: int) -> None:
        self.value |= value << self.count
        self.count += count
        while self.count >= 8:
            self.out.append(self.value & 0xFF)
            self.value >>= 8
            self.count -= 8

    def code(self, code: int, count: int) -> None:
        """Write a Huffman code, whose bits deflate stores most-significant first."""
        self.bits(int(format(code, f"0{count}b")[::-1], 2), count)

    def finish(self) -> bytes:
        if self.count:
            self.out.append(self.value & 0xFF)
        return bytes(self.out)


def _symbol(writer: _BitWriter, symbol: int) -> None:
    if symbol < 144:
        writer.code(0x30 + symbol, 8)
    elif symbol < 256:
        writer.code(0x190 + symbol - 144, 9)
    elif symbol < 280:
        writer.code(symbol - 256, 7)
    else:
        writer.code(0xC0 + symbol - 280, 8)


def zlib_rle(data: bytes) -> bytes:
    """Compress ``data`` into a zlib stream: one fixed-Huffman block, runs as distance-1 matches.

    The output depends on nothing but ``data`` (unlike zlib's own compressor, whose output
    changes between zlib and zlib-ng builds); it is checked by decompressing it again.

    Args:
        data: Bytes to compress.

    Returns:
        A complete zlib stream (header, deflate data, Adler-32).
    """
    writer = _BitWriter()
    writer.bits(1, 1)  # final block
    writer.bits(1, 2)  # fixed Huffman codes
    index, size = 0, len(data)
    while index < size:
        byte = data[index]
        _symbol(writer, byte)
        index += 1
        run = 0
        while index + run < size and run < 258 and data[index + run] == byte:
            run += 1
        if run >= 3:
            code = bisect.bisect_right(_LENGTH_BASE, run) - 1
            _symbol(writer, 257 + code)
            writer.bits(run - _LENGTH_BASE[code], _LENGTH_EXTRA[code])
            writer.code(0, 5)  # distance code 0: distance 1
            index += run
    _symbol(writer, 256)
    stream = b"\x78\x01" + writer.finish() + struct.pack(">I", zlib.adler32(data))
    if zlib.decompress(stream) != data:
        raise AssertionError("zlib_rle produced a stream that does not decompress to its input")
    return stream


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode 8-bit pixels (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA as a PNG.

    Args:
        pixels: The image.

    Returns:
        The PNG file's bytes (filter 0 on every row, :func:`zlib_rle` compression).
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    colour_type = 0 if pixels.ndim == 2 else {3: 2, 4: 6}[pixels.shape[2]]
    height, width = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib_rle(raw)) + chunk(b"IEND", b"")


def tiff_bytes(pixels: np.ndarray) -> bytes:
    """Encode 8-bit pixels (H, W) grey or (H, W, 3) RGB as an uncompressed little-endian TIFF.

    Args:
        pixels: The image.

    Returns:
        The TIFF file's bytes: one IFD, one strip.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    body = pixels.tobytes()
    n_entries = 10
    ifd_size = 2 + 12 * n_entries + 4
    bits_offset = 8 + ifd_size
    data_offset = bits_offset + (2 * channels if channels > 2 else 0)
    bits_value = bits_offset if channels > 2 else 8
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, channels, bits_value),
        (259, 3, 1, 1),
        (262, 3, 1, 2 if channels == 3 else 1),
        (273, 4, 1, data_offset),
        (277, 3, 1, channels),
        (278, 4, 1, height),
        (279, 4, 1, len(body)),
        (284, 3, 1, 1),
    ]
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", n_entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<I", value) if kind == 4 or count > 2 else struct.pack("<HH", value, 0)
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0)
    if channels > 2:
        out += struct.pack("<" + "H" * channels, *([8] * channels))
    return bytes(out + body)


def jpeg_grey_bytes(level: int) -> bytes:
    """Encode a flat 8x8 grey baseline JPEG whose every pixel decodes to ``level``.

    One block with only a DC coefficient, quantisation step 8 (so the coefficient is
    ``level - 128``), a one-symbol DC table and a one-symbol (end-of-block) AC table.

    Args:
        level: Grey level, 0..255.

    Returns:
        The JPEG file's bytes.
    """
    diff = level - 128
    size = abs(diff).bit_length()
    value = diff if diff >= 0 else diff + (1 << size) - 1
    bits = "0" + (format(value, f"0{size}b") if size else "") + "0"
    bits += "1" * (-len(bits) % 8)
    scan = bytearray()
    for start in range(0, len(bits), 8):
        byte = int(bits[start:start + 8], 2)
        scan += bytes([byte, 0]) if byte == 0xFF else bytes([byte])

    def segment(marker: int, body: bytes) -> bytes:
        return struct.pack(">HH", marker, len(body) + 2) + body

    counts = bytes([1] + [0] * 15)
    return (b"\xff\xd8"
            + segment(0xFFDB, b"\x00" + bytes([8] * 64))
            + segment(0xFFC0, struct.pack(">BHHB", 8, 8, 8, 1) + b"\x01\x11\x00")
            + segment(0xFFC4, b"\x00" + counts + bytes([size]))
            + segment(0xFFC4, b"\x10" + counts + b"\x00")
            + segment(0xFFDA, b"\x01\x01\x00\x00\x3f\x00")
            + bytes(scan) + b"\xff\xd9")


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Write arrays as an uncompressed ``.npz`` whose zip entries carry a fixed date.

    Args:
        arrays: Name -> array, stored in this order as ``<name>.npy``.

    Returns:
        The npz file's bytes (what :func:`numpy.load` reads).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            body = io.BytesIO()
            np.lib.format.write_array(body, np.ascontiguousarray(array), version=(1, 0), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, body.getvalue())
    return buffer.getvalue()


# --- synthetic content ----------------------------------------------------------------------------


def mix(*values: int) -> int:
    """A deterministic integer hash of integers (for pseudo-random but fixed pixel values)."""
    digest = hashlib.sha256(",".join(str(v) for v in values).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def texture(height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    """An 8-bit synthetic scene: integer gradients and stripes that differ per seed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    planes = [(x * (3 + seed + c) + y * (5 + 2 * c) + 37 * seed + ((x // 4 + y // 4) % 2) * 40) % 256
              for c in range(channels)]
    image = np.stack(planes, axis=-1).astype(np.uint8)
    return image[..., 0] if channels == 1 else image


def caption(seed: int, index: int) -> str:
    """A synthetic caption (never a real dataset caption)."""
    colours = ("red", "blue", "amber", "teal", "violet", "olive")
    shapes = ("squares", "stripes", "dots", "rings", "triangles")
    fields = ("a grey field", "a checkered plain", "a gradient strip", "a pale grid")
    return (f"synthetic tile {seed} with {2 + (seed + index) % 5} {colours[(seed + index) % 6]} "
            f"{shapes[(seed * 3 + index) % 5]} on {fields[index % 4]}")


def write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def json_bytes(document: object) -> bytes:
    """Serialise JSON the same way everywhere: one-space indent, UTF-8, final newline."""
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def lines_bytes(lines: list[bytes | str]) -> bytes:
    """Join text lines with ``\\n`` (strings UTF-8 encoded), ending with a newline."""
    return b"".join((line.encode("utf-8") if isinstance(line, str) else line) + b"\n" for line in lines)


# --- fixtures -------------------------------------------------------------------------------------


def captions_json(out: Path) -> None:
    """UCM/Sydney caption sample: ``captions.json`` keyed by image path, RGB TIFFs beside it."""
    ucm, sydney = "UCM_captions_imgs", "Sydney_captions_imgs"
    write(out / ucm / "1.tif", tiff_bytes(texture(16, 16, 1)))
    write(out / ucm / "2.tif", tiff_bytes(texture(16, 16, 2)))
    write(out / sydney / "1.tif", tiff_bytes(texture(16, 24, 3)))
    write(out / ucm / "5.tif", tiff_bytes(texture(16, 16, 5)))
    write(out / ucm / "6.tif", NOT_AN_IMAGE)

    def entry(split, captions, size=(16, 16)):
        return {"size": list(size), "mode": "RGB", "split": split, "captions": captions}

    five = [caption(1, i) for i in range(5)]
    entries = {
        f"{ucm}/1.tif": entry("train", five),
        f"{ucm}/2.tif": entry("val", [caption(2, 0), caption(2, 1), caption(2, 2), "   ", 7]),
        f"{sydney}/1.tif": entry("test", [caption(3, 0), "  two   spaces\tand a tab  ", caption(3, 2),
                                          caption(3, 3), caption(3, 4)], size=(24, 16)),
        f"{ucm}/3.tif": entry("train", [caption(4, 0)]),
        f"{ucm}/4.tif": entry("dev", [caption(5, 0)]),
        f"{ucm}/5.tif": entry("train", [caption(6, 0)], size=(32, 32)),
        f"{ucm}/6.tif": entry("train", [caption(7, 0)]),
        "../outside.tif": entry("train", [caption(8, 0)]),
        f"{ucm}/7.tif": entry("train", []),
    }
    write(out / "captions.json", json_bytes(entries))


def karpathy(out: Path) -> None:
    """Karpathy-style ``dataset_ucm.json``, stored in GB18030 as the RSICD release is; TIFFs in ``images/``."""
    for number in (1, 2, 3, 4):
        write(out / "images" / f"{number}.tif", tiff_bytes(texture(16, 16, 10 + number)))
    write(out / "images" / "sub" / "8.tif", tiff_bytes(texture(8, 8, 18)))
    sentence_id = 0

    def entry(image_id, filename, split, raws, **extra):
        nonlocal sentence_id
        sentences = []
        for raw in raws:
            sentence = {"tokens": raw.split() if isinstance(raw, str) else [], "raw": raw,
                        "imgid": image_id, "sentid": sentence_id}
            if raw is None:
                del sentence["raw"]
            sentences.append(sentence)
            sentence_id += 1
        record = {"filename": filename, "imgid": image_id, "sentences": sentences, "split": split,
                  "sentids": [s["sentid"] for s in sentences], **extra}
        return {key: value for key, value in record.items() if value is not None}

    images = [
        entry(0, "1.tif", "train", [caption(11, i) for i in range(5)]),
        entry(1, "2.tif", "restval", [caption(12, i) for i in range(4)] + ["a harbour at 45° north"]),
        entry(2, "3.tif", "val", [caption(13, 0), None, "", caption(13, 3)]),
        entry(3, "4.tif", "test", [caption(14, i) for i in range(3)]),
        entry(4, "8.tif", "val", [caption(18, 0)], filepath="sub"),
        entry(5, "1.tif", "train", [caption(15, 0)]),
        entry(6, "5.tif", "dev", [caption(16, 0)]),
        entry(7, "6.tif", "train", [" ", "\t"]),
        entry(8, "7.tif", "test", [caption(17, 0)]),
        entry(9, None, "train", [caption(19, 0)]),
    ]
    text = json.dumps({"images": images, "dataset": "ucm"}, indent=1, ensure_ascii=False) + "\n"
    write(out / "dataset_ucm.json", text.encode("gb18030"))


def caption_csv(out: Path) -> None:
    """iEBAKER ``filename,title`` test CSV (split from the file name), TIFF/PNG images in ``images/``."""
    write(out / "images" / "boat_0.tif", tiff_bytes(texture(16, 16, 20)))
    write(out / "images" / "harbor_1.tif", tiff_bytes(texture(12, 16, 21)))
    write(out / "images" / "dup_4.tif", tiff_bytes(texture(8, 8, 22)))
    write(out / "images" / "dup_4.png", png_bytes(texture(8, 8, 23)))
    rows = [
        b"filename,title",
        *[f"/home/user/RSITMD/images/boat_0.tif,{caption(20, i)}".encode() for i in range(2)],
        b"/home/user/RSITMD/images/boat_0.tif,   ",
        f'/home/user/RSITMD/images/boat_0.tif,"{caption(20, 3)}, seen from above"'.encode(),
        f"/home/user/RSITMD/images/boat_0.tif,{caption(20, 4)}".encode(),
        f"C:\\data\\RSITMD\\harbor_1.tif,{caption(21, 0)}".encode(),
        f"C:\\data\\RSITMD\\harbor_1.tif,{caption(21, 1)}".encode(),
        b"/home/user/RSITMD/images/beach_3.tif,sand \xff\xfe dunes",
        f"/home/user/RSITMD/images/plane_9.tif,{caption(24, 0)}".encode(),
        f",{caption(25, 0)}".encode(),
        f"/home/user/RSITMD/images/dup_4.tif,{caption(22, 0)}".encode(),
        f"/home/user/RSITMD/images/dup_4.png,{caption(23, 0)}".encode(),
    ]
    write(out / "rsitmd_test.csv", lines_bytes(rows))


def amfmn(out: Path) -> None:
    """AMFMN ``ucm_precomp``: train captions 5 per file name, test line for line, a ``*_verify`` file ignored."""
    for number in (1, 2, 3, 4):
        write(out / "images" / f"{number}.tif", tiff_bytes(texture(8, 8, 30 + number)))
    train_names = ["1.tif", "2.tif", "9.tif"]
    train_caps: list[bytes | str] = [caption(31, i) for i in range(5)] + [caption(32, i) for i in range(5)]
    train_caps[2] = "  "
    train_caps[7] = b"bad bytes \xc3\x28 here"
    train_caps += [caption(39, i) for i in range(5)]
    test_names = ["3.tif", "3.tif", "3.tif", "4.tif", "4.tif", "1.tif", ""]
    test_caps = [caption(33, 0), caption(33, 1), caption(33, 2), caption(34, 0), caption(34, 1),
                 caption(31, 9), caption(35, 0)]
    write(out / "train_caps.txt", lines_bytes(train_caps))
    write(out / "train_filename.txt", lines_bytes(train_names))
    write(out / "test_caps.txt", lines_bytes(test_caps))
    write(out / "test_filename.txt", lines_bytes(test_names))
    write(out / "train_caps_verify.txt", lines_bytes([caption(36, 0)]))
    write(out / "train_filename_verify.txt", lines_bytes(["1.tif"]))


def _rsvqa_lr(out: Path) -> None:
    for image_id in (1, 2, 5, 7):
        write(out / "Images_LR" / f"{image_id}.tif", tiff_bytes(texture(16, 16, 40 + image_id)))

    def image(image_id, active, questions):
        return {"id": image_id, "original_name": f"S2X_SYNTHETIC_{image_id:04d}.tif", "sensor": "S2",
                "people_id": 0, "type": "RGB", "questions_ids": questions, "active": active}

    def question(qid, img_id, kind, text, active=True):
        return {"id": qid, "date_added": 1500000000 + qid, "img_id": img_id, "people_id": 0, "type": kind,
                "question": text, "answers_ids": [qid], "active": active}

    def answer(qid, text, active=True):
        return {"id": qid, "date_added": 1500000000 + qid, "question_id": qid, "people_id": 0,
                "answer": text, "active": active}

    train_questions = [
        question(100, 1, "presence", "Is a synthetic square present?"),
        question(101, 1, "count", "How many synthetic stripes are there?"),
        question(102, 2, "rural_urban", "Is this synthetic tile rural or urban?"),
        question(103, 3, "presence", "Is a synthetic ring present?"),
        question(104, 1, "comp", "Is the square left of the ring?", active=False),
        question(105, 2, "presence", "Is a synthetic dot present?"),
        question(106, 2, "presence", "   "),
        question(107, 6, "count", "How many synthetic dots are there?"),
        question(108, 7, "presence", "Is a synthetic triangle present?"),
    ]
    train_answers = [answer(100, "yes"), answer(101, 4), answer(102, "rural"), answer(103, "no"),
                     answer(104, "no", active=False), answer(106, "yes"), answer(107, "2"), answer(108, "yes")]
    train_images = [image(1, True, [100, 101, 104]), image(2, True, [102, 105, 106]), image(3, False, [103]),
                    image(4, True, []), image(6, True, [107]), image(7, True, [108])]
    test_questions = [question(200, 5, "presence", "Is a synthetic stripe present?"),
                      question(201, 7, "rural_urban", "Is this synthetic tile rural or urban?")]
    test_answers = [answer(200, "no"), answer(201, "urban")]
    test_images = [image(5, True, [200]), image(7, True, [201]), image(1, False, [])]
    for stem, images, questions, answers in (("LR_split_train", train_images, train_questions, train_answers),
                                             ("LR_split_test", test_images, test_questions, test_answers)):
        write(out / f"{stem}_images.json", json_bytes({"images": images}))
        write(out / f"{stem}_questions.json", json_bytes({"questions": questions}))
        write(out / f"{stem}_answers.json", json_bytes({"answers": answers}))


def _hrvqa(out: Path) -> None:
    write(out / "images" / "9001.png", png_bytes(texture(16, 16, 51)))
    write(out / "images" / "9003.png", png_bytes(texture(16, 16, 53)))
    write(out / "images" / "9005.png", NOT_AN_IMAGE)

    def question(qid, image_id, kind, text):
        record = {"image_id": image_id, "question": text, "question_id": qid,
                  "image_name": f"2021_synthetic_RGB_hrl_{image_id}", "question_type": kind}
        return {key: value for key, value in record.items() if value is not None}

    train = [question(300, 9001, "scene", "What kind of synthetic scene is this?"),
             question(301, 9001, "color", "What is the color of the first synthetic square?"),
             question(302, 9002, "scene", "What kind of synthetic scene is that?"),
             question(303, 9002, "count", None),
             question(304, 9004, "scene", "What synthetic pattern covers the tile?"),
             question(305, 9005, "scene", "What synthetic pattern is at the top?")]
    answers = [{"multiple_choice_answer": text, "question_id": qid}
               for qid, text in ((300, "stripes"), (301, "red"), (303, "3"), (304, "dots"), (305, "rings"))]
    test = [question(400, 9003, "scene", "What synthetic pattern is in the middle?")]
    write(out / "jsons" / "train_question.json", json_bytes({"questions": train}))
    write(out / "jsons" / "train_answer.json", json_bytes({"annotations": answers}))
    write(out / "jsons" / "test_question.json", json_bytes({"questions": test}))


def rsvqa(out: Path) -> None:
    """RSVQA-LR (``LR_split_*`` JSON triples, ``Images_LR/``) and HRVQA (``jsons/``, ``images/``)."""
    _rsvqa_lr(out / "RSVQA-LR")
    _hrvqa(out / "HRVQA")


def coco(out: Path) -> None:
    """COCO detection JSON ``instances_train.json`` (SAR, per-image split fields) with PNGs in ``images/``."""
    for number in (1, 2, 4, 8):
        write(out / "images" / f"P{number:04d}.png", png_bytes(texture(16, 16, 60 + number, channels=1)))

    def image(image_id, file_name, split=None, width=16, height=16):
        record = {"id": image_id, "file_name": file_name, "width": width, "height": height, "split": split}
        return {key: value for key, value in record.items() if value is not None}

    def annotation(ann_id, image_id, bbox, category=1):
        return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": bbox,
                "area": (bbox[2] * bbox[3]) if len(bbox) == 4 else 0, "iscrowd": 0}

    document = {
        "info": {"description": "synthetic SAR fixture", "modality": "sar"},
        "images": [
            image(1, "P0001.png", "val"),
            image(2, "P0002.png"),
            image(3, "P0003.png", "train"),
            image(4, "P0004.png", "test", width=32),
            image(1, "P0005.png", "train"),
            image(6, "P0006.png", "holdout"),
            image(7, "", "train"),
            image(8, "P0008.png", "test"),
        ],
        "annotations": [
            annotation(10, 1, [2, 3, 5, 4]),
            annotation(11, 1, [10, 10, 10, 10]),
            annotation(12, 1, [4, 4, 2, 2], category=9),
            annotation(13, 1, [1, 2, 3]),
            annotation(14, 8, [0, 0, 16, 16], category=2),
            annotation(15, 99, [1, 1, 2, 2]),
            annotation(16, 1, [9, 9, 3, 2], category=2),
        ],
        "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "harbour"}],
    }
    write(out / "instances_train.json", json_bytes(document))


def _sar_chip(height: int, width: int, seed: int, ships: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Sea of 40 px blocks plus bright ships (inclusive x0, y0, x1, y1); one band, values 0..255."""
    y, x = np.mgrid[0:height, 0:width]
    chip = (12 + ((x // 40 + y // 40 + seed) % 4) * 6).astype(np.uint8)
    for x0, y0, x1, y1 in ships:
        chip[y0:y1 + 1, x0:x1 + 1] = 200 + (x0 + y0) % 50
    return chip


def _instance_mask(height: int, width: int, ships: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.zeros((height, width, 3), np.uint8)
    for number, (x0, y0, x1, y1) in enumerate(ships, start=1):
        mask[y0:y1 + 1, x0:x1 + 1] = (40 * number % 256, 255 - 30 * number, 90 + 20 * number)
    return mask


def _box(x0, y0, x1, y1, **override):
    record = {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1,
              "area_px": (x1 - x0 + 1) * (y1 - y0 + 1), "label": "ship"}
    record.update(override)
    return {key: value for key, value in record.items() if value is not None}


def _rgb(chip: np.ndarray) -> np.ndarray:
    return np.repeat(chip[:, :, None], 3, axis=2)


def hrsid_boxes(out: Path) -> None:
    """HRSID chips (3 identical channels), instance masks and ``ship_boxes.json`` (inclusive maxima)."""
    ships = [(3, 4, 7, 5), (20, 10, 27, 13)]
    first = "P0001_0_800_0_800"
    write(out / "images" / f"{first}.png", png_bytes(_rgb(_sar_chip(32, 32, 1, ships))))
    write(out / "masks" / f"{first}_instance_id_RGB.png", png_bytes(_instance_mask(32, 32, ships)))
    write(out / "images" / f"{first}.tif", tiff_bytes(_rgb(_sar_chip(32, 32, 2, []))))
    write(out / "images" / "P0002_0_800_800_1600.png", png_bytes(_rgb(_sar_chip(32, 32, 3, []))))
    mixed = _rgb(_sar_chip(32, 32, 4, [(5, 5, 9, 9)]))
    mixed[5:10, 5:10, 1] = 90
    write(out / "images" / "P0003_0_800_1600_2400.png", png_bytes(mixed))
    write(out / "images" / "P0004_800_1600_0_800.png", png_bytes(_rgb(_sar_chip(32, 32, 5, [(2, 2, 4, 4)]))))
    write(out / "masks" / "P0004_800_1600_0_800_instance_id_RGB.png", png_bytes(_instance_mask(16, 16, [(2, 2, 4, 4)])))
    write(out / "images" / "P0006_800_1600_1600_2400.png", png_bytes(_rgb(_sar_chip(32, 32, 6, []))))
    write(out / "images" / "P0007_1600_2400_0_800.png", NOT_AN_IMAGE)
    listing = {
        f"{first}.png": [_box(*ships[0]), _box(20, 10, 40, 13), _box(1, 1, 2, 2, y_max=None), _box(*ships[1])],
        f"{first}.tif": [],
        "P0002_0_800_800_1600.png": [],
        "P0003_0_800_1600_2400.png": [_box(5, 5, 9, 9)],
        "P0004_800_1600_0_800.png": [_box(2, 2, 4, 4)],
        "P0005_800_1600_800_1600.png": [_box(1, 1, 3, 3)],
        "P0007_1600_2400_0_800.png": [],
    }
    write(out / "ship_boxes.json", json_bytes(listing))


def hrsid_tiles(out: Path) -> None:
    """HRSID chips for 200 px tiling: a 400 px chip with a mask, a chip too small, one with a margin."""
    ships = [(50, 60, 69, 79), (180, 100, 239, 109), (190, 190, 209, 209), (300, 300, 329, 319)]
    big = "P0101_0_400_0_400"
    write(out / "images" / f"{big}.png", png_bytes(_rgb(_sar_chip(400, 400, 1, ships))))
    write(out / "masks" / f"{big}_instance_id_RGB.png", png_bytes(_instance_mask(400, 400, ships)))
    write(out / "images" / "P0102_0_64_0_64.png", png_bytes(_rgb(_sar_chip(64, 64, 2, []))))
    margin_ship = (20, 30, 29, 35)
    write(out / "images" / "P0103_0_240_0_200.png", png_bytes(_rgb(_sar_chip(200, 240, 3, [margin_ship]))))
    listing = {
        f"{big}.png": [_box(*ships[0]), _box(*ships[1]), _box(*ships[2]), _box(390, 50, 410, 60), _box(*ships[3])],
        "P0102_0_64_0_64.png": [],
        "P0103_0_240_0_200.png": [_box(*margin_ship)],
    }
    write(out / "ship_boxes.json", json_bytes(listing))


S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
S2_FACTOR = {"B01": 6, "B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B09": 6, "B11": 2, "B12": 2}
BEN_GRID = 6
"""Side of the fixture's 10 m grid (the real patches are 120; it must be a multiple of 6)."""


def ben_patch(seed: int) -> dict[str, np.ndarray]:
    """The bands of one synthetic BigEarthNet patch: uint16 S2 reflectance x10000, float32 S1 dB."""
    arrays = {}
    for number, band in enumerate(S2_BANDS):
        side = BEN_GRID // S2_FACTOR.get(band, 1)
        values = [200 + mix(seed, number, i) % 3000 for i in range(side * side)]
        arrays[f"S2_{band}"] = np.array(values, dtype="<u2").reshape(side, side)
    for number, band in enumerate(("VV", "VH")):
        quarters = [-(40 + mix(seed, 100 + number, i) % 60) for i in range(BEN_GRID * BEN_GRID)]
        arrays[f"S1_{band}"] = (np.array(quarters, dtype=np.int64).reshape(BEN_GRID, BEN_GRID) / 4).astype("<f4")
    return arrays


def bigearthnet(out: Path) -> None:
    """BigEarthNet v2 pairs: ``labels.csv`` and ``npz/<s2_patch_id>.npz`` on a 6 px 10 m grid."""
    s2 = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    s1 = "S1B_IW_GRDH_1SDV_20170612T165809_33UUP"
    rows = [
        ("00_00", "train", "Austria", "Coniferous forest|Pastures", False, False),
        ("00_01", "validation", "Austria", "Inland waters", True, False),
        ("00_02", "test", "Finland", '"Mixed forest|Transitional woodland, shrub|Mixed forest"', False, True),
        ("00_03", "holdout", "Finland", "Pastures", False, False),
        ("00_04", "train", "Finland", "Rock|Pastures", False, False),
        ("00_05", "train", "Austria", "Pastures", False, False),
        ("00_06", "train", "Austria", "Pastures", False, False),
        ("00_07", "train", "Austria", "Pastures", False, False),
        ("00_08", "train", "Austria", "Pastures", False, False),
        ("00_09", "train", "Austria", "Pastures", False, False),
    ]
    lines = ["patch_id,s1_name,split,country,labels,snow,cloud_or_shadow"]
    for cell, split, country, labels, snow, cloud in rows:
        lines.append(f"{s2}_{cell},{s1}_{cell},{split},{country},{labels},{snow},{cloud}")
    write(out / "labels.csv", lines_bytes(lines))
    npz = out / "npz"
    for seed, cell in enumerate(("00_00", "00_01", "00_02")):
        write(npz / f"{s2}_{cell}.npz", npz_bytes(ben_patch(seed)))
    missing_band = ben_patch(6)
    del missing_band["S1_VH"]
    write(npz / f"{s2}_00_06.npz", npz_bytes(missing_band))
    wrong_shape = ben_patch(7)
    wrong_shape["S2_B05"] = np.zeros((BEN_GRID, BEN_GRID), "<u2")
    write(npz / f"{s2}_00_07.npz", npz_bytes(wrong_shape))
    not_finite = ben_patch(8)
    not_finite["S1_VV"][1, 2] = np.nan
    write(npz / f"{s2}_00_08.npz", npz_bytes(not_finite))
    write(npz / f"{s2}_00_09.npz", NOT_AN_IMAGE)


CRISIS_SIDE = 4
UTM_CENTRE = (500000.0, 0.0)
"""Easting/northing of the S1 patch's centre pixel: the equator on zone 33N's central meridian (15° E)."""


def _crisis_image(bands: int, seed: int) -> np.ndarray:
    values = [(mix(seed, i) % 4000 - 2000) / 8 for i in range(bands * CRISIS_SIDE * CRISIS_SIDE)]
    return np.array(values, dtype="<f4").reshape(bands, CRISIS_SIDE, CRISIS_SIDE)


def _utm_grid(centre: tuple[float, float]) -> np.ndarray:
    y, x = np.mgrid[0:CRISIS_SIDE, 0:CRISIS_SIDE]
    half = CRISIS_SIDE // 2
    return np.stack([centre[0] + (x - half) * 10.0, centre[1] - (y - half) * 10.0]).astype("<f8")


def crisislandmark(out: Path) -> None:
    """CrisisLandMark: ``metadata.parquet`` and HDF5 shards with one group per key."""
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    s1_members = {
        "s1_0001": {"image": _crisis_image(2, 1), "coords": _utm_grid(UTM_CENTRE),
                    "crs": "EPSG:32633", "timestamp": "2020-05-01T10:00:00"},
        "s1_0005": {"image": _crisis_image(3, 5)},
        "s1_0006": {"image": np.full((2, CRISIS_SIDE, CRISIS_SIDE), np.nan, "<f4")},
        "s1_0007": {"image": _crisis_image(2, 7), "coords": np.zeros((3, CRISIS_SIDE, CRISIS_SIDE), "<f8"),
                    "crs": "EPSG:32633"},
        "s1_0008": {"image": _crisis_image(2, 8), "coords": _utm_grid(UTM_CENTRE)},
        "s1_0009": {"image": _crisis_image(2, 9), "timestamp": "yesterday"},
        "s1_0010": {"label_map": np.zeros((CRISIS_SIDE, CRISIS_SIDE), "u1")},
        "s1_0011": {"image": _crisis_image(1, 11)[0]},
        "dup_0001": {"image": _crisis_image(2, 21)},
        "s1_9999": {"image": _crisis_image(2, 99)},
    }
    s2_members = {
        "s2_0001": {"image": _crisis_image(12, 2), "coords": np.array([12.5, 41.875], "<f8"),
                    "crs": "EPSG:4326", "timestamp": np.int64(1590000000)},
        "s2_0002": {"image": _crisis_image(13, 3)},
        "dup_0001": {"image": _crisis_image(12, 22)},
    }
    for name, members in (("s1_000.h5", s1_members), ("s2_000.h5", s2_members)):
        path = out / "shards" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w", libver=("earliest", "v110"), track_order=False) as handle:
            for key, member in members.items():
                group = handle.create_group(key, track_order=False)
                for field, value in member.items():
                    if field in ("crs", "timestamp"):
                        group.attrs[field] = value
                    else:
                        group.create_dataset(field, data=value, track_times=False)
    write(out / "shards" / "broken.h5", NOT_AN_IMAGE)
    rows = [
        ("s1_0001", "train", ["water", "built"], None),
        ("s2_0001", "validation", ["Inland waters", "Urban fabric", "flooded area"], None),
        ("s2_0002", "test", ["Trees"], "shards/s2_000.h5"),
        ("s1_0002", "holdout", ["water"], None),
        ("s1_0003", "train", ["lava"], None),
        ("s1_0004", "train", [], None),
        ("s9_0001", "train", ["water"], None),
        ("s1_0005", "train", ["water"], None),
        ("s1_0006", "train", ["water"], None),
        ("s1_0007", "train", ["water"], None),
        ("s1_0008", "train", ["water"], None),
        ("s1_0009", "train", ["water"], None),
        ("s1_0010", "train", ["water"], None),
        ("s1_0011", "train", ["water"], None),
        ("dup_0001", "train", ["burned_area", "grass"], None),
    ]
    table = pa.table({
        "key": pa.array([r[0] for r in rows], pa.string()),
        "split": pa.array([r[1] for r in rows], pa.string()),
        "labels": pa.array([r[2] for r in rows], pa.list_(pa.string())),
        "file": pa.array([r[3] for r in rows], pa.string()),
    })
    pq.write_table(table, out / "metadata.parquet", compression="none", use_dictionary=False,
                   write_statistics=False, store_schema=False)


def class_folder(out: Path) -> None:
    """RSSCN7-style class folders (``images/<ClassDir>/<name>.jpg``) with ``labels.csv``."""
    images = {"aGrass/a001.jpg": 70, "aGrass/a002.jpg": 90, "bField/b001.jpg": 150,
              "cIndustry/c001.jpg": 110, "dRiverLake/d001.jpg": 40}
    for rel, level in images.items():
        write(out / "images" / rel, jpeg_grey_bytes(level))
    write(out / "labels.csv", lines_bytes([
        "filepath,label,split",
        "aGrass/a001.jpg,grass,train",
        "aGrass/a002.jpg,grass,val",
        "bField/b001.jpg,field,test",
        "cIndustry/c001.jpg,industry,holdout",
        "dRiverLake/d001.jpg,River_Lake,train",
        "eForest/e001.jpg,forest,train",
    ]))


BUILDERS = {
    "amfmn": amfmn,
    "bigearthnet": bigearthnet,
    "caption-csv": caption_csv,
    "captions-json": captions_json,
    "class-folder": class_folder,
    "coco": coco,
    "crisislandmark": crisislandmark,
    "hrsid-boxes": hrsid_boxes,
    "hrsid-tiles": hrsid_tiles,
    "karpathy": karpathy,
    "rsvqa": rsvqa,
}


def generate(out: Path) -> list[Path]:
    """Write every fixture folder below ``out``, replacing folders of the same name.

    Args:
        out: Destination (``tests/data`` for the committed fixtures).

    Returns:
        The files written, sorted.
    """
    for fmt in FORMATS:
        folder = out / fmt
        if folder.exists():
            shutil.rmtree(folder)
        BUILDERS[fmt](folder)
    return sorted(p for fmt in FORMATS for p in (out / fmt).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python tests/data/generate.py [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="destination folder (default: tests/data)")
    args = parser.parse_args(argv)
    files = generate(args.out)
    total = sum(p.stat().st_size for p in files)
    print(f"{len(files)} files, {total} bytes under {args.out}")


if __name__ == "__main__":
    main()
