"""Reading and checking the TOML file: env vars for the ports, defaults for the rest.

:func:`load` reads and checks the whole file up front; every problem is a
:class:`ConfigError` naming the file, the line where it can be found, the
key, and what is wrong. Nothing here touches the network or the disk
beyond reading the file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from wolfpacs.config.environment import from_environment
from wolfpacs.config.model import (
    DURABILITY_MODES,
    MAX_PROCESSES,
    POSTGRESQL_SCHEMES,
    SECTIONS,
    SQLITE,
    TLS_SUBJECT_KEYS,
    Client,
    Config,
    ConfigError,
    Destination,
    Entry,
    NodeConfig,
    Pool,
    Worker,
    valid_node_id,
)
from wolfpacs.config.routing import RoutingChecker, rule_line
from wolfpacs.config.secrets import TOKENS, masked

__all__ = ["load", "parse", "parse_entry", "validate"]

# [node] keys whose default is "" (off, none): a file may say so explicitly.
_MAY_BE_EMPTY = ("audit_log", "tls_cert", "tls_key", "tls_ca", "node_id", "spool_dir", *TOKENS)


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, check and return the config in ``path``; env ports override the file's.

    Raises:
        ConfigError: the file is unreadable, not TOML, or not a valid config.
    """
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, None, "", f"cannot read the file: {exc}") from None
    config = parse(text, source, env=os.environ if env is None else env)
    # Paths relative to the file, so that a service manager's working directory does not matter.
    base, node = Path(source).resolve().parent, config.node
    spool_dir = str(base / node.spool_dir) if node.spool_dir else ""
    return replace(config, node=replace(node, data_dir=base / node.data_dir, spool_dir=spool_dir))


