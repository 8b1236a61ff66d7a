"""The retrieval grid's mosaic: every retrieved image in its cell, framed by whether it was right."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb
from PIL import Image

from rsvl.evaluate.report import (
    FRAME_PX,
    GAP_PX,
    LABEL_PX,
    QUERY_PX,
    TILE_PX,
    RetrievedImages,
    plot_retrieval_grid,
    retrieval_mosaic,
)

BLUE = np.zeros((40, 60, 3), dtype=np.float32)
BLUE[..., 2] = 1.0
GREY = np.full((200, 200, 3), 0.5, dtype=np.float32)


def _examples() -> list[RetrievedImages]:
    return [RetrievedImages("two ships at sea", [BLUE, GREY, BLUE], [True, False, True], ["a", "b", "c"]),
            RetrievedImages("a harbour", [GREY, BLUE], [False, True], ["d", "e"])]


def test_each_image_sits_in_its_cell_framed_green_when_right_and_red_when_wrong():
    mosaic = retrieval_mosaic(_examples())
    cell_w, cell_h = TILE_PX + GAP_PX, QUERY_PX + TILE_PX + LABEL_PX
    assert mosaic.shape == (2 * cell_h, 3 * cell_w, 3) and mosaic.dtype == np.float32
    green, red = np.asarray(to_rgb("tab:green"), np.float32), np.asarray(to_rgb("tab:red"), np.float32)
    expected = {(0, 0): (BLUE, green), (0, 1): (GREY, red), (0, 2): (BLUE, green), (1, 0): (GREY, red),
                (1, 1): (BLUE, green)}
    for (row, col), (image, frame) in expected.items():
        top, left = row * cell_h + QUERY_PX, col * cell_w
        tile = mosaic[top:top + TILE_PX, left:left + TILE_PX]
        for edge in (tile[:FRAME_PX], tile[-FRAME_PX:], tile[:, :FRAME_PX], tile[:, -FRAME_PX:]):
            assert np.array_equal(edge, np.broadcast_to(frame, edge.shape))
        inside = tile[FRAME_PX:-FRAME_PX, FRAME_PX:-FRAME_PX]
        assert np.abs(inside - image[0, 0]).max() < 1 / 255  # a flat picture resized is the same colour
    white = [mosaic[:QUERY_PX], mosaic[cell_h + QUERY_PX:, 2 * cell_w:]]  # the query band; the empty cell
    white += [mosaic[QUERY_PX:QUERY_PX + TILE_PX, TILE_PX:cell_w]]  # the gap between two cells
    assert all(np.array_equal(part, np.ones_like(part)) for part in white)


def test_the_grid_is_written_as_one_png(tmp_path):
    path = plot_retrieval_grid(_examples(), "set: top-3", tmp_path / "grid.png")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width > picture.height > 100
