"""``wolfpacs config example``: a complete, commented config that :func:`load` accepts.

The ``[node]`` table is generated from :class:`NodeConfig`'s defaults, so
that it cannot fall behind the model: every key, its default value, and a
note from :data:`NODE_NOTES` (a key without a note is a test failure, not a
silent gap). The clients, workers and destinations are an example to edit;
a test holds them to the model's keys too.
"""

from __future__ import annotations

import textwrap
from dataclasses import fields
from pathlib import Path

from wolfpacs.config.live import toml_value
from wolfpacs.config.model import NodeConfig

__all__ = ["NODE_NOTES", "example"]

# Every [node] key: what it is for, as a comment beside its default.
NODE_NOTES = {
    "ae_title": "the node's AE title, as it calls workers and destinations",
    "bind": "address of both DICOM listeners",
    "outside_port": "hospitals (clients) send here (env WOLFPACS_OUTSIDE_PORT)",
    "inside_port": "workers send results here: keep it inside (env WOLFPACS_INSIDE_PORT)",
    "data_dir": "spool, dead letters, state database; relative to this file",
    "durability": '"fsync", or "os": see "What acknowledged means" in the README',
    "store": '"sqlite" (state.sqlite3 in data_dir), or "postgresql://user@host/db": see '
    '"Several nodes" in the README',
    "node_id": 'unique per node; "": made once from the host name and kept in data_dir, '
    "so a node keeps its identity (and its queue) when its host name changes",
    "spool_dir": '"": data_dir/spool; with shared_spool, each node writes under '
    "spool_dir/<node_id>/. Relative to this file",
    "shared_spool": "spool_dir is on storage every node mounts (NFS, CephFS, EFS...): a live "
    "node adopts a dead node's queue; false: a dead node's queue waits for its return",
    "lease_seconds": "a node that has not renewed its lease this long is dead (renewed every "
    "third of it)",
    "processes": 'OS processes of this node, sharing its ports and store; "auto": one per '
    'core; 1: one process, as always (see "Processes and nodes" in the README)',
    "study_idle_timeout": "seconds without an instance before a study stops counting as open",
    "http_port": "metrics, health, status page (env WOLFPACS_HTTP_PORT); 0: off",
    "http_bind": "loopback only, by default",
    "audit_log": 'e.g. "audit.log" (in data_dir): one JSON line per association, routing '
    'decision and operator change; "": none',
    "max_pdu": "bytes, both directions",
    "max_associations": "open associations per port",
    "acse_timeout": "seconds from a connection to its association, at most",
    "dimse_timeout": "seconds a peer may take to answer a C-STORE",
    "network_timeout": "seconds an idle association is kept by a peer",
    "connect_timeout": "seconds to open a connection to a worker or destination",
    "retry_initial": "seconds: first backoff after a failed delivery, doubling...",
    "retry_max": "...up to this",
    "max_attempts": "failure answers for one instance before it goes to dead/",
    "idle_release": "seconds a sender keeps an unused association open",
    "echo_interval": "seconds between C-ECHO health checks of an idle peer; 0: never",
    "probe_interval": "seconds between C-ECHOs to a peer that is down: its answer ends the "
    "backoff at once; 0: wait out the backoff",
    "max_associations_per_client": "open at once, per client (or worker)",
    "max_handshakes_per_address": "connections not yet associated, per source address",
    "max_instance_bytes": "4 GiB: a larger dataset aborts its association",
    "spool_max_bytes": "bytes queued instances may take; 0: only the disk limits",
    "min_free_bytes": "64 MiB: with less free disk, new instances are refused; 0: no check",
    "control_socket": "for `wolfpacs ctl` and `shell`, in data_dir (mode 0600)",
    "control_port": "also TCP on 127.0.0.1, with control_token; 0: off",
    "control_token": "16+ characters, required with control_port",
    "tls_cert": "the node's certificate (PEM) for DICOM TLS, relative to this file",
    "tls_key": "its private key (PEM, unencrypted)",
    "tls_ca": "the CA certificates that peers' certificates must chain to",
    "tls_outside": "TLS on the clients' port",
    "tls_inside": "TLS on the workers' port",
    "tls_require_client_cert": "on a TLS port, a peer must present a certificate",
    "http_token": "the status page and JSON views need this token of 16+ characters; "
    '"": loopback only (env WOLFPACS_HTTP_TOKEN)',
    "metrics_token": '/metrics needs this token of 16+ characters; "": open (env '
    "WOLFPACS_METRICS_TOKEN)",
    "fault_injection": "the `kill` verb (env WOLFPACS_FAULT_INJECTION=1)",
    "retention_days": "a study idle this long is forgotten (unless still queued); 0: never",
    "dead_retention_days": "a dead letter this old is deleted; 0: never",
}

