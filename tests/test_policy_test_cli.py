"""`kubegate policy test` as CI uses it: selection, a fixed time, machine-readable output, coverage,
failures named by the case's FILE:LINE, and outcomes that survive comments and reordering."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def policy_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", "policy", "test", *args],
                          capture_output=True, text=True, timeout=120)


def outcomes(directory: Path) -> dict[str, tuple[str, str, bool]]:
    proc = policy_test(str(directory), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return {c["name"]: (c["got"], c["decidedBy"], c["passed"]) for c in json.loads(proc.stdout)["cases"]}


def test_comments_and_reordering_change_no_outcome(tmp_path: Path) -> None:
    before = outcomes(POLICIES)
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    shuffle = random.Random(7)
    for csv in (copy / "authz").glob("*.csv"):
        lines = [x for x in csv.read_text().splitlines() if x.strip() and not x.startswith("#")]
        shuffle.shuffle(lines)
        csv.write_text("# a comment added at the top\n\n" + "\n# between the lines\n".join(lines) + "\n")
    for yaml_file in (copy / "gates").glob("*.yaml"):
        yaml_file.write_text("# a comment added at the top\n# and another\n\n" + yaml_file.read_text())
    after = outcomes(copy)
    assert after == before
    assert all(passed for _, _, passed in after.values())


def test_run_selects_cases_and_junit_names_each_case_by_file_and_line(tmp_path: Path) -> None:
    proc = policy_test(str(POLICIES), "--run", "secrets", "-o", "junit")
    assert proc.returncode == 0, proc.stderr
    root = ET.fromstring(proc.stdout)
    names = [c.get("name") for c in root.iter("testcase")]
    assert names and all("secrets" in str(n) for n in names)
    lines = (POLICIES / "authz" / "tests" / "starter.yaml").read_text().splitlines()
    for case in root.iter("testcase"):  # file and line apart, as CI reporters link them
        assert str(case.get("file")).endswith("authz/tests/starter.yaml")
        assert f"name: {case.get('name')}," in lines[int(str(case.get("line"))) - 1]


def test_github_output_annotates_each_failing_case_on_its_line(tmp_path: Path) -> None:
    copy = tmp_path / "authz"
    shutil.copytree(POLICIES / "authz", copy)
    tests = copy / "tests" / "starter.yaml"
    text = tests.read_text()
    number = next(i for i, line in enumerate(text.splitlines(), 1) if "viewers do not delete" in line)
    tests.write_text(text.replace("name: viewers do not delete", "name: viewers do not delete (wrong)", 1)
                     .replace("object: web-0, expect: deny, rule: none", "object: web-0, expect: allow", 1))
    proc = subprocess.run([sys.executable, "-m", "kubegate", "policy", "test", "authz", "-o", "github"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    (annotation,) = [line for line in proc.stdout.splitlines() if line.startswith("::error")]
    assert annotation.startswith(f"::error file=authz/tests/starter.yaml,line={number},"
                                 "title=kubegate policy test: viewers do not delete (wrong)::")
    assert "expected allow, got deny" in annotation


def test_a_failure_is_named_by_the_file_and_line_of_its_case(tmp_path: Path) -> None:
    copy = tmp_path / "authz"
    shutil.copytree(POLICIES / "authz", copy)
    tests = copy / "tests" / "starter.yaml"
    text = tests.read_text()
    lines = text.splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "viewers do not delete" in line)
    tests.write_text(text.replace("name: viewers do not delete, user: vic, groups: [kubegate:viewers], cluster: hz-1, "
                                  "verb: delete, resource: pods, namespace: shop, object: web-0, expect: deny",
                                  "name: viewers do not delete, user: vic, groups: [kubegate:viewers], cluster: hz-1, "
                                  "verb: delete, resource: pods, namespace: shop, object: web-0, expect: allow"))
    proc = policy_test(str(copy))
    assert proc.returncode == 1
    assert f"FAIL starter.yaml:{number} viewers do not delete" in proc.stdout
    result = json.loads(policy_test(str(copy), "-o", "json").stdout)
    failed = [c for c in result["cases"] if not c["passed"]]
    assert [c["case"] for c in failed] == [f"starter.yaml:{number}"]


def test_a_rule_named_by_line_is_a_problem_not_a_pass(tmp_path: Path) -> None:
    copy = tmp_path / "authz"
    shutil.copytree(POLICIES / "authz", copy)
    tests = copy / "tests" / "starter.yaml"
    tests.write_text(tests.read_text().replace("rule: viewers-read}", "rule: authz/roles.csv:14}"))
    proc = policy_test(str(copy))
    assert proc.returncode == 1 and "name the rule by its id" in proc.stderr


def test_gate_cases_never_run_on_the_wall_clock(tmp_path: Path) -> None:
    copy = tmp_path / "gates"
    shutil.copytree(POLICIES / "gates", copy)
    tests = copy / "tests" / "day-one.yaml"
    tests.write_text("\n".join(x for x in tests.read_text().splitlines() if not x.startswith("now:")) + "\n")
    proc = policy_test(str(copy))
    assert proc.returncode == 1 and "no time for this case" in proc.stderr
    # --now gives them one: a Saturday, when the starter weekend freeze holds deletes
    saturday = policy_test(str(copy), "--now", "2026-11-28T12:00:00+00:00", "-o", "json")
    wednesday = policy_test(str(copy), "--now", "2026-11-25T12:00:00+00:00", "-o", "json")
    assert wednesday.returncode == 0, wednesday.stdout
    assert saturday.stdout != wednesday.stdout


def test_coverage_lists_rules_no_case_decides_and_can_gate_ci(tmp_path: Path) -> None:
    proc = policy_test(str(POLICIES), "-o", "json", "--coverage")
    coverage = json.loads(proc.stdout)["coverage"]
    uncovered = [name for names in coverage["uncovered"].values() for name in names]
    assert any(name.startswith("break-glass-all-resources ") for name in uncovered)
    assert not any(name.startswith("viewers-read ") for name in uncovered)
    assert 0 < coverage["percent"] < 100
    below = policy_test(str(POLICIES), "--min-coverage", "99")
    assert below.returncode == 1 and "below --min-coverage" in below.stderr


def test_a_policy_without_tests_is_a_warning_for_authz_and_gates_alike(tmp_path: Path) -> None:
    for kind in ("authz", "gates"):
        copy = tmp_path / kind
        shutil.copytree(POLICIES / kind, copy)
        shutil.rmtree(copy / "tests")
        proc = policy_test(str(copy))
        assert proc.returncode == 0, proc.stderr
        assert f"warning: {copy}: no test cases" in proc.stderr


def test_a_case_that_says_two_things_is_refused_at_its_line(tmp_path: Path) -> None:
    """A second `expect:` in a case would silently replace the first: the file is refused instead."""
    copy = tmp_path / "gates"
    shutil.copytree(POLICIES / "gates", copy)
    (copy / "tests" / "extra.yaml").write_text(
        "now: 2026-11-25T10:00:00+00:00\ncases:\n"
        "  - name: twice\n    user: ada\n    cluster: hz-1\n    verb: delete\n    resource: namespaces\n"
        "    expect: approval\n    expect: allow\n")
    proc = policy_test(str(copy))
    assert proc.returncode == 1
    assert f"{copy}/tests/extra.yaml:9: not valid YAML: found duplicate key \"expect\"" in proc.stderr
    assert "1 problem(s) in" in proc.stderr and "Traceback" not in proc.stderr
