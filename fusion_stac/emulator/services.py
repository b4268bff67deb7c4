"""The seeded catalogue: organisations, users and the services an emulated organisation may run.

Every id is a fixed UUID (version 5 in the emulator's namespace), so they are the same in every data
directory and can be quoted in tests and documentation. Each service has two parts:

* ``doc``: the Service model exactly as the API returns it (all required fields present);
* ``spec``: what the emulator needs to run it (inputs, options, component, output file, price rule). A Service
  model carries no machine-readable inputs or options on the real platform either: those only appear in
  the Process template of ``processes/new``.
"""

from __future__ import annotations

import uuid
from typing import Any

NAMESPACE = uuid.UUID("5f0f3c7e-1d2b-5c4e-9a51-6b8f2a0c9d11")


def fixed_id(name: str) -> str:
    """A stable UUID for a seeded object."""
    return str(uuid.uuid5(NAMESPACE, name))


# -- organisations and users ------------------------------------------------------------------------

PLATFORM_ORGANISATION_ID = fixed_id("organisation:platform")
EXAMPLE_ORGANISATION_ID = fixed_id("organisation:example")
OTHER_ORGANISATION_ID = fixed_id("organisation:other")
EXAMPLE_USER_ID = fixed_id("user:me@org.com")
OTHER_USER_ID = fixed_id("user:other@example.com")

ALL_ROLES = [
    "view_processing_chains",
    "create_and_execute_processing_chains",
    "audit_ssds",
    "create_ssds",
    "manage_organisation",
]

ORGANISATIONS: list[dict[str, Any]] = [
    {
        "id": PLATFORM_ORGANISATION_ID,
        "name": "Digital Content Analysis Technology Ltd",
        "address_line_1": "Fusion Platform Services",
        "address_line_2": None,
        "address_town_city": "London",
        "address_post_zip_code": "EC1A 1AA",
        "address_country": "GBR",
        "currency": "GBP",
        "credits": 0,
    },
    {
        "id": EXAMPLE_ORGANISATION_ID,
        "name": "Example Organisation",
        "address_line_1": "1 Example Street",
        "address_line_2": None,
        "address_town_city": "Glasgow",
        "address_post_zip_code": "G1 1AA",
        "address_country": "GBR",
        "currency": "GBP",
        "credits": 100000,
    },
    {
        "id": OTHER_ORGANISATION_ID,
        "name": "Other Organisation",
        "address_line_1": "2 Other Road",
        "address_line_2": None,
        "address_town_city": "Keswick",
        "address_post_zip_code": "CA12 5AA",
        "address_country": "GBR",
        "currency": "GBP",
        "credits": 100000,
    },
]

USERS: list[dict[str, Any]] = [
    {
        "id": EXAMPLE_USER_ID,
        "email": "me@org.com",
        "password": "MyPassword123!",
        "given_name": "Example",
        "family_name": "User",
        "organisations": [EXAMPLE_ORGANISATION_ID],
    },
    {
        "id": OTHER_USER_ID,
        "email": "other@example.com",
        "password": "OtherPassword123!",
        "given_name": "Other",
        "family_name": "User",
        "organisations": [OTHER_ORGANISATION_ID],
    },
]

# -- services -----------------------------------------------------------------------------------------

ELEVATION_SSD_ID = fixed_id("ssd:elevation")
ELEVATION_SERVICE_ID = fixed_id("service:elevation:1")
CLASSIFICATION_SSD_ID = fixed_id("ssd:s2-cloud-classification")
CLASSIFICATION_SERVICE_ID = fixed_id("service:s2-cloud-classification:1")
AGGREGATOR_SSD_ID = fixed_id("ssd:statistics-aggregator")
AGGREGATOR_SERVICE_ID = fixed_id("service:statistics-aggregator:1")
S3_SSD_ID = fixed_id("ssd:dispatcher-aws-s3")
S3_SERVICE_ID = fixed_id("service:dispatcher-aws-s3:1")
EMAIL_SSD_ID = fixed_id("ssd:dispatcher-email")
EMAIL_SERVICE_ID = fixed_id("service:dispatcher-email:1")
LICENSE_ID = fixed_id("license:fusion-platform-standard")