HEADER = """\
# WolfPACS configuration. Check it with `wolfpacs config check FILE`,
# run it with `wolfpacs run --config FILE`.
#
# Every [node] key is shown with its default: keep only what you change.
# Times are in seconds; relative paths are relative to this file.
"""

ENTRIES = """
# Where a client's results (the workers' derived series) go: its PACS.
[[destinations]]
name = "stockholm-pacs"
host = "10.0.0.20"
port = 104
ae_title = "STHLM_PACS"
tls = false                   # associate over TLS (needs [node] tls_cert, tls_key, tls_ca)
tls_check_hostname = true     # over TLS, its certificate must name `host`

# A hospital, known by the called AE title it uses: hand it out like a password.
[[clients]]
name = "stockholm"
ae_title = "STHLM_SECRET"     # the called AE title this client uses: its secret
destination = "stockholm-pacs"  # where its results go
pool = "stroke"               # the workers its studies go to
calling_ae_titles = ["STHLM_CT"]  # optional: only from these calling AE titles
allow = ["10.0.0.0/24"]       # optional: only from these IP networks
# tls_subject = "CN=stockholm-ct"  # with tls_outside: its certificate's subject, pinned
# tls_fingerprint = "sha256:<64 hex digits>"  # ... or the certificate itself
# Optional: a series goes by its attributes to another pool, or nowhere; the first rule
# that matches decides, none matching, `pool` does (without `pool`: refused). See "Rules".
# [[clients.rules]]
# match = { Modality = "CT", SeriesDescription = "(?i).*(chest|lung).*" }
# pool = "lung"
# [[clients.rules]]
# match = { Modality = "SR|PR|KO" }
# action = "discard"          # answered success, forwarded nowhere

# AI workers: each study goes, whole, to the least loaded active worker of its pool.
[[workers]]
name = "gpu-a"
host = "10.1.0.5"
port = 11130
ae_title = "GPU_A"            # its calling AE title, when it sends results to inside_port
pool = "stroke"
capacity = 2                  # relative weight in the pool (default 1)
allow = ["10.1.0.0/24"]       # optional: results only from these IP networks
tls = false                   # associate over TLS (needs [node] tls_cert, tls_key, tls_ca)
tls_check_hostname = true     # over TLS, its certificate must name `host`
# tls_subject = "CN=gpu-a"    # with tls_inside: its certificate's subject, pinned
# tls_fingerprint = "sha256:<64 hex digits>"  # ... or the certificate itself

[[workers]]
name = "gpu-b"
host = "10.1.0.6"
port = 11130
ae_title = "GPU_B"
pool = "stroke"

# Optional settings of a pool (the pool itself is its workers' `pool`).
# [[pools]]
# name = "stroke"
# result_timeout = 900        # seconds a study may wait for a result; 0: not tracked
"""

_COLUMN = 30  # where the comments start
_WIDTH = 100


def example() -> str:
    """The whole example file, as TOML text ending in a newline.

    Raises:
        KeyError: a ``[node]`` key has no note in :data:`NODE_NOTES`.
    """
    lines = [HEADER, "[node]"]
    for f in fields(NodeConfig):
        default = getattr(NodeConfig(), f.name)
        value = toml_value(str(default) if isinstance(default, Path) else default)
        setting = f"{f.name} = {value}".ljust(_COLUMN - 1)
        note = textwrap.wrap(NODE_NOTES[f.name], _WIDTH - _COLUMN - 2, subsequent_indent="  ")
        lines.append(f"{setting} # {note[0]}")
        lines += [f"{'':<{_COLUMN - 1}} # {more}" for more in note[1:]]
    return "\n".join(lines) + "\n" + ENTRIES
