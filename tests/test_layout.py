"""The shape of the code: what lint-imports cannot see (sizes, docstrings, typed calls).

The layers themselves are contracts in pyproject.toml, checked by
``lint-imports`` in .ci/run; here, the rules of STYLE.md that a reader
would otherwise have to check by eye.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("supervisors", "wolfpacs")
MAX_LINES = 500
SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))
EVERY_MODULE = sorted(
    p
    for folder in (*PACKAGES, "bench", "tests", "integration", "validation")
    for p in (ROOT / folder).rglob("*.py")
)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", EVERY_MODULE, ids=_name)
def test_every_module_is_small(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_name(path)}: {lines} lines, over {MAX_LINES}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name != "__main__.py"], ids=_name)
def test_every_module_says_what_it_is(path):
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{_name(path)}"


def test_every_part_of_wolfpacs_says_whom_it_may_import():
    parts = sorted(p for p in (ROOT / "wolfpacs").iterdir() if (p / "__init__.py").is_file())
    assert [p.name for p in parts] == ["cli", "config", "dicom", "node", "ops", "state", "testing"]
    for part in parts:
        docstring = ast.get_docstring(ast.parse((part / "__init__.py").read_text()))
        assert docstring and "import" in docstring, f"wolfpacs/{part.name}: no import rule"


def _calls_by_name(tree: ast.AST) -> list[int]:
    """Lines of ``x.call(name, "method", ...)`` and ``x.cast(...)``: methods named by strings."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("call", "cast")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            found.append(node.lineno)
    return found


def test_actors_are_called_by_method_not_by_a_string():
    strays = {
        _name(path): lines
        for path in SOURCES
        if path.parts[-2:] != ("supervisors", "_registry.py")  # the mechanism itself
        and (lines := _calls_by_name(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert not strays, f"registry.call/cast with a method's name as a string: {strays}"


def test_the_check_for_string_calls_finds_one():
    assert _calls_by_name(ast.parse('registry.call("store", "get_route", uid)')) == [1]
    assert _calls_by_name(ast.parse('registry.call("router", Router.route, uid)')) == []
