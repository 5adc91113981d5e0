"""Durable state: the spool of instance files, and the store of routes and queue rows.

- :mod:`~wolfpacs.state.spool`, :mod:`~wolfpacs.state.sync`: files under
  ``data_dir`` (incoming, queued, dead), and their fsyncs;
- :mod:`~wolfpacs.state.store`: the store interface and its plain data;
- :mod:`~wolfpacs.state.operations`, :mod:`~wolfpacs.state.results`,
  :mod:`~wolfpacs.state.changes`, :mod:`~wolfpacs.state.placement`,
  :mod:`~wolfpacs.state.queries`: its operations, once, in the SQL both
  backends speak, over :mod:`~wolfpacs.state.database`'s connection;
- :mod:`~wolfpacs.state.choice`: the choice of a worker for a new study, a
  pure rule the router and the store share;
- :mod:`~wolfpacs.state.sqlite`, :mod:`~wolfpacs.state.schema`: the SQLite
  backend (the default), its schema's versions and migrations;
- :mod:`~wolfpacs.state.postgresql`, :mod:`~wolfpacs.state.pgschema`: the
  PostgreSQL backend (psycopg, an optional extra imported when it opens),
  its schema's versions and migrations; :mod:`~wolfpacs.state.notify`, a
  listener of its notifications of changes (a thread its owner runs).

It imports :mod:`wolfpacs.config` at most: no network, no DICOM, no actor
(psycopg is a database driver, not the network this rule keeps out).
The node's actors reach the store through :mod:`wolfpacs.node.store`.
"""

from wolfpacs.state.choice import Candidate, Choice, least_loaded
from wolfpacs.state.postgresql import DriverMissingError, PostgreSQLStore
from wolfpacs.state.spool import DataDirInUseError, Spool, SpoolFullError
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.state.store import (
    DESTINATION,
    WORKER,
    Backend,
    Placement,
    QueueItem,
    Route,
    Store,
)

__all__ = [
    "DESTINATION", "WORKER", "Backend", "Candidate", "Choice", "DataDirInUseError",
    "DriverMissingError", "Placement", "PostgreSQLStore", "QueueItem", "Route", "SQLiteStore",
    "Spool", "SpoolFullError", "Store", "least_loaded",
]  # fmt: skip
