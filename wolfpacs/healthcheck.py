"""``python -m wolfpacs.healthcheck``: exit 0 if the node says it is healthy (Docker's HEALTHCHECK).

Reads the node's config (``$WOLFPACS_CONFIG``) for its HTTP port and asks
``/healthz`` on loopback; prints what is wrong otherwise. It stays at
this path (the image's HEALTHCHECK and operators' probes name it) and
imports only :mod:`wolfpacs.config`: a probe every 30 s costs little.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from wolfpacs.config.checker import load
from wolfpacs.config.model import ConfigError


def main() -> int:
    try:
        config = load(os.environ.get("WOLFPACS_CONFIG", "/etc/wolfpacs/wolfpacs.toml"))
    except ConfigError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{config.node.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            return 0 if answer.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {exc.read().decode(errors='replace')}", file=sys.stderr)
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
