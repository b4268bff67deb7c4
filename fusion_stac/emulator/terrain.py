"""The synthetic world: deterministic elevation and cloud fields as pure functions of (lon, lat[, date]).

Evaluated at pixel centres, so neighbouring slices join seamlessly and every run is reproducible;
:mod:`rendering` writes them as Cloud-Optimized GeoTIFFs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from affine import Affine

from fusion_stac.emulator.geobase import _GEOD, Slice, _transformer

# ---------------------------------------------------------------------------------------------------------
# The synthetic world
# ---------------------------------------------------------------------------------------------------------
#
# Both fields are sums of plane waves sin(k . P + phi) where P is the point's position on a sphere in
# metres (3-D, earth-centred). Evaluating waves in 3-D rather than in lon/lat or in a map projection
# gives a field that is smooth everywhere (no seams at zone boundaries, the antimeridian or the poles),
# isotropic and metric (a wave of 2 km looks like 2 km anywhere), and a pure function of (lon, lat).
# Hand-written instead of a noise library because the emulator must stay dependency-light, be bit-for-bit
# deterministic and be fast: the sum vectorises perfectly (see _Lattice).


@dataclass(frozen=True)
class _Octaves:
    """A fixed, seeded set of octaves of plane waves.

    Per wave: unit direction, phase offset, drift (radians per day, for time-varying fields) and octave.
    Per octave: wavelength, amplitude, and whether it is "ridged". An octave's value is the sum of its
    waves' sines divided by sqrt(count) (a smooth random field of unit-ish variance); a ridged octave
    uses 1 - 2|value|, whose sharp crests follow the curved zero lines of that field (mountain ridges).
    """

    direction: np.ndarray  # (n, 3)
    phase: np.ndarray  # (n,)
    drift: np.ndarray  # (n,)
    octave: np.ndarray  # (n,) index into the per-octave arrays
    wavelength: np.ndarray  # (m,) metres
    amplitude: np.ndarray  # (m,)
    ridged: np.ndarray  # (m,) bool
    count: np.ndarray  # (m,) waves per octave

    @staticmethod
    def make(
        seed: int, wavelengths: Sequence[float], amplitudes: Sequence[float], waves: Sequence[int],
        ridged: Sequence[bool] | None = None, drift: float = 0.0,
    ) -> _Octaves:  # fmt: skip
        rng = np.random.default_rng(seed)  # PCG64: a stable stream across numpy versions and platforms
        count = np.asarray(waves, int)
        n = int(count.sum())
        vectors = rng.normal(size=(n, 3))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return _Octaves(
            direction=vectors,
            phase=rng.uniform(0.0, 2.0 * math.pi, n),
            drift=rng.uniform(-drift, drift, n) if drift else np.zeros(n),
            octave=np.repeat(np.arange(len(count)), count),
            wavelength=np.asarray(wavelengths, float),
            amplitude=np.asarray(amplitudes, float),
            ridged=np.asarray(ridged if ridged is not None else [False] * len(count), bool),
            count=count,
        )

    def combine(self, o: int | np.integer, value: np.ndarray, weight: float) -> np.ndarray:
        """Scale an octave's summed sines into its contribution (in place where possible)."""
        value *= value.dtype.type(1.0 / math.sqrt(self.count[o]))
        if self.ridged[o]:
            np.abs(value, out=value)
            value *= value.dtype.type(-2.0)
            value += value.dtype.type(1.0)
        value *= value.dtype.type(self.amplitude[o] * weight)
        return value


