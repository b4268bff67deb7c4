"""The emulator's persistent state: one SQLite file with a JSON document per row.

Each table keeps the model exactly as it goes on the wire (``doc``, a JSON object with ``id``,
``created_at``, ``updated_at`` and the model fields) plus a few plain columns used for lookups
(owner organisation, parent ids). Lists are filtered and paged in Python (see ``listing``): the
collections an emulator holds are small, and this keeps the filter semantics in one readable place.

One connection is shared by every thread and serialised with a re-entrant lock; ``tx()`` opens a
``BEGIN IMMEDIATE`` transaction (nested calls join the outer one). WAL journaling keeps readers
from blocking on a writer in another process (e.g. a test inspecting the file).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS organisations (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE NOCASE, password_hash TEXT NOT NULL,
    password_changed_at REAL NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memberships (
    user_id TEXT NOT NULL, organisation_id TEXT NOT NULL, roles TEXT NOT NULL, position INTEGER NOT NULL,
    PRIMARY KEY (user_id, organisation_id));
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens (user_id);
CREATE TABLE IF NOT EXISTS credits (id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, created_at TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS services (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, ssd_id TEXT NOT NULL, kind TEXT NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS data (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, kind TEXT NOT NULL, execution_id TEXT,
    created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS data_org ON data (organisation_id);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, data_id TEXT NOT NULL, file_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL, doc TEXT NOT NULL, geometry BLOB);
CREATE INDEX IF NOT EXISTS files_data ON files (data_id);
CREATE TABLE IF NOT EXISTS blobs (
    file_id TEXT PRIMARY KEY, size INTEGER NOT NULL, etag TEXT NOT NULL, content_type TEXT NOT NULL,
    file_name TEXT NOT NULL, created_at REAL NOT NULL, orphaned_at REAL, keep_until REAL,
    url_expiry REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS processes (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL,
    state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS processes_org ON processes (organisation_id);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, process_id TEXT NOT NULL, group_id TEXT,
    run_id TEXT NOT NULL, created_at TEXT NOT NULL, doc TEXT NOT NULL, state TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executions_process ON executions (process_id);
CREATE TABLE IF NOT EXISTS components (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, execution_id TEXT NOT NULL, process_id TEXT NOT NULL,
    created_at TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS components_execution ON components (execution_id);
CREATE TABLE IF NOT EXISTS logs (
    id TEXT PRIMARY KEY, organisation_id TEXT NOT NULL, component_id TEXT NOT NULL, created_at TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_component ON logs (component_id);
"""

#: Tables holding a ``doc`` column, and the plain columns each one has besides ``id``/``created_at``/``doc``.
DOC_TABLES: dict[str, tuple[str, ...]] = {
    "organisations": (),
    "credits": ("organisation_id",),
    "services": ("organisation_id", "ssd_id", "kind", "spec"),
    "data": ("organisation_id", "kind", "execution_id"),
    "files": ("organisation_id", "data_id", "file_id", "geometry"),
    "processes": ("organisation_id", "state"),
    "executions": ("organisation_id", "process_id", "group_id", "run_id", "state"),
    "components": ("organisation_id", "execution_id", "process_id"),
    "logs": ("organisation_id", "component_id"),
}


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """Wire format of a datetime: ISO 8601 with microseconds and an explicit ``+00:00`` offset.

    Always the same width, so that stored strings sort chronologically.
    """
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are not stored")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def dumps(value: Any) -> str:
    """Compact JSON for storage."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Store:
    """Thread-safe access to the SQLite state of one data directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.executescript(_SCHEMA)
        with self.tx():
            if self.meta_get("schema_version") is None:
                self.meta_set("schema_version", str(SCHEMA_VERSION))

    # -- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (after a checkpoint, so the WAL does not linger)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # best effort
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the outermost one."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._conn
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth -= 1
                if outer:
                    self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        """Run one statement and return all rows."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- meta -----------------------------------------------------------------------------------

    def meta_get(self, key: str) -> str | None:
        rows = self.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        self.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- documents ------------------------------------------------------------------------------

    def insert(self, table: str, doc: dict[str, Any], **columns: Any) -> None:
        """Insert a document (with ``id`` and ``created_at``) and its lookup columns."""
        names = ["id", "created_at", "doc", *columns]
        values = [doc["id"], doc["created_at"], dumps(doc), *(_column(v) for v in columns.values())]
        marks = ", ".join("?" for _ in names)
        self.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", values)

    def put(self, table: str, doc: dict[str, Any], **columns: Any) -> None:
        """Replace the document of an existing row (and optionally some lookup columns)."""
        sets = ["doc = ?", *(f"{name} = ?" for name in columns)]
        values = [dumps(doc), *(_column(v) for v in columns.values()), doc["id"]]
        self.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE id = ?", values)

    def row(self, table: str, id_: str) -> sqlite3.Row | None:
        """The raw row with this id, or None."""
        rows = self.execute(f"SELECT * FROM {table} WHERE id = ?", (id_,))
        return rows[0] if rows else None

    def doc(self, table: str, id_: str) -> dict[str, Any] | None:
        """The document with this id, or None."""
        row = self.row(table, id_)
        return json.loads(row["doc"]) if row is not None else None

    def docs(self, table: str, **where: Any) -> list[dict[str, Any]]:
        """Documents matching ``column = value`` conditions, oldest first (``created_at``, then ``id``)."""
        return [json.loads(row["doc"]) for row in self.rows(table, **where)]

    def rows(self, table: str, **where: Any) -> list[sqlite3.Row]:
        """Rows matching ``column = value`` conditions (``None`` matches NULL), oldest first."""
        clauses = []
        values: list[Any] = []
        for name, value in where.items():
            if value is None:
                clauses.append(f"{name} IS NULL")
            else:
                clauses.append(f"{name} = ?")
                values.append(value)
        condition = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return self.execute(f"SELECT * FROM {table}{condition} ORDER BY created_at, id", values)

    def delete(self, table: str, **where: Any) -> int:
        """Delete rows matching ``column = value`` conditions; returns the count."""
        if not where:
            raise ValueError("refusing to delete a whole table")
        clauses = " AND ".join(f"{name} = ?" for name in where)
        with self._lock:
            cursor = self._conn.execute(f"DELETE FROM {table} WHERE {clauses}", list(where.values()))
            return cursor.rowcount


def _column(value: Any) -> Any:
    """Lookup columns hold scalars; dicts and lists are stored as JSON."""
    if isinstance(value, (dict, list)):
        return dumps(value)
    return value
