"""validation/trace.py: every user requirement has a Robot test, every test a known requirement.

Runs the check on the real docs/requirements.md, README and Robot suites (parsed, not run), and
on broken copies of them, so that the check itself is known to catch what it must.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trace():
    if importlib.util.find_spec("robot") is None:
        missing("robotframework", "pip install -e '.[validation]'")
    spec = importlib.util.spec_from_file_location(
        "validation_trace", ROOT / "validation" / "trace.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def copy(tmp_path):
    """A copy of the requirements, the README and the suites, to break."""
    shutil.copy(ROOT / "docs" / "requirements.md", tmp_path / "requirements.md")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(
        ROOT / "validation",
        tmp_path / "validation",
        ignore=shutil.ignore_patterns("results", "__pycache__"),
    )
    return tmp_path


def run(trace, d: Path):
    return trace.check(d / "requirements.md", d / "README.md", d / "validation", ROOT)


def test_every_requirement_is_traced_to_a_test_and_a_readme_section(trace):
    result = trace.check(ROOT / "docs/requirements.md", ROOT / "README.md", ROOT / "validation")
    assert result.problems == []
    assert 30 <= len(result.requirements) <= 60
    assert "**NONE**" not in trace.matrix(result, {})


def test_a_requirement_without_a_test_is_caught(trace, copy):
    md = copy / "requirements.md"
    md.write_text(md.read_text() + "| UR-999 | Something new. | Monitoring | - |\n")
    assert "UR-999: no Robot test is tagged with it" in run(trace, copy).problems


def test_a_test_with_an_unknown_requirement_is_caught(trace, copy):
    suite = copy / "validation" / "06_configuration.robot"
    suite.write_text(suite.read_text().replace("[Tags]    UR-047", "[Tags]    UR-998"))
    problems = run(trace, copy).problems
    assert any("carries UR-998, no requirement" in p for p in problems)
    assert "UR-047: no Robot test is tagged with it" in problems


def test_a_readme_section_that_is_gone_is_caught(trace, copy):
    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("## Monitoring\n", "## Observability\n"))
    assert any("README section 'Monitoring'" in p for p in run(trace, copy).problems)


def test_a_pytest_file_that_is_gone_is_caught(trace, copy):
    md = copy / "requirements.md"
    md.write_text(md.read_text().replace("integration/test_tls.py", "integration/test_gone.py"))
    assert any(
        "integration/test_gone.py, which does not exist" in p for p in run(trace, copy).problems
    )