def parse(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Check a config given as TOML text; see :func:`load`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(source, int(match.group(1)) if match else None, "", str(exc)) from None
    checker = _Checker(source, text)
    config = checker.config(data)
    return from_environment(config, env or {})


_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII without backslash


class _Checker:
    """Turns parsed TOML into a Config, naming file, line and key for each problem."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        # Relative file names (certificates) are the config file's neighbours.
        self.base = Path(source).resolve().parent if Path(source).is_file() else None
        self.routing = RoutingChecker(self)  # clients' pools and rules, [[pools]]

    def fail(self, path: tuple[Any, ...], problem: str) -> ConfigError:
        return ConfigError(self.source, self.line_of(path), _key_name(path), problem)

    def line_of(self, path: tuple[Any, ...]) -> int | None:
        """The line of ``path`` (table, [index], key) in the text: a best effort for messages."""
        if len(path) > 3 and path[0] == "clients" and path[2] == "rules":
            return rule_line(self.lines, path)
        table, index, key = (*path, None, None, None)[:3]
        if isinstance(index, str):
            index, key = None, index
        header_seen, count, found = table is None, -1, None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.split("#", 1)[0].strip()
            header = re.match(r"^\[\[?\s*([\w.-]+)\s*\]\]?$", line)
            if header:
                name = header.group(1)
                in_table = name == table
                if in_table:
                    count += 1 if line.startswith("[[") else 0
                    header_seen = index is None or count == index
                    if header_seen and key is None:
                        return number
                else:
                    header_seen = False
                continue
            if header_seen and key is not None and re.match(rf"^{re.escape(str(key))}\s*=", line):
                return number
            if found is None and header_seen:
                found = number
        return found

    def config(self, data: dict[str, Any]) -> Config:
        self.only(data, (), {"node", "destinations", "clients", "workers", "pools"})
        node = self.node(data.get("node", {}))
        destinations = tuple(
            self.destination(entry, i) for i, entry in enumerate(self.array(data, "destinations"))
        )
        workers = tuple(
            self.worker(entry, i) for i, entry in enumerate(self.array(data, "workers"))
        )
        clients = tuple(
            self.client(entry, i) for i, entry in enumerate(self.array(data, "clients"))
        )
        pools = self.routing.pools(self.array(data, "pools"))
        self.cross_check(destinations, clients, workers, pools)
        config = Config(node, destinations, clients, workers, self.source, pools)
        self.tls_check(config)
        return config

    def tls_check(self, config: Config) -> None:
        node, workers, clients = config.node, config.workers, config.clients
        for section, items in _targets(config.destinations, workers):
            for i, item in enumerate(items):
                if item.tls and not (node.tls_ca and node.tls_cert and node.tls_key):
                    why = "TLS to a peer needs [node] tls_cert, tls_key and tls_ca"
                    raise self.fail((section, i, "tls"), why)
        pinned: tuple[tuple[str, tuple[Client | Worker, ...], bool, str], ...] = (
            ("clients", clients, node.tls_outside, "tls_outside"),
            ("workers", workers, node.tls_inside, "tls_inside"),
        )
        for section, peers, tls_port, port_key in pinned:
            for i, peer in enumerate(peers):
                key = "tls_subject" if peer.tls_subject else "tls_fingerprint"
                if not (peer.tls_subject or peer.tls_fingerprint):
                    continue
                if not tls_port:
                    why = f"a certificate is pinned only on a TLS port: set [node] {port_key}"
                    raise self.fail((section, i, key), why)
                if not node.tls_ca:  # a pin is held to a certificate the CA vouched for
                    raise self.fail((section, i, key), "a pinned certificate is checked on "
                                    "[node] tls_ca: set it")  # fmt: skip

    def array(self, data: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail((name,), f"must be an array of tables ([[{name}]])")
        return value

    def only(self, table: dict[str, Any], path: tuple[Any, ...], allowed: set[str]) -> None:
        """Refuse a key not in ``allowed``, naming the nearest known one (a typo, usually)."""
        for key in table:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {near[0]!r}?" if near else "see `wolfpacs config example`"
                raise self.fail((*path, key), f"unknown key ({hint})")

    def node(self, table: Any) -> NodeConfig:
        if not isinstance(table, dict):
            raise self.fail(("node",), "must be a table ([node])")
        defaults = NodeConfig()
        known = {f.name for f in fields(NodeConfig)}
        self.only(table, ("node",), known)
        values: dict[str, Any] = {}
        for f in fields(NodeConfig):
            if f.name not in table:
                continue
            if f.name in _MAY_BE_EMPTY and table[f.name] == "":
                continue  # the default, said out loud
            path = ("node", f.name)
            value = table[f.name]
            default = getattr(defaults, f.name)
            if f.name == "ae_title":
                values[f.name] = self.ae_title(value, path)
            elif f.name in ("outside_port", "inside_port"):
                values[f.name] = self.port(value, path)
            elif f.name in ("http_port", "control_port"):
                values[f.name] = self.number(value, path, integer=True, minimum=0, maximum=65535)
            elif f.name == "data_dir":
                values[f.name] = Path(self.text(value, path))
            elif f.name == "durability":
                if value not in DURABILITY_MODES:
                    raise self.fail(path, f"must be one of {', '.join(DURABILITY_MODES)}")
                values[f.name] = value
            elif f.name == "store":
                values[f.name] = self.store(value, path)
            elif f.name == "node_id":  # it names a directory of a shared spool: plain
                if not valid_node_id(values.setdefault(f.name, self.text(value, path))):
                    raise self.fail(path, "must be 1-63 letters, digits, '.', '_' or '-'")
            elif f.name == "processes":  # or "auto": one per core (MAX_PROCESSES at most)
                auto = value == "auto" and min(os.cpu_count() or 1, MAX_PROCESSES)
                values[f.name] = auto or self.number(value, path, integer=True, minimum=1,
                                                     maximum=MAX_PROCESSES)  # fmt: skip
            elif f.name == "lease_seconds":
                values[f.name] = float(self.number(value, path, minimum=1))
            elif f.name in ("bind", "http_bind"):
                values[f.name] = self.address(value, path)
            elif f.name in ("control_socket", "audit_log", "spool_dir", *TOKENS):
                values[f.name] = self.text(value, path)
            elif f.name in ("tls_cert", "tls_key", "tls_ca"):
                values[f.name] = self.file(value, path)
            elif isinstance(default, bool):
                values[f.name] = self.flag(value, path)
            elif f.name in ("spool_max_bytes", "min_free_bytes"):
                values[f.name] = self.number(value, path, integer=True, minimum=0)
            elif isinstance(default, int) and not isinstance(default, bool):
                values[f.name] = self.number(value, path, integer=True, minimum=1)
            else:
                values[f.name] = float(self.number(value, path, minimum=0))
        self.node_together(values)
        return NodeConfig(**values)

    def node_together(self, values: dict[str, Any]) -> None:
        """What ``[node]``'s keys must be together (each alone is checked already)."""
        defaults = NodeConfig()
        ports = [values.get(k, getattr(defaults, k)) for k in ("outside_port", "inside_port")]
        if ports[0] == ports[1]:
            raise self.fail(("node", "inside_port"), "must differ from outside_port")
        tls_ports = values.get("tls_outside") or values.get("tls_inside")
        if tls_ports and not (values.get("tls_cert") and values.get("tls_key")):
            raise self.fail(("node", "tls_cert"), "a TLS port needs tls_cert and tls_key")
        if tls_ports and values.get("tls_require_client_cert", True) and not values.get("tls_ca"):
            raise self.fail(("node", "tls_ca"), "checking clients' certificates needs tls_ca")
        if values.get("control_port") and len(values.get("control_token", "")) < 16:
            raise self.fail(("node", "control_token"), "control_port needs a 16+ character token")
        for key in ("http_token", "metrics_token"):
            if key in values and len(values[key]) < 16:
                raise self.fail(("node", key), "must be 16+ characters")
        for key in ("retention_days", "dead_retention_days"):
            if 0 < values.get(key, 1) < 1:
                raise self.fail(("node", key), "must be 0 (keep for ever) or at least 1 day")

    def entry(
        self,
        table: dict[str, Any],
        section: str,
        index: int,
        required: set[str],
        optional: set[str],
    ) -> dict[str, Any]:
        self.only(table, (section, index), required | optional)
        for key in sorted(required):
            if key not in table:
                raise self.fail((section, index), f"missing required key {key!r}")
        return table

    def destination(self, table: dict[str, Any], i: int) -> Destination:
        t = self.entry(table, "destinations", i, {"name", "host", "port", "ae_title"},
                       {"tls", "tls_check_hostname"})  # fmt: skip
        p = ("destinations", i)
        check_hostname = self.flag(t.get("tls_check_hostname", True), (*p, "tls_check_hostname"))
        return Destination(
            name=self.name(t["name"], (*p, "name")),
            host=self.text(t["host"], (*p, "host")),
            port=self.port(t["port"], (*p, "port")),
            ae_title=self.ae_title(t["ae_title"], (*p, "ae_title")),
            tls=self.flag(t.get("tls", False), (*p, "tls")),
            tls_check_hostname=check_hostname,
        )

    def client(self, table: dict[str, Any], i: int) -> Client:
        t = self.entry(
            table, "clients", i,
            {"name", "ae_title", "destination"},
            {"pool", "rules", "calling_ae_titles", "allow", "tls_subject", "tls_fingerprint"},
        )  # fmt: skip
        p = ("clients", i)
        callers = t.get("calling_ae_titles", [])
        if not isinstance(callers, list):
            raise self.fail((*p, "calling_ae_titles"), "must be a list of AE titles")
        # Neither pool nor rules is a client being set up (add-client without --pool, then
        # add-rule): it refuses every series, which is safe, and an export of it loads again.
        return Client(
            name=self.name(t["name"], (*p, "name")),
            ae_title=self.ae_title(t["ae_title"], (*p, "ae_title")),
            destination=self.text(t["destination"], (*p, "destination")),
            pool=self.text(t["pool"], (*p, "pool")) if "pool" in t else None,
            calling_ae_titles=tuple(self.ae_title(c, (*p, "calling_ae_titles")) for c in callers),
            allow=self.networks(t.get("allow", []), (*p, "allow")),
            **self.pins(t, p),
            rules=self.routing.rules(t.get("rules", []), i),
        )

    def worker(self, table: dict[str, Any], i: int) -> Worker:
        t = self.entry(
            table, "workers", i,
            {"name", "host", "port", "ae_title", "pool"},
            {"capacity", "allow", "tls", "tls_check_hostname", "tls_subject", "tls_fingerprint"},
        )  # fmt: skip
        p = ("workers", i)
        check_hostname = self.flag(t.get("tls_check_hostname", True), (*p, "tls_check_hostname"))
        return Worker(
            name=self.name(t["name"], (*p, "name")),
            host=self.text(t["host"], (*p, "host")),
            port=self.port(t["port"], (*p, "port")),
            ae_title=self.ae_title(t["ae_title"], (*p, "ae_title")),
            pool=self.text(t["pool"], (*p, "pool")),
            capacity=self.number(t.get("capacity", 1), (*p, "capacity"), integer=True, minimum=1),
            allow=self.networks(t.get("allow", []), (*p, "allow")),
            tls=self.flag(t.get("tls", False), (*p, "tls")),
            tls_check_hostname=check_hostname,
            **self.pins(t, p),
        )

    def pins(self, table: dict[str, Any], path: tuple[Any, ...]) -> dict[str, str]:
        """A peer's certificate pins, checked and normalised (``tls_subject``, ``_fingerprint``)."""
        pins = {}
        if table.get("tls_subject", "") != "":  # "": not pinned, the default
            subject = self.text(table["tls_subject"], (*path, "tls_subject"))
            parts = [p.strip().partition("=") for p in subject.split(",")]
            if not all(key.strip() in TLS_SUBJECT_KEYS and eq and value.strip()
                       for key, eq, value in parts):  # fmt: skip
                raise self.fail((*path, "tls_subject"), "must be KEY=value pairs, comma-separated"
                                f", KEY one of {', '.join(TLS_SUBJECT_KEYS)}")  # fmt: skip
            pins["tls_subject"] = ",".join(f"{k.strip()}={v.strip()}" for k, _, v in parts)
        if table.get("tls_fingerprint", "") != "":
            text = self.text(table["tls_fingerprint"], (*path, "tls_fingerprint")).lower()
            digest = text.removeprefix("sha256:").replace(":", "")
            if not text.startswith("sha256:") or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise self.fail((*path, "tls_fingerprint"),
                                'must be "sha256:" and the 64 hex digits of a SHA-256')  # fmt: skip
            pins["tls_fingerprint"] = f"sha256:{digest}"
        return pins

    def cross_check(
        self,
        destinations: tuple[Destination, ...],
        clients: tuple[Client, ...],
        workers: tuple[Worker, ...],
        pools: tuple[Pool, ...] = (),
    ) -> None:
        # Workers and destinations share one namespace: each has a sender and a spool queue.
        targets: dict[str, str] = {}
        for section, items in _targets(destinations, workers):
            for i, item in enumerate(items):
                if item.name in targets:
                    raise self.fail(
                        (section, i, "name"),
                        f"{item.name!r} is already the name of one of the {targets[item.name]}",
                    )
                targets[item.name] = section
        self.unique(clients, "clients", "name")
        self.unique(clients, "clients", "ae_title")
        self.unique(workers, "workers", "ae_title")
        names = {d.name for d in destinations}
        for i, c in enumerate(clients):
            if c.destination not in names:
                raise self.fail(
                    ("clients", i, "destination"), f"unknown destination {c.destination!r}"
                )
        self.routing.cross_check(clients, workers, pools)

    def unique(self, items: tuple[Any, ...], section: str, key: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            value = getattr(item, key)
            if value in seen:
                shown = masked(value) if (section, key) == ("clients", "ae_title") else value
                raise self.fail((section, i, key), f"duplicate {key} {shown!r}")
            seen.add(value)

    # -- values ------------------------------------------------------------------

    def text(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, "must be a non-empty string")
        return value.strip()

    def store(self, value: Any, path: tuple[Any, ...]) -> str:
        """``sqlite``, or a PostgreSQL URL; an error never shows its password."""
        text = self.text(value, path).strip()
        if text == SQLITE or (text.startswith(POSTGRESQL_SCHEMES) and not re.search(r"\s", text)):
            return text
        raise self.fail(path, f'must be "{SQLITE}" or a URL postgresql://[user@]host[:port]/db')

    def flag(self, value: Any, path: tuple[Any, ...]) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def file(self, value: Any, path: tuple[Any, ...]) -> str:
        """A path to a readable file, relative to the config file's folder."""
        text = self.text(value, path)
        resolved = (self.base / text).resolve() if self.base else Path(text).resolve()
        if not resolved.is_file():
            raise self.fail(path, f"no such file: {resolved}")
        return str(resolved)

    def name(self, value: Any, path: tuple[Any, ...]) -> str:
        text = self.text(value, path)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", text):
            raise self.fail(path, "must be 1-64 letters, digits, '-', '_' or '.'")
        return text

    def ae_title(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str) or not _AE_TITLE.match(value) or not value.strip():
            raise self.fail(path, "must be an AE title: 1-16 printable ASCII characters, no '\\'")
        return value.strip()

    def port(self, value: Any, path: tuple[Any, ...]) -> int:
        return int(self.number(value, path, integer=True, minimum=1, maximum=65535))

    def number(
        self,
        value: Any,
        path: tuple[Any, ...],
        *,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> Any:
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise self.fail(path, "must be an integer" if integer else "must be a number")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be <= {maximum}")
        return value

    def address(self, value: Any, path: tuple[Any, ...]) -> str:
        text = self.text(value, path)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise self.fail(path, "must be an IP address such as 0.0.0.0 or 127.0.0.1") from None
        return text

    def networks(
        self, value: Any, path: tuple[Any, ...]
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        if not isinstance(value, list):
            raise self.fail(path, 'must be a list of IP networks such as "10.0.0.0/8"')
        try:
            return tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
        except ValueError as exc:
            raise self.fail(path, f"not an IP network: {exc}") from None


def parse_entry(kind: str, table: dict[str, Any], source: str = "runtime") -> Entry:
    """One client, worker or destination from a table of its keys, checked as in a file.

    Raises:
        ConfigError: naming the key and the problem.
    """
    if kind not in SECTIONS:
        raise ConfigError(source, None, "", f"unknown kind {kind!r}")
    try:
        checker = _Checker(source, "")
        parsers: dict[str, Callable[[dict[str, Any], int], Entry]] = {
            "client": checker.client, "worker": checker.worker, "destination": checker.destination,
        }  # fmt: skip
        return parsers[kind](table, 0)
    except ConfigError as exc:  # "workers[0].port" means nothing outside a file
        key = exc.key.split(".", 1)[1] if "." in exc.key else ""
        raise ConfigError(f"{source} {kind}", None, key, exc.problem) from None


def validate(config: Config) -> None:
    """Check that names are unique and that every reference resolves.

    Raises:
        ConfigError: the first problem.
    """
    checker = _Checker(config.source, "")
    checker.cross_check(config.destinations, config.clients, config.workers, config.pools)
    checker.tls_check(config)


def _targets(
    destinations: tuple[Destination, ...], workers: tuple[Worker, ...]
) -> tuple[tuple[str, tuple[Destination | Worker, ...]], ...]:
    """Each section of targets (the entries that have a sender), with its entries."""
    return (("destinations", destinations), ("workers", workers))


def _key_name(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
