"""Tests of the emulator's geospatial engine: file analysis, region slicing and the synthetic world rasters.

Rasters are kept tiny (coarse resolutions); every expectation is computed independently of the code under
test (with rasterio/numpy/pyproj directly) rather than hard-coded from a previous run.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas
import pyogrio
import pyproj
import pystac
import pytest
import rasterio
import rasterio.merge
import shapely
from affine import Affine
from jsonschema import Draft7Validator
from PIL import Image
from pystac.validation.local_validator import get_local_schema_cache
from rasterio.crs import CRS
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from fusion_stac.emulator import geodata, rendering, terrain
from fusion_stac.emulator.geodata import Slice

SDK_DIR = Path(importlib.util.find_spec("fusion_platform").submodule_search_locations[0])
LAKE_DISTRICT = SDK_DIR / "lake_district.geojson"
GEOD = pyproj.Geod(ellps="WGS84")
DATE = datetime(2021, 3, 27, tzinfo=timezone.utc)
PNG_BYTES_HEADER = b"\x89PNG\r\n\x1a\n"
CORE_ITEM_SCHEMA = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"


# ----- helpers ---------------------------------------------------------------------------------------------


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32630",
    transform: Affine | None = None,
    nodata: float | None = None,
    driver: str = "GTiff",
    units: str | None = None,
) -> Path:
    """A small raster written directly with rasterio (independent of the code under test)."""
    if data.ndim == 2:
        data = data[None]
    transform = transform or Affine(100.0, 0.0, 400_000.0, 0.0, -100.0, 6_200_000.0)
    profile = {
        "driver": driver,
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = CRS.from_user_input(crs)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if units:
            dst.units = (units,) * data.shape[0]
    return path


def feature_collection(features: list[dict], crs: str | None = None) -> str:
    document: dict = {"type": "FeatureCollection", "features": features}
    if crs:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    return json.dumps(document)


def feature(geometry: dict, **properties: object) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


SQUARE = {
    "type": "Polygon",
    "coordinates": [[[-4.3, 55.8], [-4.2, 55.8], [-4.2, 55.9], [-4.3, 55.9], [-4.3, 55.8]]],
}


def square_slice(
    x0: float,
    y0: float,
    size: float,
    epsg: int = 32630,
    *,
    native: bool = True,
    index: int = 1,
    count: int = 1,
) -> Slice:
    """A slice covering a UTM square (its lon/lat footprint as the geometry)."""
    box = shapely.box(x0, y0, x0 + size, y0 + size)
    transformer = pyproj.Transformer.from_crs(epsg, 4326, always_xy=True)
    lonlat = shapely.transform(
        shapely.segmentize(box, size / 20), lambda xy: np.column_stack(transformer.transform(*xy.T))
    )
    return Slice(
        index=index,
        count=count,
        bounds_lonlat=lonlat.bounds,
        epsg=epsg,
        geometry_wkb=shapely.to_wkb(lonlat),
        bounds_native=(x0, y0, x0 + size, y0 + size) if native else None,
    )


def region_wkb(name: str) -> bytes:
    analysis = geodata.analyse_file(geodata.region_path(name), "GeoJSON", f"{name}.geojson")
    assert analysis.geometry_wkb is not None
    return analysis.geometry_wkb


def pixel_centres_lonlat(src: rasterio.DatasetReader) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(src.width) + 0.5, np.arange(src.height) + 0.5)
    t = src.transform
    xs, ys = t.c + cols * t.a + rows * t.b, t.f + cols * t.d + rows * t.e
    return pyproj.Transformer.from_crs(src.crs, 4326, always_xy=True).transform(xs, ys)


@functools.cache
def core_item_validator() -> Draft7Validator:
    """The STAC core Item schema bundled with pystac (v1.1.0; offline). Extension schemas need the network."""
    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7)) for uri, schema in cache.items()
    )
    return Draft7Validator(cache[CORE_ITEM_SCHEMA], registry=registry)


def assert_valid_core_item(item: dict) -> None:
    # Our items are 1.0.0; the core Item rules the bundled 1.1.0 schema checks are the same for them.
    core_item_validator().validate({**item, "stac_version": "1.1.0", "stac_extensions": []})


def assert_error(analysis: geodata.Analysis, *words: str) -> None:
    fields = analysis.fields
    assert fields["error"] is True
    assert "publishable" not in fields
    assert isinstance(fields["size"], int)
    for word in words:
        assert word.lower() in fields["description"].lower(), fields["description"]
    assert analysis.geometry_wkb is None


def assert_good(analysis: geodata.Analysis, path: Path) -> dict:
    fields = analysis.fields
    assert "error" not in fields, fields.get("description")
    assert fields["publishable"] is True
    assert fields["size"] == path.stat().st_size
    assert fields["number_of_ingesters"] == len(fields["ingesters"]) >= 1
    assert fields["ingesters"]["Common"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    json.dumps(fields)  # JSON-ready: no numpy scalars, no NaN
    assert_valid_core_item(fields["stac_item"])
    item = pystac.Item.from_dict(fields["stac_item"])
    assert item.assets["asset"].href == fields["stac_item"]["assets"]["asset"]["href"]
    assert fields["stac_item"]["assets"]["asset"]["file:size"] == path.stat().st_size
    return fields


# ----- rasters ---------------------------------------------------------------------------------------------


def test_geotiff_analysis_statistics_exclude_nodata(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 15.0, (40, 30)).astype(np.float32)
    data[:5, :] = -9999.0
    path = write_raster(tmp_path / "a.tif", data, nodata=-9999.0, units="metre")
    analysis = geodata.analyse_file(path, "GeoTIFF", "a.tif")
    fields = assert_good(analysis, path)

    valid = data[5:].astype(np.float64)
    selector = fields["selectors"][0]
    assert selector["selector"] == "1" and selector["category"] == "Raster"
    assert selector["data_type"] == "float32" and selector["unit"] == "m"
    assert selector["minimum"] == pytest.approx(valid.min())
    assert selector["maximum"] == pytest.approx(valid.max())
    assert selector["mean"] == pytest.approx(valid.mean(), rel=1e-5)
    assert selector["sd"] == pytest.approx(valid.std(), rel=1e-5)
    assert len(selector["histogram"]) >= 10
    assert sum(selector["histogram"]) == pytest.approx(100.0, abs=1e-3)
    assert selector["histogram_minimum"] == pytest.approx(valid.min())

    assert fields["crs"] == "EPSG:32630"
    assert fields["resolution"] == 100
    transformer = pyproj.Transformer.from_crs(32630, 4326, always_xy=True)
    expected = transformer.transform_bounds(400_000, 6_196_000, 403_000, 6_200_000, densify_pts=21)
    assert fields["bounds"] == pytest.approx(list(expected), abs=1e-6)
    assert fields["area"] == pytest.approx(3000 * 4000, rel=0.01)  # UTM is nearly conformal/equal-area here
    raster = fields["ingesters"]["Raster"]
    assert (raster["width"], raster["height"], raster["nodata"], raster["dtype"]) == (
        30,
        40,
        -9999.0,
        "float32",
    )
    assert raster["transform"] == [100.0, 0.0, 400_000.0, 0.0, -100.0, 6_200_000.0]
    assert raster["epsg"] == 32630
    item = fields["stac_item"]
    assert item["properties"]["proj:epsg"] == 32630
    assert item["properties"]["proj:shape"] == [40, 30]
    assert item["properties"]["proj:transform"] == raster["transform"]
    assert item["bbox"] == fields["bounds"]
    assert item["id"] == "a"

    footprint = shapely.from_wkb(analysis.geometry_wkb)
    centre = transformer.transform(401_500, 6_198_000)
    assert footprint.contains(shapely.Point(centre))

    image = Image.open(io.BytesIO(analysis.preview_png))
    assert analysis.preview_png.startswith(PNG_BYTES_HEADER)
    assert image.mode == "RGBA" and image.size == (30, 40)
    alpha = np.asarray(image)[..., 3]
    assert (alpha[:5] == 0).all() and (alpha[5:] == 255).all()


def test_classification_histogram_bins_are_classes_in_percent(tmp_path: Path) -> None:
    data = np.zeros((20, 20), np.uint8)
    data[:, 5:10] = 3
    data[:, 10:12] = 6
    data[:, 12:] = 9
    data[0, :] = 255
    path = write_raster(tmp_path / "c.tif", data, nodata=255)
    selector = geodata.analyse_file(path, "GeoTIFF", "c.tif").fields["selectors"][0]
    histogram = selector["histogram"]
    assert len(histogram) == 10
    valid = data[1:]
    for value in (0, 3, 6, 9):
        assert histogram[value] == pytest.approx(100.0 * (valid == value).sum() / valid.size)
    assert sum(histogram[i] for i in (1, 2, 4, 5, 7, 8)) == 0
    assert (selector["histogram_minimum"], selector["histogram_maximum"]) == (-0.5, 9.5)


def test_classification_with_few_classes_keeps_class_bins(tmp_path: Path) -> None:
    data = np.where(np.arange(100).reshape(10, 10) % 2 == 0, 0, 3).astype(np.uint8)
    path = write_raster(tmp_path / "c.tif", data, nodata=255)
    histogram = geodata.analyse_file(path, "GeoTIFF", "c.tif").fields["selectors"][0]["histogram"]
    assert len(histogram) == 10 and histogram[0] == histogram[3] == pytest.approx(50.0)


def test_geographic_raster_resolution_is_in_metres(tmp_path: Path) -> None:
    transform = Affine(0.01, 0.0, -4.5, 0.0, -0.01, 56.0)
    path = write_raster(
        tmp_path / "g.tif", np.ones((10, 10), np.uint16), crs="EPSG:4326", transform=transform
    )
    fields = assert_good(geodata.analyse_file(path, "GeoTIFF", "g.tif"), path)
    expected = GEOD.inv(-4.45, 55.95, -4.44, 55.95)[2]
    assert fields["resolution"] == round(expected)
    assert fields["crs"] == "EPSG:4326"
    assert fields["bounds"] == pytest.approx([-4.5, 55.9, -4.4, 56.0])


def test_multiband_raster_has_one_selector_per_band(tmp_path: Path) -> None:
    data = np.stack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30)])
    path = write_raster(tmp_path / "rgb.tif", data)
    analysis = geodata.analyse_file(path, "GeoTIFF", "rgb.tif")
    fields = assert_good(analysis, path)
    assert [s["selector"] for s in fields["selectors"]] == ["1", "2", "3"]
    assert [s["mean"] for s in fields["selectors"]] == [10.0, 20.0, 30.0]
    rgba = np.asarray(Image.open(io.BytesIO(analysis.preview_png)))
    assert tuple(rgba[0, 0]) == (10, 20, 30, 255)


def test_jpeg2000_and_dem(tmp_path: Path) -> None:
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    jp2 = write_raster(tmp_path / "a.jp2", data, driver="JP2OpenJPEG")
    fields = assert_good(geodata.analyse_file(jp2, "JPEG2000", "a.jp2"), jp2)
    assert fields["crs"] == "EPSG:32630" and fields["ingesters"]["Raster"]["driver"] == "JP2OpenJPEG"
    assert fields["stac_item"]["assets"]["asset"]["type"] == "image/jp2"

    dem = write_raster(tmp_path / "a.dem", np.linspace(0, 500, 100, dtype=np.float32).reshape(10, 10))
    fields = assert_good(geodata.analyse_file(dem, "DEM", "a.dem"), dem)
    assert fields["selectors"][0]["unit"] == "m"  # DEMs are in metres unless they say otherwise
    assert fields["selectors"][0]["maximum"] == pytest.approx(500.0)


@pytest.mark.parametrize(
    ("content", "file_type", "words"),
    [
        (PNG_BYTES_HEADER + b"\x00" * 64, "GeoTIFF", ["PNG"]),
        (b"hello, this is not a raster\n", "GeoTIFF", ["text"]),
        (b'{"type": "FeatureCollection", "features": []}', "JPEG2000", ["JSON"]),
        (b"II*\x00" + b"\x00" * 100, "GeoTIFF", ["not a valid GeoTIFF"]),
        (PNG_BYTES_HEADER + b"\x00" * 64, "DEM", ["PNG"]),
    ],
)
def test_bad_rasters_are_errors(tmp_path: Path, content: bytes, file_type: str, words: list[str]) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(content)
    assert_error(geodata.analyse_file(path, file_type, "bad.bin"), *words)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_truncated_and_ungeoreferenced_geotiffs_are_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    good = write_raster(tmp_path / "good.tif", rng.normal(size=(300, 300)).astype(np.float32))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_error(geodata.analyse_file(truncated, "GeoTIFF", "truncated.tif"), "truncated.tif")

    plain = write_raster(
        tmp_path / "plain.tif", np.ones((5, 5), np.uint8), crs=None, transform=Affine.identity()
    )
    assert_error(geodata.analyse_file(plain, "GeoTIFF", "plain.tif"), "coordinate reference system")


def test_geotiff_labelled_jpeg2000_is_an_error(tmp_path: Path) -> None:
    path = write_raster(tmp_path / "x.tif", np.ones((5, 5), np.uint8))
    assert_error(geodata.analyse_file(path, "JPEG2000", "x.jp2"), "TIFF")


# ----- vectors ---------------------------------------------------------------------------------------------


def test_geojson_mixed_features_counts_area_length_selectors(tmp_path: Path) -> None:
    line = {"type": "LineString", "coordinates": [[-4.0, 55.0], [-3.9, 55.0]]}
    point = {"type": "Point", "coordinates": [-4.25, 55.85]}
    text = feature_collection(
        [
            feature(SQUARE, name="square", value=1.5),
            feature(line, name="line", value=2.5),
            feature(point, name="pt", value=None),
        ]
    )
    path = tmp_path / "mixed.geojson"
    path.write_text(text)
    analysis = geodata.analyse_file(path, "GeoJSON", "mixed.geojson")
    fields = assert_good(analysis, path)
    assert (fields["points"], fields["lines"], fields["polygons"]) == (1, 1, 1)
    assert fields["crs"] == "EPSG:4326"
    assert fields["bounds"] == pytest.approx([-4.3, 55.0, -3.9, 55.9])
    square = shapely.geometry.shape(SQUARE)
    area, perimeter = GEOD.geometry_area_perimeter(shapely.orient_polygons(square))
    assert fields["area"] == pytest.approx(abs(area), rel=1e-6)
    line_length = GEOD.line_length([-4.0, -3.9], [55.0, 55.0])
    assert fields["length"] == pytest.approx(perimeter + line_length, rel=1e-6)
    by_name = {s["selector"]: s for s in fields["selectors"]}
    assert set(by_name) == {"name", "value"}
    assert by_name["name"]["data_type"] == "string"
    assert by_name["name"]["initial_values"] == ["square", "line", "pt"]
    assert by_name["value"]["minimum"] == 1.5 and by_name["value"]["maximum"] == 2.5
    assert by_name["value"]["category"] == "Mixed"
    assert fields["geojson"] == text  # small GeoJSON content is kept
    footprint = shapely.from_wkb(analysis.geometry_wkb)
    assert footprint.covers(shapely.Point(-4.25, 55.85)) and footprint.covers(shapely.Point(-3.95, 55.0))
    assert fields["stac_item"]["geometry"] is not None


def test_large_geojson_content_is_not_inlined(tmp_path: Path) -> None:
    features = [
        feature({"type": "Point", "coordinates": [-4.0 + i * 1e-4, 55.0]}, label="x" * 40, n=i)
        for i in range(1200)
    ]
    path = tmp_path / "big.geojson"
    path.write_text(feature_collection(features))
    assert path.stat().st_size > 64 * 1024
    fields = assert_good(geodata.analyse_file(path, "GeoJSON", "big.geojson"), path)
    assert "geojson" not in fields
    assert fields["points"] == 1200 and fields["area"] == 0
    assert next(s for s in fields["selectors"] if s["selector"] == "n")["maximum"] == 1199


def test_lake_district_epsg27700_is_reported_in_lonlat() -> None:
    analysis = geodata.analyse_file(LAKE_DISTRICT, "GeoJSON", LAKE_DISTRICT.name)
    fields = assert_good(analysis, LAKE_DISTRICT)
    assert fields["crs"] == "EPSG:27700"
    west, south, east, north = fields["bounds"]
    assert -3.6 < west < -3.3 and -2.75 < east < -2.5 and 54.1 < south < 54.3 and 54.65 < north < 54.85
    assert fields["polygons"] == 1
    # The park is ~2,362 km²; planar area in the (nearly equal-area here) national grid agrees with geodesic.
    _meta, _, wkb, _ = pyogrio.raw.read(LAKE_DISTRICT)
    planar = shapely.area(shapely.from_wkb(wkb[0]))
    assert fields["area"] == pytest.approx(planar, rel=0.01)
    assert "geojson" not in fields  # 3.7 MB
    footprint = shapely.from_wkb(analysis.geometry_wkb)
    assert footprint.is_valid and footprint.bounds == pytest.approx(fields["bounds"])
    assert shapely.get_num_coordinates(shapely.geometry.shape(fields["stac_item"]["geometry"])) <= 4000


@pytest.mark.parametrize(
    ("content", "file_type", "words"),
    [
        (b'{"type": "FeatureCollection", "features": [', "GeoJSON", ["does not parse"]),
        (PNG_BYTES_HEADER + b"\x00" * 64, "GeoJSON", ["PNG"]),
        (b'{"type": "FeatureCollection", "features": []}', "GeoJSON", ["no features"]),
        (b"<html><body>not kml</body></html>", "KML", ["XML/HTML"]),
        (b"just text", "KMZ", ["zip"]),
        (b"just text", "ESRI Shapefile", ["zip"]),
    ],
)
def test_bad_vectors_are_errors(tmp_path: Path, content: bytes, file_type: str, words: list[str]) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    assert_error(geodata.analyse_file(path, file_type, "bad"), *words)


KML = """<?xml version="1.0" encoding="UTF-8"?>
<kml xmlns="http://www.opengis.net/kml/2.2"><Document>
<Placemark><name>Square</name><Polygon><outerBoundaryIs><LinearRing><coordinates>
-4.3,55.8,0 -4.2,55.8,0 -4.2,55.9,0 -4.3,55.9,0 -4.3,55.8,0
</coordinates></LinearRing></outerBoundaryIs></Polygon></Placemark>
<Placemark><name>Pin</name><Point><coordinates>-4.25,55.85,0</coordinates></Point></Placemark>
</Document></kml>
"""


def test_kml_and_kmz(tmp_path: Path) -> None:
    kml = tmp_path / "doc.kml"
    kml.write_text(KML)
    fields = assert_good(geodata.analyse_file(kml, "KML", "doc.kml"), kml)
    assert (fields["points"], fields["polygons"]) == (1, 1)
    assert fields["bounds"] == pytest.approx([-4.3, 55.8, -4.2, 55.9])
    names = next(s for s in fields["selectors"] if s["selector"].lower() == "name")
    assert names["initial_values"] == ["Square", "Pin"]

    kmz = tmp_path / "stored-without-extension"
    with zipfile.ZipFile(kmz, "w") as archive:
        archive.writestr("doc.kml", KML)
    fields = assert_good(geodata.analyse_file(kmz, "KMZ", "area.kmz"), kmz)
    assert (fields["points"], fields["polygons"]) == (1, 1)

    empty_zip = tmp_path / "empty.kmz"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "nothing here")
    assert_error(geodata.analyse_file(empty_zip, "KMZ", "empty.kmz"), ".kml")


def make_shapefile_zip(tmp_path: Path, *, parts: tuple[str, ...] = (".shp", ".shx", ".dbf", ".prj")) -> Path:
    folder = tmp_path / "shp"
    folder.mkdir()
    bng = shapely.box(330_000, 500_000, 340_000, 510_000)
    pyogrio.raw.write(
        folder / "parcels.shp",
        geometry=np.array([shapely.to_wkb(bng)], dtype=object),
        field_data=[np.array([7], dtype=np.int32)],
        fields=["id"],
        geometry_type="Polygon",
        crs="EPSG:27700",
        driver="ESRI Shapefile",
    )
    archive_path = tmp_path / "parcels.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for file in sorted(folder.iterdir()):
            if file.suffix in parts:
                archive.write(file, arcname=file.name)
    return archive_path


def test_zipped_shapefile_in_british_national_grid(tmp_path: Path) -> None:
    path = make_shapefile_zip(tmp_path)
    analysis = geodata.analyse_file(path, "ESRI Shapefile", "parcels.zip")
    fields = assert_good(analysis, path)
    assert fields["crs"] == "EPSG:27700"
    transformer = pyproj.Transformer.from_crs(27700, 4326, always_xy=True)
    expected = transformer.transform_bounds(330_000, 500_000, 340_000, 510_000, densify_pts=21)
    assert fields["bounds"] == pytest.approx(list(expected), abs=1e-5)
    assert fields["area"] == pytest.approx(1e8, rel=0.002)  # 10 km x 10 km (grid scale factor ~0.9996)
    assert fields["selectors"][0]["selector"] == "id" and fields["selectors"][0]["minimum"] == 7


def test_shapefile_zip_missing_parts_is_an_error(tmp_path: Path) -> None:
    path = make_shapefile_zip(tmp_path, parts=(".shp", ".prj"))
    assert_error(geodata.analyse_file(path, "ESRI Shapefile", "parcels.zip"), ".shx")
    no_shp = tmp_path / "no.zip"
    with zipfile.ZipFile(no_shp, "w") as archive:
        archive.writestr("notes.txt", "x")
    assert_error(geodata.analyse_file(no_shp, "ESRI Shapefile", "no.zip"), "no .shp")


# ----- other file types ------------------------------------------------------------------------------------


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(buffer, format="JPEG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.mark.parametrize(
    ("file_type", "content"),
    [
        ("CSV", b"slice,count,mean\n1,10,2.5\n2,12,3.0\n"),
        ("PNG", png_bytes()),
        ("JPEG", jpeg_bytes()),
        ("PDF", PDF),
        ("GZIP", gzip.compress(b"storage" * 100, mtime=0)),  # mtime=0: the same bytes in every xdist worker
        ("ZIP", None),
        ("Other", b"\x00\x01anything at all"),
        ("Something New", b"unknown types are treated as Other"),
    ],
    ids=["CSV", "PNG", "JPEG", "PDF", "GZIP", "ZIP", "Other", "Something New"],
)
def test_plain_file_types_are_publishable(tmp_path: Path, file_type: str, content: bytes | None) -> None:
    path = tmp_path / "file"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.txt", "a")
    else:
        path.write_bytes(content)
    analysis = geodata.analyse_file(path, file_type, "file")
    fields = assert_good(analysis, path)
    assert analysis.geometry_wkb is None and analysis.preview_png is None
    assert fields["stac_item"]["geometry"] is None and "bbox" not in fields["stac_item"]


@pytest.mark.parametrize(
    ("file_type", "content", "words"),
    [
        ("PNG", b'{"type": "FeatureCollection"}', ["JSON", "not a PNG"]),
        ("JPEG", png_bytes(), ["PNG"]),
        ("PNG", PNG_BYTES_HEADER + b"garbage", ["PNG"]),
        ("PDF", PDF[:30], ["end-of-file"]),
        ("GZIP", b"\x1f\x8b" + b"\xff" * 20, ["gzip"]),
        ("ZIP", b"PK\x03\x04 broken", ["zip"]),
        ("CSV", png_bytes(), ["PNG"]),
        ("CSV", b"", ["empty"]),
    ],
)
def test_bad_plain_files_are_errors(tmp_path: Path, file_type: str, content: bytes, words: list[str]) -> None:
    path = tmp_path / "file"
    path.write_bytes(content)
    assert_error(geodata.analyse_file(path, file_type, "file"), *words)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        geodata.analyse_file(tmp_path / "nope", "CSV", "nope.csv")


# ----- regions and slicing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [(-4.25, 55.86, 32630), (-0.5, 51.5, 32630), (0.5, 51.5, 32631), (151.2, -33.9, 32756), (180.0, 0.0, 32660),
     (-180.0, 0.0, 32601), (-6.0, 50.0, 32630), (-6.0001, 50.0, 32629)],
)  # fmt: skip
def test_utm_epsg(lon: float, lat: float, epsg: int) -> None:
    assert geodata.utm_epsg(lon, lat) == epsg


def test_shipped_regions() -> None:
    assert {"glasgow", "central_belt", "thames"} <= set(geodata.region_names())
    assert geodata.region_path("Glasgow.geojson") == geodata.region_path("glasgow")
    with pytest.raises(KeyError, match="available"):
        geodata.region_path("atlantis")
    for name in ("glasgow", "central_belt", "thames"):
        document = json.loads(geodata.region_path(name).read_text())
        assert len(document["features"]) == 1 and "CRS84" in document["crs"]["properties"]["name"]
        assert shapely.geometry.shape(document["features"][0]["geometry"]).is_valid
    west, south, east, north = shapely.from_wkb(region_wkb("glasgow")).bounds
    width = GEOD.inv(west, (south + north) / 2, east, (south + north) / 2)[2]
    assert 12_000 < width < 20_000


def test_small_region_is_one_slice() -> None:
    wkb = region_wkb("glasgow")
    (only,) = geodata.slice_region(wkb, slice_size_m=20_000, max_region_m=30_000)
    assert (only.index, only.count, only.epsg) == (1, 1, 32630)
    assert shapely.from_wkb(only.geometry_wkb).equals(shapely.from_wkb(wkb))
    assert only.bounds_lonlat == pytest.approx(shapely.from_wkb(wkb).bounds)


def test_central_belt_slices_tile_the_region() -> None:
    wkb = region_wkb("central_belt")
    region = shapely.from_wkb(wkb)
    slices = geodata.slice_region(wkb, slice_size_m=20_000, max_region_m=30_000)
    assert len(slices) >= 4
    assert [s.index for s in slices] == list(range(1, len(slices) + 1))
    assert {s.count for s in slices} == {len(slices)} and {s.epsg for s in slices} == {32630}
    for s in slices:
        x0, y0, x1, y1 = s.bounds_native
        assert (x1 - x0, y1 - y0) == (20_000, 20_000) and x0 % 1000 == 0 and y0 % 1000 == 0
    pieces = [shapely.from_wkb(s.geometry_wkb) for s in slices]
    assert sum(p.area for p in pieces) == pytest.approx(region.area, rel=1e-6)  # no gaps, no overlaps
    assert shapely.union_all(pieces).symmetric_difference(region).area < region.area * 1e-6
    # Only cells that touch the region are kept: fewer than the full grid over the bounding box.
    assert all(p.area > 0 for p in pieces)


def test_thames_slices_fall_in_two_utm_zones() -> None:
    slices = geodata.slice_region(region_wkb("thames"), slice_size_m=20_000, max_region_m=30_000)
    assert {s.epsg for s in slices} == {32630, 32631}
    for s in slices:
        centroid = shapely.from_wkb(s.geometry_wkb).centroid
        assert geodata.utm_epsg(centroid.x, centroid.y) == s.epsg
        west, _, east, _ = shapely.from_wkb(s.geometry_wkb).bounds
        assert (east <= 1e-9) if s.epsg == 32630 else (west >= -1e-9)
    assert sorted(s.epsg for s in slices) == [s.epsg for s in slices]  # grouped by zone


def test_lake_district_slices_and_southern_hemisphere() -> None:
    analysis = geodata.analyse_file(LAKE_DISTRICT, "GeoJSON", LAKE_DISTRICT.name)
    slices = geodata.slice_region(analysis.geometry_wkb, slice_size_m=20_000, max_region_m=30_000)
    assert 9 <= len(slices) <= 20
    region = shapely.from_wkb(analysis.geometry_wkb)
    assert sum(shapely.from_wkb(s.geometry_wkb).area for s in slices) == pytest.approx(region.area, rel=1e-6)

    sydney = shapely.to_wkb(shapely.box(150.8, -34.2, 151.4, -33.6))
    slices = geodata.slice_region(sydney, slice_size_m=20_000, max_region_m=30_000)
    assert {s.epsg for s in slices} == {32756} and len(slices) >= 9


def test_slice_region_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="WKB"):
        geodata.slice_region(b"not wkb", slice_size_m=1000, max_region_m=1000)
    with pytest.raises(ValueError, match="empty"):
        geodata.slice_region(shapely.to_wkb(shapely.Polygon()), slice_size_m=1000, max_region_m=1000)
    with pytest.raises(ValueError, match="positive"):
        geodata.slice_region(region_wkb("glasgow"), slice_size_m=0, max_region_m=1000)
    with pytest.raises(ValueError, match="max_slices"):
        geodata.slice_region(
            region_wkb("central_belt"), slice_size_m=2_000, max_region_m=3_000, max_slices=50
        )
    with pytest.raises(ValueError, match="longitude/latitude"):
        geodata.slice_region(
            shapely.to_wkb(shapely.box(300_000, 500_000, 310_000, 510_000)), slice_size_m=1, max_region_m=1
        )


# ----- rendering -------------------------------------------------------------------------------------------


def test_elevation_is_a_valid_cog(tmp_path: Path) -> None:
    slc = square_slice(400_000, 6_100_000, 150_000, index=2, count=5)
    path = tmp_path / "elevation.tif"
    geodata.render_elevation(path, slc, resolution_m=500)
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (300, 300, 1, "float32")
        assert src.crs.to_epsg() == 32630 and src.nodata == -9999.0
        assert src.transform == Affine(500, 0, 400_000, 0, -500, 6_250_000)
        assert src.block_shapes[0] == (256, 256)
        assert src.compression.value == "DEFLATE"
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG" and structure["PREDICTOR"] == "3"
        assert src.overviews(1) == [2]
        assert src.descriptions == ("Elevation",) and src.units == ("m",)
        assert src.tags()["SLICE_INDEX"] == "2" and src.tags()["SLICE_COUNT"] == "5"
        data = src.read(1)
        overview = src.read(1, out_shape=(150, 150))
    assert (data != -9999.0).all() and np.isfinite(data).all()
    assert data.min() >= -20.0 and data.max() <= 1300.0 and data.std() > 1.0
    assert np.abs(overview - data.reshape(150, 2, 150, 2).mean(axis=(1, 3))).max() < 1.0  # averaged overviews
    assert [p.name for p in tmp_path.iterdir()] == ["elevation.tif"]  # no temp files left behind


def test_elevation_matches_the_world_function_at_pixel_centres(tmp_path: Path) -> None:
    path = tmp_path / "e.tif"
    geodata.render_elevation(path, square_slice(450_000, 6_150_000, 20_000), resolution_m=250)
    with rasterio.open(path) as src:
        lon, lat = pixel_centres_lonlat(src)
        data = src.read(1)
    expected = geodata.elevation_lonlat(lon, lat, resolution_m=250)
    # Long octaves are interpolated from a ~500 m lattice: errors of a few centimetres on hundreds of metres.
    assert np.abs(data - expected).max() < 0.25


def test_render_is_reproducible(tmp_path: Path) -> None:
    slc = square_slice(400_000, 6_150_000, 30_000)
    for name in ("a", "b"):
        geodata.render_elevation(tmp_path / f"e{name}.tif", slc, resolution_m=500)
        geodata.render_classification(tmp_path / f"c{name}.tif", slc, resolution_m=500, date=DATE)
    assert (tmp_path / "ea.tif").read_bytes() == (tmp_path / "eb.tif").read_bytes()
    assert (tmp_path / "ca.tif").read_bytes() == (tmp_path / "cb.tif").read_bytes()


def test_adjacent_slices_share_identical_overlap_pixels(tmp_path: Path) -> None:
    # 20 km cells at 750 m do not divide evenly: each slice snaps outwards and they share one column.
    left = square_slice(420_000, 6_160_000, 20_000)
    right = square_slice(440_000, 6_160_000, 20_000)
    for name, slc in (("left", left), ("right", right)):
        geodata.render_elevation(tmp_path / f"{name}.tif", slc, resolution_m=750)
        geodata.render_classification(tmp_path / f"{name}_c.tif", slc, resolution_m=750, date=DATE)
    with rasterio.open(tmp_path / "left.tif") as a, rasterio.open(tmp_path / "right.tif") as b:
        assert a.transform.c % 750 == 0 and b.transform.c % 750 == 0  # one global pixel grid
        a_right_edge = a.transform.c + a.width * 750
        overlap = round((a_right_edge - b.transform.c) / 750)
        assert overlap == 1
        assert a.transform.f == b.transform.f and a.height == b.height  # same rows
        assert np.array_equal(a.read(1)[:, -1], b.read(1)[:, 0])
        # Continuity: the step across the seam is like the steps inside each raster.
        seam_step = np.abs(a.read(1)[:, -2] - b.read(1)[:, 1]).mean()
        inner = np.abs(np.diff(a.read(1), axis=1)).mean() * 2
        assert seam_step < 3 * inner
    with rasterio.open(tmp_path / "left_c.tif") as a, rasterio.open(tmp_path / "right_c.tif") as b:
        column_a, column_b = a.read(1)[:, -1], b.read(1)[:, 0]
        both = (column_a != 255) & (column_b != 255)
        assert np.array_equal(column_a[both], column_b[both])


def test_slices_from_lonlat_bounds_still_share_the_grid(tmp_path: Path) -> None:
    # Without bounds_native the renderer uses the lon/lat bounds: larger rectangles, same grid and values.
    left = square_slice(420_000, 6_160_000, 20_000, native=False)
    right = square_slice(440_000, 6_160_000, 20_000, native=False)
    geodata.render_elevation(tmp_path / "l.tif", left, resolution_m=1000)
    geodata.render_elevation(tmp_path / "r.tif", right, resolution_m=1000)
    with rasterio.open(tmp_path / "l.tif") as a, rasterio.open(tmp_path / "r.tif") as b:
        assert a.transform.c % 1000 == 0 and b.transform.f % 1000 == 0
        window_a = rasterio.windows.from_bounds(440_000, 6_160_000, a.bounds.right, 6_180_000, a.transform)
        window_b = rasterio.windows.from_bounds(440_000, 6_160_000, a.bounds.right, 6_180_000, b.transform)
        overlap_a = a.read(1, window=window_a.round_offsets().round_lengths())
        overlap_b = b.read(1, window=window_b.round_offsets().round_lengths())
    assert overlap_a.size > 0 and np.array_equal(overlap_a, overlap_b)


def test_thames_zones_join_continuously(tmp_path: Path) -> None:
    slices = geodata.slice_region(region_wkb("thames"), slice_size_m=20_000, max_region_m=30_000)
    west = max((s for s in slices if s.epsg == 32630), key=lambda s: s.bounds_lonlat[2])
    east = min((s for s in slices if s.epsg == 32631), key=lambda s: s.bounds_lonlat[0])
    samples = {}
    for name, slc in (("west", west), ("east", east)):
        path = tmp_path / f"{name}.tif"
        geodata.render_elevation(path, slc, resolution_m=500)
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == slc.epsg
            lon, lat = pixel_centres_lonlat(src)
            data = src.read(1)
            np.testing.assert_allclose(data, geodata.elevation_lonlat(lon, lat, resolution_m=500), atol=0.25)
            near = np.abs(lon) < 0.01  # pixels within ~700 m of the zone boundary
            samples[name] = (lon[near], lat[near], data[near])
    # Across the boundary, nearest pixels from the two zones differ only by the local relief.
    lon_w, lat_w, value_w = samples["west"]
    lon_e, lat_e, value_e = samples["east"]
    assert value_w.size and value_e.size
    distance = np.hypot((lon_w[:, None] - lon_e[None]) * 70_000, (lat_w[:, None] - lat_e[None]) * 111_000)
    nearest = distance.argmin(axis=1)
    assert np.median(np.abs(value_w - value_e[nearest])) < 25.0


def test_classification_cog_classes_nodata_and_dates(tmp_path: Path) -> None:
    wkb = region_wkb("glasgow")
    (slc,) = geodata.slice_region(wkb, slice_size_m=20_000, max_region_m=30_000)
    geodata.render_classification(tmp_path / "a.tif", slc, resolution_m=250, date=DATE)
    geodata.render_classification(tmp_path / "b.tif", slc, resolution_m=250, date=datetime(2021, 4, 3))
    with rasterio.open(tmp_path / "a.tif") as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.tags()["ACQUISITION_DATETIME"] == "2021-03-27T00:00:00Z"
        assert src.tags()["PRODUCT"] == "cloud_classification"
        assert src.colormap(1)[6][:3] == geodata.CLOUD_CLASSES[6][1]
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        a = src.read(1)
        lon, lat = pixel_centres_lonlat(src)
    assert set(np.unique(a).tolist()) <= {0, 3, 6, 9, 255}
    inside = shapely.contains_xy(shapely.from_wkb(wkb), lon, lat)
    assert (a[~inside] == 255).mean() > 0.95 and (a[inside] != 255).mean() > 0.95
    expected = geodata.classification_lonlat(lon, lat, DATE, resolution_m=250)
    agree = (a == expected) | (a == 255)
    assert agree.mean() > 0.99  # equal except where float rounding flips a pixel at a class threshold
    with rasterio.open(tmp_path / "b.tif") as src:
        b = src.read(1)
    assert (a != b).mean() > 0.05  # a week later the clouds have moved


def test_world_classification_has_every_class_somewhere() -> None:
    lon, lat = np.meshgrid(np.linspace(-8, 2, 200), np.linspace(50, 59, 200))
    counts = {
        d: np.bincount(geodata.classification_lonlat(lon, lat, d, resolution_m=1000).ravel(), minlength=10)
        for d in (DATE, datetime(2021, 7, 1))
    }
    for histogram in counts.values():
        assert all(histogram[c] > 0 for c in (0, 3, 6, 9))
    assert not np.array_equal(counts[DATE], counts[datetime(2021, 7, 1)])


def test_detailed_example_flow_mosaic_and_statistics(tmp_path: Path) -> None:
    """What the SDK's detailed example does with the outputs: read the CSV, merge rasters, sum histograms."""
    analysis = geodata.analyse_file(LAKE_DISTRICT, "GeoJSON", LAKE_DISTRICT.name)
    slices = geodata.slice_region(analysis.geometry_wkb, slice_size_m=20_000, max_region_m=30_000)
    paths, histogram, covered = [], np.zeros(10), 0
    for slc in slices:
        path = tmp_path / f"{slc.index}_classification.tif"
        geodata.render_classification(path, slc, resolution_m=1000, date=DATE)
        paths.append(path)
        fields = assert_good(geodata.analyse_file(path, "GeoTIFF", path.name), path)
        assert fields["stac_item"]["properties"]["datetime"] == "2021-03-27T00:00:00Z"
        asset = fields["stac_item"]["assets"]["asset"]
        assert [c["value"] for c in asset["classification:classes"]] == [0, 3, 6, 9]
        band = asset["raster:bands"][0]
        if fields["selectors"][0]["valid_percent"] > 0:
            buckets = band["histogram"]["buckets"]  # integer counts, as the raster extension wants
            assert all(isinstance(b, int) for b in buckets) and len(buckets) == 10
        else:  # no valid pixel: no statistics rather than nulls
            assert "histogram" not in band and "minimum" not in band["statistics"]
        histogram += np.array(fields["selectors"][0]["histogram"][:10])
        covered += fields["selectors"][0]["valid_percent"] > 0
    # Percent per slice; a slice clipping only a sliver of the park may have no pixel centre inside it.
    assert covered >= len(slices) - 2
    assert histogram[[0, 3, 6, 9]].sum() == pytest.approx(100.0 * covered, rel=1e-4)

    sources = [rasterio.open(p) for p in paths]
    try:
        mosaic, _ = rasterio.merge.merge(sources)
    finally:
        for source in sources:
            source.close()
    assert mosaic.shape[0] == 1 and (mosaic != 255).sum() > 0

    csv_path = tmp_path / "statistics.csv"
    geodata.render_statistics_csv(csv_path, paths)
    table = pandas.read_csv(csv_path)
    assert len(table) == len(slices)
    assert list(table["slice"]) == [s.index for s in slices]
    for column in ("count", "min", "max", "mean", "sd", "ground_percent", "thick_cloud_percent"):
        assert column in table.columns
    percents = table[["ground_percent", "shadow_percent", "thick_cloud_percent", "thin_cloud_percent"]]
    assert np.allclose(percents[table["count"] > 0].sum(axis=1), 100.0, atol=0.01)
    assert percents[table["count"] == 0].isna().all().all()  # no valid pixel: no percentages, not zeros
    with rasterio.open(paths[0]) as src:
        values = src.read(1, masked=True).compressed().astype(float)
    first = table.iloc[0]
    assert first["count"] == values.size and first["mean"] == pytest.approx(values.mean(), abs=1e-5)
    assert first["sd"] == pytest.approx(values.std(), abs=1e-5)
    assert first["ground_percent"] == pytest.approx(100.0 * (values == 0).mean(), abs=1e-3)


