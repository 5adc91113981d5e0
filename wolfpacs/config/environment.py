"""What the environment may say over the file: ports, tokens, fault injection.

A container or a service manager sets these without touching the file:

- ``WOLFPACS_OUTSIDE_PORT``, ``WOLFPACS_INSIDE_PORT``, ``WOLFPACS_HTTP_PORT``;
- ``WOLFPACS_HTTP_TOKEN``, ``WOLFPACS_METRICS_TOKEN`` (16+ characters): secrets
  are better kept out of a file that is copied around;
- ``WOLFPACS_FAULT_INJECTION=1``: the ``kill`` verb (chaos runs and tests).

Errors: :class:`~wolfpacs.config.model.ConfigError` naming the variable.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from wolfpacs.config.model import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wolfpacs.config.model import Config

__all__ = ["ENV_FAULT_INJECTION", "from_environment"]

PORTS = {
    "WOLFPACS_OUTSIDE_PORT": "outside_port",
    "WOLFPACS_INSIDE_PORT": "inside_port",
    "WOLFPACS_HTTP_PORT": "http_port",
}
TOKENS = {"WOLFPACS_HTTP_TOKEN": "http_token", "WOLFPACS_METRICS_TOKEN": "metrics_token"}
ENV_FAULT_INJECTION = "WOLFPACS_FAULT_INJECTION"


def from_environment(config: Config, env: Mapping[str, str]) -> Config:
    """``config`` with what ``env`` sets; the file's values where it sets nothing.

    Raises:
        ConfigError: a value that is no port, a token under 16 characters,
            equal outside and inside ports.
    """
    changes: dict[str, Any] = {}
    for var, key in PORTS.items():
        text = env.get(var, "").strip()
        if text:
            low = 0 if key == "http_port" else 1
            if not text.isdigit() or not low <= int(text) <= 65535:
                raise _error(var, f"{text!r} is not a port")
            changes[key] = int(text)
    for var, key in TOKENS.items():
        token = env.get(var, "").strip()
        if token:
            if len(token) < 16:
                raise _error(var, "must be 16+ characters")
            changes[key] = token
    if env.get(ENV_FAULT_INJECTION, "").strip() == "1":
        changes["fault_injection"] = True
    node = replace(config.node, **changes)
    if node == config.node:
        return config
    if node.outside_port == node.inside_port:
        raise ConfigError("environment", None, "", "outside and inside ports must differ")
    return replace(config, node=node)


def _error(variable: str, problem: str) -> ConfigError:
    return ConfigError(f"environment variable {variable}", None, "", problem)
