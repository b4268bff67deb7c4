"""FusionClient's resource calls: the user, organisations, data items and services."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from fusion_stac.client._common import M, _flat, _id_of, is_uuid
from fusion_stac.client._session import _Session
from fusion_stac.errors import (
    AmbiguousNameError,
    AnalysisError,
    APIError,
    NotFoundError,
    ValidationError,
    WaitTimeout,
)
from fusion_stac.models import Credit, Data, DataFile, Input, Organisation, Service, User


class _Resources(_Session):
    """The user, organisations, data items (listing, analysis, copy, rename, delete, input
    checks) and services."""

    # -- user and organisations -------------------------------------------------------------------------
    @property
    def user(self) -> User:
        """The logged-in user (fetched once, logging in if needed)."""
        if self._user is None:
            self._ensure_token()
            self._user = self._model(User, "GET", f"/users/{self.user_id}")
        return self._user

    def refresh_user(self) -> User:
        self._user = None
        return self.user

    def organisations(self) -> Iterator[Organisation]:
        """The user's organisations, one request each, lazily (there is no list endpoint)."""
        for org_id in self.user.organisation_ids:
            yield self.get_organisation(org_id)

    def get_organisation(self, org_id: str) -> Organisation:
        return self._model(Organisation, "GET", f"/organisations/{org_id}")

    def organisation(self, id_or_name: str | None = None) -> Organisation:
        """An organisation by id (one request) or by name; ``None`` means the one used last.

        A name is matched case-insensitively, exactly first, then as a prefix; the user's
        organisations are fetched concurrently to compare names.
        """
        if id_or_name is None:
            org_id = self.user.last_organisation_id
            if org_id is None:
                raise NotFoundError("the user belongs to no organisation", status=404, path="/users")
            return self.get_organisation(org_id)
        if is_uuid(id_or_name):
            return self.get_organisation(id_or_name)
        orgs = self.map(self.get_organisation, self.user.organisation_ids)
        folded = id_or_name.casefold()
        for matches in ([o for o in orgs if (o.name or "").casefold() == folded],
                        [o for o in orgs if (o.name or "").casefold().startswith(folded)]):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousNameError("organisation", id_or_name, [(o.id, o.name or "") for o in matches])
        known = ", ".join(repr(o.name) for o in orgs) or "none"
        raise NotFoundError(f"no organisation named {id_or_name!r} (yours: {known})", status=404, path="/organisations")

    def credit(self, org_id: str) -> Credit:
        return self._model(Credit, "GET", f"/organisations/{org_id}/credits/{org_id}")

    # -- data -----------------------------------------------------------------------------------------
    def iter_data(self, org_id: str, *, name: str | None = None, search: str | None = None,
                  reverse: bool = False) -> Iterator[Data]:
        """Uploaded data items; ``name`` is a (case-sensitive) prefix, ``search`` free text."""
        params = self._list_params(reverse=reverse, search=search, filters={"name__begins_with": name})
        return self._iter(Data, f"/organisations/{org_id}/data/uploaded", params)

    def get_data(self, org_id: str, data_id: str) -> Data:
        """Any data item (uploaded or produced) by id."""
        return self._model(Data, "GET", f"/organisations/{org_id}/data/{data_id}")

    def find_data(self, org_id: str, id_or_name: str) -> Data:
        """Data by id, or uploaded data by name (exact name preferred over a unique prefix)."""
        if is_uuid(id_or_name):
            return self.get_data(org_id, id_or_name)
        return self._lookup(Data, "data", f"/organisations/{org_id}/data/uploaded", id_or_name, "name__begins_with")

    def iter_files(self, org_id: str, data_id: str) -> Iterator[DataFile]:
        data_id = _id_of(data_id)
        params = self._list_params()
        return self._iter(DataFile, f"/organisations/{org_id}/data/{data_id}/files", params,
                          organisation_id=org_id, data_id=data_id)

    def list_files(self, org_id: str, data_id: str) -> list[DataFile]:
        """All files of a data item (all pages)."""
        return list(self.iter_files(org_id, data_id))

    def wait_for_analysis(
        self, org_id: str, data_id: str, *, poll_interval: float | None = None, timeout: float | None = 1800.0,
        extended: bool = False, name: str | None = None,
    ) -> list[DataFile]:
        """Poll the files of a data item until the platform has analysed all of them."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        started = time.monotonic()
        label = f"{name!r} ({data_id})" if name else data_id
        while True:
            files = self.list_files(org_id, data_id)
            failed = [f for f in files if f.analysis_failed]
            if failed:
                names = [f.file_name or f.file_id or "?" for f in failed]
                raise AnalysisError(
                    f"the platform could not analyse {', '.join(repr(n) for n in names)} in data {label}",
                    data_id=data_id, files=names, path=f"/organisations/{org_id}/data/{data_id}/files",
                )
            pending = [f for f in files if not f.analysed or (extended and not f.extended_analysis_done)]
            if files and not pending:
                return files
            waited = time.monotonic() - started
            if timeout is not None and waited + interval > timeout:
                still = ", ".join(repr(f.file_name) for f in pending) or "no files registered"
                raise WaitTimeout(f"analysis of data {label} not finished after {waited:.0f} s ({still})",
                                  waited=waited)
            self._sleep(interval)

    def copy_data(self, org_id: str, data_id: str, name: str) -> Data:
        """Copy a data item under a new name."""
        payload = self.request("POST", f"/organisations/{org_id}/data/{data_id}/copy", body={"Data": {"name": name}})
        model = payload.get("model") or {}
        if not model.get("id"):
            raise APIError("copy answered without the new id", path=f"/organisations/{org_id}/data/{data_id}/copy",
                           method="POST")
        return self.get_data(org_id, str(model["id"]))

    def rename_data(self, org_id: str, data_id: str, name: str) -> Data:
        return self._model(Data, "PATCH", f"/organisations/{org_id}/data/{data_id}", body=_flat("Data", {"name": name}))

    def delete_data(self, org_id: str, data_id: str) -> None:
        """Delete a data item (the platform refuses while a process uses it: ConflictError/4xx)."""
        self.request("DELETE", f"/organisations/{org_id}/data/{_id_of(data_id)}")

    def check_input(self, org_id: str, slot: Input, data: Data | str, *, number: int | None = None) -> list[DataFile]:
        """Check ``data`` can fill input ``slot``: analysed, not failed, file type accepted (10.2)."""
        data_id = _id_of(data)
        label = f"{data.name!r} ({data_id})" if isinstance(data, Data) and data.name else data_id
        where = f"input {number}" if number else "input"
        if slot.title:
            where += f" ({slot.title})"
        files = self.list_files(org_id, data_id)
        if not files:
            raise ValidationError(f"data {label} has no files, so it cannot be {where}", field=where)
        pending = [f for f in files if not f.analysed and "publishable" not in f.raw]
        if pending:
            raise ValidationError(
                f"data {label} is not analysed yet ({', '.join(repr(f.file_name) for f in pending)}); "
                f"wait for analysis before using it as {where}", field=where,
            )
        broken = [f for f in files if f.analysis_failed or "publishable" not in f.raw]
        if broken:
            raise ValidationError(
                f"data {label} cannot be {where}: the platform could not analyse "
                f"{', '.join(repr(f.file_name) for f in broken)}", field=where,
            )
        accepted = slot.accepted_file_types
        if accepted and files[0].file_type not in accepted:
            raise ValidationError(
                f"{where} takes {slot.file_type} (accepted: {', '.join(sorted(accepted))}), but data {label} "
                f"holds {files[0].file_type} ({files[0].file_name!r})", field=where,
            )
        return files

    # -- services ----------------------------------------------------------------------------------
    def iter_services(self, org_id: str, *, name: str | None = None, keyword: str | None = None,
                      search: str | None = None, ssd_id: str | None = None, latest: bool = True) -> Iterator[Service]:
        """Services the organisation may run (latest versions); ``name`` is a prefix."""
        params = self._list_params(search=search, filters={
            "name__begins_with": name, "keywords__contains": keyword, "ssd_id__eq": ssd_id,
        })
        which = "services/latest" if latest else "services"
        return self._iter(Service, f"/organisations/{org_id}/{which}", params)

    def iter_dispatchers(self, org_id: str, *, name: str | None = None) -> Iterator[Service]:
        params = self._list_params(filters={"name__begins_with": name})
        return self._iter(Service, f"/organisations/{org_id}/services/dispatchers", params)

    def get_service(self, org_id: str, service_id: str) -> Service:
        """A service by id among the organisation's latest services (one request)."""
        path = f"/organisations/{org_id}/services/latest"
        for items, _ in self._pages(path, self._list_params(limit=1, filters={"id__eq": service_id})):
            for item in items:
                return Service.from_api(item)
            break
        raise NotFoundError(f"no service {service_id} available to organisation {org_id}", status=404, path=path)

    def find_service(self, org_id: str, id_or_name_or_keyword: str | None = None, *, name: str | None = None,
                     keyword: str | None = None, ssd_id: str | None = None) -> Service:
        """A service by id, name (exact, else unique prefix) or keyword.

        A bare string is tried as an id (if UUID-shaped), then as a name; only if no name matches
        is it tried as a keyword (a second request).
        """
        path = f"/organisations/{org_id}/services/latest"
        if ssd_id:
            return self._lookup(Service, "service", path, name or "", "name__begins_with", {"ssd_id__eq": ssd_id}) \
                if name else self._first(Service, path, {"ssd_id__eq": ssd_id}, f"no service with SSD {ssd_id}")
        if keyword:
            return self._by_keyword(org_id, keyword)
        term = name or id_or_name_or_keyword
        if not term:
            raise ValidationError("find_service needs an id, a name or a keyword", field="service")
        if name is None and is_uuid(term):
            return self.get_service(org_id, term)
        try:
            return self._lookup(Service, "service", path, term, "name__begins_with")
        except NotFoundError:
            if name is not None:
                raise
        try:
            return self._by_keyword(org_id, term)
        except NotFoundError:
            raise NotFoundError(f"no service with id, name or keyword {term!r}", status=404, path=path,
                                method="GET") from None

    def _by_keyword(self, org_id: str, keyword: str) -> Service:
        path = f"/organisations/{org_id}/services/latest"
        params = self._list_params(limit=2, filters={"keywords__contains": keyword})
        items = next(self._pages(path, params))[0]
        if not items:
            raise NotFoundError(f"no service with keyword {keyword!r}", status=404, path=path, method="GET")
        if len(items) > 1:
            raise AmbiguousNameError("service keyword", keyword,
                                     [(str(i.get("id")), str(i.get("name"))) for i in items], path=path)
        return Service.from_api(items[0])

    def _first(self, cls: type[M], path: str, filters: Mapping[str, Any], missing: str, **extra: Any) -> M:
        items = next(self._pages(path, self._list_params(limit=1, filters=filters)))[0]
        if not items:
            raise NotFoundError(missing, status=404, path=path, method="GET")
        return cls.from_api(items[0], **extra)
