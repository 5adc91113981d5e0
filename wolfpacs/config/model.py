"""What a configuration is: the node's settings, its clients, workers and destinations.

Frozen dataclasses, plain data: the checked result of a TOML file
(:mod:`wolfpacs.config.checker`), swapped whole when an operator changes
something at runtime (:mod:`wolfpacs.config.live`). Imports nothing of
WolfPACS.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CALLING_AE", "DISCARD", "DURABILITY_MODES", "MAX_PROCESSES", "MOVE", "POSTGRESQL_SCHEMES",
    "RULE_ACTIONS", "SECTIONS", "SQLITE", "TLS_SUBJECT_KEYS", "Client", "Condition", "Config",
    "ConfigError", "Destination", "Entry", "NodeConfig", "Pool", "Rule", "Worker", "valid_node_id",
]  # fmt: skip

DURABILITY_MODES = ("fsync", "os")
MAX_PROCESSES = 64  # [node] processes: more is a typo, not a machine
SQLITE = "sqlite"  # [node] store: state.sqlite3 in data_dir (the default)
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")  # ...or a libpq URL of a PostgreSQL
# What a tls_subject may name, and the names Python's ssl gives those attributes.
TLS_SUBJECT_KEYS = {
    "CN": "commonName", "O": "organizationName", "OU": "organizationalUnitName",
    "C": "countryName", "L": "localityName", "ST": "stateOrProvinceName",
    "emailAddress": "emailAddress", "serialNumber": "serialNumber",
}  # fmt: skip
# An entry's kind (a runtime change says it) -> its section in the file and in Config.
SECTIONS = {"client": "clients", "worker": "workers", "destination": "destinations"}
# A move, in the store's history of runtime changes (wolfpacs.config.live): no config in it.
MOVE = "move"
# A rule's match may name this beside DICOM keywords: the calling AE title of the association.
CALLING_AE = "calling_ae"
DISCARD = "discard"  # a rule's action: answered success, not forwarded
RULE_ACTIONS = (DISCARD,)
# A node id names its directory of a shared spool and appears in logs: plain characters.
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def valid_node_id(text: str) -> bool:
    """Whether ``text`` may be a ``[node] node_id``."""
    return NODE_ID.fullmatch(text) is not None


class ConfigError(ValueError):
    """A configuration problem: ``file:line: key: what is wrong``."""

    def __init__(self, source: str, line: int | None, key: str, problem: str) -> None:
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")
        self.source, self.line, self.key, self.problem = source, line, key, problem


@dataclass(frozen=True)
class NodeConfig:
    """``[node]``: this node's own settings. Times are seconds."""

    ae_title: str = "WOLFPACS"
    bind: str = "0.0.0.0"
    outside_port: int = 11112
    inside_port: int = 11113
    data_dir: Path = Path("./wolfpacs-data")
    durability: str = "fsync"
    store: str = SQLITE  # or a postgresql:// URL (a secret if it holds a password)
    node_id: str = ""  # unique per node; "": made once from the host name, kept in data_dir
    spool_dir: str = ""  # the queues; "": data_dir/spool. Relative to the config file
    shared_spool: bool = False  # spool_dir is on storage every node mounts: adopt dead nodes
    lease_seconds: float = 10.0  # a node that has not renewed its lease this long is dead
    processes: int = 1  # OS processes of the node ("auto" in the file: one per core)
    study_idle_timeout: float = 600.0
    http_port: int = 9111  # metrics, health, status page; 0: off
    http_bind: str = "127.0.0.1"
    audit_log: str = ""  # one JSON line per association and routing decision; relative to data_dir
    max_pdu: int = 131072
    max_associations: int = 64
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    connect_timeout: float = 5.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    max_attempts: int = 20
    idle_release: float = 5.0
    echo_interval: float = 60.0
    probe_interval: float = 5.0  # C-ECHO a peer that is down this often; an answer retries now
    max_associations_per_client: int = 16  # open at once, per client or worker
    max_handshakes_per_address: int = 16  # connections not yet associated, per source address
    max_instance_bytes: int = 4 << 30  # a larger dataset aborts its association
    spool_max_bytes: int = 0  # queued instances may take this much; 0: no limit but the disk
    min_free_bytes: int = 64 << 20  # below this much free disk, new instances are refused
    control_socket: str = "control.sock"  # relative to data_dir
    control_port: int = 0  # TCP control on 127.0.0.1; 0: off
    control_token: str = ""  # required with control_port
    tls_cert: str = ""  # the node's certificate (PEM), for TLS on either side
    tls_key: str = ""  # its private key (PEM, unencrypted)
    tls_ca: str = ""  # CA certificates that peers' certificates must chain to
    tls_outside: bool = False  # TLS on the clients' port
    tls_inside: bool = False  # TLS on the workers' port
    tls_require_client_cert: bool = True  # on a TLS port, a peer must present a certificate
    http_token: str = ""  # 16+ characters: the status page and JSON views need it (Bearer)
    metrics_token: str = ""  # 16+ characters: /metrics needs it; "": /metrics is open
    fault_injection: bool = False  # the `kill` verb; also env WOLFPACS_FAULT_INJECTION=1
    retention_days: float = 30.0  # a study idle this long is forgotten; 0: kept for ever
    dead_retention_days: float = 30.0  # a dead letter this old is deleted; 0: kept for ever

    @property
    def control_path(self) -> Path:
        return Path(self.data_dir) / self.control_socket

    @property
    def spool_path(self) -> Path:
        """Where the queues are: ``spool_dir``, else ``data_dir/spool``."""
        return Path(self.spool_dir) if self.spool_dir else Path(self.data_dir) / "spool"


