"""The SQLite catalog (``catalog.db``): the source of truth for tags and what they reference.

Tables: ``tags`` (catalog key -> manifest digest, name, modified_at, parent_model), ``manifests``
(size and the details ``list``/``show`` need, for each tagged manifest), ``refs`` (manifest -> every blob it
needs, itself included), ``gguf_info`` (parsed GGUF metadata cached per model blob) and ``pulls``
(state of interrupted pulls, for resuming). Schema changes go through ``sqlite_utils.Migrations``,
so opening the catalog any number of times is harmless. The connection is shared between threads
and every use is serialised by the owning ``Store``'s lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from ollamalike.jsontypes import JSONObject, JSONValue

migrations = Migrations("ollamalike.catalog")


@migrations()
def m001_initial(db: Database) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS tags (key TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "digest TEXT NOT NULL, modified_at TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS tags_digest ON tags(digest)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS manifests (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, "
        "config_digest TEXT NOT NULL, details TEXT NOT NULL, parent_model TEXT NOT NULL DEFAULT '')"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS refs (manifest TEXT NOT NULL, blob TEXT NOT NULL, "
        "PRIMARY KEY (manifest, blob))"
    )
    db.execute("CREATE INDEX IF NOT EXISTS refs_blob ON refs(blob)")
    db.execute("CREATE TABLE IF NOT EXISTS gguf_info (digest TEXT PRIMARY KEY, info TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS pulls (key TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at TEXT NOT NULL)"
    )


@migrations()
def m002_parent_model_per_tag(db: Database) -> None:
    """Two tags can share a manifest yet come from different bases: parent_model belongs to the tag."""
    db.execute("ALTER TABLE tags ADD COLUMN parent_model TEXT NOT NULL DEFAULT ''")
    db.execute(
        "UPDATE tags SET parent_model = COALESCE("
        "(SELECT m.parent_model FROM manifests m WHERE m.digest = tags.digest), '')"
    )
    db.execute("ALTER TABLE manifests DROP COLUMN parent_model")


@dataclass(frozen=True)
class TagRow:
    key: str
    name: str
    digest: str
    modified_at: str
    size: int
    details: JSONObject
    parent_model: str


_TAG_SELECT = (
    "SELECT t.key, t.name, t.digest, t.modified_at, m.size, m.details, t.parent_model "
    "FROM tags t JOIN manifests m ON m.digest = t.digest"
)


def _tag_row(r: tuple[Any, ...]) -> TagRow:  # a SQLite row: its columns' Python values
    details = {**json.loads(r[5]), "parent_model": r[6]}
    return TagRow(r[0], r[1], r[2], r[3], r[4], details, r[6])


class Catalog:
    def __init__(self, path: Path) -> None:
        # isolation_level=None: transactions are explicit (Database.atomic), never implicit.
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db = Database(conn)
        self.db.execute("PRAGMA busy_timeout=30000")
        self.db.enable_wal()
        # BEGIN IMMEDIATE takes SQLite's write lock first, so two processes opening a new catalog at
        # once apply each migration exactly once (the second sees them applied when it gets the lock).
        self.db.execute("BEGIN IMMEDIATE")
        try:
            migrations.apply(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row = self.db.execute(sql, params).fetchone()
        return tuple(row) if row is not None else None

    # --- tags ----------------------------------------------------------------------------

    def tag_digest(self, key: str) -> str | None:
        row = self._one("SELECT digest FROM tags WHERE key = ?", (key,))
        return row[0] if row else None

    def set_tag(self, key: str, name: str, digest: str, modified_at: str, parent_model: str = "") -> str | None:
        """Point a tag at a manifest; returns the digest it pointed at before (or None)."""
        old = self.tag_digest(key)
        self.db.execute(
            "INSERT INTO tags (key, name, digest, modified_at, parent_model) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET name = excluded.name, digest = excluded.digest, "
            "modified_at = excluded.modified_at, parent_model = excluded.parent_model",
            (key, name, digest, modified_at, parent_model),
        )
        return old

    def remove_tag(self, key: str) -> str | None:
        old = self.tag_digest(key)
        self.db.execute("DELETE FROM tags WHERE key = ?", (key,))
        return old

    def tags(self) -> list[TagRow]:
        rows = self.db.execute(
            f"{_TAG_SELECT} ORDER BY t.modified_at DESC, t.key"
        ).fetchall()
        return [_tag_row(r) for r in rows]

    def tag(self, key: str) -> TagRow | None:
        r = self._one(f"{_TAG_SELECT} WHERE t.key = ?", (key,))
        return _tag_row(r) if r else None

    # --- manifests and references --------------------------------------------------------

    def add_manifest(self, digest: str, size: int, config_digest: str, details: JSONObject, blobs: list[str]) -> None:
        self.db.execute(
            "INSERT INTO manifests (digest, size, config_digest, details) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET size = excluded.size, details = excluded.details",
            (digest, size, config_digest, json.dumps(details, sort_keys=True)),
        )
        self.add_refs(digest, blobs)

    def add_refs(self, manifest: str, blobs: list[str]) -> None:
        for blob in {manifest, *blobs}:
            self.db.execute("INSERT OR IGNORE INTO refs (manifest, blob) VALUES (?, ?)", (manifest, blob))

    def manifest_blobs(self, manifest: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT blob FROM refs WHERE manifest = ?", (manifest,)).fetchall()]

    def drop_manifest_if_untagged(self, manifest: str) -> list[str]:
        """Forget a manifest no tag points at; returns the blobs it referenced (GC candidates)."""
        if self._one("SELECT 1 FROM tags WHERE digest = ? LIMIT 1", (manifest,)):
            return []
        blobs = self.manifest_blobs(manifest)
        self.db.execute("DELETE FROM refs WHERE manifest = ?", (manifest,))
        self.db.execute("DELETE FROM manifests WHERE digest = ?", (manifest,))
        return blobs

    def is_referenced(self, blob: str) -> bool:
        return self._one("SELECT 1 FROM refs WHERE blob = ? LIMIT 1", (blob,)) is not None

    def referenced_blobs(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT DISTINCT blob FROM refs").fetchall()}

    # --- cached GGUF metadata ------------------------------------------------------------

    def get_info(self, digest: str) -> JSONValue:
        """The cached metadata of ``digest`` (None when there is none)."""
        row = self._one("SELECT info FROM gguf_info WHERE digest = ?", (digest,))
        info: JSONValue = json.loads(row[0]) if row else None
        return info

    def put_info(self, digest: str, info: JSONValue) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO gguf_info (digest, info) VALUES (?, ?)", (digest, json.dumps(info, sort_keys=True))
        )

    def drop_info(self, digest: str) -> None:
        self.db.execute("DELETE FROM gguf_info WHERE digest = ?", (digest,))

    # --- pull state ----------------------------------------------------------------------

    def record_pull(self, key: str, state: JSONObject, updated_at: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO pulls (key, state, updated_at) VALUES (?, ?, ?)",
            (key, json.dumps(state, sort_keys=True), updated_at),
        )

    def get_pull(self, key: str) -> JSONObject | None:
        row = self._one("SELECT state FROM pulls WHERE key = ?", (key,))
        return json.loads(row[0]) if row else None

    def clear_pull(self, key: str) -> None:
        self.db.execute("DELETE FROM pulls WHERE key = ?", (key,))

    def pulls(self) -> dict[str, JSONObject]:
        return {r[0]: json.loads(r[1]) for r in self.db.execute("SELECT key, state FROM pulls").fetchall()}
