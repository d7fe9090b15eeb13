"""`kubegate policy replay`: a scripted session through a real gateway under the starter policy, then
the same session again under an edited policy; the replay of the first log must name exactly the
requests whose decision the second run changed."""

from __future__ import annotations

import json
import random
import shutil
import subprocess as sp
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import urllib3

from emulator import harness
from tests.conftest import GatewayHandle, start_gateway

REPO = Path(__file__).resolve().parents[1]
USERS = {  # who acts in the session, and the groups the starter policy knows them by
    "vic": ["kubegate:viewers"],
    "shop-dev": ["team-shop"],
    "sam": ["kubegate:sre"],
    "ada": ["kubegate:cluster-admins"],
    "eve": [],
}
NAMESPACES = ("shop", "shop-b", "web")
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Request
    verbs: [create, update, patch]
  - level: Metadata
"""


def _edit(policies: Path) -> None:
    """The policy pull request: developers no longer manage configmaps, a configmap that turns on
    debugging needs a second person, and shop-b is frozen for the next hour."""
    roles = policies / "authz" / "roles.csv"
    roles.write_text(roles.read_text().replace("configmaps|services|", "services|"))
    rules = policies / "gates" / "rules.yaml"
    rules.write_text(rules.read_text() + """
  - id: debug-configmaps
    description: turning debugging on in a shop namespace is reviewed
    severity: medium
    outcome: require-approval
    match: {namespaces: ["shop*"], resources: [configmaps], verbs: [create]}
    when:
      body: [{path: data.debug, equals: "true"}]
""")
    now = datetime.now(timezone.utc)
    freeze = policies / "gates" / "freeze.yaml"
    freeze.write_text(freeze.read_text() + f"""
  - name: shop-b-migration
    description: shop-b is being migrated
    timezone: UTC
    from: "{(now - timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M')}"
    to: "{(now + timedelta(hours=1)).strftime('%Y-%m-%dT%H:%M')}"
    match: {{namespaces: [shop-b]}}
