"""A node's identity: its ``node_id``, made once and kept in ``data_dir``.

Queue rows belong to a node by its id (:mod:`wolfpacs.state.leases`), so
an id must outlive the process: a node started again is the same node,
with the same queue. ``[node] node_id`` names it; without, the first start
makes one from the host name and keeps it in ``data_dir/node_id``, so that
a container whose host name changes at every start keeps its identity,
and its queue, as long as it keeps its data_dir.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

from wolfpacs.config.model import valid_node_id
from wolfpacs.state.sync import fsync_path

__all__ = ["ID_FILE", "from_host_name", "node_identity"]

logger = logging.getLogger(__name__)

ID_FILE = "node_id"


def node_identity(data_dir: Path, configured: str = "", durable: bool = True) -> str:
    """The node's id: ``configured`` if given, else the one kept in ``data_dir``, else a new
    one from the host name, kept there from now on.

    A configured id that differs from the kept one is used, with a warning:
    the queue rows of the old id wait for a node of that id (see the
    ``nodes`` verb).

    Raises:
        OSError: the kept id cannot be read, or a new one written.
        ValueError: the kept file holds no valid id (a hand edited it).
    """
    kept_file = Path(data_dir) / ID_FILE
    kept = kept_file.read_text(encoding="utf-8").strip() if kept_file.exists() else ""
    if kept and not valid_node_id(kept):
        raise ValueError(f"{kept_file}: {kept!r} is no node id (letters, digits, . _ -)")
    if configured:
        if kept and kept != configured:
            logger.warning("node_id %s is configured, but %s says %s: rows queued by %s wait "
                           "for a node of that id", configured, kept_file, kept, kept)  # fmt: skip
        return configured
    if kept:
        return kept
    made = from_host_name(socket.gethostname())
    kept_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept_file.with_suffix(".tmp")
    tmp.write_text(made + "\n", encoding="utf-8")
    if durable:
        fsync_path(tmp)
    os.replace(tmp, kept_file)
    if durable:
        fsync_path(kept_file.parent, directory=True)
    logger.info("node_id %s made from the host name, kept in %s", made, kept_file)
    return made


def from_host_name(host: str) -> str:
    """A valid node id from a host name (its first label, plain characters)."""
    label = re.sub(r"[^A-Za-z0-9._-]", "-", host.split(".", maxsplit=1)[0]).strip("-._")[:63]
    return label if valid_node_id(label) else "node"