# Elevation: continental swell (sets lowland vs upland), hills whose strength follows the swell (ridged in
# the middle octaves) and fine roughness. Wavelengths fall by ~2.2 per octave, amplitudes roughly with
# them. Long octaves get more waves (more isotropic, and nearly free: they are summed on the lattice).
_CONTINENT = _Octaves.make(7101, [900e3, 420e3, 190e3, 90e3], [1.0, 0.62, 0.38, 0.22], [7, 7, 7, 7])
_HILLS = _Octaves.make(
    7202, [42e3, 19e3, 8.5e3, 3.8e3, 1.7e3], [260.0, 170.0, 95.0, 45.0, 20.0], [7, 5, 4, 4, 3],
    ridged=[False, True, True, True, False],
)  # fmt: skip
_ROUGH = _Octaves.make(7303, [760.0, 340.0, 150.0, 70.0], [9.0, 4.0, 1.8, 0.8], [3, 3, 3, 2])
# Domain warp of the hills: three smooth fields displace the positions at which the hill octaves are
# evaluated by up to ~2.5 km, bending ridge lines so they stop looking like interference rings. Long
# wavelengths keep the warp nearly linear across a lattice cell (sub-metre interpolation error).
_WARP = tuple(_Octaves.make(seed, [90e3, 55e3], [1.0, 0.6], [4, 4]) for seed in (7401, 7402, 7403))
_WARP_M = 2500.0

