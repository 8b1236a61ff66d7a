"""The GeoCLOSP location encoder: harmonics against scipy, orthonormality, the SIREN, input checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.special
import torch

from rsvl.errors import DataError, ModelError
from rsvl.models.location import LocationEncoder, SphericalHarmonics, check_latlon

L = 10


def scipy_complex_sh(l: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """scipy's complex ``Y_l^m`` (Condon-Shortley phase included) at polar angle ``theta``, azimuth ``phi``."""
    if hasattr(scipy.special, "sph_harm_y"):
        return scipy.special.sph_harm_y(l, m, theta, phi)
    # The older name swaps the argument order: (m, l, azimuth, polar).
    return scipy.special.sph_harm(m, l, phi, theta)


def real_sh_reference(latlon: np.ndarray, degrees: int) -> np.ndarray:
    """Real harmonics from scipy's complex ones: ``sqrt(2) Re Y_l^m`` (m>0), ``sqrt(2) Im Y_l^|m|`` (m<0)."""
    theta = np.deg2rad(90.0 - latlon[:, 0])
    phi = np.deg2rad(latlon[:, 1])
    out = np.zeros((len(latlon), degrees * degrees))
    for l in range(degrees):
        for m in range(-l, l + 1):
            y = scipy_complex_sh(l, abs(m), theta, phi)
            if m == 0:
                value = y.real
            elif m > 0:
                value = math.sqrt(2.0) * y.real
            else:
                value = math.sqrt(2.0) * y.imag
            out[:, l * l + l + m] = value
    return out


def sample_points() -> np.ndarray:
    """~200 points: random over the sphere plus the poles, the dateline and the prime meridian."""
    rng = np.random.default_rng(0)
    random = np.stack([np.rad2deg(np.arcsin(rng.uniform(-1, 1, 180))), rng.uniform(-180, 180, 180)], axis=1)
    special = np.array(
        [
            [90.0, 0.0], [-90.0, 0.0], [90.0, 123.0], [-90.0, -57.0],
            [0.0, 180.0], [0.0, -180.0], [45.0, 180.0], [-45.0, -180.0],
            [0.0, 0.0], [12.5, 0.0], [89.999, 179.999], [-89.999, -179.999],
            [60.0, 90.0], [-30.0, -90.0], [0.0, 90.0], [33.3, -120.0],
        ]
    )
    return np.concatenate([random, special])


def test_every_harmonic_matches_scipy():
    points = sample_points()
    ours = SphericalHarmonics(L)(torch.tensor(points))
    assert ours.dtype == torch.float32 and ours.shape == (len(points), L * L)
    np.testing.assert_allclose(ours.numpy(), real_sh_reference(points, L), rtol=0, atol=1e-6)


def test_degree_one_is_the_unit_vector_with_the_condon_shortley_sign():
    """Written out by hand: Y_1,-1 = -c y, Y_1,0 = c z, Y_1,1 = -c x with c = sqrt(3 / 4 pi)."""
    points = sample_points()
    lat, lon = np.deg2rad(points[:, 0]), np.deg2rad(points[:, 1])
    x, y, z = np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)
    c = math.sqrt(3.0 / (4.0 * math.pi))
    ours = SphericalHarmonics(2)(torch.tensor(points)).numpy()
    np.testing.assert_allclose(ours[:, 0], 1.0 / math.sqrt(4.0 * math.pi), rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours[:, 1:4], np.stack([-c * y, c * z, -c * x], axis=1), rtol=0, atol=1e-7)


def test_dateline_and_poles_are_single_points():
    """lon -180 and 180 are one meridian; at a pole the longitude does not matter."""
    sh = SphericalHarmonics(L)
    east, west = sh(torch.tensor([[17.0, 180.0]])), sh(torch.tensor([[17.0, -180.0]]))
    np.testing.assert_allclose(east.numpy(), west.numpy(), rtol=0, atol=1e-6)
    poles = sh(torch.tensor([[90.0, -150.0], [90.0, 0.0], [90.0, 75.0], [-90.0, 10.0], [-90.0, 170.0]]))
    np.testing.assert_allclose(poles[:3].numpy(), poles[:1].expand(3, -1).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(poles[3:].numpy(), poles[3:4].expand(2, -1).numpy(), rtol=0, atol=1e-6)


def test_harmonics_are_orthonormal_over_the_sphere():
    """Gauss-Legendre in cos(theta) x uniform phi integrates every product Y_i Y_j (degree <= 18) exactly."""
    nodes, weights = np.polynomial.legendre.leggauss(L + 2)
    n_phi = 4 * L
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi - np.pi
    lat = np.rad2deg(np.arcsin(nodes))
    grid = np.array([[a, b] for a in lat for b in np.rad2deg(phi)])
    w = np.repeat(weights, n_phi) * (2.0 * np.pi / n_phi)
    y = SphericalHarmonics(L)(torch.tensor(grid)).numpy().astype(np.float64)
    gram = (y * w[:, None]).T @ y
    np.testing.assert_allclose(gram, np.eye(L * L), rtol=0, atol=1e-6)


def test_harmonics_accept_float32_input():
    points = torch.tensor(sample_points(), dtype=torch.float32)
    ours = SphericalHarmonics(L)(points)
    reference = real_sh_reference(points.double().numpy(), L)
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-6)
    assert SphericalHarmonics(3).embedding_dim == 9


