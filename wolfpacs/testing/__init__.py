"""Tools for testing WolfPACS (as ``trio.testing``): shipped, imported by nothing in the node.

- :mod:`~wolfpacs.testing.peers`: simulated AI workers, hospital PACS and
  hospitals (pynetdicom peers on loopback), and free ports for them;
- :mod:`~wolfpacs.testing.synthetic`: generated studies and derived series;
- :mod:`~wolfpacs.testing.chaos`, :mod:`~wolfpacs.testing.ledger`: a node
  under injected faults, and the account of every instance it was sent.

Used by ``wolfpacs demo`` and ``wolfpacs chaos`` (:mod:`wolfpacs.cli`), the
tests and the benchmarks; only :mod:`wolfpacs.cli` imports it.
"""
