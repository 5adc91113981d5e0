"""The SQLite schema of the store, and its migrations.

A database records the version of its schema (``PRAGMA user_version``);
:func:`migrate` brings it to :data:`VERSION` at open, one migration after
another, each in its own transaction, and refuses a database newer than
this WolfPACS. A database from before versions were recorded (version 0
with the tables in place) is version 1: its statements are all ``IF NOT
EXISTS``. The PostgreSQL backend keeps the same tables in its own dialect
(:mod:`wolfpacs.state.pgschema`): a migration here needs its twin there
(tests/test_store_postgresql.py compares the two schemas).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

__all__ = ["VERSION", "SchemaError", "migrate"]

logger = logging.getLogger(__name__)

# MIGRATIONS[n] takes a database from version n to n + 1. (A new one: its twin in pgschema.)
MIGRATIONS = (
    # 1: the schema from before versions were recorded.
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
    # 2: a study is its client's. (client, study_uid) is the key: the same UID from two
    # hospitals is two studies. Queue rows name their study's client; every worker a study
    # was given (routed or moved to) is kept, the ones its results may come back from.
    """
CREATE TABLE studies_by_client (
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    worker TEXT NOT NULL,
    routed_at DOUBLE PRECISION NOT NULL,
    last_activity_at DOUBLE PRECISION NOT NULL,
    instances_in INTEGER NOT NULL DEFAULT 0,
    instances_delivered INTEGER NOT NULL DEFAULT 0,
    derived_in INTEGER NOT NULL DEFAULT 0,
    derived_delivered INTEGER NOT NULL DEFAULT 0,
    moved_from TEXT,
    delivered_before_move INTEGER NOT NULL DEFAULT 0,
    delivered_elsewhere INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client, study_uid)
);
INSERT INTO studies_by_client SELECT client, study_uid, worker, routed_at, last_activity_at,
    instances_in, instances_delivered, derived_in, derived_delivered, moved_from,
    delivered_before_move, delivered_elsewhere FROM studies;
CREATE TABLE assignments (
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    worker TEXT NOT NULL,
    PRIMARY KEY (client, study_uid, worker)
);
INSERT INTO assignments SELECT client, study_uid, worker FROM studies;
INSERT INTO assignments SELECT client, study_uid, moved_from FROM studies
    WHERE moved_from IS NOT NULL AND moved_from <> worker;
