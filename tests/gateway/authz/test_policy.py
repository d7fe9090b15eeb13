"""`kubegate policy check` catches each class of mistake, with file:line; `policy test` reports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubegate.gateway.authz import policy
from tests.conftest import POLICY_DIR

BASE = """\
p, role:viewer, *:*, *, read, *, allow
g, group:viewers, role:viewer, *:*
"""


def policy_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "authz"
    d.mkdir()
    shutil.copy(POLICY_DIR / "model.conf", d / "model.conf")
    (d / "rules.csv").write_text(text)
    return d


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("p, role:viewer, *:*, pods, get, allow\n", "rules.csv:1: a p line has 7 fields", id="field-count"),
    pytest.param("p, role:viewer, *:*, pods, get, *, permit\n", "rules.csv:1: effect must be allow or deny",
                 id="bad-effect"),
    pytest.param("x, role:viewer\n", "rules.csv:1: unknown line type 'x'", id="line-type"),
    pytest.param(BASE + "p, role:viewer, *:*, pods, fetch, *, allow\n", "rules.csv:3: unknown verb(s) fetch",
                 id="unknown-verb"),
    pytest.param(BASE + "p, role:viewer, *:*, pod, get, *, allow\n",
                 "rules.csv:3: unknown resource 'pod' (did you mean 'pods'?)", id="unknown-resource"),
    pytest.param(BASE + "p, role:viewer, *:*, pods/shell, get, *, allow\n", "rules.csv:3: unknown subresource 'shell'",
                 id="unknown-subresource"),
    pytest.param(BASE + "p, alice, *:*, pods, get, *, allow\n", "rules.csv:3: subject 'alice' must be",
                 id="bad-subject"),
    pytest.param(BASE + "p, role:viewer, shop, pods, get, *, allow\n", "rules.csv:3: scope 'shop' must be",
                 id="bad-scope"),
    pytest.param(BASE + "p, role:auditor, *:*, events, list, *, allow\n",
                 "rules.csv:3: role:auditor is never granted", id="role-never-granted"),
    pytest.param(BASE + "g, group:ops, role:operator, *:*\n", "rules.csv:3: role:operator has no rules",
                 id="binding-to-nothing"),
    pytest.param(BASE + "p, role:viewer, *:shop, pods, get, *, allow\n",
                 "rules.csv:3: shadowed by authz/rules.csv:1", id="shadowed"),
    pytest.param(BASE + "p, role:viewer, *:*, pods/log, get, *, allow\np, *, *:*, pods/*, *, *, deny\n",
                 "rules.csv:3: unreachable: every request it allows is denied by authz/rules.csv:4", id="unreachable"),
    pytest.param(BASE + "p, role:viewer, *:*, pods/log, get, *, allow\np, role:viewer, *:*, pods/log, get, *, deny\n",
                 "rules.csv:3: conflicts with authz/rules.csv:4", id="conflict"),
    pytest.param(BASE + "p, role:viewer, *:*, pods, get, *, allow, an-id, extra\n", "rules.csv:3: a p line has 7 fields",
                 id="too-many-fields"),
])
def test_each_class_of_problem_is_reported_with_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    ps = policy.load(policy_dir(tmp_path, text))
    assert any(problem in p for p in ps.problems), ps.problems


def test_missing_model_is_reported(tmp_path: Path) -> None:
    (tmp_path / "authz").mkdir()
    assert "model.conf: missing" in policy.load(tmp_path / "authz").problems[0]


def test_the_starter_policy_is_clean() -> None:
    loaded = policy.load(POLICY_DIR)
    assert loaded.problems == [] and loaded.warnings == []


@pytest.mark.parametrize(("rules", "warned"), [
    pytest.param("p, role:ops, *:*, *, write, *, allow, ops-write\n",
                 "role:ops may create certificatesigningrequests.certificates.k8s.io", id="wildcard"),
    pytest.param("p, role:ops, *:*, */*, *, *, allow, ops-subresources\n",
                 "role:ops may create serviceaccounts/token", id="wildcard-subresources"),
    pytest.param("p, role:ops, *:*, serviceaccounts/token, create, *, allow, ops-tokens\n",
                 "role:ops may create serviceaccounts/token", id="named"),
    pytest.param("p, role:ops, *:*, certificatesigningrequests.certificates.k8s.io/approval, update, *, allow, x\n",
                 "update certificatesigningrequests.certificates.k8s.io/approval", id="csr-approval"),
    pytest.param("p, role:ops, *:*, *, write, *, allow, ops-write\n"
                 "p, !role:break-glass, *:*, serviceaccounts/token, create, *, deny, no-tokens\n",
                 "role:ops may create certificatesigningrequests", id="one-taken-back-the-others-not"),
])
def test_a_grant_of_credential_minting_is_a_warning(tmp_path: Path, rules: str, warned: str) -> None:
    loaded = policy.load(policy_dir(tmp_path, rules + "g, group:ops, role:ops, *:*\n"))
    assert any(warned in w and "past every gate and the audit" in w for w in loaded.warnings), loaded.warnings
    if "no-tokens" in rules:
        assert not any("serviceaccounts/token" in w for w in loaded.warnings)


def test_break_glass_may_mint_without_a_warning(tmp_path: Path) -> None:
    loaded = policy.load(policy_dir(tmp_path, "p, role:break-glass, *:*, **, *, *, allow, bg\n"
                                              "g, group:ops, role:break-glass, *:*\n"))
    assert not [w for w in loaded.warnings if "mints a credential" in w]


def kubegate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", *args], capture_output=True, text=True, timeout=60)


def test_policy_check_cli(tmp_path: Path) -> None:
    assert kubegate("policy", "check", str(POLICY_DIR)).returncode == 0
    bad = policy_dir(tmp_path, BASE + "p, role:viewer, *:*, pod, get, *, allow\n")
    proc = kubegate("policy", "check", str(bad))
    assert proc.returncode == 1 and "rules.csv:3: unknown resource 'pod'" in proc.stderr


def test_policy_test_passes_on_the_starter_set() -> None:
    proc = kubegate("policy", "test", str(POLICY_DIR))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Fail" not in proc.stdout and " 0 failed" in proc.stdout


def test_policy_test_fails_readably_on_a_wrong_expectation(tmp_path: Path) -> None:
    d = tmp_path / "authz"
    shutil.copytree(POLICY_DIR, d)
    (d / "tests" / "wrong.yaml").write_text(
        "cases:\n  - {name: viewers delete pods, user: vic, groups: [kubegate:viewers], cluster: hz-1, "
        "verb: delete, resource: pods, namespace: shop, object: web-0, expect: allow}\n")
    proc = kubegate("policy", "test", str(d))
    assert proc.returncode == 1
    assert "viewers delete pods" in proc.stdout and "Fail" in proc.stdout
    assert "FAIL wrong.yaml:2 viewers delete pods:\n  expected allow, got deny (no rule allows it)" in proc.stdout


def test_policy_test_reports_malformed_cases(tmp_path: Path) -> None:
    d = tmp_path / "authz"
    shutil.copytree(POLICY_DIR, d)
    (d / "tests" / "starter.yaml").write_text(
        "cases:\n  - {name: x, user: vic, cluster: hz-1, verb: get, expect: maybe, colour: blue}\n")
    proc = kubegate("policy", "test", str(d))
    assert proc.returncode == 1
    assert ("starter.yaml:2: unknown keys ['colour']; missing ['resource']; expect must be one of allow, deny"
            in proc.stderr)


def test_a_matcher_that_cannot_be_evaluated_is_refused_by_check(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    policy_dir = tmp_path / "authz"
    shutil.copytree(POLICY_DIR, policy_dir)
    model = policy_dir / "model.conf"
    model.write_text(model.read_text().replace("objectMatch(", "objectMatches("))
    out = subprocess.run([sys.executable, "-m", "kubegate", "policy", "check", str(policy_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "model.conf: the matcher cannot be evaluated" in out.stderr and "Traceback" not in out.stderr


def test_a_hash_inside_quotes_is_text_not_a_comment(tmp_path: Path) -> None:
    import shutil

    policy_dir = tmp_path / "authz"
    shutil.copytree(POLICY_DIR, policy_dir)
    with open(policy_dir / "bindings.csv", "a") as f:
        f.write('g, "user:https://issuer.example#alice", role:viewer, *:*  # an OIDC user, issuer#sub\n')
    ps = policy.load(policy_dir)
    assert ps.ok, ps.problems
    assert any(b.subject == "user:https://issuer.example#alice" for b in ps.bindings)
