"""Traceability: user requirements → Robot tests → last results, checked so that it cannot rot.

``python3 validation/trace.py [--results DIR]`` reads ``docs/requirements.md`` (its table of
``UR-nnn``), the Robot suites in ``validation/`` (parsed, not run: their tests and tags) and the
README's headings, and fails (exit 1, each problem on a line) when

- a requirement has no Robot test tagged with its ID,
- a test carries a ``UR-nnn`` tag that is no requirement, or no such tag at all,
- a README section a requirement names is no heading of the README,
- a pytest file a requirement names as completing its proof does not exist.

Either way it writes the matrix (requirement, README section, Robot tests with their last
result from ``DIR/output.xml`` when Robot has run, the pytest that completes the proof) as
Markdown to ``DIR/traceability.md``, next to Robot's report.html and log.html.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UR = re.compile(r"^UR-\d{3}$")
ROW = re.compile(r"^\|\s*(UR-\d{3})\s*\|(.*)\|\s*$")


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    section: str
    pytest: tuple[str, ...]


@dataclass
class Trace:
    requirements: list[Requirement]
    tests: dict[str, list[str]] = field(default_factory=dict)  # test's full name → its UR tags
    problems: list[str] = field(default_factory=list)


def read_requirements(path: Path) -> list[Requirement]:
    """The table rows of ``path`` that begin with a UR id: id, text, section, pytest files."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        text, section, pytest = [*cells, "", "", ""][:3]
        files = tuple(p.strip() for p in pytest.split(",") if p.strip() and p.strip() != "-")
        found.append(Requirement(match.group(1), text, section, files))
    return found


def readme_sections(path: Path) -> set[str]:
    """The text of every Markdown heading of ``path``, outside code blocks."""
    headings, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            headings.add(line.lstrip("#").strip())
    return headings


def robot_tests(suites: Path) -> dict[str, list[str]]:
    """Every Robot test under ``suites`` (parsed, not run): full name → its tags."""
    from robot.api import TestSuiteBuilder

    suite = TestSuiteBuilder().build(str(suites))
    return {test.full_name: [str(tag) for tag in test.tags] for test in suite.all_tests}


def last_results(output: Path) -> dict[str, str]:
    """Test full name → PASS/FAIL/SKIP from Robot's ``output.xml``; empty if there is none."""
    if not output.exists():
        return {}
    from robot.api import ExecutionResult

    result = ExecutionResult(str(output))
    return {test.full_name: test.status for test in result.suite.all_tests}


def check(requirements_md: Path, readme: Path, suites: Path, root: Path = ROOT) -> Trace:
    """Everything the module's docstring lists as a problem, found in these files."""
    trace = Trace(read_requirements(requirements_md))
    ids = [r.id for r in trace.requirements]
    if not ids:
        trace.problems.append(f"{requirements_md}: no requirement (| UR-nnn | ... |) found")
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        trace.problems.append(f"{dup}: defined more than once")
    sections = readme_sections(readme)
    for r in trace.requirements:
        if r.section not in sections:
            trace.problems.append(f"{r.id}: README section '{r.section}' is no heading of {readme}")
        trace.problems.extend(
            f"{r.id}: names {p}, which does not exist" for p in r.pytest if not (root / p).exists()
        )
    trace.tests = {
        name: [t for t in tags if UR.match(t)] for name, tags in robot_tests(suites).items()
    }
    for name, urs in trace.tests.items():
        if not urs:
            trace.problems.append(f"test '{name}' carries no UR-nnn tag")
        trace.problems.extend(
            f"test '{name}' carries {u}, no requirement" for u in urs if u not in ids
        )
    tested = {u for urs in trace.tests.values() for u in urs}
    trace.problems.extend(f"{i}: no Robot test is tagged with it" for i in ids if i not in tested)
    return trace


def matrix(trace: Trace, results: dict[str, str]) -> str:
    """The traceability matrix as Markdown."""
    lines = [
        "# Traceability matrix",
        "",
        f"{len(trace.requirements)} requirements (docs/requirements.md), {len(trace.tests)} Robot "
        "tests (validation/). Results: "
        + (
            ", ".join(
                f"{n} {s}"
                for s in ("PASS", "FAIL", "SKIP")
                if (n := list(results.values()).count(s))
            )
            if results
            else "Robot has not run (no output.xml)."
        ),
        "",
        "| requirement | README section | Robot tests (last result) | completed by (pytest) |",
        "| --- | --- | --- | --- |",
    ]
    for r in trace.requirements:
        tests = [n for n, urs in trace.tests.items() if r.id in urs]
        shown = "<br>".join(f"{n} ({results.get(n, 'not run')})" for n in tests) or "**NONE**"
        pytest = ", ".join(r.pytest) or "-"
        lines.append(f"| **{r.id}** {r.text} | {r.section} | {shown} | {pytest} |")
    if trace.problems:
        lines += ["", "## Problems", "", *(f"- {p}" for p in trace.problems)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "validation" / "results",
        help="Robot's output directory: output.xml read, matrix written there",
    )
    args = parser.parse_args(argv)
    trace = check(ROOT / "docs" / "requirements.md", ROOT / "README.md", ROOT / "validation")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "traceability.md"
    out.write_text(matrix(trace, last_results(args.results / "output.xml")), encoding="utf-8")
    for problem in trace.problems:
        print(f"trace: {problem}", file=sys.stderr)
    print(
        f"trace: {len(trace.requirements)} requirements, {len(trace.tests)} tests, "
        f"{len(trace.problems)} problems; matrix in {out}"
    )
    return 1 if trace.problems else 0


if __name__ == "__main__":
    sys.exit(main())
