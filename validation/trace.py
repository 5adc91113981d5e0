"""Traceability: user requirements → Robot tests → last results, checked so that it cannot rot.

``python3 validation/trace.py [--results DIR]`` reads ``docs/requirements.md`` (its table of
``UR-nnn``), the Robot suites in ``validation/`` (parsed, not run: their tests and tags) and the
README's headings, and fails (exit 1, each problem on a line) when

- a requirement has no Robot test tagged with its ID,
- a test carries a ``UR-nnn`` tag that is no requirement, or no such tag at all,
- a README section a requirement names is no heading of the README,
- a pytest file a requirement names as completing its proof does not exist;
- a status code of the Conformance Statement's section 3.4 (``docs/conformance-statement.md``)
  is carried as a tag (``0xC004``) by no Robot test, or by tests of other suites than its row's
  "validated by" names; or its row says it is "not provoked by the validation: see
  ``FILE::TEST``" and that pytest test does not exist, or a Robot test carries it all the same;
- a test carries a status tag that is no status of the statement, or never names that status;
- a row of the statement's section 3.5 (status codes received) names no Robot test ("its
  name" in quotes), or names one that does not exist.

Either way it writes the matrix (requirement, README section, Robot tests with their last
result from ``DIR/output.xml`` when Robot has run, the pytest that completes the proof with its
outcome from ``DIR/pytest-*.xml`` (JUnit) when pytest has run; then each
status code and the tests that provoke it) as Markdown to ``DIR/traceability.md``, next to
Robot's report.html and log.html.
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
STATUS = re.compile(r"^0x[0-9a-fA-F]{4}$")
STATUSES = "3.4 Status codes sent (C-STORE SCP)"  # the statement's heading of its table
NOT_PROVOKED = re.compile(r"not provoked by the validation: see `?([\w/.-]+\.py)::(\w+)`?")
SUITE = re.compile(r"validation/[\w.-]+\.robot")
RECEIVED = "3.5 Status codes received (C-STORE SCU)"  # its table: each row names its tests
QUOTED = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Requirement:
    id: str
    text: str
    section: str
    pytest: tuple[str, ...]


@dataclass(frozen=True)
class StatusRow:
    """A row of the statement's status table: the code (0xNNNN), when it is sent, the suites
    whose tests provoke it, or the pytest test (``file::name``) that does instead."""

    code: str
    when: str
    suites: tuple[str, ...]
    pytest: str


@dataclass(frozen=True)
class RobotTest:
    tags: tuple[str, ...]
    suite: str  # its file, relative to the repository: validation/09_status_codes.robot
    text: str  # its body, every keyword and argument, as JSON: what it asserts


@dataclass
class Trace:
    requirements: list[Requirement]
    tests: dict[str, list[str]] = field(default_factory=dict)  # test's full name → its UR tags
    statuses: list[StatusRow] = field(default_factory=list)
    provoking: dict[str, list[str]] = field(default_factory=dict)  # status → tests tagged so
    problems: list[str] = field(default_factory=list)


def code(text: str) -> str:
    """A status as the statement writes it: 0x and four upper-case hex digits."""
    return "0x" + text[2:].upper()


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


def statement_statuses(path: Path) -> list[StatusRow]:
    """The rows of the table under the heading :data:`STATUSES` of the statement at ``path``."""
    rows, heading = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif heading == STATUSES and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            status = cells[0].strip("`")
            if STATUS.match(status):
                by = cells[2] if len(cells) > 2 else ""
                found = NOT_PROVOKED.search(by)
                pytest = f"{found.group(1)}::{found.group(2)}" if found else ""
                rows.append(StatusRow(code(status), cells[1], tuple(SUITE.findall(by)), pytest))
    return rows


def statement_rows(path: Path, heading: str) -> list[list[str]]:
    """The cells of each row of the table under ``heading`` of ``path`` (header included)."""
    rows, current = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            current = line.lstrip("#").strip()
        elif current == heading and line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def check_received(trace: Trace, statement: Path, tests: dict[str, RobotTest]) -> None:
    """Each row of section 3.5 names, in quotes in its last cell, Robot tests that exist."""
    rows = statement_rows(statement, RECEIVED)[1:]
    if not rows:
        trace.problems.append(f"{statement}: no table under '{RECEIVED}'")
    for row in rows:
        named = QUOTED.findall(row[-1])
        if not named:
            trace.problems.append(f"{RECEIVED}: the row '{row[0]}' names no Robot test")
        for name in named:
            if not any(full.endswith("." + name) for full in tests):
                trace.problems.append(f"{RECEIVED}: the row '{row[0]}' names '{name}', no test")


def robot_tests(suites: Path) -> dict[str, RobotTest]:
    """Every Robot test under ``suites`` (parsed, not run): full name → its tags, suite, body."""
    import json

    from robot.api import TestSuiteBuilder

    suite = TestSuiteBuilder().build(str(suites))
    return {
        test.full_name: RobotTest(
            tuple(str(tag) for tag in test.tags),
            f"{suites.name}/{Path(test.source).name}",
            json.dumps(test.to_dict()["body"]),
        )
        for test in suite.all_tests
    }


def pytest_exists(root: Path, node: str) -> bool:
    """Whether ``file::name`` is a test function of that file."""
    file, _, name = node.partition("::")
    path = root / file
    return path.is_file() and re.search(rf"^def {name}\(", path.read_text(), re.M) is not None


def last_results(output: Path) -> dict[str, str]:
    """Test full name → PASS/FAIL/SKIP from Robot's ``output.xml``; empty if there is none."""
    if not output.exists():
        return {}
    from robot.api import ExecutionResult

    result = ExecutionResult(str(output))
    return {test.full_name: test.status for test in result.suite.all_tests}


