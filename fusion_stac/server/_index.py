"""The local search index: STAC collections and items of the platform in one SQLite file.

One table of collections, one of items (the item JSON, plus the columns search filters on: its
collection, id, the item's time interval and its bbox, all indexed), one of files (what the asset
gateway needs to answer for a file without asking the platform: its size and media type, and
whether the user may read it at all), two of property names (all of them, and per collection: for
``/queryables`` and ``/sortables``) and one of the runs and uploads already indexed (what an
incremental refresh skips).

Asset hrefs are stored as paths relative to the server (``/assets/{org}/{data}/{file}``); the
server prefixes its base URL when it answers. Nothing secret is ever stored: no signed URL, token
or password (items are built with ``fusion://`` hrefs and rewritten before they are stored).

Thread- and process-safe: one connection per thread (SQLite in WAL mode, so readers never wait for
a refresh that is writing), every write one ``BEGIN IMMEDIATE`` transaction, and a busy timeout on
every connection, so that several servers (several Python sessions of one user) share one file:
writers take turns, none fails with "database is locked". The file is private (``0600``, in a
directory created ``0700``): it lists what the user can see. Nothing is held in memory beyond
SQLite's page cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["ASSETS_PREFIX", "Index", "canonical_time", "gateway_path"]

#: The gateway's route prefix; stored hrefs start with it.
ASSETS_PREFIX = "/assets"
SCHEMA_VERSION = "2"
#: Seconds a connection waits for another (thread's or process's) write to finish.
BUSY_TIMEOUT = 60.0
#: Property types a sort can order by (arrays and objects would sort by their JSON text).
SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
    updated TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL, id TEXT NOT NULL, org_id TEXT NOT NULL,
    datetime TEXT, start_datetime TEXT, end_datetime TEXT,
    minx REAL, miny REAL, maxx REAL, maxy REAL, doc TEXT NOT NULL,
    PRIMARY KEY (collection, id));
CREATE INDEX IF NOT EXISTS items_id ON items (id);
CREATE INDEX IF NOT EXISTS items_datetime ON items (datetime);
CREATE INDEX IF NOT EXISTS items_start ON items (start_datetime);
CREATE INDEX IF NOT EXISTS items_end ON items (end_datetime);
CREATE INDEX IF NOT EXISTS items_x ON items (minx, maxx);
CREATE INDEX IF NOT EXISTS items_y ON items (miny, maxy);
CREATE TABLE IF NOT EXISTS files (
    org_id TEXT NOT NULL, data_id TEXT NOT NULL, file_id TEXT NOT NULL, preview INTEGER NOT NULL,
    size INTEGER, media_type TEXT, name TEXT, collection TEXT NOT NULL,
    PRIMARY KEY (org_id, data_id, file_id, preview));
CREATE INDEX IF NOT EXISTS files_collection ON files (collection);
CREATE TABLE IF NOT EXISTS properties (name TEXT PRIMARY KEY, type TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collection_properties (
    collection TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, PRIMARY KEY (collection, name));
CREATE TABLE IF NOT EXISTS sources (source TEXT PRIMARY KEY, collection TEXT, state TEXT NOT NULL);
"""
#: Schema 1 -> 2: the property names of each collection, from the items already indexed.
_BACKFILL_COLLECTION_PROPERTIES = """
INSERT OR IGNORE INTO collection_properties
SELECT i.collection, p.key, CASE p.type WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean'
    WHEN 'integer' THEN 'integer' WHEN 'real' THEN 'number' WHEN 'text' THEN 'string' WHEN 'array' THEN 'array'
    ELSE 'object' END
FROM items AS i, json_each(i.doc, '$.properties') AS p WHERE p.type <> 'null'
"""