""")


def _script(n: int, seed: int = 7) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(user, method, path, body): namespaces first (as the admin), then n requests by everyone."""
    rnd = random.Random(seed)
    steps: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("ada", "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        for ns in NAMESPACES]
    created: list[tuple[str, str]] = []
    for i in range(n):
        user = rnd.choice(list(USERS))
        ns = rnd.choice(NAMESPACES)
        kind = rnd.choice(["list-pods", "list-cm", "create-cm", "create-cm", "delete-cm", "get-secrets",
                           "version", "create-deploy"])
        if kind == "list-pods":
            steps.append((user, "GET", f"/api/v1/namespaces/{ns}/pods", None))
        elif kind == "list-cm":
            steps.append((user, "GET", f"/api/v1/namespaces/{ns}/configmaps", None))
        elif kind == "create-cm":
            name = f"cm-{i}"
            created.append((ns, name))
            steps.append((user, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                           "data": {"debug": rnd.choice(["true", "false"])}}))
        elif kind == "delete-cm" and created:
            cm_ns, name = created.pop(rnd.randrange(len(created)))
            steps.append((user, "DELETE", f"/api/v1/namespaces/{cm_ns}/configmaps/{name}", None))
        elif kind == "get-secrets":
            steps.append((user, "GET", f"/api/v1/namespaces/{ns}/secrets", None))
        elif kind == "create-deploy":
            steps.append((user, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"d-{i}"},
                           "spec": {"replicas": rnd.choice([0, 2]), "selector": {"matchLabels": {"app": "x"}},
                                    "template": {"metadata": {"labels": {"app": "x"}},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        else:
            steps.append((user, "GET", "/version", None))
    return steps


def _run(gw: GatewayHandle, steps: list[tuple[str, str, str, dict[str, Any] | None]]) -> dict[int, str]:
    """Send the session; the gateway's decision of each step (allow, approval, deny) from its audit log."""
    http = urllib3.PoolManager(ca_certs=str(gw.ca_file), retries=False)
    tokens = {user: gw.token(user, groups) for user, groups in USERS.items()}
    for i, (user, method, path, body) in enumerate(steps):
        headers = {"Authorization": f"Bearer {tokens[user]}", "User-Agent": f"replay-script/{i}",
                   "Content-Type": "application/json"}
        http.request(method, gw.url + path, body=json.dumps(body).encode() if body else None, headers=headers)
    http.clear()
    outcomes = {}
    for event in gw.audit_events():
        if event.get("stage") != "ResponseComplete" or not event.get("userAgent", "").startswith("replay-script/"):
            continue
        a = event.get("annotations") or {}
        stage = a.get("kubegate.io/stage", "")
        outcome = "allow" if a.get("kubegate.io/decision") == "allow" else \
            "approval" if stage == "approvals" else "deny"
        outcomes[int(event["userAgent"].split("/")[1])] = outcome
    assert len(outcomes) == len(steps)
    return outcomes


def _replay(*args: str) -> sp.CompletedProcess[str]:
    return sp.run([sys.executable, "-m", "kubegate", "policy", "replay", *args], capture_output=True, text=True,
                  timeout=120)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of one scripted session on one emulated cluster: the starter policy, then the edit."""
    root = tmp_path_factory.mktemp("replay")
    emu = harness.start(root / "emulator")
    old, new = root / "old", root / "new"
    for d in (old, new):
        shutil.copytree(REPO / "policies", d)
    _edit(new)
    (root / "audit-policy.yaml").write_text(AUDIT_POLICY)
    steps = _script(320)
    runs = {}
    try:
        for name, policies in (("old", old), ("new", new)):
            gw = start_gateway(root / f"gw-{name}", emu, authz={"policy_dir": str(policies / "authz")},
                               gates={"policy_dir": str(policies / "gates")},
                               audit={"policy_file": str(root / "audit-policy.yaml")})
            try:
                runs[name] = (_run(gw, steps), gw.settings.audit_path)
            finally:
                gw.stop()
    finally:
        emu.stop()
    return {"old": old, "new": new, "steps": steps, "runs": runs}


def _flipped_steps(report: dict[str, Any], log: Path) -> set[int]:
    user_agents = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("userAgent", "").startswith("replay-script/"):
            user_agents[event["auditID"]] = int(event["userAgent"].split("/")[1])
    return {user_agents[f["auditID"]] for f in report["flips"]}


def test_replay_names_exactly_the_requests_the_edit_flips_live(session: dict[str, Any]) -> None:
    (before, log), (after, _) = session["runs"]["old"], session["runs"]["new"]
    flipped_live = {i for i in before if before[i] != after[i]}
    assert len(session["steps"]) > 300 and len(flipped_live) > 20  # the edit matters to this session

    against_old = _replay(str(log), "--policies", str(session["new"]), "--against", str(session["old"]), "-o", "json")
    assert against_old.returncode == 0, against_old.stderr
    report = json.loads(against_old.stdout)
    assert _flipped_steps(report, log) == flipped_live
    for flip in report["flips"]:
        i = _flipped_steps({"flips": [flip]}, log).pop()
        assert (flip["old"]["outcome"], flip["new"]["outcome"]) == (before[i], after[i])

    # Against what the gateway recorded, the same requests flip.
    against_record = json.loads(_replay(str(log), "--policies", str(session["new"]), "-o", "json").stdout)
    assert _flipped_steps(against_record, log) == flipped_live

    # Grouped by the rule each flip is owed to, with counts that add up.
    groups = {(g["rule"], g["change"]): g["requests"] for g in report["groups"]}
    assert sum(groups.values()) == len(flipped_live)
    assert groups[("authz none", "allow -> deny")] > 0  # shop-dev's configmap writes (no rule allows them now)
    assert groups[("rule debug-configmaps", "allow -> approval")] > 0
    assert groups[("freeze shop-b-migration", "allow -> approval")] > 0
    users = next(g for g in report["groups"] if g["rule"] == "authz none")["users"]
    assert set(users) == {"shop-dev"}


def test_the_unchanged_policy_flips_nothing(session: dict[str, Any]) -> None:
    _, log = session["runs"]["old"]
    same = _replay(str(log), "--policies", str(session["old"]), "--against", str(session["old"]), "--exit-code")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith(f"0 of {len(session['steps'])} recorded requests")
    recorded = _replay(str(log), "--policies", str(session["old"]), "--exit-code")
    assert recorded.returncode == 0 and recorded.stdout.startswith("0 of"), recorded.stdout


def test_table_and_markdown_outputs(session: dict[str, Any]) -> None:
    _, log = session["runs"]["old"]
    args = [str(log), "--policies", str(session["new"]), "--against", str(session["old"])]
    table = _replay(*args, "--exit-code", "--show", "2")
    assert table.returncode == 3  # --exit-code: decisions flip
    lines = table.stdout.splitlines()
    assert lines[2].split() == ["RULE", "CHANGE", "REQUESTS", "USERS", "NAMESPACES"]
    assert any(line.startswith("rule debug-configmaps") and "allow -> approval" in line for line in lines)
    assert "  … and " in table.stdout and "shop-dev create configmaps" in table.stdout
    # A rule that reads the live object is not guessed: it is named with its reason.
    assert "rule change-protected-object:" in table.stdout and "live object" in table.stdout

    markdown = _replay(*args, "-o", "markdown").stdout
    assert markdown.startswith("### kubegate policy replay")
    assert "| Rule | Change | Requests | Users | Namespaces |" in markdown
    assert "| `rule debug-configmaps` | allow -> approval |" in markdown


def test_bad_input_is_a_clear_error(tmp_path: Path, session: dict[str, Any]) -> None:
    _, log = session["runs"]["old"]
    missing = _replay(str(tmp_path / "nope.jsonl"), "--policies", str(session["old"]))
    assert missing.returncode == 1 and "no such file" in missing.stderr

    broken = tmp_path / "broken"
    shutil.copytree(session["old"], broken)
    (broken / "authz" / "roles.csv").write_text("p, role:x, *:*, pods, get, *, allow, a b\n")
    bad = _replay(str(log), "--policies", str(broken))
    assert bad.returncode == 1 and "problem(s) in the policy sets" in bad.stderr and "Traceback" not in bad.stderr

    # Lines that are not audit events are counted, not fatal.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("not json\n" + '{"kind": "Other"}\n' + log.read_text())
    out = _replay(str(mixed), "--policies", str(session["old"]))
    assert out.returncode == 0, out.stderr
    assert "1 lines that are not JSON" in out.stdout and "1 lines that are not audit events" in out.stdout