def pytest_results(results: Path) -> dict[str, str] | None:
    """Each pytest file's outcome from the JUnit XML files ``results/pytest-*.xml`` (``.ci/run``
    writes one per pytest run): ``integration/test_powerloss.py`` → ``3 passed`` or ``3
    skipped (lazyfs is not installed...)``; None if there are no such files (pytest not run)."""
    import xml.etree.ElementTree as ET

    files = sorted(results.glob("pytest-*.xml"))
    if not files:
        return None
    counts: dict[str, dict[str, int]] = {}
    skipped_why: dict[str, str] = {}
    for junit in files:
        for case in ET.parse(junit).iter("testcase"):
            module = str(case.get("classname", ""))
            parts = module.split(".")
            # "integration.test_tls" or "integration.test_tls.TestClass": the file's path
            depth = next((i for i, part in enumerate(parts) if part.startswith("test_")), -1)
            path = "/".join(parts[: depth + 1]) + ".py"
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = "failed"
                elif child.tag == "skipped":
                    outcome = "skipped"
                    skipped_why.setdefault(path, str(child.get("message", ""))[:80])
            tally = counts.setdefault(path, {})
            tally[outcome] = tally.get(outcome, 0) + 1
    shown = {}
    for path, tally in counts.items():
        said = ", ".join(f"{n} {o}" for o, n in sorted(tally.items()))
        if tally.get("skipped"):
            said += f" ({skipped_why[path]})"
        shown[path] = said
    return shown


def check(
    requirements_md: Path,
    readme: Path,
    suites: Path,
    root: Path = ROOT,
    statement: Path = ROOT / "docs" / "conformance-statement.md",
) -> Trace:
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
    tests = robot_tests(suites)
    trace.tests = {name: [t for t in test.tags if UR.match(t)] for name, test in tests.items()}
    for name, urs in trace.tests.items():
        if not urs:
            trace.problems.append(f"test '{name}' carries no UR-nnn tag")
        trace.problems.extend(
            f"test '{name}' carries {u}, no requirement" for u in urs if u not in ids
        )
    tested = {u for urs in trace.tests.values() for u in urs}
    trace.problems.extend(f"{i}: no Robot test is tagged with it" for i in ids if i not in tested)
    check_statuses(trace, statement, tests, root)
    check_received(trace, statement, tests)
    return trace