def canonical_time(value: str | datetime | None) -> str | None:
    """A fixed-width UTC form (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) whose string order is time order."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:  # a date
            text += "T00:00:00"
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gateway_path(org_id: str, data_id: str, file_id: str, *, preview: bool = False) -> str:
    """The server-relative gateway path of a file (or of its preview)."""
    return f"{ASSETS_PREFIX}/{org_id}/{data_id}/{file_id}" + ("/preview" if preview else "")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _gateway_assets(item: dict[str, Any]) -> list[tuple[str, str, str, bool, Any, Any, Any]]:
    """Rewrite ``item``'s asset hrefs to gateway paths (in place); returns the files they name."""
    props = item.get("properties") or {}
    org, data, file_id = props.get("fusion:organisation_id"), props.get("fusion:data_id"), props.get("fusion:file_id")
    files: list[tuple[str, str, str, bool, Any, Any, Any]] = []
    for name, asset in (item.get("assets") or {}).items():
        asset.pop("fusion:href_expires", None)
        if not (org and data and file_id):
            continue
        preview = name != "data" and "thumbnail" in (asset.get("roles") or ())
        if name != "data" and not preview:
            continue
        asset["href"] = gateway_path(org, data, file_id, preview=preview)
        files.append((org, data, file_id, preview, asset.get("file:size"), asset.get("type"),
                      props.get("title")))
    return files


