"""ProcessDraft: an immutable, not yet created process."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fusion_stac.client._common import _WRITABLE_PROCESS_FIELDS, _flat, _id_of, _jsonable
from fusion_stac.errors import ValidationError
from fusion_stac.models import Data, Dispatcher, FrozenDict, Input, Option, Process

if TYPE_CHECKING:  # the draft's owner; imported for annotations only
    from fusion_stac.client._core import FusionClient


@dataclass(frozen=True)
class ProcessDraft:
    """An immutable, not yet created process: a template from a service plus your choices.

    Every ``with_*`` method returns a new draft; nothing is sent until :meth:`create`. Options are
    validated and encoded as you set them; inputs are checked (analysis finished, file type
    accepted) against the platform when set, which costs one request per input.
    """

    organisation_id: str
    name: str
    template: FrozenDict = field(repr=False)
    client: FusionClient = field(repr=False, compare=False)

    @property
    def process(self) -> Process:
        """The draft seen as a :class:`Process` model (options, inputs, dispatchers...)."""
        return Process.from_api(self.template)

    @property
    def options(self) -> tuple[Option, ...]:
        return self.process.options

    @property
    def inputs(self) -> tuple[Input, ...]:
        return self.process.inputs

    @property
    def available_dispatchers(self) -> tuple[Dispatcher, ...]:
        return self.process.available_dispatchers

    def option(self, name: str) -> Option:
        return self.process.option(name)

    def _with(self, **changes: Any) -> ProcessDraft:
        raw = dict(self.template)
        raw.update(changes)
        return replace(self, template=FrozenDict(raw))

    def with_option(self, name: str, value: Any) -> ProcessDraft:
        """Set option ``name`` (type-converted and validated against its ``validation``)."""
        option = self.process.option(name)
        encoded = option.encode(value)
        options = [dict(o) for o in self.template.get("options") or ()]
        for entry in options:
            if entry.get("name") == name:
                entry["value"] = encoded
        return self._with(options=options)

    def with_options(self, **values: Any) -> ProcessDraft:
        """Set several options: ``draft.with_options(latest_date=False, maximum_cloud=20)``."""
        draft = self
        for name, value in values.items():
            draft = draft.with_option(name, value)
        return draft

    def with_input(self, number: int, data: Data | str, *, check: bool = True) -> ProcessDraft:
        """Use ``data`` (a Data or its id) as input ``number`` (1-based).

        With ``check`` (default) the data's files are listed once to make sure the platform has
        analysed them and their type is accepted for this input (API doc 10.2).
        """
        slot = self.process.input(number)
        data_id = _id_of(data)
        if check:
            self.client.check_input(self.organisation_id, slot, data, number=number)
        inputs = [dict(i) for i in self.template.get("inputs") or ()]
        inputs[number - 1]["id"] = data_id
        if isinstance(data, Data) and data.name:
            inputs[number - 1]["name"] = data.name
        return self._with(inputs=inputs)

    def with_fields(self, **fields: Any) -> ProcessDraft:
        """Set schedule and storage fields: ``name``, ``run_type``, ``repeat_count``, ``repeat_start``,
        ``repeat_end``, ``repeat_gap`` (dict or JSON string), ``repeat_offset`` (timedelta),
        ``output_storage_period``."""
        unknown = sorted(set(fields) - _WRITABLE_PROCESS_FIELDS)
        if unknown:
            raise ValidationError(
                f"cannot set process field(s) {', '.join(unknown)}; settable: {', '.join(sorted(_WRITABLE_PROCESS_FIELDS))}",
                field=unknown[0],
            )
        if "run_type" in fields and fields["run_type"] not in {"run_once", "run_schedule"}:
            raise ValidationError(f"run_type must be 'run_once' or 'run_schedule', got {fields['run_type']!r}",
                                  field="run_type")
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "repeat_gap" and isinstance(value, Mapping):
                value = json.dumps(dict(value))
            changes[key] = _jsonable(value)
        draft = self._with(**changes)
        if "name" in fields:
            draft = replace(draft, name=str(fields["name"]))
        return draft

    def with_dispatcher(self, name: str, **options: Any) -> ProcessDraft:
        """Add the available dispatcher called ``name`` with option values (validated)."""
        available = [dict(d) for d in self.template.get("available_dispatchers") or ()]
        match = [d for d in available if d.get("name") == name]
        if not match:
            known = ", ".join(repr(d.get("name")) for d in available) or "none"
            raise ValidationError(f"no dispatcher {name!r} is available (available: {known})", field=name)
        chosen = dict(match[0])
        opts = [dict(o) for o in chosen.get("options") or ()]
        for opt_name, value in options.items():
            hits = [o for o in opts if o.get("name") == opt_name]
            if not hits:
                known = ", ".join(repr(o.get("name")) for o in opts) or "none"
                raise ValidationError(f"dispatcher {name!r} has no option {opt_name!r} (options: {known})",
                                      field=opt_name)
            hits[0]["value"] = Option.from_api(hits[0]).encode(value)
        chosen["options"] = opts
        dispatchers = [dict(d) for d in self.template.get("dispatchers") or ()]
        dispatchers.append(chosen)
        return self._with(dispatchers=dispatchers)

    def body(self) -> dict[str, Any]:
        """The flat ``Process[...]`` create body."""
        fields = {k: v for k, v in self.template.items() if v is not None}
        fields["organisation_id"] = self.organisation_id
        fields["name"] = self.name
        return _flat("Process", fields)

    def create(self) -> Process:
        """Create the process on the platform (it prices it); returns the created Process."""
        return self.client.create_process(self)