def encoder(seed: int = 0, **kwargs) -> LocationEncoder:
    """A LocationEncoder (embed_dim 16 unless given) built right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return LocationEncoder(**{"embed_dim": 16, **kwargs})


def test_encoder_shape_and_normalisation():
    model = encoder(embed_dim=384)
    points = torch.tensor(sample_points(), dtype=torch.float32)
    out = model(points)
    assert out.shape == (len(points), 384) and out.dtype == torch.float32
    unit = model(points, normalize=True)
    np.testing.assert_allclose(torch.linalg.norm(unit, dim=1).detach().numpy(), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(unit.detach().numpy(), (out / out.norm(dim=1, keepdim=True)).detach().numpy(), atol=1e-6)
    assert not torch.allclose(out.norm(dim=1), torch.ones(len(points)))


def test_encoder_forward_is_the_siren_formula():
    """Recomputed in float64 from scipy's harmonics and the layer weights: sin(30 (W1 f + b1)), sin(1 (..)), linear."""
    model = encoder(layers=3, hidden=32)
    points = sample_points()[:40]
    h = real_sh_reference(points, L)
    params = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    for i, w0 in enumerate([30.0, 1.0, 1.0]):
        h = np.sin(w0 * (h @ params[f"siren.{i}.linear.weight"].T + params[f"siren.{i}.linear.bias"]))
    expected = h @ params["head.weight"].T + params["head.bias"]
    ours = model(torch.tensor(points, dtype=torch.float32)).detach().numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)
    assert len(model.siren) == 3


def test_encoder_is_deterministic_under_manual_seed():
    points = torch.tensor(sample_points(), dtype=torch.float32)
    a, b, c = encoder(seed=7), encoder(seed=7), encoder(seed=8)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert torch.equal(a(points), b(points))
    assert not torch.allclose(a(points), c(points))


def test_gradients_reach_every_parameter():
    model = encoder(layers=3)
    model(torch.tensor(sample_points(), dtype=torch.float32), normalize=True).sum(dim=0).pow(2).sum().backward()
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "siren.0.linear.weight", "siren.0.linear.bias", "siren.1.linear.weight", "siren.1.linear.bias",
        "siren.2.linear.weight", "siren.2.linear.bias", "head.weight", "head.bias",
    ]
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_siren_init_bounds():
    """First layer uniform in ±1/fan_in (fan_in = L² = 100); later layers and head in ±sqrt(6/256)."""
    model = encoder(embed_dim=384)
    first = 1.0 / (L * L)
    hidden = math.sqrt(6.0 / 256)
    for name, bound in [
        ("siren.0.linear.weight", first), ("siren.0.linear.bias", first),
        ("siren.1.linear.weight", hidden), ("siren.1.linear.bias", hidden),
        ("head.weight", hidden), ("head.bias", hidden),
    ]:
        values = model.state_dict()[name].abs()
        assert values.max() <= bound, name
        # 256+ uniform draws: the largest lies within 5% of the bound with probability > 1 - 0.95**256.
        assert values.max() > 0.95 * bound, name
    assert model.siren[0].w0 == 30.0 and model.siren[1].w0 == 1.0


def test_config_rebuilds_the_model():
    model = encoder(embed_dim=24, legendre_polys=6, hidden=40, layers=3, w0_initial=20.0)
    config = json.loads(json.dumps(model.config()))
    assert config == {"embed_dim": 24, "legendre_polys": 6, "hidden": 40, "layers": 3, "w0_initial": 20.0}
    torch.manual_seed(123)
    rebuilt = LocationEncoder(**config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    points = torch.tensor(sample_points(), dtype=torch.float32)
    assert torch.equal(rebuilt(points), model(points))
    assert torch.equal(rebuilt(points, normalize=True), model(points, normalize=True))


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"embed_dim": 0}, "embed_dim"), ({"hidden": 0}, "hidden"), ({"layers": 0}, "layers"),
     ({"w0_initial": 0.0}, "w0_initial"), ({"legendre_polys": 0}, "legendre_polys")],
)
def test_bad_constructor_arguments(kwargs, word):
    with pytest.raises(ModelError, match=word):
        LocationEncoder(**{"embed_dim": 8, **kwargs})


@pytest.mark.parametrize(
    ("rows", "row", "rule"),
    [
        ([[10.0, 20.0], [91.0, 0.0]], 1, r"latitude must lie in \[-90, 90\]"),
        ([[10.0, 20.0], [0.0, 5.0], [0.0, -181.0]], 2, r"longitude must lie in \[-180, 180\]"),
        ([[float("nan"), 3.0], [95.0, 0.0]], 0, "must be finite"),
        ([[0.0, 0.0], [0.0, float("inf")]], 1, "must be finite"),
        ([[-90.5, 200.0]], 0, "latitude must lie"),
    ],
)
def test_check_latlon_names_row_and_rule(rows, row, rule):
    with pytest.raises(DataError, match=rf"^batch location: row {row} is .*{rule}") as info:
        check_latlon(torch.tensor(rows), where="batch location")
    assert "[latitude, longitude]" in str(info.value)


def test_check_latlon_counts_bad_rows_and_accepts_edges():
    with pytest.raises(DataError, match="2 of 3 rows break a rule"):
        check_latlon(torch.tensor([[91.0, 0.0], [0.0, 0.0], [0.0, 181.0]]))
    check_latlon(torch.tensor([[90.0, 180.0], [-90.0, -180.0], [0.0, 0.0]]))
    check_latlon(torch.zeros(0, 2))


@pytest.mark.parametrize("shape", [(3,), (3, 3), (2, 2, 2), (4, 1)])
def test_check_latlon_wrong_shape(shape):
    with pytest.raises(DataError, match=rf"location: expected .*\(N, 2\) = \[latitude, longitude\].*{shape[0]}"):
        check_latlon(torch.zeros(shape))


def test_encoder_rejects_bad_rows():
    with pytest.raises(DataError, match="row 1 .* latitude must lie"):
        encoder()(torch.tensor([[0.0, 0.0], [91.0, 0.0]]))
