"""Model field lists (as on the wire), list specifications and the presence rule.

Field names follow section 7 of the API reference. The presence rule: a top-level field whose value is
``None`` is omitted from responses, because the official SDK tests attribute *presence* (e.g. a DataFile's
``size``/``publishable`` signal that analysis is done).
"""

from __future__ import annotations

from typing import Any

from fusion_stac.emulator.listing import ListSpec

COMMON = ("id", "created_at", "updated_at")

USER_FIELDS = (*COMMON, "email", "given_name", "family_name", "telephone", "role", "default_output_storage_period",
               "time_zone", "locale", "units", "notification_service_status", "notification_account",
               "notification_processing_chain", "notification_new_features", "notification_contact",
               "organisations", "last_request_at")
ORGANISATION_FIELDS = (*COMMON, "name", "address_line_1", "address_line_2", "address_town_city",
                       "address_post_zip_code", "address_country", "payment_customer", "payment_valid",
                       "income_customer", "income_valid", "income_tax_rate", "income_tax_reference", "currency",
                       "users", "agreed_licenses", "offers", "maximum_output_storage_period",
                       "maximum_file_downloads")
DATA_FIELDS = (*COMMON, "organisation_id", "name", "unlinked", "unfulfilled", "bounds", "file_with_preview",
               "uploaded_organisation_id", "deletable")
FILE_FIELDS = (*COMMON, "organisation_id", "data_id", "file_id", "preview_file_id", "file_type", "file_name",
               "resolution", "crs", "bounds", "area", "length", "points", "lines", "polygons", "size", "error",
               "publishable", "alternative", "source", "selectors", "number_of_ingesters", "ingesters",
               "downloads", "geojson", "title", "description", "stac_item", "stac_item_file")
#: DataFile fields that analysis may set.
ANALYSIS_FIELDS = frozenset(FILE_FIELDS) - {"id", "created_at", "updated_at", "organisation_id", "data_id",
                                            "file_id", "preview_file_id", "file_type", "file_name", "downloads"}
SERVICE_FIELDS = (*COMMON, "organisation_id", "ssd_id", "version", "approval_status", "featured", "show_in_latest",
                  "name", "categories", "keywords", "image_id", "definition", "group_aggregators", "actions",
                  "urls", "cidrs", "input_expressions", "input_validations", "option_expressions",
                  "option_validations", "license_id", "charge_expression_platform", "charge_expression_owner",
                  "organisations", "organisation_charge_expressions", "geographic_regions",
                  "documentation_summary", "documentation_description", "documentation_assumptions",
                  "documentation_performance", "documentation_actions", "documentation_inputs",
                  "documentation_outputs", "documentation_options")
PROCESS_FIELDS = (*COMMON, "organisation_id", "ssd_id", "service_id", "name", "inputs", "options", "chains",
                  "run_type", "repeat_count", "repeat_start", "repeat_end", "repeat_gap", "repeat_offset",
                  "process_status", "process_status_at", "process_status_changed_by", "output_storage_period",
                  "test_run", "dispatchers", "price", "deletable", "has_executions",
                  "has_executions_organisation_id", "executions", "non_aggregator_count", "aggregator_count")
EXECUTION_FIELDS = (*COMMON, "organisation_id", "process_id", "group_id", "group_index", "group_count", "options",
                    "chains", "started_at", "ended_at", "stopped", "abort", "abort_reason", "exit_type", "success",
                    "progress", "delete_expiry", "delete_warning_status", "deletable", "delete_protection")
COMPONENT_FIELDS = (*COMMON, "organisation_id", "process_execution_id", "process_id", "service_id", "image_id",
                    "chain_index", "name", "started_at", "ended_at", "runtime", "architecture", "cpu", "gpu",
                    "memory", "storage", "instance_type", "actions", "options", "inputs", "outputs",
                    "intermediate", "success", "metrics")
LOG_FIELDS = (*COMMON, "process_service_execution_id", "logged_at", "message")

_DATETIMES = frozenset({"created_at", "updated_at", "started_at", "ended_at", "logged_at", "repeat_start",
                        "repeat_end", "process_status_at", "delete_expiry", "last_request_at"})

DATA_LIST = ListSpec(frozenset(DATA_FIELDS), key_fields=frozenset({"id", "organisation_id", "name"}),
                     search_fields=("name",), datetime_fields=_DATETIMES)
FILE_LIST = ListSpec(frozenset(FILE_FIELDS), search_fields=("file_name", "file_type", "title"),
                     datetime_fields=_DATETIMES)
SERVICE_LIST = ListSpec(frozenset(SERVICE_FIELDS), key_fields=frozenset({"id", "organisation_id", "name"}),
                        search_fields=("name", "keywords", "categories", "documentation_summary"),
                        datetime_fields=_DATETIMES)
PROCESS_LIST = ListSpec(frozenset(PROCESS_FIELDS), search_fields=("name",), datetime_fields=_DATETIMES)
EXECUTION_LIST = ListSpec(frozenset(EXECUTION_FIELDS), key_fields=frozenset({"id", "organisation_id",
                                                                             "process_id"}),
                          search_fields=("id", "group_id", "abort_reason"), datetime_fields=_DATETIMES)
COMPONENT_LIST = ListSpec(frozenset(COMPONENT_FIELDS), search_fields=("name",), datetime_fields=_DATETIMES)
LOG_LIST = ListSpec(frozenset(LOG_FIELDS), key_fields=frozenset({"id", "process_service_execution_id"}),
                    search_fields=("message",), datetime_fields=_DATETIMES)

FILE_TYPES = ("GeoTIFF", "JPEG2000", "DEM", "GeoJSON", "KML", "KMZ", "CSV", "ESRI Shapefile", "JPEG", "PNG", "PDF",
              "GZIP", "ZIP", "Other")

#: Data file types accepted for an input of a given type (the platform's substitution table).
FILE_TYPE_SUBSTITUTIONS: dict[str, tuple[str, ...]] = {
    "GeoTIFF": ("GeoTIFF", "DEM", "JPEG2000"),
    "GeoJSON": ("GeoJSON", "KML", "KMZ", "ESRI Shapefile"),
}


def wire(doc: dict[str, Any]) -> dict[str, Any]:
    """The response form of a stored document: top-level ``None`` values omitted."""
    return {key: value for key, value in doc.items() if value is not None}