@dataclass(frozen=True)
class Destination:
    """``[[destinations]]``: where a client's derived series are sent."""

    name: str
    host: str
    port: int
    ae_title: str
    tls: bool = False  # associate over TLS (the node's certificate, peers checked on tls_ca)
    tls_check_hostname: bool = True  # its certificate must name ``host``


@dataclass(frozen=True)
class Condition:
    """One key of a rule's ``match``: the value of ``key`` must match ``pattern`` whole.

    ``key`` is a DICOM keyword (``Modality``) or :data:`CALLING_AE`. The
    pattern is compiled once, here (``regex``; not part of equality or
    hash, which the pattern's text decides). Raises :class:`re.error` if
    ``pattern`` is not a regular expression: the checker says so first,
    with the file and line.
    """

    key: str
    pattern: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(self.pattern))


@dataclass(frozen=True)
class Rule:
    """``[[clients.rules]]``: where a series goes when every condition of ``match`` holds.

    Exactly one of ``pool`` (a pool's name) and ``action`` (:data:`DISCARD`)
    is set, the other is ``""`` (the checker makes sure). Matching is
    :func:`wolfpacs.node.rules.decide`.
    """

    match: tuple[Condition, ...]
    pool: str = ""
    action: str = ""


@dataclass(frozen=True)
class Pool:
    """``[[pools]]``: a pool's own settings (a pool itself is its workers' ``pool``)."""

    name: str
    result_timeout: float = 0.0  # seconds a delivered study may wait for a result; 0: not tracked


@dataclass(frozen=True)
class Client:
    """``[[clients]]``: a hospital, known by the called AE title it uses (its shared secret).

    Each series goes where the first of ``rules`` that matches it says,
    else to ``pool``; with no ``pool`` (``None``), a series no rule
    matches is refused. With neither, every series is refused: a client
    being set up (``add-client`` without ``--pool``, before ``add-rule``).
    """

    name: str
    ae_title: str
    destination: str
    pool: str | None = None
    calling_ae_titles: tuple[str, ...] = ()
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    tls_subject: str = ""  # on a TLS port, its certificate's subject must have these: "CN=..."
    tls_fingerprint: str = ""  # ... or its certificate must be this one: "sha256:<hex>"
    rules: tuple[Rule, ...] = ()  # checked in order; the first that matches decides

    @property
    def pools(self) -> tuple[str, ...]:
        """Every pool its series may go to: its rules', then its own, each once."""
        named = [r.pool for r in self.rules if r.pool] + ([self.pool] if self.pool else [])
        return tuple(dict.fromkeys(named))


@dataclass(frozen=True)
class Worker:
    """``[[workers]]``: an AI worker, known on the inside port by its (calling) AE title."""

    name: str
    host: str
    port: int
    ae_title: str
    pool: str
    capacity: int = 1
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    tls: bool = False  # associate over TLS (the node's certificate, peers checked on tls_ca)
    tls_check_hostname: bool = True  # its certificate must name ``host``
    tls_subject: str = ""  # on the TLS inside port: its certificate's subject ("CN=...")
    tls_fingerprint: str = ""  # ... or exactly this certificate ("sha256:<hex>")


@dataclass(frozen=True)
class Config:
    node: NodeConfig = field(default_factory=NodeConfig)
    destinations: tuple[Destination, ...] = ()
    clients: tuple[Client, ...] = ()
    workers: tuple[Worker, ...] = ()
    source: str = "<defaults>"
    pools: tuple[Pool, ...] = ()  # settings of the pools that have some; the others' are defaults

    def worker(self, name: str) -> Worker | None:
        return next((w for w in self.workers if w.name == name), None)

    def client(self, name: str) -> Client | None:
        return next((c for c in self.clients if c.name == name), None)

    def destination(self, name: str) -> Destination | None:
        return next((d for d in self.destinations if d.name == name), None)

    def pool(self, name: str) -> tuple[Worker, ...]:
        return tuple(w for w in self.workers if w.pool == name)

    def pool_settings(self, name: str) -> Pool:
        """The ``[[pools]]`` entry of pool ``name``, or its defaults if it has none."""
        return next((p for p in self.pools if p.name == name), Pool(name))


Entry = Client | Worker | Destination