def test_statistics_csv_for_elevation_has_no_class_columns(tmp_path: Path) -> None:
    paths = []
    for index, x0 in enumerate((400_000, 420_000), start=1):
        path = tmp_path / f"e{index}.tif"
        geodata.render_elevation(
            path, square_slice(x0, 6_150_000, 20_000, index=index, count=2), resolution_m=1000
        )
        paths.append(path)
    geodata.render_statistics_csv(tmp_path / "s.csv", paths)
    table = pandas.read_csv(tmp_path / "s.csv")
    assert len(table) == 2 and "ground_percent" not in table.columns
    with rasterio.open(paths[1]) as src:
        data = src.read(1).astype(float)
    assert table.iloc[1]["max"] == pytest.approx(data.max()) and table.iloc[1]["count"] == data.size
    assert table.iloc[1]["crs"] == "EPSG:32630"


def test_rendered_outputs_analyse_with_preview_and_overviews(tmp_path: Path) -> None:
    path = tmp_path / "elevation.tif"
    geodata.render_elevation(path, square_slice(400_000, 6_100_000, 150_000), resolution_m=500)
    analysis = geodata.analyse_file(path, "GeoTIFF", path.name, item_id="my-item")
    fields = assert_good(analysis, path)
    raster = fields["ingesters"]["Raster"]
    assert raster["cog"] is True and raster["overviews"] == [2] and raster["blocksize"] == [256, 256]
    assert fields["stac_item"]["id"] == "my-item"
    assert fields["stac_item"]["assets"]["asset"]["type"].endswith("profile=cloud-optimized")
    assert fields["selectors"][0]["unit"] == "m" and fields["resolution"] == 500
    image = Image.open(io.BytesIO(analysis.preview_png))
    assert (
        image.size == (300, 300) and len(np.unique(np.asarray(image).reshape(-1, 4), axis=0)) > 50
    )  # coloured, not flat