ELEVATION_NAME = "Elevation"
CLASSIFICATION_NAME = "Demo: Sentinel-2 Cloud Classification"
CLASSIFICATION_COMPONENT = "Sentinel-2 Cloud Classification"
AGGREGATOR_NAME = "Statistics Aggregator"

DATETIME_VALIDATION = "format=%Y-%m-%dT%H:%M:%S;min=2017-01-01T00:00:00;max=2030-01-01T00:00:00"

_DOC_URL = "https://www.thefusionplatform.com"


def _option(name: str, value: str | None, data_type: str, *, title: str, description: str,
            required: bool = False, validation: str | None = None, mutually_exclusive: str | None = None,
            advanced: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "required": required,
        "data_type": data_type,
        "validation": validation,
        "mutually_exclusive": mutually_exclusive,
        "advanced": advanced,
        "title": title,
        "description": description,
    }


def _region_input(title: str = "Region") -> dict[str, Any]:
    return {
        "input": 1,
        "file_type": "GeoJSON",
        "resolution": None,
        "selectors": None,
        "model": "Data",
        "change_trigger": False,
        "change_hash": None,
        "title": title,
        "description": "The region of interest: a polygon (GeoJSON, KML, KMZ or zipped ESRI Shapefile).",
    }


def _condition_option() -> dict[str, Any]:
    return _option(
        "condition", "success", "constrained", title="Condition",
        description="When to dispatch the outputs.",
        validation="values=success,failure,*;names=On success,On failure,Always", required=True,
    )


