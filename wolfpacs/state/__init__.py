"""Durable state: the spool of instance files, and the store of routes and queue rows.

- :mod:`~wolfpacs.state.spool`, :mod:`~wolfpacs.state.sync`: files under
  ``data_dir`` (incoming, queued, dead), and their fsyncs;
- :mod:`~wolfpacs.state.store`: the store interface and its plain data;
- :mod:`~wolfpacs.state.sqlite`, :mod:`~wolfpacs.state.database`,
  :mod:`~wolfpacs.state.schema`: the SQLite backend, its connection, its
  schema's versions and migrations.

It imports :mod:`wolfpacs.config` at most: no network, no DICOM, no actor.
The node's actors reach the store through :mod:`wolfpacs.node.store`.
"""

from wolfpacs.state.spool import DataDirInUseError, Spool, SpoolFullError
from wolfpacs.state.sqlite import SQLiteStore
from wolfpacs.state.store import DESTINATION, WORKER, Backend, QueueItem, Route, Store

__all__ = [
    "DESTINATION", "WORKER", "Backend", "DataDirInUseError", "QueueItem", "Route",
    "SQLiteStore", "Spool", "SpoolFullError", "Store",
]  # fmt: skip
