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
    shutil.copy(ROOT / "docs" / "conformance-statement.md", tmp_path / "statement.md")
    shutil.copytree(
        ROOT / "validation",
        tmp_path / "validation",
        ignore=shutil.ignore_patterns("results", "__pycache__"),
    )
    return tmp_path


def run(trace, d: Path):
    return trace.check(
        d / "requirements.md", d / "README.md", d / "validation", ROOT, d / "statement.md"
    )


def test_every_requirement_is_traced_to_a_test_and_a_readme_section(trace):
    result = trace.check(ROOT / "docs/requirements.md", ROOT / "README.md", ROOT / "validation")
    assert result.problems == []
    # the issue expected 30-60; the README promises more (several nodes, processes, TLS)
    assert len(result.requirements) >= 30
    assert "**NONE**" not in trace.matrix(result, {})


def test_every_status_of_the_statement_is_provoked_or_names_its_pytest(trace):
    result = trace.check(ROOT / "docs/requirements.md", ROOT / "README.md", ROOT / "validation")
    codes = {row.code for row in result.statuses}
    assert {"0x0000", "0xA702", "0x0110", "0xC001", "0xC004", "0x0122", "0x0211"} <= codes
    not_provoked = {row.code for row in result.statuses if row.pytest}
    assert not_provoked == {"0x0110"}  # every other one is provoked against a running node
    assert codes - not_provoked == set(result.provoking)


def replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_a_status_no_test_provokes_is_caught(trace, copy):
    suite = copy / "validation" / "09_status_codes.robot"
    replace(suite, "[Tags]    UR-049    0x0211", "[Tags]    UR-049")
    assert any(p.startswith("0x0211: no Robot test is tagged") for p in run(trace, copy).problems)


def test_a_status_tagged_in_a_suite_its_row_does_not_name_is_caught(trace, copy):
    replace(copy / "statement.md", "| `validation/09_status_codes.robot` |\n| 0x0122",
            "| `validation/04_limits.robot` |\n| 0x0122")  # fmt: skip
    assert any(p.startswith("0xC004: validated by") for p in run(trace, copy).problems)


def test_a_tag_of_no_status_or_never_asserted_is_caught(trace, copy):
    suite = copy / "validation" / "09_status_codes.robot"
    replace(suite, "[Tags]    UR-049    0x0211", "[Tags]    UR-049    0x0211    0xA7FF")
    replace(suite, "[Tags]    UR-049    0x0122", "[Tags]    UR-049    0x0122    0xC001")
    problems = run(trace, copy).problems
    assert any("carries 0xA7FF, no status of statement.md" in p for p in problems)
    assert any("carries 0xC001 but never names it" in p for p in problems)


def test_a_status_not_provoked_must_name_a_pytest_that_exists_and_no_tag(trace, copy):
    statement = copy / "statement.md"
    replace(statement, "test_an_unexpected_error_is_answered_0x0110", "test_gone_0x0110")
    assert any(
        p.startswith("0x0110: names tests/test_answers.py::test_gone_0x0110")
        for p in run(trace, copy).problems
    )
    suite = copy / "validation" / "09_status_codes.robot"
    replace(suite, "[Tags]    UR-049    0x0211", "[Tags]    UR-049    0x0211    0x0110")
    problems = run(trace, copy).problems
    assert any(
        p.startswith("0x0110: 'not provoked by the validation', yet tagged") for p in problems
    )


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


def test_a_row_of_statuses_received_naming_a_test_that_is_gone_is_caught(trace, copy):
    assert not run(trace, copy).problems
    replace(copy / "statement.md", '"Success and warnings are delivered, once"', '"Delivered"')
    assert any("names 'Delivered', no test" in p for p in run(trace, copy).problems)
    replace(copy / "statement.md", '"Delivered"', "the tests")
    assert any("names no Robot test" in p for p in run(trace, copy).problems)


def test_the_matrix_shows_how_the_completing_pytest_files_fared(trace, tmp_path):
    (tmp_path / "pytest-default.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="integration.test_tls" name="test_a"/>'
        '<testcase classname="integration.test_tls.TestPins" name="test_b"/>'
        '<testcase classname="tests.test_store" name="test_c"><failure message="x"/></testcase>'
        "</testsuite></testsuites>"
    )
    (tmp_path / "pytest-powerloss.xml").write_text(
        '<testsuites><testsuite name="pytest"><testcase classname="integration.test_powerloss" '
        'name="test_d"><skipped message="lazyfs is not installed"/></testcase>'
        "</testsuite></testsuites>"
    )
    outcomes = trace.pytest_results(tmp_path)
    assert outcomes == {
        "integration/test_tls.py": "2 passed",
        "tests/test_store.py": "1 failed",
        "integration/test_powerloss.py": "1 skipped (lazyfs is not installed)",
    }
    result = trace.check(ROOT / "docs/requirements.md", ROOT / "README.md", ROOT / "validation")
    shown = trace.matrix(result, {}, outcomes)
    assert "integration/test_powerloss.py (1 skipped (lazyfs is not installed))" in shown
    assert "integration/test_chaos.py (not run)" in shown  # named, but in no JUnit file
    assert trace.pytest_results(tmp_path / "nowhere") is None  # pytest not run: names only
    assert "integration/test_chaos.py |" in trace.matrix(result, {}, None)
