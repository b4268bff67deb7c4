"""The emulated platform's behaviour, independent of HTTP: accounts, organisations, data, files, services.

Processes and executions are in ``processes.py`` and ``engine.py``. Every public method takes an
:class:`AuthContext` (who is asking) and enforces organisation isolation: an organisation that is not yours
is a 403 (whether or not it exists), an object id that is not in the organisation of the path is a 404.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fusion_stac.emulator import analysis, services
from fusion_stac.emulator.auth import TokenService, hash_password, password_problems, verify_password
from fusion_stac.emulator.bodies import as_bool, as_decimal, as_int, as_list, as_str, as_uuid
from fusion_stac.emulator.errors import (
    ApiError,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
    unauthorised,
)
from fusion_stac.emulator.models import ANALYSIS_FIELDS, FILE_TYPES, wire
from fusion_stac.emulator.settings import EmulatorSettings
from fusion_stac.emulator.storage import CONTENT_TYPES, BlobStore, UrlSigner
from fusion_stac.emulator.store import Store, iso, utcnow

logger = logging.getLogger("fusion_stac.emulator")

DATABASE_NAME = "emulator.sqlite3"
MAX_OUTPUT_STORAGE_DAYS = 365
INCORRECT_LOGIN = "Incorrect username or password"


@dataclass
class AuthContext:
    """The authenticated caller: user id and the organisations (with roles) they belong to."""

    user_id: str
    email: str
    roles: dict[str, list[str]] = field(default_factory=dict)

    def require_org(self, organisation_id: str) -> None:
        """403 unless the caller belongs to the organisation (the same answer whether or not it exists)."""
        if organisation_id not in self.roles:
            raise forbidden(f"You are not a member of organisation {organisation_id}")

    def require_role(self, organisation_id: str, role: str) -> None:
        self.require_org(organisation_id)
        if role not in self.roles[organisation_id]:
            raise forbidden(f"Your role in organisation {organisation_id} does not allow this ({role} needed)")


class Platform:
    """State and behaviour of one emulated platform (one data directory)."""

    def __init__(self, settings: EmulatorSettings, data_dir: Path) -> None:
        self.settings = settings
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(data_dir / DATABASE_NAME)
        secret_hex = self.store.meta_get("secret")
        if secret_hex is None:
            secret_hex = secrets.token_hex(32)
            self.store.meta_set("secret", secret_hex)
        secret = bytes.fromhex(secret_hex)
        self.tokens = TokenService(self.store, _derive(secret, "id-token"))
        self.signer = UrlSigner(_derive(secret, "storage-url"))
        self.blobs = BlobStore(data_dir / "storage", self.store)
        self.work_dir = data_dir / "work"
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._seed()
        self._analysis_lock = threading.Lock()

    def close(self) -> None:
        self.store.close()

    # -- seeding --------------------------------------------------------------------------------

    def _seed(self) -> None:
        """Create the seeded organisations, users, credits and services (only those missing)."""
        seeded = utcnow()
        now = iso(seeded)
        with self.store.tx():
            for org in services.ORGANISATIONS:
                if self.store.row("organisations", org["id"]) is None:
                    doc = {key: value for key, value in org.items() if key != "credits"}
                    doc.update({
                        "created_at": now, "updated_at": now, "payment_customer": None, "payment_valid": True,
                        "income_customer": None, "income_valid": None, "income_tax_rate": None,
                        "income_tax_reference": None, "agreed_licenses": [services.LICENSE_ID], "offers": [],
                        "maximum_output_storage_period": MAX_OUTPUT_STORAGE_DAYS, "maximum_file_downloads": 1000,
                    })
                    self.store.insert("organisations", doc)
                    credit = {
                        "id": org["id"], "created_at": now, "updated_at": now, "organisation_id": org["id"],
                        "any_credits": org["credits"], "cloud_storage_credits": 0, "registry_storage_credits": 0,
                        "runtime_any_credits": 0, "runtime_ssds": [], "spend": [],
                    }
                    self.store.insert("credits", credit, organisation_id=org["id"])
            for user in services.USERS:
                if self.store.row("users", user["id"]) is None and not self.store.execute(
                    "SELECT 1 FROM users WHERE email = ?", (user["email"],)
                ):
                    self._insert_user(user, now)
            for position, spec in enumerate(services.SERVICE_SPECS):
                # Distinct creation times keep the catalogue in its declared order.
                doc = services.service_doc(spec, iso(seeded + timedelta(microseconds=position)))
                existing = self.store.row("services", spec["id"])
                if existing is None:
                    self.store.insert("services", doc, organisation_id=doc["organisation_id"],
                                      ssd_id=spec["ssd_id"], kind=spec["kind"], spec=spec)
                else:  # keep the catalogue current across emulator versions, but keep the original timestamps
                    old = json.loads(existing["doc"])
                    doc["created_at"], doc["updated_at"] = old["created_at"], old["updated_at"]
                    self.store.put("services", doc, spec=spec, kind=spec["kind"])

    def _insert_user(self, user: dict[str, Any], now: str) -> None:
        doc = {
            "id": user["id"], "created_at": now, "updated_at": now, "email": user["email"],
            "given_name": user["given_name"], "family_name": user["family_name"], "telephone": None, "role": None,
            "default_output_storage_period": 30, "time_zone": "Europe/London", "locale": "en_GB", "units": "metric",
            "notification_service_status": ["email"], "notification_account": ["email"],
            "notification_processing_chain": ["email"], "notification_new_features": [],
            "notification_contact": [], "last_request_at": None,
        }
        self.store.execute(
            "INSERT INTO users (id, email, password_hash, password_changed_at, created_at, doc) VALUES (?, ?, ?, ?, ?, ?)",
            (user["id"], user["email"], hash_password(user["password"]), 0.0, now, json.dumps(doc)),
        )
        for position, org_id in enumerate(user["organisations"]):
            self.store.execute(
                "INSERT INTO memberships (user_id, organisation_id, roles, position) VALUES (?, ?, ?, ?)",
                (user["id"], org_id, json.dumps(services.ALL_ROLES), position),
            )

    # -- authentication -------------------------------------------------------------------------

    def login(self, fields: dict[str, Any]) -> dict[str, Any]:
        email = as_str(fields.get("email"), "User.email", allow_none=True, max_length=320)
        user_id = as_str(fields.get("user_id"), "User.user_id", allow_none=True, max_length=64)
        password = as_str(fields.get("password"), "User.password", max_length=1024)
        if email is None and user_id is None:
            raise bad_request("User.email or User.user_id is required")
        if email is not None:
            rows = self.store.execute("SELECT id, email, password_hash FROM users WHERE email = ?", (email.strip(),))
        else:
            try:
                normalised = str(uuid.UUID(user_id or ""))
            except ValueError:
                normalised = ""
            rows = self.store.execute("SELECT id, email, password_hash FROM users WHERE id = ?", (normalised,))
        if not rows or not verify_password(password or "", rows[0]["password_hash"]):
            raise ApiError(401, INCORRECT_LOGIN)
        row = rows[0]
        issued = self.tokens.issue(row["id"], row["email"], self.settings.token_lifetime)
        self._touch_user(row["id"], force=True)
        return {
            "access_token": issued.access_token,
            "id_token": issued.id_token,
            "refresh_token": issued.refresh_token,
            "expires_in": issued.expires_in,
            "token_type": "Bearer",
        }

    def authenticate(self, authorization: str | None) -> AuthContext:
        if not authorization:
            raise unauthorised("Missing Authorization header (expected 'Bearer <access token>')")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorised("Malformed Authorization header (expected 'Bearer <access token>')")
        user_id, reason = self.tokens.user_for(token.strip())
        if user_id is None:
            raise unauthorised(reason)
        rows = self.store.execute("SELECT email FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise unauthorised("Invalid access token")
        roles = {
            row["organisation_id"]: json.loads(row["roles"])
            for row in self.store.execute(
                "SELECT organisation_id, roles FROM memberships WHERE user_id = ? ORDER BY position", (user_id,)
            )
        }
        self._touch_user(user_id)
        return AuthContext(user_id=user_id, email=rows[0]["email"], roles=roles)

    def _touch_user(self, user_id: str, force: bool = False) -> None:
        """Record ``last_request_at`` (at most once a minute, so ordinary requests do not write)."""
        doc = self.store.doc("users", user_id)
        if doc is None:
            return
        last = doc.get("last_request_at")
        now = utcnow()
        if not (force or last is None or (now - _parse_iso(last)).total_seconds() > 60):
            return
        with self.store.tx():
            doc = self.store.doc("users", user_id)
            if doc is not None:
                doc["last_request_at"] = iso(now)
                self.store.put("users", doc)

    # -- users ----------------------------------------------------------------------------------

    def _user_wire(self, user_id: str) -> dict[str, Any]:
        doc = self.store.doc("users", user_id)
        if doc is None:
            raise not_found("User", user_id)
        memberships = self.store.execute(
            "SELECT organisation_id FROM memberships WHERE user_id = ? ORDER BY position", (user_id,)
        )
        doc["organisations"] = [
            {"id": row["organisation_id"], "last": index == 0} for index, row in enumerate(memberships)
        ]
        return wire(doc)

    def _require_self(self, ctx: AuthContext, user_id: str) -> None:
        if user_id != ctx.user_id:
            raise forbidden("You may only access your own user")

    def get_user(self, ctx: AuthContext, user_id: str) -> dict[str, Any]:
        self._require_self(ctx, user_id)
        return self._user_wire(user_id)

    def update_user(self, ctx: AuthContext, user_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._require_self(ctx, user_id)
        with self.store.tx():
            doc = self.store.doc("users", user_id)
            if doc is None:
                raise not_found("User", user_id)
            for name in ("given_name", "family_name"):
                if name in fields:
                    doc[name] = as_str(fields[name], f"User[{name}]", allow_empty=False, max_length=200)
            if "telephone" in fields:
                value = as_str(fields["telephone"], "User[telephone]", allow_none=True, max_length=40)
                if value and not re.fullmatch(r"\+?[0-9 ()-]{4,40}", value):
                    raise invalid(f"User[telephone] is not a telephone number: {value!r}")
                doc["telephone"] = value
            if "default_output_storage_period" in fields:
                doc["default_output_storage_period"] = as_int(
                    fields["default_output_storage_period"], "User[default_output_storage_period]",
                    minimum=1, maximum=MAX_OUTPUT_STORAGE_DAYS)
            if "time_zone" in fields:
                zone = as_str(fields["time_zone"], "User[time_zone]", allow_empty=False, max_length=64) or ""
                try:
                    ZoneInfo(zone)
                except (ZoneInfoNotFoundError, ValueError):
                    raise invalid(f"User[time_zone] is not a known time zone: {zone!r}") from None
                doc["time_zone"] = zone
            if "locale" in fields:
                locale = as_str(fields["locale"], "User[locale]", max_length=16) or ""
                if not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", locale):
                    raise invalid(f"User[locale] must look like 'en_GB', got {locale!r}")
                doc["locale"] = locale
            if "units" in fields:
                units = as_str(fields["units"], "User[units]", max_length=16)
                if units not in ("metric", "imperial"):
                    raise invalid("User[units] must be 'metric' or 'imperial'")
                doc["units"] = units
            for name in ("notification_service_status", "notification_account", "notification_processing_chain",
                         "notification_new_features", "notification_contact"):
                if name in fields:
                    values = as_list(fields[name], f"User[{name}]", allow_none=True)
                    if values is not None:
                        for value in values:
                            if value not in ("email", "sms"):
                                raise invalid(f"User[{name}] may only contain 'email' and 'sms'")
                    doc[name] = values
            doc["updated_at"] = iso(utcnow())
            self.store.put("users", doc)
        return self._user_wire(user_id)

    def delete_user(self, ctx: AuthContext, user_id: str) -> dict[str, Any]:
        self._require_self(ctx, user_id)
        deleted = self._user_wire(user_id)
        with self.store.tx():
            self.store.delete("users", id=user_id)
            self.store.delete("memberships", user_id=user_id)
            self.tokens.revoke_user(user_id)
        return deleted

    def change_password(self, ctx: AuthContext, user_id: str, fields: dict[str, Any]) -> None:
        self._require_self(ctx, user_id)
        old = as_str(fields.get("old_password"), "User.old_password", max_length=1024) or ""
        new = as_str(fields.get("new_password"), "User.new_password", max_length=1024) or ""
        rows = self.store.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise not_found("User", user_id)
        if not verify_password(old, rows[0]["password_hash"]):
            raise invalid("The old password is incorrect")
        problems = password_problems(new)
        if problems:
            raise invalid("The new password must contain " + ", ".join(problems))
        if new == old:
            raise invalid("The new password must differ from the old one")
        with self.store.tx():
            self.store.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (hash_password(new), time.time(), user_id),
            )
            self.tokens.revoke_user(user_id)

    # -- organisations --------------------------------------------------------------------------

    def _organisation_wire(self, organisation_id: str) -> dict[str, Any]:
        doc = self.store.doc("organisations", organisation_id)
        if doc is None:
            raise not_found("Organisation", organisation_id)
        members = self.store.execute(
            "SELECT m.user_id, m.roles, u.email FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.organisation_id = ? ORDER BY u.email", (organisation_id,)
        )
        doc["users"] = [{"id": row["user_id"], "email": row["email"], "roles": json.loads(row["roles"])}
                        for row in members]
        return wire(doc)

    def get_organisation(self, ctx: AuthContext, organisation_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return self._organisation_wire(organisation_id)

    def update_organisation(self, ctx: AuthContext, organisation_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "manage_organisation")
        with self.store.tx():
            doc = self.store.doc("organisations", organisation_id)
            if doc is None:
                raise not_found("Organisation", organisation_id)
            for name in ("name", "address_line_1", "address_town_city", "address_post_zip_code"):
                if name in fields:
                    doc[name] = as_str(fields[name], f"Organisation[{name}]", allow_empty=(name != "name"),
                                       max_length=200)
            for name in ("address_line_2", "payment_customer", "income_customer", "income_tax_reference"):
                if name in fields:
                    doc[name] = as_str(fields[name], f"Organisation[{name}]", allow_none=True, max_length=200)
            if "address_country" in fields:
                country = as_str(fields["address_country"], "Organisation[address_country]", max_length=3) or ""
                if not re.fullmatch(r"[A-Z]{3}", country):
                    raise invalid("Organisation[address_country] must be an ISO 3166 alpha-3 code such as 'GBR'")
                doc["address_country"] = country
            if "currency" in fields:
                currency = as_str(fields["currency"], "Organisation[currency]", allow_none=True, max_length=3)
                if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
                    raise invalid("Organisation[currency] must be an ISO 4217 code such as 'GBP'")
                doc["currency"] = currency
            if "income_tax_rate" in fields:
                rate = as_decimal(fields["income_tax_rate"], "Organisation[income_tax_rate]", allow_none=True)
                if rate is not None and not 0 <= rate <= 100:
                    raise invalid("Organisation[income_tax_rate] must be a percentage between 0 and 100")
                doc["income_tax_rate"] = float(rate) if rate is not None else None
            doc["updated_at"] = iso(utcnow())
            self.store.put("organisations", doc)
        return self._organisation_wire(organisation_id)

    def delete_organisation(self, ctx: AuthContext, organisation_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "manage_organisation")
        deleted = self._organisation_wire(organisation_id)
        with self.store.tx():
            data = self.store.rows("data", organisation_id=organisation_id)
            processes = self.store.rows("processes", organisation_id=organisation_id)
            if data or processes:
                raise conflict(f"Organisation {organisation_id} still owns {len(data)} data items and "
                               f"{len(processes)} processes; delete them first")
            self.store.delete("organisations", id=organisation_id)
            self.store.delete("credits", organisation_id=organisation_id)
            self.store.delete("memberships", organisation_id=organisation_id)
        return deleted

    def get_credit(self, ctx: AuthContext, organisation_id: str, credit_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        doc = self.store.doc("credits", credit_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise not_found("Credit", credit_id)
        return wire(doc)

    # -- data -----------------------------------------------------------------------------------

    def _data_row(self, organisation_id: str, data_id: str) -> dict[str, Any]:
        doc = self.store.doc("data", data_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise not_found("Data", data_id)
        return doc

    def used_data_ids(self, organisation_id: str) -> dict[str, str]:
        """Data ids used as process inputs in the organisation -> name of (one) process using it."""
        used: dict[str, str] = {}
        for process in self.store.docs("processes", organisation_id=organisation_id):
            for item in process.get("inputs") or []:
                if item.get("id"):
                    used.setdefault(item["id"], process["name"])
        return used

    def data_wire(self, doc: dict[str, Any], used: dict[str, str] | None = None) -> dict[str, Any]:
        if used is None:
            used = self.used_data_ids(doc["organisation_id"])
        doc = dict(doc)
        files = self.store.docs("files", data_id=doc["id"])
        bounds = [f["bounds"] for f in files if isinstance(f.get("bounds"), list) and len(f["bounds"]) == 4]
        if bounds:
            doc["bounds"] = [min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds),
                             max(b[3] for b in bounds)]
        with_preview = [f["file_id"] for f in files if f.get("preview_file_id")]
        doc["file_with_preview"] = with_preview[0] if with_preview else None
        row = self.store.row("data", doc["id"])
        generated = row is not None and row["kind"] == "output"
        doc["unlinked"] = None if doc["id"] in used or generated else "unlinked"
        return wire(doc)

    def new_data(self, ctx: AuthContext, organisation_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return {"organisation_id": organisation_id}

    def create_data(self, ctx: AuthContext, organisation_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        name = as_str(fields.get("name"), "Data[name]", allow_empty=False, max_length=1024)
        given_org = as_uuid(fields.get("organisation_id"), "Data[organisation_id]", allow_none=True)
        if given_org is not None and given_org != organisation_id:
            raise bad_request("Data[organisation_id] does not match the organisation of the path")
        chosen = as_uuid(fields.get("id"), "Data[id]", allow_none=True)
        data_id = chosen or str(uuid.uuid4())
        if chosen in _RESERVED_IDS:
            raise _unusable_data_id(chosen)
        now = iso(utcnow())
        doc = {
            "id": data_id, "created_at": now, "updated_at": now, "organisation_id": organisation_id,
            "name": name, "unlinked": None, "unfulfilled": None, "bounds": None, "file_with_preview": None,
            "uploaded_organisation_id": organisation_id, "deletable": None,
        }
        with self.store.tx():
            if self.store.row("data", data_id) is not None:  # in this organisation or in any other
                raise _unusable_data_id(data_id)
            self.store.insert("data", doc, organisation_id=organisation_id, kind="uploaded", execution_id=None)
        return self.data_wire(doc)

    def get_data(self, ctx: AuthContext, organisation_id: str, data_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return self.data_wire(self._data_row(organisation_id, data_id))

    def list_uploaded_data(self, ctx: AuthContext, organisation_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        used = self.used_data_ids(organisation_id)
        return [self.data_wire(d, used) for d in self.store.docs("data", organisation_id=organisation_id,
                                                                  kind="uploaded")]

    def update_data(self, ctx: AuthContext, organisation_id: str, data_id: str,
                    fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._data_row(organisation_id, data_id)
            if "name" in fields:
                doc["name"] = as_str(fields["name"], "Data[name]", allow_empty=False, max_length=1024)
                doc["updated_at"] = iso(utcnow())
                self.store.put("data", doc)
        return self.data_wire(doc)

    def delete_data(self, ctx: AuthContext, organisation_id: str, data_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._data_row(organisation_id, data_id)
            row = self.store.row("data", data_id)
            used = self.used_data_ids(organisation_id)
            if data_id in used:
                raise conflict(f"Data {data_id} is used by process '{used[data_id]}'; delete the process first")
            if row is not None and row["kind"] == "output":
                raise conflict(f"Data {data_id} is an output of execution {row['execution_id']}; "
                               "delete the execution or its process instead")
            result = self.data_wire(doc, used)
            self.delete_data_rows([data_id])
        return result

    def delete_data_rows(self, data_ids: list[str]) -> None:
        """Delete data items and their file rows; their blobs stay downloadable until collected."""
        with self.store.tx():
            blob_ids: list[str] = []
            for data_id in data_ids:
                for f in self.store.docs("files", data_id=data_id):
                    blob_ids.append(f["file_id"])
                    if f.get("preview_file_id"):
                        blob_ids.append(f["preview_file_id"])
                self.store.delete("files", data_id=data_id)
                self.store.delete("data", id=data_id)
            self.blobs.orphan(blob_ids, grace=self.settings.url_lifetime)

    def copy_data(self, ctx: AuthContext, organisation_id: str, data_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        source = self._data_row(organisation_id, data_id)
        name = as_str(fields.get("name"), "Data.name", allow_empty=False, max_length=1024)
        now = iso(utcnow())
        new_id = str(uuid.uuid4())
        doc = dict(source, id=new_id, created_at=now, updated_at=now, name=name,
                   uploaded_organisation_id=organisation_id)
        with self.store.tx():
            self.store.insert("data", doc, organisation_id=organisation_id, kind="uploaded", execution_id=None)
            for row in self.store.rows("files", data_id=data_id):
                file_doc = json.loads(row["doc"])
                new_file_id = str(uuid.uuid4())
                self.blobs.copy_blob(file_doc["file_id"], new_file_id)
                preview = file_doc.get("preview_file_id")
                new_preview = str(uuid.uuid4()) if preview else None
                if preview and new_preview and self.blobs.copy_blob(preview, new_preview) is None:
                    new_preview = None
                copied = dict(file_doc, id=str(uuid.uuid4()), created_at=now, updated_at=now, data_id=new_id,
                              file_id=new_file_id, preview_file_id=new_preview, downloads=0)
                self.store.insert("files", copied, organisation_id=organisation_id, data_id=new_id,
                                  file_id=new_file_id, geometry=row["geometry"])
        return self.data_wire(doc)

    # -- files ----------------------------------------------------------------------------------

    def add_file(self, ctx: AuthContext, organisation_id: str, data_id: str, fields: dict[str, Any],
                 base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        self._data_row(organisation_id, data_id)
        name = as_str(fields.get("name"), "Data.name", allow_empty=False, max_length=255) or ""
        if "/" in name or "\\" in name or name in (".", ".."):
            raise bad_request(f"Data.name must be a plain file name without directories, got {name!r}")
        if _CONTROL_CHARACTERS.search(name):
            raise bad_request(f"Data.name must not contain control characters (U+0000-U+001F, U+007F), got {name!r}")
        file_type = as_str(fields.get("file_type"), "Data.file_type")
        if file_type not in FILE_TYPES:
            raise bad_request(f"Data.file_type {file_type!r} is not one of: {', '.join(FILE_TYPES)}")
        now = iso(utcnow())
        file_id = str(uuid.uuid4())
        with self.store.tx():
            doc = self._data_row(organisation_id, data_id)
            row = self.store.row("data", data_id)
            if row is not None and row["kind"] == "output":
                raise conflict(f"Data {data_id} is an execution output; files cannot be added to it")
            if data_id in self.used_data_ids(organisation_id):
                raise conflict(f"Data {data_id} is used by a process; files cannot be added to it")
            file_doc = {
                "id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "organisation_id": organisation_id,
                "data_id": data_id, "file_id": file_id, "preview_file_id": None, "file_type": file_type,
                "file_name": name, "downloads": 0,
            }
            self.store.insert("files", file_doc, organisation_id=organisation_id, data_id=data_id,
                              file_id=file_id, geometry=None)
        url, _ = self.signer.sign(base_url, "PUT", file_id, self.settings.url_lifetime)
        return self.data_wire(doc), {"file": file_id, "url": url}

    def list_files(self, ctx: AuthContext, organisation_id: str, data_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        self._data_row(organisation_id, data_id)
        return [wire(doc) for doc in self.store.docs("files", data_id=data_id)]

    def download_file(self, ctx: AuthContext, organisation_id: str, data_id: str, file_id: str, preview: bool,
                      base_url: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        self._data_row(organisation_id, data_id)
        rows = self.store.execute("SELECT * FROM files WHERE file_id = ? AND data_id = ?", (file_id, data_id))
        if not rows:
            raise not_found("File", file_id)
        doc = json.loads(rows[0]["doc"])
        target = file_id
        name = doc.get("file_name") or file_id
        if preview:
            target = doc.get("preview_file_id")
            if not target:
                raise not_found("Preview of file", file_id)
            name = f"{Path(name).stem}.png"
        info = self.blobs.info(target)
        if info is None:
            raise conflict(f"File {file_id} has not been uploaded yet")
        url, expires = self.signer.sign(base_url, "GET", target, self.settings.url_lifetime)
        self.blobs.note_url(target, expires)
        with self.store.tx():
            current = self.store.doc("files", doc["id"])
            if current is not None:
                current["downloads"] = int(current.get("downloads") or 0) + 1
                self.store.put("files", current)
        return {"url": url, "file": target, "name": name, "commands": [f"curl -o '{name}' '{url}'"]}

    def file_for_upload(self, file_id: str) -> dict[str, Any] | None:
        rows = self.store.execute("SELECT doc FROM files WHERE file_id = ?", (file_id,))
        return json.loads(rows[0]["doc"]) if rows else None

    def finish_upload(self, file_id: str, blob_path: Path) -> None:
        """Analyse a freshly uploaded file and record the results (called in a worker thread)."""
        record = self.file_for_upload(file_id)
        if record is None:
            return
        self.record_analysis(record, blob_path)

    def record_analysis(self, record: dict[str, Any], path: Path, *, item_id: str | None = None,
                        when: datetime | None = None) -> dict[str, Any]:
        """Run ``analyse_file`` on ``path`` and store its fields, footprint and preview on the file record."""
        try:
            result = analysis.analyse_file(path, record["file_type"], record.get("file_name") or path.name,
                                           item_id=item_id, when=when)
            fields = sanitise(dict(result.fields))
            geometry = result.geometry_wkb
            preview = result.preview_png
        except Exception as exc:  # analysis must never take the server down; the file is marked failed
            logger.exception("analysis of %s failed", record.get("file_name"))
            fields = {"error": True, "publishable": False,
                      "description": f"Analysis failed: {type(exc).__name__}: {exc}"}
            geometry = None
            preview = None
        fields = {key: value for key, value in fields.items() if key in ANALYSIS_FIELDS}
        fields.setdefault("size", path.stat().st_size)
        if "publishable" not in fields and "error" not in fields:
            fields["publishable"] = True
        with self.store.tx():
            current = self.store.doc("files", record["id"])
            if current is None:  # deleted while analysing
                return record
            old_preview = current.get("preview_file_id")
            for key in ANALYSIS_FIELDS:
                current.pop(key, None)
            current.update(fields)
            current["preview_file_id"] = None
            if preview:
                preview_id = str(uuid.uuid4())
                self.blobs.add_bytes(preview_id, preview, "image/png",
                                     f"{Path(current.get('file_name') or 'preview').stem}.png")
                current["preview_file_id"] = preview_id
            if old_preview:
                self.blobs.orphan([old_preview], grace=self.settings.url_lifetime)
            current["updated_at"] = iso(utcnow())
            self.store.put("files", current, geometry=geometry)
        return current

    # -- services -------------------------------------------------------------------------------

    def _services(self, kinds: tuple[str, ...], latest_only: bool = True) -> list[dict[str, Any]]:
        result = []
        for row in self.store.execute("SELECT doc, kind FROM services ORDER BY created_at, id"):
            if row["kind"] not in kinds:
                continue
            doc = json.loads(row["doc"])
            if latest_only and not doc.get("show_in_latest"):
                continue
            result.append(wire(doc))
        return result

    def list_latest_services(self, ctx: AuthContext, organisation_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        return self._services(("service", "dispatcher"))

    def list_dispatchers(self, ctx: AuthContext, organisation_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        return self._services(("dispatcher",))

    def list_own_services(self, ctx: AuthContext, organisation_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        return [wire(doc) for doc in self.store.docs("services", organisation_id=organisation_id)]

    def get_service(self, ctx: AuthContext, organisation_id: str, service_id: str) -> dict[str, Any]:
        """A service, addressed through its owning organisation.

        Members of that organisation read its services (404 for an unknown id). Anyone else reads only what their
        own organisations are offered anyway (the latest catalogue, e.g. the platform's services, addressed
        through their publisher); for anything else a non-member gets the non-member answer (403), whether or
        not the service exists.
        """
        doc = self.store.doc("services", service_id)
        owned = doc is not None and doc["organisation_id"] == organisation_id
        if organisation_id not in ctx.roles:
            offered = {item["id"] for item in self._services(("service", "dispatcher"))}
            if not (owned and service_id in offered):
                ctx.require_org(organisation_id)
        if doc is None or not owned:
            raise not_found("Service", service_id)
        return wire(doc)

    def update_service(self, ctx: AuthContext, organisation_id: str, service_id: str,
                       fields: dict[str, Any]) -> dict[str, Any]:
        self.get_service(ctx, organisation_id, service_id)
        ctx.require_role(organisation_id, "create_ssds")
        with self.store.tx():
            doc = self.store.doc("services", service_id) or {}
            for name in ("name", "documentation_summary", "documentation_description", "documentation_assumptions",
                         "documentation_performance", "documentation_actions"):
                if name in fields:
                    doc[name] = as_str(fields[name], f"Service[{name}]", allow_empty=(name != "name"))
            if "featured" in fields:
                doc["featured"] = as_str(fields["featured"], "Service[featured]", allow_none=True)
            if "show_in_latest" in fields:
                doc["show_in_latest"] = as_bool(fields["show_in_latest"], "Service[show_in_latest]", allow_none=True)
            for name in ("keywords", "categories"):
                if name in fields:
                    values = as_list(fields[name], f"Service[{name}]") or []
                    doc[name] = [as_str(v, f"Service[{name}] item") for v in values]
            doc["updated_at"] = iso(utcnow())
            self.store.put("services", doc)
        return wire(doc)

    def delete_service(self, ctx: AuthContext, organisation_id: str, service_id: str) -> dict[str, Any]:
        doc = self.get_service(ctx, organisation_id, service_id)
        ctx.require_role(organisation_id, "create_ssds")
        with self.store.tx():
            if any(p["service_id"] == service_id for p in self.store.docs("processes")):
                raise conflict(f"Service {service_id} is used by processes")
            self.store.delete("services", id=service_id)
        return doc

    # -- housekeeping ---------------------------------------------------------------------------

    def temp_dir(self) -> Path:
        """A scratch directory for rendering outputs (removed by the caller)."""
        return Path(tempfile.mkdtemp(dir=self.work_dir))


#: File names are sent back in headers and written to disks: no C0 control characters, no DEL.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")
#: Ids nobody may choose: the nil and the max UUID.
_RESERVED_IDS = frozenset({"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"})


def _unusable_data_id(data_id: str) -> ApiError:
    """The one answer for every refused client-chosen Data id, whether it is taken in the caller's organisation,
    taken in another one or reserved: the answer must not tell another organisation's ids from free ones."""
    return conflict(f"Data[id] {data_id} cannot be used; leave Data[id] out to have an id chosen")


def content_type_for(file_type: str) -> str:
    return CONTENT_TYPES.get(file_type, "application/octet-stream")


def sanitise(value: Any) -> Any:
    """Make analysis results JSON-safe: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitise(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _derive(secret: bytes, purpose: str) -> bytes:
    import hashlib
    import hmac

    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


__all__ = ["INCORRECT_LOGIN", "AuthContext", "Platform", "content_type_for", "sanitise"]
