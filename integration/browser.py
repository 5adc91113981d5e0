"""Headless Chromium (Debian's) driven over its DevTools pipe, as a person would use a page.

``--remote-debugging-pipe`` makes Chromium read DevTools commands on file
descriptor 3 and answer on 4, each a JSON message ended by a NUL byte: no
WebSocket, no library, only the standard library and the browser itself.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import need_program

# The flags a sandboxed, offline machine needs (no background calls to Google's hosts).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    return need_program("chromium", "apt-get install -y chromium")


class Browser:
    """One headless Chromium with one tab. A context manager: it is killed at the end."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        commands, self._to_browser = os.pipe()
        self._from_browser, answers = os.pipe()

        def descriptors() -> None:  # in the child: the pipes as fds 3 and 4
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        self.process = subprocess.Popen(
            [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "about:blank"],
            pass_fds=(3, 4), preexec_fn=descriptors,  # noqa: PLW1509 - only dup2 runs there
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands)
        os.close(answers)
        self._pending = b""
        self._events: list[dict[str, Any]] = []
        self._id = 0
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Page.enable")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self._pending += chunk
        raw, self._pending = self._pending.split(b"\0", 1)
        return json.loads(raw)

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._message(deadline)
            if answer.get("id") == self._id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command on the tab; its result."""
        return self._call(method, self._session, **params)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The next (or a waiting) DevTools event of this name."""
        deadline = time.monotonic() + self.timeout
        while True:
            for n, message in enumerate(self._events):
                if message.get("method") == event:
                    return self._events.pop(n)
            self._events.append(self._message(deadline))

    def load(self, url: str) -> None:
        """Open ``url`` in the tab and wait until the page has loaded."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
