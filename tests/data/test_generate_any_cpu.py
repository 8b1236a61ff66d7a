"""The default data is the same bytes on every CPU: exact primitives, and data.dvc's md5 under three dispatch levels."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rsvl.data.synthetic import exact, png_bytes, raster, smooth_field
from rsvl.data.versioning import dvc_md5, init_repo, track

RSVL = os.path.join(os.path.dirname(sys.executable), "rsvl")

# NumPy 2.4's dispatch names: the first takes AVX-512 away, the second AVX2/FMA too (and torch's
# AVX2/AVX-512 kernels with ATEN_CPU_CAPABILITY=default), leaving the x86-64-v2 baseline.
CPU_VARIANTS = {
    "native": {},
    "no-avx512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
    "baseline": {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR", "ATEN_CPU_CAPABILITY": "default"},
}


def test_transcendental_functions_match_libm_closely():
    x = np.linspace(1e-6, 1e6, 20001)
    assert np.max(np.abs(exact.log(x) - np.log(x)) / np.abs(np.log(x)).clip(1)) < 1e-13
    assert np.allclose(exact.log10(x), np.log10(x), rtol=1e-13, atol=1e-13)
    y = np.linspace(-30, 30, 20001)
    assert np.max(np.abs(exact.exp(y) / np.exp(y) - 1)) < 1e-13
    assert np.max(np.abs(exact.pow10(y / 10) / 10 ** (y / 10) - 1)) < 1e-13
    angles = np.linspace(-20, 20, 40001)
    assert np.max(np.abs(exact.sin(angles) - np.sin(angles))) < 1e-12
    assert np.max(np.abs(exact.cos(angles) - np.cos(angles))) < 1e-12
    assert float(exact.cos(0.0)) == 1.0 and float(exact.sin(0.0)) == 0.0


def test_normal_and_speckle_moments():
    rng = np.random.default_rng(0)
    z = exact.normal(rng, 2.0, 3.0, size=200_000)
    assert abs(z.mean() - 2.0) < 0.03 and abs(z.std() - 3.0) < 0.03
    assert z.min() >= 2.0 - 18.0 and z.max() <= 2.0 + 18.0  # Irwin-Hall: bounded by six sigma
    # Irwin-Hall's fourth moment is 3 - 6/(5 * 12) = 2.9, so one look's variance is (2.9 - 1) / 2.
    for looks in (1, 3, 4):
        s = exact.speckle(rng, looks, (200_000,))
        assert abs(s.mean() - 1.0) < 0.01 and abs(s.var() - 0.95 / looks) < 0.03 / looks
        assert s.min() >= 0.0
    with pytest.raises(ValueError, match="looks"):
        exact.speckle(rng, 0, (2,))


def test_weighted_choices_follow_their_weights():
    rng = np.random.default_rng(1)
    picks = [exact.choose(rng, "abc", [1.0, 2.0, 7.0]) for _ in range(20_000)]
    shares = {k: picks.count(k) / len(picks) for k in "abc"}
    assert abs(shares["a"] - 0.1) < 0.01 and abs(shares["b"] - 0.2) < 0.012 and abs(shares["c"] - 0.7) < 0.012
    distinct = exact.choose_distinct(rng, 3, [1.0, 1.0, 1.0, 0.0])
    assert sorted(distinct) == [0, 1, 2]  # a zero weight is never drawn


def test_png_bytes_decode_to_the_pixels():
    rng = np.random.default_rng(2)
    for pixels in (rng.integers(0, 256, (37, 300, 3), dtype=np.uint8), rng.integers(0, 256, (300, 301), dtype=np.uint8)):
        decoded = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, pixels)


def test_shapes_cover_the_pixels_whose_centres_they_hold():
    disc = raster.ellipse((9, 9), 4.5, 4.5, 2.0, 2.0)
    ys, xs = np.mgrid[0:9, 0:9] + 0.5
    assert np.array_equal(disc, (xs - 4.5) ** 2 + (ys - 4.5) ** 2 <= 4.0)
    rect = raster.oriented_rectangle((20, 20), 10.0, 10.0, 8.0, 2.0, math.pi / 2)  # long side vertical
    rows, cols = np.nonzero(rect)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 13, 9, 10)
    assert raster.rectangle((5, 5), 1, 2, 3, 2).sum() == 3
    band = raster.wavy_band((16, 16), 8.0, 0.0, 0.0, True, 2.0)
    assert np.array_equal(np.nonzero(band[0])[0], [7, 8])


def test_smooth_field_spans_zero_to_one_and_interpolates_its_grid():
    field = smooth_field(np.random.default_rng(3), 64, 64, 4)
    assert field.shape == (64, 64) and field.min() == 0.0 and field.max() == 1.0
    # At grid resolution the cubic interpolation returns the grid itself (rescaled).
    grid = np.random.default_rng(4).random((5, 5))
    same = smooth_field(np.random.default_rng(4), 5, 5, 5)
    assert np.allclose(same, (grid - grid.min()) / (grid.max() - grid.min()), atol=1e-15)


def _generate(project, env_extra: dict[str, str], repo_root) -> str:
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    init_repo(project)
    default = project / "data" / "default"
    env = {**os.environ, **env_extra}
    for argv in ([RSVL, "data", "generate", "--out", str(default), "--seed", "0"],
                 [RSVL, "data", "validate", str(default), "--config", str(repo_root / "pipelines/sar_text/config.yaml")]):
        run = subprocess.run(argv, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    return track(project, "data")


@pytest.mark.slow
def test_make_data_gives_the_md5_of_data_dvc_under_every_cpu_dispatch_level(tmp_path, repo_root):
    recorded = dvc_md5(repo_root / "data.dvc")
    # the native dispatch level is the session's default data (test_data_e2e checks it against data.dvc)
    forced = {name: env for name, env in CPU_VARIANTS.items() if env}
    versions = {name: _generate(tmp_path / name, env, repo_root) for name, env in forced.items()}
    assert versions == {name: recorded for name in forced} and len(forced) == 2
