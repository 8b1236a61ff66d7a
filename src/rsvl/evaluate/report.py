"""Evaluation pictures (PNG, matplotlib Agg) and the Markdown and HTML reports that show them.

The HTML report embeds every picture as base64 so it renders alone (Kubeflow's output viewer,
an MLflow artifact preview); the Markdown report links the PNG files next to it. When other models
were scored on the same eval sets (an ablation, the untuned base model), a table near the top puts
their metrics beside the candidate's with the difference, candidate − comparison.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from rsvl import markdown  # noqa: E402

DPI = 100
STRETCH_PERCENTILES = (2.0, 98.0)
RGB_BANDS = ("04", "03", "02")
"""Sentinel-2 red, green, blue band numbers, matched at the end of band names (B04, S2_B04)."""


@dataclass(frozen=True)
class RetrievedImages:
    """One text query and the images it retrieved, best first."""

    query: str
    images: list[np.ndarray]
    correct: list[bool]
    names: list[str]


@dataclass
class Table:
    """A report table; a cell that is a :class:`Path` is shown as that picture."""

    title: str
    header: list[str]
    rows: list[list[str | Path]]


@dataclass
class Section:
    """The part of a report about one eval set."""

    title: str
    metrics: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    """The candidate's metrics beside other models' on the same eval sets.

    Attributes:
        candidate: ``<eval set>.<metric>`` → the candidate's value.
        others: Comparison model name → its ``<eval set>.<metric>`` values, in column order.
    """

    candidate: dict[str, float]
    others: dict[str, dict[str, float]]

    def table(self) -> Table:
        """One row per metric; columns: candidate, each comparison, then candidate − each comparison.

        A metric one model lacks shows ``—`` (and no difference).
        """
        names = list(self.others)
        keys = list(self.candidate)
        keys += [key for values in self.others.values() for key in values if key not in self.candidate]
        keys = list(dict.fromkeys(keys))
        header = ["metric", "candidate", *names, *(f"candidate − {name}" for name in names)]
        rows: list[list[str | Path]] = []
        for key in keys:
            mine = self.candidate.get(key)
            theirs = [self.others[name].get(key) for name in names]
            rows.append([key, _maybe(mine), *(_maybe(value) for value in theirs),
                         *(_maybe(None if mine is None or value is None else mine - value, signed=True)
                           for value in theirs)])
        return Table("Candidate beside the comparison models (same eval sets, same code)", header, rows)


def _maybe(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4g}" if signed else _number(value)


def rgb_band_indices(band_names: Sequence[str] | None, bands: int) -> list[int]:
    """Bands to show as red, green, blue.

    Args:
        band_names: Names of the raster's bands, if known.
        bands: Number of bands.

    Returns:
        Three indices: the Sentinel-2 B04/B03/B02 bands when named so, else the first three
        bands (3+ bands) or the first band three times (grey).
    """
    if band_names and len(band_names) == bands:
        found = [next((i for i, name in enumerate(band_names) if re.search(rf"B0?{n[-1]}$", name)), None)
                 for n in RGB_BANDS]
        if all(i is not None for i in found):
            return [int(i) for i in found]
    return [0, 1, 2] if bands >= 3 else [0, 0, 0]


def display_image(raster: torch.Tensor | np.ndarray, band_names: Sequence[str] | None = None) -> np.ndarray:
    """Turn a (bands, H, W) raster into an (H, W, 3) picture in [0, 1].

    8-bit looking RGB (3 bands, values in 0..255) is divided by 255; anything else (SAR dB,
    reflectance, 1-2 bands) is stretched between the 2nd and 98th percentiles of the three shown
    bands together, which keeps their colour balance.

    Args:
        raster: The raster as the dataset yields it.
        band_names: Band names, to find red, green and blue.
    """
    array = np.asarray(raster.detach().cpu() if isinstance(raster, torch.Tensor) else raster, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    picked = array[rgb_band_indices(band_names, array.shape[0])]
    if array.shape[0] == 3 and picked.min() >= 0 and picked.max() <= 255 and picked.max() > 1:
        return np.clip(picked / 255.0, 0, 1).transpose(1, 2, 0)
    low, high = np.nanpercentile(picked, STRETCH_PERCENTILES)
    stretched = (picked - low) / np.maximum(high - low, 1e-6)
    return np.clip(np.nan_to_num(stretched), 0, 1).transpose(1, 2, 0)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_recall_curves(curve: dict[str, list[float]], title: str, path: str | Path) -> Path:
    """Draw recall@K against K for image→text and text→image.

    Args:
        curve: ``{"k", "i2t", "t2i"}`` from :func:`rsvl.evaluate.retrieval.recall_curve`.
        title: Figure title.
        path: PNG to write.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(curve["k"], curve["i2t"], marker=".", label="image → text")
    ax.plot(curve["k"], curve["t2i"], marker=".", label="text → image")
    ax.set(xlabel="K", ylabel="recall@K (%)", ylim=(0, 100), xlim=(1, max(curve["k"])), title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, Path(path))


