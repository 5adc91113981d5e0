"""The README's examples run as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from wolfpacs.cli.ctl import parse_verb, split
from wolfpacs.config.example import example
from wolfpacs.ops.verbs import VERBS

README = Path(__file__).parent.parent / "README.md"


def test_the_three_child_supervisor_example_runs_and_prints_one_restart():
    section = README.read_text().split("## The supervision library", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_the_readme_names_the_commands_ci_runs():
    text = README.read_text()
    assert "pip install . && wolfpacs demo" in text
    assert "python3 -m pytest" in text
    assert "python3 -m pytest" in (README.parent / ".ci" / "run").read_text()


def test_the_readmes_config_is_wolfpacs_config_example_verbatim():
    section = README.read_text().split("### Configuration", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    assert block == example()  # and the example passes `config check`: tests/test_cli.py


def test_the_readme_tells_how_to_make_and_check_a_config():
    text = README.read_text()
    assert "wolfpacs config example > wolfpacs.toml" in text
    assert "wolfpacs config check wolfpacs.toml" in text


def test_the_readmes_ctl_commands_parse():
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    lines = [line.split("#")[0] for block in blocks for line in block.splitlines()
             if line.startswith("wolfpacs ctl ")]  # fmt: skip
    assert len(lines) >= 3
    for line in lines:
        _, words = split(shlex.split(line)[2:])
        if words[0] != "help":
            assert parse_verb(words)[0] in VERBS, line
