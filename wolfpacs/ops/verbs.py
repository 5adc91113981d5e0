"""The operator's verbs: their names, one line of help each, and the arguments they take.

What ``wolfpacs ctl``, the shell and the control socket know of the verbs
without a node: they are carried out by :class:`wolfpacs.ops.admin.Admin`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARGUMENTS", "VERBS", "AdminError", "conforms"]


class AdminError(Exception):
    """A verb that cannot be done; its message says why, and nothing has changed."""


# verb → one line of help; the arguments are the method's (see ``wolfpacs ctl VERB --help``)
VERBS = {
    "tree": "the supervision tree: every actor, restarts, last exit, uptime, mailbox",
    "inspect": "one actor's state: inspect ACTOR",
    "workers": "workers: state, load, queue, health",
    "clients": "clients: AE titles, pool, destination, open studies",
    "rules": "a client's rules in the order they are tried, and its default pool: rules CLIENT",
    "destinations": "destinations: queue and health",
    "studies": "recent studies: studies [--worker W] [--client C] [--limit N]",
    "study": "one study: where it went, when, instances both ways: study UID",
    "queues": "per target: queued instances, bytes, oldest age",
    "overdue": "studies whose result has not come back within their pool's result_timeout,"
    " the longest waiting first",
    "dead": "dead letters and why",
    "retry-dead": "send dead letters again: retry-dead ID | --all",
    "drain": "no new studies for a worker; its open studies finish: drain WORKER",
    "resume": "a drained worker takes new studies again, and is tried now: resume WORKER",
    "retry": "try a worker or destination now, ending its backoff: retry TARGET",
    "move": "re-route a worker's studies and queue: move WORKER --to OTHER [--studies UID...]",
    "add-client": "add-client NAME --ae-title T --destination D [--pool P] [--tls-subject S]"
    " [--calling-ae-titles A...] [--allow NET...] (without --pool, series no rule matches are"
    " refused: every series, until add-rule)",
    "remove-client": "remove-client NAME [--force]",
    "add-rule": "add-rule CLIENT --match KEY=REGEX... (--pool P | --discard) [--at N]"
    " (last, or at index N)",
    "remove-rule": "remove-rule CLIENT N (N as 'rules CLIENT' shows it)",
    "add-worker": "add-worker NAME --host H --port N --ae-title T --pool P [--capacity N]",
    "remove-worker": "remove-worker NAME [--force]",
    "add-destination": "add-destination NAME --host H --port N --ae-title T",
    "remove-destination": "remove-destination NAME [--force]",
    "kill": "crash an actor as if it had raised; its supervisor restarts it: kill ACTOR"
    " (fault injection: off unless the node allows it)",
    "purge": "forget studies and dead letters past their retention now: purge [--dry-run]",
    "stats": "counters since the node started",
    "config": "the effective config (file + runtime changes) as TOML: config --export"
    " [--show-secrets]",
    "names": "actors, workers, clients, destinations, pools (for completion)",
    "nodes": "the nodes sharing this store: alive or dead (their lease), last heartbeat, queued,"
    " whose queue each adopted",
    "forget-node": "a dead node taken out of service, owning no queue, is no longer listed:"
    " forget-node NODE_ID",
}


# Every argument any verb takes, and its type (list: a list of strings). Checked before
# anything is asked of an actor, so a malformed request reaches no query.
ARGUMENTS: dict[str, type] = {
    **dict.fromkeys(("actor", "worker", "to", "uid", "name", "host", "ae_title", "destination",
                     "pool", "client", "id", "tls_subject", "tls_fingerprint", "target"),
                    str),
    **dict.fromkeys(("limit", "port", "capacity", "at", "index"), int),
    **dict.fromkeys(("force", "all", "export", "tls", "tls_check_hostname", "show_secrets",
                     "dry_run", "discard"), bool),
    **dict.fromkeys(("studies", "calling_ae_titles", "allow", "match"), list),
}  # fmt: skip


def conforms(value: Any, kind: type) -> bool:
    """Whether an argument's ``value`` is of its ``kind`` (see :data:`ARGUMENTS`)."""
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