def check_statuses(trace: Trace, statement: Path, tests: dict[str, RobotTest], root: Path) -> None:
    """The statement's status codes against the tests tagged with them (module docstring)."""
    trace.statuses = statement_statuses(statement)
    if not trace.statuses:
        trace.problems.append(f"{statement}: no table of status codes under '{STATUSES}'")
    known = {row.code for row in trace.statuses}
    for name, test in tests.items():
        for tag in (code(t) for t in test.tags if STATUS.match(t)):
            trace.provoking.setdefault(tag, []).append(name)
            if tag not in known:
                trace.problems.append(f"test '{name}' carries {tag}, no status of {statement.name}")
            elif tag.lower() not in test.text.lower():
                trace.problems.append(f"test '{name}' carries {tag} but never names it")
    for row in trace.statuses:
        provoking = trace.provoking.get(row.code, [])
        suites = {tests[name].suite for name in provoking}
        if row.pytest:
            if not pytest_exists(root, row.pytest):
                trace.problems.append(f"{row.code}: names {row.pytest}, which does not exist")
            if provoking:
                trace.problems.append(f"{row.code}: 'not provoked by the validation', yet "
                                      f"tagged on {', '.join(provoking)}")  # fmt: skip
        elif not provoking:
            trace.problems.append(
                f"{row.code}: no Robot test is tagged with it, and its row does not say "
                "'not provoked by the validation: see FILE::TEST'"
            )
        elif suites != set(row.suites):
            trace.problems.append(f"{row.code}: validated by {sorted(row.suites)} says the "
                                  f"statement, by {sorted(suites)} say the tags")  # fmt: skip


def matrix(trace: Trace, results: dict[str, str], pytest: dict[str, str] | None = None) -> str:
    """The traceability matrix as Markdown; ``pytest``: the completing tests' outcomes by file
    (:func:`pytest_results`), if pytest has run."""
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
        )
        + (
            " The pytest tests that complete a proof: their outcomes by file, from the JUnit "
            "files pytest-*.xml beside this matrix (a file skipped says why)."
            if pytest is not None
            else " pytest has not run here (no pytest-*.xml): the last column names files only."
        ),
        "",
        "| requirement | README section | Robot tests (last result) | completed by (pytest) |",
        "| --- | --- | --- | --- |",
    ]
    for r in trace.requirements:
        tests = [n for n, urs in trace.tests.items() if r.id in urs]
        shown = "<br>".join(f"{n} ({results.get(n, 'not run')})" for n in tests) or "**NONE**"
        completing = ", ".join(
            f"{f} ({pytest.get(f, 'not run')})" if pytest is not None else f for f in r.pytest
        )
        lines.append(f"| **{r.id}** {r.text} | {r.section} | {shown} | {completing or '-'} |")
    lines += [
        "",
        f"## Status codes sent (docs/conformance-statement.md, {STATUSES.split(' ', 1)[0]})",
        "",
        "| status | when | Robot tests (last result) | or, not provoked from outside (pytest) |",
        "| --- | --- | --- | --- |",
    ]
    for row in trace.statuses:
        tests = trace.provoking.get(row.code, [])
        shown = "<br>".join(f"{n} ({results.get(n, 'not run')})" for n in tests) or "-"
        lines.append(f"| **{row.code}** | {row.when} | {shown} | {row.pytest or '-'} |")
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
    robot, pytest = last_results(args.results / "output.xml"), pytest_results(args.results)
    out.write_text(matrix(trace, robot, pytest), encoding="utf-8")
    for problem in trace.problems:
        print(f"trace: {problem}", file=sys.stderr)
    print(
        f"trace: {len(trace.requirements)} requirements, {len(trace.tests)} tests, "
        f"{len(trace.problems)} problems; matrix in {out}"
    )
    return 1 if trace.problems else 0


if __name__ == "__main__":
    sys.exit(main())
