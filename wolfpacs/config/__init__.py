"""The configuration: one TOML file, checked up front, and the live config a node runs on.

- :mod:`~wolfpacs.config.model`: what a config is (frozen dataclasses);
- :mod:`~wolfpacs.config.checker`: reading and checking the file
  (:mod:`~wolfpacs.config.routing`: its clients' pools and rules);
- :mod:`~wolfpacs.config.live`: the file plus the operators' runtime changes.

The bottom layer: it imports nothing else of WolfPACS, and every other part
may import it.
"""

from wolfpacs.config.checker import load, parse, parse_entry, validate
from wolfpacs.config.live import RULES, Change, LiveConfig, apply, entry_table, to_toml
from wolfpacs.config.model import (
    DURABILITY_MODES,
    SECTIONS,
    Client,
    Condition,
    Config,
    ConfigError,
    Destination,
    Entry,
    NodeConfig,
    Pool,
    Rule,
    Worker,
)

__all__ = [
    "DURABILITY_MODES", "RULES", "SECTIONS", "Change", "Client", "Condition", "Config",
    "ConfigError", "Destination", "Entry", "LiveConfig", "NodeConfig", "Pool", "Rule", "Worker",
    "apply", "entry_table", "load", "parse", "parse_entry", "validate", "to_toml",
]  # fmt: skip
