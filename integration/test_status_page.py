"""The status page in a real browser: headless Chromium (Debian's) against a routing node.

The screenshot is kept as a CI artefact under integration/artifacts/.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from integration.browser import FLAGS, Browser, chromium_path
from integration.peers import acknowledged, storescu
from tests.conftest import wait_until
from wolfpacs.testing.synthetic import STORESCU_PROPOSES as PROPOSE
from wolfpacs.testing.synthetic import write_study

ARTIFACTS = Path(__file__).parent / "artifacts"
TOKEN = "status-page-token-0123"


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    result = subprocess.run([chromium_path(), *FLAGS, f"--user-data-dir={profile}", *args],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_status_page_shows_the_worker_that_got_the_study(cluster, tmp_path):
    c = cluster().start()
    files = write_study(tmp_path / "s", series=1, per_series=3)
    sent = storescu(files, c.outside, "STHLM_SECRET", "HOSPITAL", PROPOSE["1.2.840.10008.1.2.1"])
    assert len(acknowledged(sent.stdout + sent.stderr)) == 3
    wait_until(lambda: c.delivered() == 3, timeout=30, what="the study at a worker")
    holder = next(ae for ae, got in c.received().items() if got)
    worker = {"GPU_A": "gpu-a", "GPU_B": "gpu-b"}[holder]
    url = f"http://127.0.0.1:{c.http}/"
    dom = chromium(tmp_path, "--dump-dom", url)
    studies = re.search(r'<table id="studies">(.*?)</table>', dom, re.S)
    assert studies, dom[:2000]
    assert re.findall(r'<td class="worker">([^<]*)</td>', studies.group(1)) == [worker]
    workers = re.search(r'<table id="workers">(.*?)</table>', dom, re.S).group(1)
    assert re.findall(r'<td class="name">([^<]*)</td>', workers) == ["gpu-a", "gpu-b"]
    assert "listener:outside" in dom  # the tree
    pools = re.search(r'<table id="pools">(.*?)</table>', dom, re.S).group(1)
    # The worker that took the study is reachable; the other is, or is not heard from yet.
    assert re.findall(r'<td class="reachable">([^<]*)</td>', pools) in (
        ["2/2"],
        ["1/2 (1 not heard from yet)"],
    )
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "status-page.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1100", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_a_token_a_browser_signs_in_and_then_sees_the_page(cluster, tmp_path):
    c = cluster(http_token=TOKEN).start()
    files = write_study(tmp_path / "s", series=1, per_series=2)
    sent = storescu(files, c.outside, "STHLM_SECRET", "HOSPITAL", PROPOSE["1.2.840.10008.1.2.1"])
    assert len(acknowledged(sent.stdout + sent.stderr)) == 2
    wait_until(lambda: c.delivered() == 2, timeout=30, what="the study at a worker")
    with Browser(tmp_path / "profile") as browser:
        browser.load(f"http://127.0.0.1:{c.http}/")
        assert browser.evaluate("document.getElementById('sign-in') !== null")
        assert browser.evaluate("document.getElementById('studies')") is None  # nothing shown
        browser.evaluate(f"document.getElementById('token').value = {TOKEN!r}")
        browser.evaluate("document.querySelector('form').submit()")
        browser.wait_for("Page.loadEventFired")  # the redirect to the page, with its cookie
        rows = browser.evaluate("document.querySelectorAll('#studies td.worker').length")
        assert rows == 1, browser.evaluate("document.body.innerText")
        assert browser.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "status-page-signed-in.png")
