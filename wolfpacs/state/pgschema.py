"""The PostgreSQL schema of the store, and its migrations.

The same tables, keys, indexes and triggers as SQLite's schema at its
newest version (:mod:`wolfpacs.state.schema`), in PostgreSQL's dialect: row ids
are ``BIGINT GENERATED ALWAYS AS IDENTITY``, the triggers are plpgsql, and
text is ``COLLATE "C"`` so that it sorts as SQLite sorts it (by bytes),
whatever the database's locale. The PostgreSQL schema has its own
versions, from 1, recorded in the table ``schema_version``; its history
starts at SQLite's version 3, so it has none of SQLite's older shapes
(its version 2 is SQLite's 4).

:func:`migrate` brings a database to :data:`VERSION` in one transaction
for all migrations due, under an advisory lock, so that nodes starting
together migrate once; it refuses a database newer than this WolfPACS.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, LiteralString

from wolfpacs.state.schema import SchemaError

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "VERSION", "migrate"]

logger = logging.getLogger(__name__)

# The key of the advisory lock that migrations hold (any number: it is ours).
MIGRATION_LOCK = 0x574F4C46  # "WOLF"

# MIGRATIONS[n] takes a database from version n to n + 1. Each statement on its own: psycopg
# runs one statement a call with parameters, and a plpgsql body is one statement.
MIGRATIONS: tuple[tuple[LiteralString, ...], ...] = (
    # 1: the store as SQLite's schema 3 has it (see that migration for what each column is).
    (
        """CREATE TABLE studies (
    client TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    pool TEXT COLLATE "C" NOT NULL DEFAULT '',
    worker TEXT COLLATE "C" NOT NULL,
    routed_at DOUBLE PRECISION NOT NULL,
    last_activity_at DOUBLE PRECISION NOT NULL,
    instances_in INTEGER NOT NULL DEFAULT 0,
    instances_delivered INTEGER NOT NULL DEFAULT 0,
    derived_in INTEGER NOT NULL DEFAULT 0,
    derived_delivered INTEGER NOT NULL DEFAULT 0,
    moved_from TEXT COLLATE "C",
    delivered_before_move INTEGER NOT NULL DEFAULT 0,
    delivered_elsewhere INTEGER NOT NULL DEFAULT 0,
    delivered_at DOUBLE PRECISION,
    delivered_to TEXT COLLATE "C",
    result_at DOUBLE PRECISION,
    overdue_at DOUBLE PRECISION,
    PRIMARY KEY (client, study_uid, pool)
)""",
        """CREATE TABLE assignments (
    client TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    pool TEXT COLLATE "C" NOT NULL DEFAULT '',
    worker TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (client, study_uid, pool, worker)
)""",
        """CREATE TABLE queue (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL UNIQUE,
    client TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    sop_class_uid TEXT COLLATE "C" NOT NULL,
    sop_instance_uid TEXT COLLATE "C" NOT NULL,
    transfer_syntax TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    pool TEXT COLLATE "C" NOT NULL DEFAULT ''
)""",
        """CREATE TABLE series (
    client TEXT COLLATE "C" NOT NULL,
    study_uid TEXT COLLATE "C" NOT NULL,
    series_uid TEXT COLLATE "C" NOT NULL,
    pool TEXT COLLATE "C" NOT NULL DEFAULT '',
    action TEXT COLLATE "C" NOT NULL DEFAULT '',
    rule INTEGER,
    decided_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, study_uid, series_uid)
)""",
        """CREATE TABLE worker_states (
    name TEXT COLLATE "C" PRIMARY KEY,
    state TEXT COLLATE "C" NOT NULL,
    changed_at DOUBLE PRECISION NOT NULL
)""",
        """CREATE TABLE runtime_changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    body TEXT,
    changed_at DOUBLE PRECISION NOT NULL
)""",
        "CREATE INDEX assignments_worker ON assignments (study_uid, worker)",
        "CREATE INDEX studies_uid ON studies (study_uid)",
        "CREATE INDEX studies_activity ON studies (last_activity_at)",
        "CREATE INDEX studies_routed ON studies (routed_at)",
        "CREATE INDEX studies_worker_activity ON studies (worker, last_activity_at)",
        "CREATE INDEX studies_client_activity ON studies (client, last_activity_at)",
        "CREATE INDEX studies_worker_routed ON studies (worker, routed_at)",
        "CREATE INDEX studies_client_routed ON studies (client, routed_at)",
        """CREATE INDEX studies_awaiting ON studies (pool, delivered_at)
    WHERE result_at IS NULL AND delivered_at IS NOT NULL""",
        "CREATE INDEX queue_target ON queue (target, id)",
        "CREATE INDEX queue_study ON queue (client, study_uid, pool)",
        # SQLite's two triggers, one function each: a worker's row counts its instance in
        # (and makes its study if it was purged an instant before); a derived row counts a
        # result in. Last activity moves at most once a second (see SQLite's schema 3).
        """CREATE FUNCTION queue_counted_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO studies (client, study_uid, pool, worker, routed_at, last_activity_at,
        instances_in)
    VALUES (NEW.client, NEW.study_uid, NEW.pool, NEW.target, NEW.enqueued_at,
        NEW.enqueued_at, 1)
    ON CONFLICT (client, study_uid, pool) DO UPDATE SET
        instances_in = studies.instances_in + 1;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND pool = NEW.pool
        AND last_activity_at < NEW.enqueued_at - 1;
    RETURN NULL;
