"""WolfPACS: a DICOM load balancer between hospitals and pools of AI workers.

Hospitals (clients) send studies with C-STORE to the outside port; each
study goes to one worker of the client's pool; the workers' derived series
come back on the inside port and go to the client's destination. Every
instance is spooled durably before it is acknowledged.

A subpackage per part, in the order data flows; each may import only
those below it (checked by ``lint-imports``, see ``pyproject.toml``)::

    cli        the wolfpacs command: run, demo, ctl, shell, chaos
    ops        the operator's side: verbs, control socket, HTTP port, metrics, logs
    node       the supervision tree: listeners, receivers, router, senders, store actor
    dicom      the wire: PDUs, associations, DIMSE, Part 10, routing tags, TLS
    state      the spool and the store (SQLite), no network
    config     the TOML file and the live config
    testing    simulated peers, synthetic studies, the chaos run (only cli imports it)

``supervisors`` (beside this package) is the general OTP-style library the
tree is built with; it imports nothing of WolfPACS.
"""

__version__ = "0.1.0"
