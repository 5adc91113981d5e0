"""The ``wolfpacs`` command as a person types it: a subprocess, its output and exit code.

Help and version, ``ctl``'s options before or after the verb against a running
node, ``config example`` and ``config check``, and the demo's output in a pipe
and on a terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pydicom import dcmread

from tests.conftest import wait_until
from wolfpacs import __version__
from wolfpacs.cli.shell import Shell
from wolfpacs.ops.control import ControlClient
from wolfpacs.ops.verbs import VERBS

ROOT = Path(__file__).resolve().parent.parent


def wolfpacs(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python3 -m wolfpacs ARGS`` from this tree, as a person would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("WOLFPACS_CONFIG", None)
    env.pop("WOLFPACS_SOCKET", None)
    return subprocess.run([sys.executable, "-m", "wolfpacs", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


# -- help and version ---------------------------------------------------------------------


def test_dash_v_and_version_both_print_the_version():
    short, long = wolfpacs("-V"), wolfpacs("--version")
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout == f"wolfpacs {__version__}\n"


def test_the_help_that_the_top_level_help_advertises_works_three_ways():
    top = wolfpacs("--help")
    assert top.returncode == 0 and "wolfpacs ctl help" in top.stdout
    assert "wolfpacs config example > wolfpacs.toml" in top.stdout  # the first steps
    outputs = []
    for args in (["ctl", "help"], ["ctl", "--help"], ["ctl", "-h"]):
        result = wolfpacs(*args)
        assert result.returncode == 0, (args, result.stderr)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] == outputs[2]
    listed = {line.split()[0] for line in outputs[0].splitlines() if line.startswith("  ")}
    assert set(VERBS) <= listed  # every verb, one line each
    for option in ("--json", "--socket PATH", "--config FILE", "--port N", "--token"):
        assert option in outputs[0]


def test_wolfpacs_alone_shows_the_first_steps():
    result = wolfpacs()
    assert result.returncode == 2 and "first steps:" in result.stderr and "ctl" in result.stderr


def test_ctl_alone_shows_the_help_and_fails_as_a_script_would_want():
    result = wolfpacs("ctl")
    assert result.returncode == 2 and result.stdout == ""
    assert "usage: wolfpacs ctl" in result.stderr and "workers" in result.stderr


def test_a_verbs_help_two_ways():
    for args in (["ctl", "help", "move"], ["ctl", "move", "--help"], ["ctl", "--help", "move"]):
        result = wolfpacs(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: wolfpacs ctl move") and "--to" in result.stdout


def test_typos_get_the_nearest_name_and_no_traceback():
    verb = wolfpacs("ctl", "wrokers")
    assert (
        verb.returncode == 2 and "unknown verb 'wrokers' (did you mean 'workers'?)" in verb.stderr
    )
    option = wolfpacs("ctl", "--jsn", "workers")
    assert option.returncode == 2 and "did you mean '--json'?" in option.stderr
    missing = wolfpacs("ctl", "move", "gpu-a")
    assert missing.returncode == 2
    assert "required: --to" in missing.stderr and "usage: wolfpacs ctl move" in missing.stderr
    for result in (verb, option, missing):
        no_traceback(result)


def test_ctl_without_a_node_says_how_to_name_one(tmp_path):
    result = wolfpacs("ctl", "workers", "--socket", str(tmp_path / "none.sock"))
    assert result.returncode == 3
    assert "cannot reach the node" in result.stderr and "--config FILE" in result.stderr
    no_traceback(result)


# -- ctl against a running node ------------------------------------------------------------


def test_ctl_options_before_or_after_the_verb(world, tmp_path):
    w = world()
    files = w.study("s", series=1, per_series=2)
    assert w.send(files) == [0, 0]
    wait_until(lambda: w.delivered() == 2)
    socket = str(w.config.node.control_path)
    after = wolfpacs("ctl", "workers", "--json", "--socket", socket)
    before = wolfpacs("ctl", "--json", "--socket", socket, "workers")
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert [r["name"] for r in json.loads(after.stdout)] == ["gpu-1", "gpu-2"]
    assert json.loads(before.stdout)[0].keys() == json.loads(after.stdout)[0].keys()
    table = wolfpacs("ctl", "workers", f"--socket={socket}")
    assert table.returncode == 0 and table.stdout.startswith("NAME ") and "LAST_OK" in table.stdout

    # `--config` after the verb, and the study's times for people and for machines
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\ndata_dir = "{w.config.node.data_dir}"\n')
    uid = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    shown = wolfpacs("ctl", "study", uid, "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    routed = re.search(r"^routed_at: (.*)$", shown.stdout, re.M).group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d \([\d.]+ s ago\)", routed)
    assert "e+09" not in shown.stdout
    exact = json.loads(wolfpacs("ctl", "study", uid, "--config", str(config), "--json").stdout)
    assert abs(exact[0]["routed_at"] - time.time()) < 120  # epoch seconds, as they were

    exported = wolfpacs("ctl", "config", "--export", "--config", str(config))  # the verb config
    assert exported.returncode == 0 and exported.stdout.startswith("# WolfPACS effective")

    # after the verb, a flag the verb takes is the verb's: add-worker's --port is the worker's
    added = wolfpacs("ctl", "--socket", socket, "add-worker", "gpu-9", "--host", "127.0.0.1",
                     "--port", "10404", "--ae-title", "GPU_9", "--pool", "demo")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert next(r for r in w.admin("workers") if r["name"] == "gpu-9")["peer"].endswith(":10404")


def test_the_shell_refuses_ctl_options_on_a_line(world):
    w = world()
    out = io.StringIO()
    shell = Shell(ControlClient(w.config.node.control_path), stdout=out)
    assert shell.run_verb("workers --json") is False
    assert "--json is an option of 'wolfpacs ctl'" in out.getvalue()
    assert shell.run_verb("workers") is True and "gpu-1" in out.getvalue()
    shell.do_help("")
    assert "  retry-dead" in out.getvalue() and "watch VERB" in out.getvalue()
    shell.client.close()


def test_rule_verbs_from_ctl_as_a_shell_splits_them_and_the_shell_completes_them(world):
    w = world()
    w.admin("add-worker", name="cpu-p", host="127.0.0.1", port=9, ae_title="CPU_P", pool="P")
    socket = ["--socket", str(w.config.node.control_path)]
    line = 'add-rule demo-hospital --match Modality=CT "SeriesDescription=(?i).*chest.*" --pool P'
    added = wolfpacs("ctl", *socket, *shlex.split(line))
    assert added.returncode == 0, added.stderr
    assert "0  Modality=CT 'SeriesDescription=(?i).*chest.*'  pool P" in added.stdout
    shown = json.loads(wolfpacs("ctl", "rules", "demo-hospital", "--json", *socket).stdout)
    assert shown == {"client": "demo-hospital", "pool": "demo", "rules": [{
        "index": 0, "match": {"Modality": "CT", "SeriesDescription": "(?i).*chest.*"},
        "pool": "P", "action": None}]}  # fmt: skip
    for words, problem in (
        (["--match", "Modalty=CT", "--discard"], "did you mean 'Modality'?"),
        (["--match", "Modality=CT", "--pool", "P", "--discard"], "not both"),
    ):
        refused = wolfpacs("ctl", *socket, "add-rule", "demo-hospital", *words)
        assert refused.returncode == 1 and problem in refused.stderr, refused.stderr
        no_traceback(refused)
    removed = wolfpacs("ctl", *socket, "remove-rule", "demo-hospital", "0", "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["rules"] == []

    shell = Shell(ControlClient(w.config.node.control_path), stdout=io.StringIO())
    assert shell.completedefault("d", "rules d", 6, 7) == ["demo-hospital"]
    assert shell.completedefault("", "add-rule demo-hospital --match x --pool ", 41, 41) == [
        "P", "demo",
    ]  # fmt: skip
    assert shell.completedefault("", "studies --worker ", 17, 17) == ["gpu-1", "gpu-2", "cpu-p"]
    shell.client.close()


# -- config example, config check -----------------------------------------------------------


def test_config_example_passes_config_check(tmp_path):
    example = wolfpacs("config", "example")
    assert example.returncode == 0 and "[node]" in example.stdout
    path = tmp_path / "wolfpacs.toml"
    path.write_text(example.stdout)
    checked = wolfpacs("config", "check", str(path))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{path}: ok (1 client, 2 workers, 1 destination)\n"
    assert not (tmp_path / "wolfpacs-data").exists()  # checking starts nothing, creates nothing


def test_a_typo_is_named_with_the_nearest_key_as_run_names_it(tmp_path):
    text = wolfpacs("config", "example").stdout.replace("\noutside_port =", "\noutside_prot =")
    path = tmp_path / "wolfpacs.toml"
    path.write_text(text)
    line = text[: text.index("\noutside_prot")].count("\n") + 2
    expected = (f"wolfpacs: config error: {path}:{line}: node.outside_prot: "
                "unknown key (did you mean 'outside_port'?)\n")  # fmt: skip
    checked = wolfpacs("config", "check", str(path))
    assert (checked.returncode, checked.stdout, checked.stderr) == (2, "", expected)
    ran = wolfpacs("run", "--config", str(path))
    assert (ran.returncode, ran.stderr) == (2, expected)


def test_config_check_of_a_missing_file(tmp_path):
    result = wolfpacs("config", "check", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read the file" in result.stderr
    no_traceback(result)


# -- the demo ---------------------------------------------------------------------------------


def test_the_demo_in_a_pipe_writes_whole_lines():
    result = wolfpacs("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\r" not in result.stdout
    progress = [line for line in result.stdout.splitlines() if "at the workers" in line]
    assert progress == ["  at the workers 10/10, derived back at the PACS 10/10"]


def test_the_demo_on_a_terminal_redraws_its_progress_line():
    main, terminal = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    demo = subprocess.Popen([sys.executable, "-m", "wolfpacs", "demo"], stdout=terminal,
                            stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal's other end closed: the demo is done
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert demo.wait(timeout=120) == 0
    assert b"\r  at the workers" in output and b"round trip complete" in output