def test_failed_render_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.tif"
    target.write_bytes(b"previous content")

    def broken_copy(*args: object, **kwargs: object) -> None:
        Path(str(args[1])).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(rendering.rasterio.shutil, "copy", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        geodata.render_elevation(target, square_slice(400_000, 6_150_000, 5_000), resolution_m=1000)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    with pytest.raises(ValueError, match="resolution"):
        geodata.render_elevation(tmp_path / "x.tif", square_slice(400_000, 6_150_000, 5_000), resolution_m=0)
    assert not (tmp_path / "x.tif").exists()


def test_banded_evaluation_does_not_change_pixels(tmp_path: Path) -> None:
    """Rendering evaluates the world in bands of lattice rows to bound memory; values must not depend on it."""
    slc = square_slice(400_000, 6_150_000, 12_000)
    transform, width, height = terrain._slice_grid(slc, 100.0)
    lattice = terrain._Lattice(slc.epsg, transform, width, height, 100.0)

    def field(band: terrain._Lattice) -> np.ndarray:
        return band.waves(terrain._HILLS, band.xyz, 100.0)

    whole = lattice.evaluate(field, band_pixels=1 << 30)
    assert whole.shape == (height, width)
    assert np.array_equal(lattice.evaluate(field, band_pixels=1), whole)


def test_nan_nodata_raster(tmp_path: Path) -> None:
    data = np.full((6, 6), np.nan, np.float32)
    data[2:, 2:] = 5.0
    path = write_raster(tmp_path / "n.tif", data, nodata=float("nan"))
    fields = assert_good(geodata.analyse_file(path, "GeoTIFF", "n.tif"), path)
    selector = fields["selectors"][0]
    assert selector["mean"] == 5.0 and selector["valid_percent"] == pytest.approx(100 * 16 / 36, abs=1e-3)
    assert fields["ingesters"]["Raster"]["nodata"] == "nan"
    assert fields["stac_item"]["assets"]["asset"]["raster:bands"][0]["nodata"] == "nan"