SERVICE_SPECS: list[dict[str, Any]] = [
    {
        "id": ELEVATION_SERVICE_ID,
        "ssd_id": ELEVATION_SSD_ID,
        "kind": "service",
        "name": ELEVATION_NAME,
        "categories": ["Terrain"],
        "keywords": ["Elevation", "DEM", "Terrain"],
        "featured": "featured",
        "summary": "Digital elevation model of a region.",
        "description": "Produces a digital elevation model (metres above the geoid, float32 GeoTIFF) for the region "
                       "of interest, one raster per region or per slice of a large region, each in the UTM zone of "
                       "its centre.",
        "inputs": [_region_input()],
        "options": [
            _option("resolution", None, "numeric", title="Resolution",
                    description="Output pixel size in metres.", validation="min=30;max=5000"),
            _option("vertical_datum", "EGM2008", "constrained", title="Vertical datum",
                    description="Reference surface of the heights.",
                    validation="values=EGM2008,WGS84;names=EGM2008 geoid,WGS84 ellipsoid", advanced=True),
        ],
        "component": ELEVATION_NAME,
        "output": {"file_name": "elevation.tif", "file_type": "GeoTIFF", "renderer": "elevation",
                   "title": "Elevation", "description": "Digital elevation model in metres."},
        "price": {"base": 1.0, "per_km2": 0.01},
        "aggregated": True,
        "cpu": 1, "memory": 2048,
    },
    {
        "id": CLASSIFICATION_SERVICE_ID,
        "ssd_id": CLASSIFICATION_SSD_ID,
        "kind": "service",
        "name": CLASSIFICATION_NAME,
        "categories": ["Demo", "Classification"],
        "keywords": ["Sentinel-2", "Cloud", "Classification", "Demo"],
        "featured": "featured",
        "summary": "Cloud classification of Sentinel-2 imagery over a region.",
        "description": "Classifies each pixel of the Sentinel-2 scene nearest the requested date into ground, "
                       "shadow, thick cloud and thin cloud (classes 0-9, single-band uint8 GeoTIFF).",
        "inputs": [_region_input()],
        "options": [
            _option("latest_date", "true", "boolean", title="Latest date",
                    description="Use the most recent available imagery."),
            _option("start_date", None, "datetime", title="Start date",
                    description="Earliest acquisition date when the latest date is not used.",
                    validation=DATETIME_VALIDATION, mutually_exclusive="latest_date=true"),
            _option("end_date", None, "datetime", title="End date",
                    description="Latest acquisition date when the latest date is not used.",
                    validation=DATETIME_VALIDATION, mutually_exclusive="latest_date=true"),
            _option("maximum_cloud", "100", "numeric", title="Maximum cloud",
                    description="Maximum scene cloud cover in percent.", validation="min=0;max=100", advanced=True),
            _option("platform", "*", "constrained", title="Platform",
                    description="Which Sentinel-2 satellites to use.",
                    validation="values=A,B,*;names=Sentinel-2A,Sentinel-2B,Both", advanced=True),
        ],
        "option_validations": [
            {"expression": "latest_date or ((not latest_date) and (start_date is not None))",
             "message": "A start date is required when the latest date is not used."},
            {"expression": "(start_date is None) or (end_date is None) or (start_date <= end_date)",
             "message": "The start date must not be after the end date."},
        ],
        "component": CLASSIFICATION_COMPONENT,
        "output": {"file_name": "classification.tif", "file_type": "GeoTIFF", "renderer": "classification",
                   "title": "Cloud classification", "description": "Classes 0-9: 0 ground, 3 shadow, "
                   "6 thick cloud, 9 thin cloud."},
        "price": {"base": 5.0, "per_km2": 0.05},
        "aggregated": True,
        "cpu": 2, "memory": 8192,
    },
    {
        "id": AGGREGATOR_SERVICE_ID,
        "ssd_id": AGGREGATOR_SSD_ID,
        "kind": "aggregator",
        "name": AGGREGATOR_NAME,
        "categories": ["Aggregator"],
        "keywords": ["Statistics", "Aggregator"],
        "featured": None,
        "summary": "Aggregates per-slice raster statistics of a group into one CSV.",
        "description": "Runs once per group after all slice executions have finished and writes the statistics "
                       "of every slice raster (count, minimum, maximum, mean, class histogram) to a CSV file.",
        "inputs": [],
        "options": [
            _option("statistics", "histogram", "string", title="Statistics",
                    description="Which statistics to aggregate."),
        ],
        "component": AGGREGATOR_NAME,
        "output": {"file_name": "statistics.csv", "file_type": "CSV", "renderer": "statistics",
                   "title": "Statistics", "description": "Per-slice statistics."},
        "price": {"base": 0.0, "per_km2": 0.0},
        "aggregated": False,
        "cpu": 1, "memory": 1024,
    },
    {
        "id": S3_SERVICE_ID,
        "ssd_id": S3_SSD_ID,
        "kind": "dispatcher",
        "name": "AWS S3",
        "categories": ["Dispatcher"],
        "keywords": ["Dispatcher", "AWS", "S3"],
        "featured": None,
        "summary": "Copies the outputs of an execution to an AWS S3 bucket.",
        "description": "Copies every output file to s3://<bucket>/<key>, with the key built from s3_key_format.",
        "inputs": [],
        "options": [
            _option("bucket", None, "string", required=True, title="Bucket", description="Target bucket name."),
            _option("s3_key_format", "{process_name}/{execution_id}/{file_name}", "string", title="Key format",
                    description="Object key template."),
            _option("access_key_id", None, "string", title="Access key id", description="AWS access key id."),
            _option("secret_access_key", None, "string", title="Secret access key",
                    description="AWS secret access key."),
            _option("session_token", None, "string", title="Session token", description="AWS session token.",
                    advanced=True),
            _option("kms_key_id", None, "string", title="KMS key id", description="KMS key for encryption.",
                    advanced=True),
            _condition_option(),
        ],
        "price": {"base": 1.0, "per_km2": 0.0},
    },
    {
        "id": EMAIL_SERVICE_ID,
        "ssd_id": EMAIL_SSD_ID,
        "kind": "dispatcher",
        "name": "Email",
        "categories": ["Dispatcher"],
        "keywords": ["Dispatcher", "Email"],
        "featured": None,
        "summary": "E-mails links to the outputs of an execution.",
        "description": "Sends an e-mail with download links for every output file to the given addresses.",
        "inputs": [],
        "options": [
            _option("emails", None, "string", required=True, title="E-mail addresses",
                    description="Comma-separated recipients."),
            _option("message", None, "string", title="Message", description="Text added to the e-mail."),
            _condition_option(),
        ],
        "price": {"base": 0.0, "per_km2": 0.0},
    },
]


