"""Pure mapping tests: API payloads (JSON fixtures written from the API reference's models) -> STAC dicts."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pystac
import pytest

from fusion_stac import _urls
from fusion_stac.models import Data, DataFile, Process, ProcessExecution, ProcessServiceExecution
from fusion_stac.stac import mapping as m
from fusion_stac.stac.mapping import EXTENSIONS
from fusion_stac.stac.validation import offline_validator

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def validator() -> Any:
    return offline_validator()


def valid_item(d: dict[str, Any], validator: Any) -> pystac.Item:
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN/inf anywhere
    item = pystac.Item.from_dict(d)
    item.validate(validator=validator)
    return item


# --------------------------------------------------------------------------------------------------
# Uploads


@pytest.fixture(scope="module")
def upload() -> dict[str, Any]:
    raw = load("upload")
    return {
        "org": raw["organisation"]["id"],
        "data": Data.from_api(raw["data"]),
        "files": {f["file_name"]: DataFile.from_api(f) for f in raw["files"]},
    }


def test_cog_upload_item_carries_grid_bands_and_assets(upload: dict[str, Any], validator: Any) -> None:
    f = upload["files"]["dem.tif"]
    d = m.file_item(f, organisation_id=upload["org"], data=upload["data"])
    item = valid_item(d, validator)
    props = d["properties"]
    raster = f.ingesters["Raster"]
    assert d["id"] == f.file_id
    assert props["proj:code"] == "EPSG:32630"
    asset = d["assets"]["data"]
    assert asset["proj:shape"] == [raster["height"], raster["width"]]
    assert asset["proj:transform"] == raster["transform"]
    assert asset["href"] == _urls.file_url(upload["org"], f.data_id, f.file_id)
    assert asset["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert asset["roles"] == ["data"]
    assert asset["file:size"] == f.size
    assert asset["file:checksum"] == "1220" + f.ingesters["Common"]["sha256"]  # multihash of the analysis' SHA-256
    (band,) = asset["raster:bands"]
    sel = f.selectors[0]
    assert band["data_type"] == "float32"
    assert band["nodata"] == raster["nodata"]
    assert band["statistics"] == {"minimum": sel.minimum, "maximum": sel.maximum, "mean": sel.mean, "stddev": sel.sd}
    assert band["histogram"]["buckets"] == [int(v) for v in sel.histogram]
    assert band["histogram"]["count"] == len(sel.histogram)
    assert band["unit"] == "m"
    thumb = d["assets"]["thumbnail"]
    assert thumb["href"] == _urls.file_url(upload["org"], f.data_id, f.preview_file_id)
    assert thumb["roles"] == ["thumbnail", "overview"] and thumb["type"] == "image/png"
    # upload time, fusion ids, gsd
    assert item.datetime is not None and m.rfc3339(item.datetime) == m.rfc3339(upload["data"].created_at)
    assert props["fusion:organisation_id"] == upload["org"]
    assert props["fusion:data_id"] == f.data_id and props["fusion:file_id"] == f.file_id
    assert props["gsd"] == 30.0
    assert "processing:facility" not in props  # uploads are not processed outputs
    # footprint agrees with the platform's lon/lat bounds
    for ours, theirs in zip(d["bbox"], f.bounds, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-6)


def test_projection_extension_reads_back_through_pystac(upload: dict[str, Any]) -> None:
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    d = m.file_item(upload["files"]["dem.tif"], organisation_id=upload["org"], data=upload["data"])
    item = pystac.Item.from_dict(d)
    proj = ProjectionExtension.ext(item.assets["data"])
    assert proj.crs_string == "EPSG:32630"  # inherited from the item
    assert proj.shape == [48, 64]
    bands = RasterExtension.ext(item.assets["data"]).bands
    assert bands is not None and bands[0].nodata == -9999


def test_stac_item_pseudo_field_is_used_when_no_ingester(upload: dict[str, Any], validator: Any) -> None:
    f = upload["files"]["legacy.tif"]
    assert not m.needs_header(f)
    d = m.file_item(f, organisation_id=upload["org"], data=upload["data"])
    valid_item(d, validator)
    assert d["assets"]["data"]["proj:shape"] == [20, 30]
    assert d["properties"]["proj:code"] == "EPSG:4326"  # proj:epsg (projection v1) becomes proj:code
    assert d["properties"]["datetime"] == "2024-04-30T12:00:00Z"
    assert d["assets"]["data"]["type"] == "image/tiff; application=geotiff"  # COG layout unknown


def test_raster_without_grid_needs_a_header_read_and_is_still_valid(upload: dict[str, Any], validator: Any) -> None:
    f = upload["files"]["raw.tif"]
    assert m.needs_header(f)
    d = m.file_item(f, organisation_id=upload["org"], data=upload["data"])
    valid_item(d, validator)
    assert d["geometry"] is None and "bbox" not in d  # no bounds: no guessed footprint
    assert "proj:shape" not in d["assets"]["data"]
    # once the header has been read, the same file maps completely
    info = m.RasterInfo(width=10, height=5, transform=(10.0, 0.0, 690000.0, 0.0, -10.0, 5720000.0),
                        crs="EPSG:32630", dtype="uint16", nodata=0, cog=False, source="header")
    d2 = m.file_item(f, organisation_id=upload["org"], data=upload["data"], raster=info)
    valid_item(d2, validator)
    assert d2["assets"]["data"]["proj:shape"] == [5, 10]
    assert d2["assets"]["data"]["raster:bands"] == [{"data_type": "uint16", "nodata": 0, "spatial_resolution": 10.0}]
    assert d2["geometry"]["type"] == "Polygon"


def test_vector_upload_item(upload: dict[str, Any], validator: Any) -> None:
    f = upload["files"]["area.geojson"]
    assert not m.needs_header(f)
    d = m.file_item(f, organisation_id=upload["org"], data=upload["data"])
    valid_item(d, validator)
    assert d["assets"]["data"]["type"] == "application/geo+json"
    assert "raster:bands" not in d["assets"]["data"]
    assert d["bbox"] == pytest.approx(list(f.bounds))
    assert "thumbnail" not in d["assets"]


def test_unanalysed_file_is_recognised(upload: dict[str, Any]) -> None:
    f = upload["files"]["pending.tif"]
    assert not f.analysed
    assert not m.needs_header(f)  # nothing to read until the upload is analysed


def test_upload_collection_extent_encloses_items(upload: dict[str, Any], validator: Any) -> None:
    items = [m.file_item(f, organisation_id=upload["org"], data=upload["data"])
             for f in upload["files"].values() if f.analysed]
    c = m.upload_collection(upload["data"], items, state="ready")
    coll = pystac.Collection.from_dict(c)
    coll.validate(validator=validator)
    union = c["extent"]["spatial"]["bbox"][0]
    for it in items:
        if "bbox" in it:
            w, s, e, n = it["bbox"]
            assert union[0] <= w and union[1] <= s and union[2] >= e and union[3] >= n
    start, _end = c["extent"]["temporal"]["interval"][0]
    assert start <= min(it["properties"]["datetime"] for it in items)
    assert c["fusion:state"] == "ready"
    assert sorted(c["summaries"]["proj:code"]) == ["EPSG:32630", "EPSG:4326"]


def test_signed_hrefs_record_their_expiry(upload: dict[str, Any], validator: Any) -> None:
    from datetime import datetime, timezone

    f = upload["files"]["dem.tif"]
    expires = datetime(2030, 1, 1, 12, tzinfo=timezone.utc)
    d = m.file_item(f, organisation_id=upload["org"], data=upload["data"],
                    data_href="https://storage.example/a.tif?X-Sig=abc", thumbnail_href="https://storage.example/p.png?s=1",
                    href_expires=expires)
    valid_item(d, validator)
    assert d["assets"]["data"]["fusion:href_expires"] == "2030-01-01T12:00:00Z"
    assert d["assets"]["thumbnail"]["fusion:href_expires"] == "2030-01-01T12:00:00Z"
    assert d["assets"]["data"]["href"].startswith("https://")


# --------------------------------------------------------------------------------------------------
# Outputs


def _output_ctx(raw: dict[str, Any], execution: dict[str, Any], **kw: Any) -> tuple[m.OutputContext, list[DataFile], Data]:
    comps = raw["components"] if isinstance(raw["components"], list) else raw["components"][execution["id"]]
    comp = ProcessServiceExecution.from_api(comps[0])
    out = raw["outputs"][comp.outputs[0]]
    ctx = m.OutputContext(process=Process.from_api(raw["process"]), execution=ProcessExecution.from_api(execution),
                          component=comp, **kw)
    return ctx, [DataFile.from_api(f) for f in out["files"]], Data.from_api(out["data"])


def test_execution_output_item(validator: Any) -> None:
    raw = load("execution")
    ctx, files, data = _output_ctx(raw, raw["execution"])
    d = m.file_item(files[0], organisation_id=raw["organisation_id"], data=data, output=ctx)
    valid_item(d, validator)
    p = d["properties"]
    ex = raw["execution"]
    assert p["fusion:process_id"] == raw["process"]["id"]
    assert p["fusion:execution_id"] == ex["id"]
    assert p["fusion:component"] == "Elevation"
    assert p["start_datetime"] == m.rfc3339(ex["started_at"]) and p["end_datetime"] == m.rfc3339(ex["ended_at"])
    assert p["datetime"] == m.rfc3339(ex["started_at"])
    assert p["expires"] == m.rfc3339(ex["delete_expiry"])
    assert p["processing:facility"] == "Fusion Platform"
    assert "Elevation" in p["processing:software"]
    assert m.PROCESSING_SCHEMA in d["stac_extensions"] and m.TIMESTAMPS_SCHEMA in d["stac_extensions"]
    assert "fusion:group_id" not in p
    assert p["proj:code"] == "EPSG:32631"


def test_group_collection_spans_two_utm_zones_and_shares_a_datetime(validator: Any) -> None:
    raw = load("group")
    process = Process.from_api(raw["process"])
    executions = [ProcessExecution.from_api(e) for e in raw["executions"]]
    aggs = set(raw["aggregator_ids"])
    nominal = min(e.started_at for e in executions)
    items = []
    for ex in raw["executions"]:
        ctx, files, data = _output_ctx(raw, ex, nominal_datetime=nominal, aggregator=ex["id"] in aggs)
        for f in files:
            items.append(valid_item(m.file_item(f, organisation_id=raw["organisation_id"], data=data, output=ctx),
                                    validator).to_dict(transform_hrefs=False))
    slices = [it for it in items if not it["properties"].get("fusion:aggregator")]
    (agg,) = [it for it in items if it["properties"].get("fusion:aggregator")]
    assert len(slices) == 4
    assert {it["properties"]["datetime"] for it in items} == {m.rfc3339(nominal)}
    assert sorted(it["properties"]["fusion:group_index"] for it in slices) == [1, 2, 3, 4]
    assert {it["properties"]["fusion:group_count"] for it in slices} == {4}
    assert {it["properties"]["fusion:group_id"] for it in items} == {raw["group_id"]}
    assert {it["properties"]["proj:code"] for it in slices} == {"EPSG:32630", "EPSG:32631"}
    assert agg["assets"]["data"]["type"] == "text/csv" and agg["geometry"] is None

    c = m.execution_collection(process, executions, items, group_id=raw["group_id"], aggregator_ids=aggs)
    pystac.Collection.from_dict(c).validate(validator=validator)
    union = c["extent"]["spatial"]["bbox"][0]
    assert union[0] < 0 < union[2]  # the group straddles the Greenwich meridian (zones 30 and 31)
    assert len(c["extent"]["spatial"]["bbox"]) == 1 + 4  # union, then one box per slice
    assert c["fusion:state"] == "succeeded"
    assert c["fusion:group_id"] == raw["group_id"] and c["fusion:group_count"] == 4
    assert c["fusion:aggregator_execution_ids"] == sorted(aggs)
    assert c["summaries"]["proj:code"] == ["EPSG:32630", "EPSG:32631"]
    start, end = c["extent"]["temporal"]["interval"][0]
    assert start == m.rfc3339(nominal)
    assert end == m.rfc3339(max(e.ended_at for e in executions))


def test_group_states() -> None:
    raw = load("group")
    executions = [ProcessExecution.from_api(e) for e in raw["executions"]]
    assert m.group_state(executions) == "succeeded"
    assert m.group_state(executions[:2], expected=4) == "running"  # members not listed yet
    running = ProcessExecution.from_api({**raw["executions"][0], "progress": 40, "success": False, "ended_at": None})
    assert m.group_state([running, *executions[1:]]) == "running"
    failed = ProcessExecution.from_api({**raw["executions"][0], "success": False, "abort_reason": "boom"})
    assert m.group_state([failed, *executions[1:]]) == "failed"
    stopped = ProcessExecution.from_api({**raw["executions"][0], "success": False, "stopped": True})
    assert m.execution_state(stopped) == "stopped"


def test_running_execution_collection_has_no_items_and_says_so(validator: Any) -> None:
    raw = load("execution")
    ex = ProcessExecution.from_api({**raw["execution"], "progress": 30, "success": False, "ended_at": None})
    c = m.execution_collection(Process.from_api(raw["process"]), [ex], [])
    pystac.Collection.from_dict(c).validate(validator=validator)
    assert c["fusion:state"] == "running" and c["fusion:progress"] == 30
    assert c["extent"]["temporal"]["interval"] == [[m.rfc3339(raw["execution"]["started_at"]), None]]
    assert "processing:datetime" not in c["providers"][0]


# --------------------------------------------------------------------------------------------------
# Geometry and value edge cases


def test_antimeridian_footprint_is_split(validator: Any) -> None:
    info = m.RasterInfo(width=1000, height=1000, transform=(100.0, 0, 550000.0, 0, -100.0, 8000000.0), crs="EPSG:32660")
    geometry, bbox = m.footprint(info)
    assert geometry is not None and bbox is not None
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    assert bbox[0] > bbox[2]  # west edge east of the east edge: crosses 180°
    assert all(-180 <= pt[0] <= 180 for poly in geometry["coordinates"] for pt in poly[0])


def test_utm_footprint_stays_a_simple_quadrilateral() -> None:
    info = m.RasterInfo(width=64, height=48, transform=(30.0, 0, 690000.0, 0, -30.0, 5720000.0), crs="EPSG:32630")
    geometry, _ = m.footprint(info)
    assert geometry is not None and len(geometry["coordinates"][0]) == 5


def test_bounds_that_are_not_lon_lat_are_not_guessed() -> None:
    assert m.footprint(None, [690000.0, 5700000.0, 700000.0, 5720000.0], None) == (None, None)
    geometry, bbox = m.footprint(None, [690000.0, 5700000.0, 700000.0, 5720000.0], "EPSG:32630")
    assert geometry is not None and bbox is not None and -1 < bbox[0] < 0


def test_nan_nodata_and_fractional_histograms(validator: Any) -> None:
    raw = load("execution")
    f = raw["outputs"][next(iter(raw["outputs"]))]["files"][0]
    f = {**f, "selectors": [{**f["selectors"][0], "histogram": [0.1, 0.2, 0.3, 0.4]}],
         "ingesters": {"Raster": {**f["ingesters"]["Raster"], "nodata": float("nan")}}}
    d = m.file_item(DataFile.from_api(f), organisation_id=raw["organisation_id"])
    valid_item(d, validator)
    (band,) = d["assets"]["data"]["raster:bands"]
    assert band["nodata"] == "nan"
    assert "histogram" not in band and band["fusion:histogram"]["buckets"] == [0.1, 0.2, 0.3, 0.4]


def test_raster_info_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        m.RasterInfo(width=0, height=3, transform=(1, 0, 0, 0, -1, 0))
    with pytest.raises(ValueError, match="6 coefficients"):
        m.RasterInfo(width=3, height=3, transform=(1, 0, 0))  # type: ignore[arg-type]
    info = m.RasterInfo.from_dict({"width": 4, "height": 2, "transform": [1, 0, 0, 0, -1, 0, 0, 0, 1], "epsg": 3857,
                                   "overviews": [2], "tiled": True, "dtype": "Byte"})
    assert info.crs == "EPSG:3857" and info.cog is True and info.shape == (2, 4)
    assert m.RasterInfo.from_dict(info.to_dict()) == info


def test_item_without_any_time_is_an_error() -> None:
    f = DataFile.from_api({"data_id": "d", "file_id": "f", "file_type": "CSV", "file_name": "x.csv"})
    with pytest.raises(ValueError, match="no time"):
        m.file_item(f, organisation_id="o")


def test_media_types() -> None:
    assert m.media_type("GeoTIFF", "a.tif", cog=False) == "image/tiff; application=geotiff"
    assert m.media_type("KMZ") == "application/vnd.google-earth.kmz"
    assert m.media_type("Other", "notes.txt") == "text/plain"
    assert m.media_type("Other", None) is None


def test_rfc3339_normalises_to_utc() -> None:
    assert m.rfc3339("2024-05-01T12:00:00+02:00") == "2024-05-01T10:00:00Z"
    assert m.rfc3339("2024-05-01T10:00:00.250000Z") == "2024-05-01T10:00:00.250000Z"
    assert m.rfc3339(None) is None


# --------------------------------------------------------------------------------------------------
# What a loader reads: odc-stac's metadata extraction on our items, no pixels needed


def test_odc_stac_reads_bands_and_grid_from_items() -> None:
    odc_stac = pytest.importorskip("odc.stac")
    from odc.stac._mdtools import asset_geobox, parse_item

    raw = load("execution")
    ctx, files, data = _output_ctx(raw, raw["execution"])
    d = m.file_item(files[0], organisation_id=raw["organisation_id"], data=data, output=ctx)
    item = pystac.Item.from_dict(d)
    item.collection_id = "c"
    md = odc_stac.extract_collection_metadata(item)
    assert set(md.bands) == {("data", 1)}  # the thumbnail is not taken for a band
    band = md.bands[("data", 1)]
    ingest = files[0].ingesters["Raster"]
    assert band.data_type == "float32" and band.nodata == ingest["nodata"]
    gbox = asset_geobox(item.assets["data"])
    assert gbox.shape == (ingest["height"], ingest["width"])
    assert str(gbox.crs) == "EPSG:32631"
    assert tuple(gbox.affine)[:6] == pytest.approx(tuple(ingest["transform"]))
    parsed = parse_item(item, md)
    assert not math.isnan(parsed.geometry.centroid.coords[0][0])


@pytest.mark.parametrize(
    ("where", "key", "value", "fragment"),
    [
        ("properties", "proj:shape", [10, "x"], "proj:shape"),
        ("properties", "proj:transform", [1, 2, 3], "proj:transform"),
        ("asset", "raster:bands", [{"data_type": "float128"}], "data_type"),
        ("asset", "raster:bands", [{"nodata": "none"}], "nodata"),
        ("asset", "raster:bands", [{"histogram": {"count": 2, "min": 0, "max": 1, "buckets": [1]}}], "buckets"),
        ("asset", "file:size", -1, "file:size"),
        ("asset", "file:checksum", "XYZ", "file:checksum"),
        ("properties", "expires", "tomorrow", "expires"),
    ],
)
def test_offline_validator_catches_bad_extension_fields(where: str, key: str, value: object, fragment: str) -> None:
    """Without the official extension schemas, the specification checks still refuse bad fields."""
    import copy

    from fusion_stac.stac.validation import extension_schemas_available

    item = pystac.Item(
        id="x", geometry={"type": "Point", "coordinates": [0.0, 0.0]}, bbox=[0.0, 0.0, 0.0, 0.0],
        datetime=datetime(2024, 1, 1, tzinfo=timezone.utc), properties={},
    )
    item.add_asset("data", pystac.Asset(href="./x.tif"))
    d = item.to_dict()
    d["stac_extensions"] = list(EXTENSIONS.values())
    good = copy.deepcopy(d)
    target = d["properties"] if where == "properties" else d["assets"]["data"]
    target[key] = value
    validator = offline_validator()
    pystac.validation.validate_dict(good, validator=validator)  # the untouched item passes
    # the official schemas (when present) word their errors differently; the checks name the field
    with pytest.raises(pystac.STACValidationError, match=None if extension_schemas_available() else fragment):
        pystac.validation.validate_dict(d, validator=validator)