END $$""",
        """CREATE FUNCTION derived_counted_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE studies SET derived_in = derived_in + 1
        WHERE client = NEW.client AND study_uid = NEW.study_uid AND pool = NEW.pool;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND pool = NEW.pool
        AND last_activity_at < NEW.enqueued_at - 1;
    RETURN NULL;
END $$""",
        """CREATE TRIGGER queue_counted_in AFTER INSERT ON queue FOR EACH ROW
    WHEN (NEW.kind = 'worker') EXECUTE FUNCTION queue_counted_in()""",
        """CREATE TRIGGER derived_counted_in AFTER INSERT ON queue FOR EACH ROW
    WHEN (NEW.kind <> 'worker') EXECUTE FUNCTION derived_counted_in()""",
    ),
    # 2: several nodes: SQLite's schema 4 (see that migration), the leases and queue owners.
    (
        """CREATE TABLE nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY,
    epoch INTEGER NOT NULL DEFAULT 1,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    shared_spool INTEGER NOT NULL DEFAULT 0,
    adopted_by TEXT COLLATE "C",
    adopted_at DOUBLE PRECISION
)""",
        """ALTER TABLE queue ADD COLUMN owner TEXT COLLATE "C" NOT NULL DEFAULT ''""",
        "CREATE INDEX queue_owner ON queue (owner, target, id)",
    ),
)
VERSION = len(MIGRATIONS)


def migrate(db: psycopg.Connection[Any], where: str) -> int:
    """Bring the database's schema to :data:`VERSION`; the version it had.

    ``db`` is in autocommit mode; ``where`` names the database in errors
    (without its password). The migrations are one transaction with the
    version they make (PostgreSQL's DDL is transactional), under an
    advisory lock: a second node starting at the same time waits, then
    finds the schema done.

    Raises:
        SchemaError: the database's schema is newer than :data:`VERSION`.
        psycopg.Error: a migration failed (it is rolled back whole).
    """
    with db.transaction():
        db.execute("SET LOCAL statement_timeout TO 0")  # a large table's migration may take long
        db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        found = int(row[0]) if row else 0
        if found > VERSION:
            raise SchemaError(
                f"{where}: state database of schema version {found}, newer than this "
                f"WolfPACS knows ({VERSION}); run the newer version, or restore a backup"
            )
        if row is None:
            db.execute("INSERT INTO schema_version (version) VALUES (0)")
        for version in range(found, VERSION):
            for statement in MIGRATIONS[version]:
                db.execute(statement)
            db.execute("UPDATE schema_version SET version = %s", (version + 1,))
    if 0 < found < VERSION:
        logger.info("%s: state database migrated from schema %d to %d", where, found, VERSION)
    return found