CREATE TABLE queue_by_client (
    id INTEGER PRIMARY KEY,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    size INTEGER NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
INSERT INTO queue_by_client SELECT q.id, q.target, q.kind, q.path,
    COALESCE((SELECT s.client FROM studies s WHERE s.study_uid = q.study_uid), ''),
    q.study_uid, q.sop_class_uid, q.sop_instance_uid, q.transfer_syntax, q.size,
    q.enqueued_at, q.attempts, q.last_error FROM queue q;
DROP TABLE queue;
DROP TABLE studies;
ALTER TABLE studies_by_client RENAME TO studies;
ALTER TABLE queue_by_client RENAME TO queue;
CREATE INDEX studies_uid ON studies (study_uid);
CREATE INDEX studies_activity ON studies (last_activity_at);
CREATE INDEX studies_routed ON studies (routed_at);
CREATE INDEX studies_worker_activity ON studies (worker, last_activity_at);
CREATE INDEX studies_client_activity ON studies (client, last_activity_at);
CREATE INDEX studies_worker_routed ON studies (worker, routed_at);
CREATE INDEX studies_client_routed ON studies (client, routed_at);
CREATE INDEX queue_target ON queue (target, id);
CREATE INDEX queue_study ON queue (client, study_uid);
-- Every queue row counts its instance in, to its study, as it is inserted: enqueue is then
-- one statement (a PostgreSQL store makes the same triggers in its own dialect). A worker's
-- row makes its study if it has none (one purged an instant before: see retention). The
-- study's last activity moves at most once a second: it is in three indexes, and moving it
-- at every instance of a stream cost a quarter of the enqueue.
CREATE TRIGGER queue_counted_in AFTER INSERT ON queue WHEN NEW.kind = 'worker' BEGIN
    INSERT INTO studies (client, study_uid, worker, routed_at, last_activity_at, instances_in)
    VALUES (NEW.client, NEW.study_uid, NEW.target, NEW.enqueued_at, NEW.enqueued_at, 1)
    ON CONFLICT (client, study_uid) DO UPDATE SET instances_in = instances_in + 1;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND last_activity_at < NEW.enqueued_at - 1;
END;
CREATE TRIGGER derived_counted_in AFTER INSERT ON queue WHEN NEW.kind <> 'worker' BEGIN
    UPDATE studies SET derived_in = derived_in + 1 WHERE client = NEW.client
        AND study_uid = NEW.study_uid;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND last_activity_at < NEW.enqueued_at - 1;
END;
""",
    # 3: a study is split by pool (routing rules): (client, study_uid, pool) is the key, and
    # every series of it in one pool goes to that route's worker. Rows from before keep the
    # pool '': the router takes such a route for a series whose pool is its worker's, so a
    # study routed before the upgrade stays where it is. Each series' decision is kept (the
    # rules are asked once per series). A route's results are timed: delivered_at and
    # delivered_to, its last delivery to a worker; result_at, its first result that counts
    # (set by the store's enqueue_result, which knows the sending worker; a trigger does
    # not); overdue_at, when it was first seen past its pool's result_timeout (logged once).
    # A route from before with results had its result then: it awaits none.
    """
CREATE TABLE studies_by_pool (
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    pool TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL,
    routed_at DOUBLE PRECISION NOT NULL,
    last_activity_at DOUBLE PRECISION NOT NULL,
    instances_in INTEGER NOT NULL DEFAULT 0,
    instances_delivered INTEGER NOT NULL DEFAULT 0,
    derived_in INTEGER NOT NULL DEFAULT 0,
    derived_delivered INTEGER NOT NULL DEFAULT 0,
    moved_from TEXT,
    delivered_before_move INTEGER NOT NULL DEFAULT 0,
    delivered_elsewhere INTEGER NOT NULL DEFAULT 0,
    delivered_at DOUBLE PRECISION,
    delivered_to TEXT,
    result_at DOUBLE PRECISION,
    overdue_at DOUBLE PRECISION,
    PRIMARY KEY (client, study_uid, pool)
);
INSERT INTO studies_by_pool (client, study_uid, worker, routed_at, last_activity_at,
    instances_in, instances_delivered, derived_in, derived_delivered, moved_from,
    delivered_before_move, delivered_elsewhere)
    SELECT client, study_uid, worker, routed_at, last_activity_at, instances_in,
    instances_delivered, derived_in, derived_delivered, moved_from, delivered_before_move,
    delivered_elsewhere FROM studies;
UPDATE studies_by_pool SET result_at = last_activity_at WHERE derived_in > 0;
CREATE TABLE assignments_by_pool (
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    pool TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL,
    PRIMARY KEY (client, study_uid, pool, worker)
);
INSERT INTO assignments_by_pool (client, study_uid, worker)
    SELECT client, study_uid, worker FROM assignments;
DROP TRIGGER queue_counted_in;
DROP TRIGGER derived_counted_in;
DROP TABLE assignments;
DROP TABLE studies;
ALTER TABLE studies_by_pool RENAME TO studies;
ALTER TABLE assignments_by_pool RENAME TO assignments;
ALTER TABLE queue ADD COLUMN pool TEXT NOT NULL DEFAULT '';
CREATE INDEX assignments_worker ON assignments (study_uid, worker);
CREATE INDEX studies_uid ON studies (study_uid);
CREATE INDEX studies_activity ON studies (last_activity_at);
CREATE INDEX studies_routed ON studies (routed_at);
CREATE INDEX studies_worker_activity ON studies (worker, last_activity_at);
CREATE INDEX studies_client_activity ON studies (client, last_activity_at);
CREATE INDEX studies_worker_routed ON studies (worker, routed_at);
CREATE INDEX studies_client_routed ON studies (client, routed_at);
-- The routes awaiting a result, by pool: the few of them, never every study.
CREATE INDEX studies_awaiting ON studies (pool, delivered_at)
    WHERE result_at IS NULL AND delivered_at IS NOT NULL;
DROP INDEX queue_study;
CREATE INDEX queue_study ON queue (client, study_uid, pool);
CREATE TRIGGER queue_counted_in AFTER INSERT ON queue WHEN NEW.kind = 'worker' BEGIN
    INSERT INTO studies (client, study_uid, pool, worker, routed_at, last_activity_at,
        instances_in)
    VALUES (NEW.client, NEW.study_uid, NEW.pool, NEW.target, NEW.enqueued_at, NEW.enqueued_at, 1)
    ON CONFLICT (client, study_uid, pool) DO UPDATE SET instances_in = instances_in + 1;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND pool = NEW.pool
        AND last_activity_at < NEW.enqueued_at - 1;
END;
CREATE TRIGGER derived_counted_in AFTER INSERT ON queue WHEN NEW.kind <> 'worker' BEGIN
    UPDATE studies SET derived_in = derived_in + 1
        WHERE client = NEW.client AND study_uid = NEW.study_uid AND pool = NEW.pool;
    UPDATE studies SET last_activity_at = NEW.enqueued_at WHERE client = NEW.client
        AND study_uid = NEW.study_uid AND pool = NEW.pool
        AND last_activity_at < NEW.enqueued_at - 1;
END;
CREATE TABLE series (
    client TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    pool TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL DEFAULT '',
    rule INTEGER,
    decided_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, study_uid, series_uid)
);
""",
    # 4: several nodes (wolfpacs.state.leases). Every node holds a lease in ``nodes``: its
    # epoch (the fencing token: a new one at each start, and at its adoption), when it
    # started, its last heartbeat and when its lease expires (the database's clock), whether
    # its spool is shared (1: its queue may be adopted), and the live node that adopted its
    # queue, if one did. A queue row has an owner, the node that delivers it: rows from
    # before are the first node's to register ('' until then).
    """
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL DEFAULT 1,
    started_at DOUBLE PRECISION NOT NULL,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    shared_spool INTEGER NOT NULL DEFAULT 0,
    adopted_by TEXT,
    adopted_at DOUBLE PRECISION
);
ALTER TABLE queue ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX queue_owner ON queue (owner, target, id);
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