def service_doc(spec: dict[str, Any], created_at: str) -> dict[str, Any]:
    """The Service model of a catalogue entry (every required field present)."""
    ssd_id = spec["ssd_id"]
    group_aggregators = None
    if spec.get("aggregated"):
        group_aggregators = [{
            "aggregator_ssd_id": AGGREGATOR_SSD_ID,
            "output_ssd_id": ssd_id,
            "outputs": [1],
            "options": [{"ssd_id": AGGREGATOR_SSD_ID, "name": "statistics", "value": "histogram"}],
        }]
    price = spec["price"]
    return {
        "id": spec["id"],
        "created_at": created_at,
        "updated_at": created_at,
        "organisation_id": PLATFORM_ORGANISATION_ID,
        "ssd_id": ssd_id,
        "version": 1,
        "approval_status": "approved",
        "featured": spec.get("featured"),
        "show_in_latest": spec["kind"] in ("service", "dispatcher"),
        "name": spec["name"],
        "categories": list(spec["categories"]),
        "keywords": list(spec["keywords"]),
        "image_id": fixed_id(f"image:{ssd_id}"),
        "definition": [{"ssd_id": ssd_id, "output": 1, "linkages": []}] if spec["kind"] == "service" else None,
        "group_aggregators": group_aggregators,
        "actions": None,
        "urls": [f"{_DOC_URL}/services"],
        "cidrs": None,
        "input_expressions": None,
        "input_validations": None,
        "option_expressions": None,
        "option_validations": spec.get("option_validations"),
        "license_id": LICENSE_ID,
        "charge_expression_platform": f"{price['base']} + {price['per_km2']} * area_km2",
        "charge_expression_owner": "0",
        "organisations": None,
        "organisation_charge_expressions": None,
        "geographic_regions": None,
        "documentation_summary": spec["summary"],
        "documentation_description": spec["description"],
        "documentation_assumptions": "Emulated service: outputs are synthetic but geospatially consistent.",
        "documentation_performance": "Completes in the emulator's configured execution duration.",
        "documentation_actions": "",
        "documentation_inputs": [f"{i['input']}: {i['title']} ({i['file_type']})" for i in spec["inputs"]],
        "documentation_outputs": (
            [f"1: {spec['output']['title']} ({spec['output']['file_type']})"] if "output" in spec else []
        ),
        "documentation_options": [f"{o['name']} ({o['data_type']}): {o['description']}" for o in spec["options"]],
    }


def dispatcher_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """A dispatcher as it appears in ``extras.dispatchers`` and ``Process.dispatchers``."""
    return {
        "ssd_id": spec["ssd_id"],
        "name": spec["name"],
        "dispatch_intermediate": False,
        "documentation_summary": spec["summary"],
        "documentation_description": spec["description"],
        "options": [{"ssd_id": spec["ssd_id"], **option} for option in spec["options"]],
    }


def spec_by_service_id(service_id: str) -> dict[str, Any] | None:
    for spec in SERVICE_SPECS:
        if spec["id"] == service_id:
            return spec
    return None


def spec_by_ssd_id(ssd_id: str) -> dict[str, Any] | None:
    for spec in SERVICE_SPECS:
        if spec["ssd_id"] == ssd_id:
            return spec
    return None


def dispatcher_specs() -> list[dict[str, Any]]:
    return [spec for spec in SERVICE_SPECS if spec["kind"] == "dispatcher"]