def plot_confusion(classes: Sequence[str], confusion: Sequence[Sequence[int]], title: str, path: str | Path) -> Path:
    """Draw a confusion matrix (rows true, columns predicted) with counts in the cells.

    Args:
        classes: Class names in matrix order.
        confusion: Counts.
        title: Figure title.
        path: PNG to write.
    """
    matrix = np.asarray(confusion)
    size = max(4.0, 0.5 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    shown = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if len(classes) <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > threshold else "black")
    return _save(fig, Path(path))


TILE_PX = 128
"""Side of one retrieved image in the retrieval grid's mosaic."""
FRAME_PX = 5
"""Width of the frame that marks a retrieved image right (green) or wrong (red)."""
GAP_PX = 8
LABEL_PX = 18
QUERY_PX = 26


def retrieval_mosaic(examples: Sequence[RetrievedImages]) -> np.ndarray:
    """Lay the retrieved images out as one picture: a row per query, best first, each in its frame.

    Each image is resized to :data:`TILE_PX` square (bilinear) and framed green when it carries the
    query's caption, red when not; every cell has room above for the query (the first cell of a
    row) and below for the image's name, drawn by :func:`plot_retrieval_grid`. Empty cells are white.

    Args:
        examples: Queries and their retrieved images (``(H, W, 3)`` in ``[0, 1]``), best first.

    Returns:
        ``(rows × cell height, columns × cell width, 3)`` float32 in ``[0, 1]``.
    """
    from matplotlib.colors import to_rgb
    from PIL import Image

    columns = max(len(example.images) for example in examples)
    cell_w, cell_h = TILE_PX + GAP_PX, QUERY_PX + TILE_PX + LABEL_PX
    canvas = np.ones((len(examples) * cell_h, columns * cell_w, 3), dtype=np.float32)
    for row, example in enumerate(examples):
        for col, (image, correct) in enumerate(zip(example.images, example.correct)):
            pixels = (np.clip(np.asarray(image, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
            tile = np.asarray(Image.fromarray(pixels).resize((TILE_PX, TILE_PX), Image.BILINEAR), np.float32) / 255
            colour = np.asarray(to_rgb("tab:green" if correct else "tab:red"), dtype=np.float32)
            tile[:FRAME_PX], tile[-FRAME_PX:], tile[:, :FRAME_PX], tile[:, -FRAME_PX:] = colour, colour, colour, colour
            top, left = row * cell_h + QUERY_PX, col * cell_w
            canvas[top:top + TILE_PX, left:left + TILE_PX] = tile
    return canvas


def plot_retrieval_grid(examples: Sequence[RetrievedImages], title: str, path: str | Path) -> Path:
    """Draw one row per text query with its top retrieved images (green frame: the query's image).

    One image (:func:`retrieval_mosaic`) with the queries and names as text: a grid of one axes per
    image took about a second a figure, a fifth of a four-model evaluation.

    Args:
        examples: Queries and their retrieved images, best first.
        title: Figure title.
        path: PNG to write.
    """
    mosaic = retrieval_mosaic(examples)
    columns = max(len(example.images) for example in examples)
    cell_w, cell_h = TILE_PX + GAP_PX, QUERY_PX + TILE_PX + LABEL_PX
    fig = plt.figure(figsize=(2.2 * columns, 2.6 * len(examples)))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.92))
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for row, example in enumerate(examples):
        query = example.query if len(example.query) <= 110 else example.query[:107] + "..."
        ax.text(0, row * cell_h + QUERY_PX - 4, f"“{query}”", ha="left", va="bottom", fontsize=8)
        for col, name in enumerate(example.names[:len(example.images)]):
            ax.text(col * cell_w + TILE_PX / 2, row * cell_h + QUERY_PX + TILE_PX + 3, f"{col + 1}. {name}"[:28],
                    ha="center", va="top", fontsize=7)
    fig.suptitle(title)
    return _save(fig, Path(path))


def save_thumbnail(image: np.ndarray, path: str | Path, size: float = 1.6) -> Path:
    """Write an (H, W, 3) picture as a small PNG for report tables."""
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(image)
    ax.axis("off")
    return _save(fig, Path(path))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _md_cell(cell: str | Path, base: Path) -> str:
    if isinstance(cell, Path):
        return f"![]({_relative(cell, base)})"
    return markdown.cell(cell)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _embedded(path: Path, alt: str, width: int | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"{size}>'


def _md_table(table: Table, out_dir: Path, level: str) -> list[str]:
    lines = [f"{level} {markdown.text(table.title)}", "", "| " + " | ".join(map(markdown.cell, table.header)) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_md_cell(cell, out_dir) for cell in row) + " |" for row in table.rows]
    return lines + [""]


def _html_table(table: Table, level: str) -> str:
    parts = [f"<{level}>{html.escape(table.title)}</{level}><table><tr>"
             + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>"]
    for row in table.rows:
        cells = [_embedded(c, c.stem, 128) if isinstance(c, Path) else html.escape(str(c)).replace("\n", "<br>")
                 for c in row]
        parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    parts.append("</table>")
    return "".join(parts)


def markdown_report(title: str, sections: Sequence[Section], out_dir: Path,
                    comparison: Comparison | None = None) -> str:
    """Render the Markdown report (pictures linked relative to ``out_dir``), the comparison table first."""
    lines = [f"# {markdown.text(title)}", ""]
    if comparison is not None:
        lines += _md_table(comparison.table(), out_dir, "##")
    for section in sections:
        lines += [f"## {markdown.text(section.title)}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {markdown.cell(key)} | {_number(value)} |" for key, value in section.metrics.items()]
        lines += [f"| {markdown.cell(key)} | unavailable: {_md_cell(reason, out_dir)} |"
                  for key, reason in section.unavailable.items()]
        lines.append("")
        lines += [f"- {markdown.text(note)}" for note in section.notes] + ([""] if section.notes else [])
        for caption, path in section.figures:
            lines += [f"### {markdown.text(caption)}", "", f"![{markdown.cell(caption)}]({_relative(path, out_dir)})", ""]
        for table in section.tables:
            lines += _md_table(table, out_dir, "###")
    return "\n".join(lines)


def html_report(title: str, sections: Sequence[Section], comparison: Comparison | None = None) -> str:
    """Render the standalone HTML report (pictures embedded as base64 PNG), the comparison table first."""
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}"
             "img{max-width:100%}.na{color:#a40}")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    if comparison is not None:
        parts.append(_html_table(comparison.table(), "h2"))
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><table><tr><th>metric</th><th>value</th></tr>")
        parts += [f"<tr><td>{html.escape(k)}</td><td>{_number(v)}</td></tr>" for k, v in section.metrics.items()]
        parts += [f"<tr><td>{html.escape(k)}</td><td class='na'>unavailable: {html.escape(reason)}</td></tr>"
                  for k, reason in section.unavailable.items()]
        parts.append("</table>")
        if section.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in section.notes) + "</ul>")
        for caption, path in section.figures:
            parts.append(f"<h3>{html.escape(caption)}</h3><p>{_embedded(path, caption)}</p>")
        parts += [_html_table(table, "h3") for table in section.tables]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(title: str, sections: Sequence[Section], out_dir: str | Path,
                  comparison: Comparison | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``out_dir``.

    Args:
        title: Report title.
        sections: One per eval set.
        out_dir: Folder that holds (or will hold) the pictures.
        comparison: Other models' metrics to show beside the candidate's, first in the report.

    Returns:
        ``(markdown path, html path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown, page = out / "report.md", out / "report.html"
    markdown.write_text(markdown_report(title, sections, out, comparison), encoding="utf-8")
    page.write_text(html_report(title, sections, comparison), encoding="utf-8")
    return markdown, page
