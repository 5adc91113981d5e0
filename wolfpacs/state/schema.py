"""The SQLite schema of the store, and its migrations.

A database records the version of its schema (``PRAGMA user_version``);
:func:`migrate` brings it to :data:`VERSION` at open, one migration after
another, each in its own transaction, and refuses a database newer than
this WolfPACS. A database from before versions were recorded (version 0
with the tables in place) is version 1: its statements are all ``IF NOT
EXISTS``. A PostgreSQL backend keeps its own schema in its own dialect.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

__all__ = ["VERSION", "SchemaError", "migrate"]

logger = logging.getLogger(__name__)

# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS = (
    """
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    worker TEXT NOT NULL,
    routed_at DOUBLE PRECISION NOT NULL,
    last_activity_at DOUBLE PRECISION NOT NULL,
    instances_in INTEGER NOT NULL DEFAULT 0,
    instances_delivered INTEGER NOT NULL DEFAULT 0,
    derived_in INTEGER NOT NULL DEFAULT 0,
    derived_delivered INTEGER NOT NULL DEFAULT 0,
    moved_from TEXT,
    delivered_before_move INTEGER NOT NULL DEFAULT 0,
    delivered_elsewhere INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS studies_activity ON studies (last_activity_at);
CREATE INDEX IF NOT EXISTS studies_worker ON studies (worker);
CREATE INDEX IF NOT EXISTS studies_client ON studies (client);
CREATE INDEX IF NOT EXISTS studies_routed ON studies (routed_at);
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_target ON queue (target, id);
-- Every queue row counts its instance in, to its study, as it is inserted: enqueue is then
-- one statement (a PostgreSQL store makes the same trigger in its own dialect).
CREATE TRIGGER IF NOT EXISTS queue_counted_in AFTER INSERT ON queue BEGIN
    UPDATE studies SET instances_in = instances_in + (NEW.kind = 'worker'),
        derived_in = derived_in + (NEW.kind <> 'worker'), last_activity_at = NEW.enqueued_at
    WHERE study_uid = NEW.study_uid;
END;
CREATE INDEX IF NOT EXISTS queue_study ON queue (study_uid);
CREATE TABLE IF NOT EXISTS worker_states (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS runtime_changes (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT,
    changed_at DOUBLE PRECISION NOT NULL
);
""",
)
VERSION = len(MIGRATIONS)


class SchemaError(RuntimeError):
    """A state database this WolfPACS cannot use (newer than it knows)."""


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the database's schema to :data:`VERSION`; the version it had.

    Raises:
        SchemaError: the database's schema is newer than :data:`VERSION`.
        sqlite3.Error: a migration failed (it is rolled back whole).
    """
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if found > VERSION:
        raise SchemaError(
            f"{path}: state database of schema version {found}, newer than this WolfPACS "
            f"knows ({VERSION}); run the newer version, or restore a backup"
        )
    for version in range(found, VERSION):
        # One transaction: the tables and the version they make move together.
        script = f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\n"
        try:
            db.executescript(f"{script}PRAGMA user_version = {version + 1};\nCOMMIT;")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    if 0 < found < VERSION:
        logger.info("%s: state database migrated from schema %d to %d", path, found, VERSION)
    return found