# Clouds: drifting, evolving cells from synoptic to convective scales.
_CLOUDS = _Octaves.make(
    8101, [260e3, 110e3, 48e3, 21e3, 9e3, 4e3, 1.8e3, 0.8e3], [1.0, 0.8, 0.62, 0.45, 0.3, 0.2, 0.12, 0.07],
    [7, 7, 6, 3, 3, 3, 2, 2], drift=2.5,
)  # fmt: skip
_COVER = _Octaves.make(8202, [1500e3, 600e3], [1.0, 0.7], [5, 5], drift=0.9)
_WIND_M_PER_DAY = np.array([310e3, 140e3, -90e3])  # the whole cloud field drifts through 3-D space over time
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class _Lattice:
    """Pixel-centre positions of a raster grid, interpolated from a coarse node lattice.

    Nodes sit at multiples of ``K`` pixels in the zone's global pixel grid, so every raster of the same
    zone and resolution uses the same nodes and the same interpolation weights for a given pixel: values
    at a pixel never depend on which slice renders it (bit-identical overlaps). Per wave, the phase at
    the nodes is computed exactly in float64, reduced modulo 2*pi per lattice cell, and interpolated
    bilinearly (exact, since the phase is linear in position) in float32 within the cell, where the
    sine is cheap. Node spacing is ~512 m, far below the curvature scale of the projection.
    """

    def __init__(self, epsg: int, transform: Affine, width: int, height: int, resolution: float) -> None:
        self.k = k = max(1, int(512.0 // resolution))
        col0 = round(transform.c / resolution)
        row0 = round(-transform.f / resolution)  # global row index grows southwards
        self.cell_x = np.arange(math.floor(col0 / k), math.floor((col0 + width - 1) / k) + 1)
        self.cell_y = np.arange(math.floor(row0 / k), math.floor((row0 + height - 1) / k) + 1)
        node_x = np.append(self.cell_x, self.cell_x[-1] + 1) * (k * resolution)
        node_y = -np.append(self.cell_y, self.cell_y[-1] + 1) * (k * resolution)
        gx, gy = np.meshgrid(node_x, node_y)
        lon, lat = _transformer(epsg, "EPSG:4326").transform(gx, gy)
        self.lon, self.lat = lon, lat
        self.xyz = _ecef(lon, lat)
        self.offset = (row0 - self.cell_y[0] * k, col0 - self.cell_x[0] * k)
        self.shape = (height, width)
        f = ((np.arange(k) + 0.5) / k).astype(np.float32)
        self.fx = f[None, None, None, :]
        self.fy = f[None, :, None, None]
        self.fxy = (f[:, None] * f[None, :])[None, :, None, :]

    def evaluate(self, field: Callable[[_Lattice], np.ndarray], band_pixels: int = 1 << 20) -> np.ndarray:
        """Evaluate ``field`` (a function of a lattice returning its padded (ny, k, nx, k) values) in bands
        of lattice-cell rows of about ``band_pixels`` pixels, and return the raster's (height, width).
        Banding bounds memory (and keeps arrays cache-sized); per-pixel values do not depend on it."""
        ny, nx = len(self.cell_y), len(self.cell_x)
        rows = max(1, band_pixels // (self.k * self.k * nx))
        padded: np.ndarray | None = None
        for start in range(0, ny, rows):
            stop = min(ny, start + rows)
            block = field(self._band(start, stop))
            if padded is None:
                padded = np.empty((ny, self.k, nx, self.k), block.dtype)
            padded[start:stop] = block
        assert padded is not None
        return np.ascontiguousarray(self.crop(padded))

    def _band(self, start: int, stop: int) -> _Lattice:
        band = object.__new__(_Lattice)
        band.__dict__.update(self.__dict__)
        band.cell_y = self.cell_y[start:stop]
        band.lon, band.lat = self.lon[start : stop + 1], self.lat[start : stop + 1]
        band.xyz = self.xyz[:, start : stop + 1]
        return band

    def crop(self, padded: np.ndarray) -> np.ndarray:
        """Cell-blocked array (ny, k, nx, k) -> the raster's (height, width)."""
        ny, k, nx, _ = padded.shape
        flat = padded.reshape(ny * k, nx * k)
        r, c = self.offset
        return flat[r : r + self.shape[0], c : c + self.shape[1]]

    def waves(self, octaves: _Octaves, xyz: np.ndarray, resolution: float, days: float = 0.0) -> np.ndarray:
        """Sum of the octaves over the padded grid, as float32 (ny, k, nx, k).

        Octaves at least 64 node spacings long are evaluated exactly at the nodes and interpolated once
        (error below 1e-4 of their amplitude); shorter ones get a per-pixel sine for every wave.
        """
        total = np.zeros((len(self.cell_y), self.k, len(self.cell_x), self.k), np.float32)
        weights = _band_limit(octaves, resolution)
        node_sum = np.zeros(xyz.shape[1:])
        for o in np.flatnonzero(weights > 0):
            members = np.flatnonzero(octaves.octave == o)
            if octaves.wavelength[o] >= 64.0 * self.k * resolution:
                value = np.zeros(xyz.shape[1:])
                for i in members.tolist():
                    value += np.sin(np.mod(_phase(octaves, i, xyz, days), 2.0 * math.pi))
                node_sum += octaves.combine(o, value, weights[o])
                continue
            value = np.zeros_like(total)
            for i in members.tolist():
                wave = self._bilinear(_phase(octaves, i, xyz, days), wrap=True)
                np.sin(wave, out=wave)
                value += wave
            total += octaves.combine(o, value, weights[o])
        if node_sum.any():
            total += self._bilinear(node_sum, wrap=False)
        return total

    def _bilinear(self, nodes: np.ndarray, *, wrap: bool) -> np.ndarray:
        """Node values (float64) -> float32 pixel values (ny, k, nx, k), bilinear within each lattice cell.
        With ``wrap`` (phases) each cell's corner value is reduced modulo 2*pi first; the in-cell
        differences stay small, so float32 keeps ~1e-5 rad precision."""
        v00, v10, v01, v11 = nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, :-1], nodes[1:, 1:]
        base = (np.mod(v00, 2.0 * math.pi) if wrap else v00).astype(np.float32)[:, None, :, None]
        dx = (v10 - v00).astype(np.float32)[:, None, :, None]
        dy = (v01 - v00).astype(np.float32)[:, None, :, None]
        dxy = (v11 - v10 - v01 + v00).astype(np.float32)[:, None, :, None]
        out = dxy * self.fxy
        out += dx * self.fx
        out += dy * self.fy
        out += base
        return out


def _phase(octaves: _Octaves, i: int | np.integer, xyz: np.ndarray, days: float) -> np.ndarray:
    """Phase of wave ``i`` at 3-D positions, with plain element-wise float64 operations: unlike a BLAS dot
    product (whose kernels may fuse or reorder differently at array edges) the result for a point never
    depends on where the point sits in the array."""
    k = octaves.direction[i] * (2.0 * math.pi / octaves.wavelength[octaves.octave[i]])
    phase = xyz[0] * k[0]
    phase += xyz[1] * k[1]
    phase += xyz[2] * k[2]
    phase += octaves.phase[i] + octaves.drift[i] * days
    return phase


def _band_limit(octaves: _Octaves, resolution: float) -> np.ndarray:
    """Fade out waves shorter than ~4 pixels (a coarser raster is a smoother one, and no aliasing)."""
    return np.clip((octaves.wavelength / max(resolution, 1e-9) - 2.0) / 2.0, 0.0, 1.0)


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Earth-centred 3-D positions (metres, WGS 84 ellipsoid surface) of lon/lat points, shape (3, ...).
    PROJ transforms point by point, so a point's position is bit-identical whatever array it comes in."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    x, y, z = _transformer("EPSG:4326", "EPSG:4978").transform(lon, lat, np.zeros_like(lon))
    return np.stack([np.asarray(x), np.asarray(y), np.asarray(z)])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shape_elevation(continent: np.ndarray, hills: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """Combine the octave sums into metres: lowlands near sea level, rugged uplands up to ~1300 m."""
    c = continent / np.float32(1.4)  # roughly -1..1
    rugged = _smoothstep(-0.35, 0.75, c).astype(np.float32)
    height = (
        np.float32(230.0) + np.float32(430.0) * c + (np.float32(0.25) + np.float32(0.75) * rugged) * hills
    )
    height += rough
    # Rational soft clamps (no transcendental functions: identical results whatever the SIMD path):
    # the sea floor flattens towards -20 m and peaks roll off towards 1300 m.
    below = height < 0
    u = -height[below] / np.float32(60.0)
    height[below] = np.float32(-20.0) * u / (np.float32(1.0) + u)
    high = height > 1050
    v = (height[high] - np.float32(1050.0)) / np.float32(250.0)
    height[high] = np.float32(1050.0) + np.float32(250.0) * v / (np.float32(1.0) + v)
    # Keep 1/128 m (~8 mm, finer than any real DEM's precision): multiples of a power of two are exact in
    # float32, and the zeroed low mantissa bits let DEFLATE + float predictor halve the file size.
    height *= np.float32(128.0)
    np.round(height, out=height)
    height *= np.float32(1.0 / 128.0)
    return height


def _classify_clouds(cloud: np.ndarray, cover: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Thresholds on the cloud field: thick where dense, thin on the fringes, shadow under offset thick cloud."""
    threshold = np.float32(0.55) - np.float32(0.45) * cover  # cover ~ -1.5..1.5: clear days to overcast
    classes = np.zeros(cloud.shape, np.uint8)
    classes[shade > threshold] = 3
    classes[cloud > threshold - np.float32(0.35)] = 9
    classes[cloud > threshold] = 6
    return classes


def _days(date: datetime) -> float:
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    return (date - _EPOCH).total_seconds() / 86400.0


def _towards_sun(lon: np.ndarray, lat: np.ndarray, date: datetime) -> np.ndarray:
    """3-D positions of the points where a 3.5 km-high cloud must be to shade (lon, lat) at local noon on
    ``date``: along the ground towards the sun (south of the subsolar latitude's north, and vice versa),
    farther when the sun is low. Geodesic steps via PROJ's Geod (point by point, hence deterministic)."""
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    declination = 23.44 * math.sin(2.0 * math.pi * (date.timetuple().tm_yday - 81) / 365.0)
    elevation = np.clip(90.0 - np.abs(lat - declination), 12.0, 90.0)
    distance = 3500.0 / np.tan(np.radians(elevation))
    azimuth = np.where(lat > declination, 180.0, 0.0)
    lon2, lat2, _ = _GEOD.fwd(lon.ravel(), lat.ravel(), azimuth.ravel(), distance.ravel())
    return _ecef(np.reshape(lon2, lon.shape), np.reshape(lat2, lat.shape))


def elevation_lonlat(lon: Any, lat: Any, *, resolution_m: float = 10.0) -> np.ndarray:
    """The world's elevation (float32 metres) at lon/lat points: the reference the renderer samples at pixel
    centres. Rendered pixels differ from it by a few centimetres at most (the longest octaves and the domain
    warp are interpolated from a ~512 m lattice). ``resolution_m`` band-limits the field like a raster of
    that resolution would. Shapes broadcast like numpy arrays."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    xyz = _ecef(lon, lat)
    continent = _direct_waves(_CONTINENT, xyz, resolution_m)
    hills = _direct_waves(_HILLS, _warped(xyz), resolution_m)
    return _shape_elevation(continent, hills, _direct_waves(_ROUGH, xyz, resolution_m)).astype(np.float32)


def _warped(xyz: np.ndarray) -> np.ndarray:
    """Positions displaced by the hills' domain warp (float64, element-wise: deterministic per point)."""
    shifted = np.array(xyz, dtype=float, copy=True)
    for axis, octaves in enumerate(_WARP):
        field = np.zeros(xyz.shape[1:])
        for o in range(len(octaves.wavelength)):
            value = np.zeros(xyz.shape[1:])
            for i in np.flatnonzero(octaves.octave == o):
                value += np.sin(np.mod(_phase(octaves, i, xyz, 0.0), 2.0 * math.pi))
            field += octaves.combine(o, value, 1.0)
        shifted[axis] += _WARP_M * field
    return shifted


def classification_lonlat(lon: Any, lat: Any, date: datetime, *, resolution_m: float = 20.0) -> np.ndarray:
    """The world's cloud classification (uint8 classes of :data:`CLOUD_CLASSES`) at lon/lat on ``date``."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    days = _days(date)
    xyz = _ecef(lon, lat)
    drifted = xyz - (_WIND_M_PER_DAY * days)[:, None].reshape(3, *([1] * lon.ndim))
    cloud = _direct_waves(_CLOUDS, drifted, resolution_m, days)
    cover = _direct_waves(_COVER, xyz, resolution_m, days)
    sun = _towards_sun(lon, lat, date) - (_WIND_M_PER_DAY * days).reshape(3, *([1] * lon.ndim))
    shade = _direct_waves(_CLOUDS, sun, resolution_m, days)
    return _classify_clouds(cloud, cover, shade)


def _direct_waves(octaves: _Octaves, xyz: np.ndarray, resolution: float, days: float = 0.0) -> np.ndarray:
    """The octave sum at arbitrary points (no lattice): the reference the renderer approximates."""
    weights = _band_limit(octaves, resolution)
    total = np.zeros(xyz.shape[1:], np.float32)
    for o in np.flatnonzero(weights > 0):
        value = np.zeros(xyz.shape[1:])
        for i in np.flatnonzero(octaves.octave == o):
            value += np.sin(np.mod(_phase(octaves, i, xyz, days), 2.0 * math.pi))
        total += octaves.combine(o, value, weights[o]).astype(np.float32)
    return total


# ---------------------------------------------------------------------------------------------------------
# The pixel grid of a slice
# ---------------------------------------------------------------------------------------------------------


def _slice_grid(slc: Slice, resolution: float) -> tuple[Affine, int, int]:
    """The slice's pixel grid in its UTM zone: its rectangle snapped outwards to multiples of the resolution."""
    if not resolution > 0:
        raise ValueError(f"resolution_m must be positive, got {resolution}")
    if slc.bounds_native is not None:
        x0, y0, x1, y1 = slc.bounds_native
    else:
        x0, y0, x1, y1 = _transformer("EPSG:4326", slc.epsg).transform_bounds(
            *slc.bounds_lonlat, densify_pts=21
        )
    eps = 1e-6
    c0, c1 = math.floor(x0 / resolution + eps), math.ceil(x1 / resolution - eps)
    r0, r1 = math.floor(y0 / resolution + eps), math.ceil(y1 / resolution - eps)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    if width * height > 40_000 * 40_000:
        raise ValueError(f"slice {slc.index} would be {width}x{height} pixels at {resolution} m; too large")
    return (
        Affine(resolution, 0.0, c0 * resolution, 0.0, -resolution, (r0 + height) * resolution),
        width,
        height,
    )