def _private_file(path: Path) -> None:
    """Create ``path``'s directory (``0700``) and the file itself (``0600``) if missing. SQLite gives
    the ``-wal`` and ``-shm`` files it adds the database file's permissions."""
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class Index:
    """The SQLite index at ``path`` (created if missing; ``":memory:"`` for a private, unshared one)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            _private_file(Path(self.path))
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._memory: sqlite3.Connection | None = None
        with self._write_lock, self._connection() as con:  # one transaction: another process may be here too
            for statement in filter(str.strip, _SCHEMA.split(";")):
                con.execute(statement)
            row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None or row[0] == "1":
                if row is not None:
                    con.execute(_BACKFILL_COLLECTION_PROPERTIES)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    # -- connections ---------------------------------------------------------------------------
    def connect(self) -> sqlite3.Connection:
        """This thread's connection (read it; writes go through the methods below)."""
        if self.path == ":memory:":
            if self._memory is None:
                self._memory = self._open()
            return self._memory
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._open()
        return con

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, check_same_thread=self.path != ":memory:", isolation_level=None,
                              timeout=BUSY_TIMEOUT)  # the busy timeout: wait for other writers, never fail
        con.row_factory = sqlite3.Row
        if self.path != ":memory:":
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA cache_size=-16000")  # 16 MB of page cache per connection, at most
        return con

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        con = self.connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
        if self._memory is not None:
            self._memory.close()
            self._memory = None

    # -- writing -------------------------------------------------------------------------------
    def put_collection(self, collection: Mapping[str, Any], items: Iterable[Mapping[str, Any]], *,
                       kind: str, source: str, complete: bool = True) -> int:
        """Replace collection ``collection["id"]`` and all its items; record ``source`` as indexed
        (``complete``: skip it from now on; otherwise it is walked again at the next refresh).
        Items are copied, their links dropped and asset hrefs rewritten to gateway paths."""
        coll = json.loads(json.dumps(collection))
        coll["links"] = []
        cid = coll["id"]
        org_id = str(coll.get("fusion:organisation_id") or "")
        rows: list[tuple[Any, ...]] = []
        file_rows: list[tuple[Any, ...]] = []
        names: dict[str, str] = {}
        for src in items:
            item = json.loads(json.dumps(src))
            item["links"] = []
            item["collection"] = cid
            props = item.setdefault("properties", {})
            org_id = org_id or str(props.get("fusion:organisation_id") or "")
            file_rows.extend((*f, cid) for f in _gateway_assets(item))
            for key, value in props.items():
                if value is not None:  # null says nothing of the type
                    names.setdefault(key, _json_type(value))
            start = props.get("start_datetime") or props.get("datetime")
            end = props.get("end_datetime") or props.get("datetime")
            bbox = item.get("bbox") or [None] * 4
            if len(bbox) == 6:
                bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
            rows.append((cid, item["id"], org_id, canonical_time(props.get("datetime")), canonical_time(start),
                         canonical_time(end), *bbox, json.dumps(item, separators=(",", ":"))))
        now = canonical_time(datetime.now(timezone.utc))
        with self._write_lock, self._connection() as con:
            con.execute("DELETE FROM items WHERE collection=?", (cid,))
            con.execute("DELETE FROM files WHERE collection=?", (cid,))
            con.execute("INSERT OR REPLACE INTO collections VALUES (?,?,?,?,?,?)",
                        (cid, org_id, kind, source, now, json.dumps(coll, separators=(",", ":"))))
            con.executemany("INSERT OR REPLACE INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            con.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)", file_rows)
            con.executemany("INSERT OR IGNORE INTO properties VALUES (?,?)", list(names.items()))
            con.execute("DELETE FROM collection_properties WHERE collection=?", (cid,))
            con.executemany("INSERT OR IGNORE INTO collection_properties VALUES (?,?,?)",
                            [(cid, *kv) for kv in names.items()])
            con.execute("INSERT OR REPLACE INTO sources VALUES (?,?,?)",
                        (source, cid, "complete" if complete else "partial"))
        return len(rows)

    def forget_source(self, source: str) -> None:
        """Drop what ``source`` indexed (it disappeared from the platform)."""
        with self._write_lock, self._connection() as con:
            row = con.execute("SELECT collection FROM sources WHERE source=?", (source,)).fetchone()
            if row is not None and row["collection"]:
                for table in ("items", "files", "collection_properties"):
                    con.execute(f"DELETE FROM {table} WHERE collection=?", (row["collection"],))
                con.execute("DELETE FROM collections WHERE id=?", (row["collection"],))
            con.execute("DELETE FROM sources WHERE source=?", (source,))

    # -- reading -------------------------------------------------------------------------------
    def complete_sources(self) -> set[str]:
        return {r[0] for r in self.connect().execute("SELECT source FROM sources WHERE state='complete'")}

    def sources(self) -> set[str]:
        return {r[0] for r in self.connect().execute("SELECT source FROM sources")}

    def collections(self) -> list[dict[str, Any]]:
        rows = self.connect().execute("SELECT doc FROM collections ORDER BY kind DESC, updated, id")
        return [json.loads(r[0]) for r in rows]

    def collection(self, collection_id: str) -> dict[str, Any] | None:
        row = self.connect().execute("SELECT doc FROM collections WHERE id=?", (collection_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        row = self.connect().execute("SELECT doc FROM items WHERE collection=? AND id=?",
                                     (collection_id, item_id)).fetchone()
        return json.loads(row[0]) if row else None

    def file(self, org_id: str, data_id: str, file_id: str, preview: bool) -> sqlite3.Row | None:
        """The gateway's facts about one file, or ``None`` if the user cannot see it (not indexed)."""
        return self.connect().execute(
            "SELECT size, media_type, name FROM files WHERE org_id=? AND data_id=? AND file_id=? AND preview=?",
            (org_id, data_id, file_id, int(preview))).fetchone()

    def files_of(self, org_id: str, data_id: str) -> list[tuple[str, int | None]]:
        """``(file_id, size)`` of the files of one data item the user can see (the gateway's listing)."""
        rows = self.connect().execute(
            "SELECT file_id, size FROM files WHERE org_id=? AND data_id=? AND preview=0 ORDER BY file_id",
            (org_id, data_id))
        return [(r[0], r[1]) for r in rows]

    def property_types(self, collection_id: str | None = None) -> dict[str, str]:
        """``name -> JSON type`` of the item properties seen (in one collection, or in any)."""
        if collection_id is None:
            rows = self.connect().execute("SELECT name, type FROM properties ORDER BY name")
        else:
            rows = self.connect().execute("SELECT name, type FROM collection_properties WHERE collection=? "
                                          "ORDER BY name", (collection_id,))
        return {r[0]: r[1] for r in rows}

    def count(self) -> int:
        return int(self.connect().execute("SELECT count(*) FROM items").fetchone()[0])

    def query(self, where: str, params: Sequence[Any], order: str, limit: int, offset: int) -> list[str]:
        """Item JSON texts matching ``where`` (SQL over the ``items`` columns, with ``params``)."""
        sql = f"SELECT doc FROM items WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
        return [r[0] for r in self.connect().execute(sql, (*params, limit, offset))]
