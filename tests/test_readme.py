"""The README's examples run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
