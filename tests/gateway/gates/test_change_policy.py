"""freeze.yaml, rules.yaml, webhooks.yaml: each class of mistake with file:line; bodies; cron."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kubegate.gateway.request import bodies
from kubegate.gateway.gates import change_policy
from kubegate.gateway.gates.cron import Cron, CronError

GATES_DIR = Path(__file__).resolve().parents[3] / "policies" / "gates"


def problems(tmp_path: Path, name: str, text: str) -> list[str]:
    (tmp_path / name).write_text(textwrap.dedent(text))
    return change_policy.load(tmp_path)[1]


@pytest.mark.parametrize("path", ["spec.taints[*]effect", "spec..x", "spec.taints[0].effect", "[*]", ""])
def test_a_body_path_that_is_not_dotted_keys_is_a_problem(tmp_path: Path, path: str) -> None:
    found = problems(tmp_path, "rules.yaml", f"""
        rules:
          - id: r
            outcome: deny
            when: {{body: [{{path: "{path}", equals: 1}}]}}
        """)
    assert len(found) == 1 and "write dotted keys" in found[0], found


def test_the_starter_change_policy_loads() -> None:
    policy, found = change_policy.load(GATES_DIR)
    assert found == []
    assert [r.id for r in policy.rules] == [
        "delete-namespace", "deletecollection-without-selector", "scale-to-zero-in-production",
        "cordon-many-nodes", "change-protected-object", "replace-force", "bind-cluster-admin",
        "record-node-deletes", "below-disruption-budget", "last-ready-replica-behind-service",
        "unschedulable-nodes-in-a-zone", "delete-crd-with-resources", "delete-volume-data",
        "delete-namespace-with-workloads", "kruise-delete-protection", "gitops-managed-manual-change",
        "agents-every-change-held", "webshell-delete", "webshell-eviction", "webshell-scale-to-zero", "webshell-unschedulable-node",
        "webshell-noexecute-taint"]
    checks = {r.id: (r.consequence.check, r.consequence.above, r.consequence.per) for r in policy.rules if r.consequence}
    assert checks["unschedulable-nodes-in-a-zone"] == ("unschedulable-nodes", 1, "zone")
    assert checks["delete-namespace-with-workloads"] == ("namespace-workloads", 10, "cluster")
    assert len(checks) == 8
    assert [r.id for r in policy.rules if r.groups] == ["agents-every-change-held"]
    assert [r.id for r in policy.rules if r.webshell_session] == [r.id for r in policy.rules if r.id.startswith("webshell-")]
    assert all(r.example and r.description for r in policy.rules)
    assert {w.name for w in policy.freeze} == {"weekend", "year-end"}


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("rules.yaml", "rules:\n  - id: r\n    outcome: require-approval\n    match: {verbs: [delete]}\n"
                   "    outcome: annotate\n",
     'rules.yaml:5: not valid YAML: found duplicate key "outcome" with value "annotate" (original value: "require-approval")'),
    ("freeze.yaml", "windows:\n  - name: x\n    timezone: Mars/Olympus\n    from: 2026-01-01T00:00\n    to: 2026-01-02T00:00\n",
     "freeze.yaml:2: window x.timezone: unknown time zone 'Mars/Olympus'"),
    ("freeze.yaml", "windows:\n  - name: x\n    cron: '61 * * * *'\n    duration: 1h\n",
     "freeze.yaml:2: window x.cron: '61' is outside 0-59"),
    ("freeze.yaml", "windows:\n  - name: x\n    cron: '0 18 * * fri'\n", "window x.duration is required with cron"),
    ("freeze.yaml", "windows:\n  - name: x\n    from: 2026-01-02T00:00\n    to: 2026-01-01T00:00\n",
     "window x: ends (2026-01-01T00:00:00+00:00) before it starts"),
    ("freeze.yaml", "windows:\n  - name: x\n    from: soon\n    to: later\n", "window x.from: 'soon' is not a date"),
    ("freeze.yaml", "windows:\n  - name: x\n    from: 2026-01-01T00:00\n    to: 2026-01-02T00:00\n    match: {verbs: [smash]}\n",
     "freeze.yaml:5: window x.match: unknown verb 'smash'"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: explode\n", "rules.yaml:2: rule r.outcome must be one of deny, require-approval, annotate"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    severity: apocalyptic\n", "rule r.severity must be one of"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {body: [{path: spec.replicas}]}\n",
     "rules.yaml:4: rule r.when.body: each condition needs a path and one of equals"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {sometimes: true}\n",
     "rules.yaml:4: rule r.when: unknown key 'sometimes'"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    match: {resources: [pod]}\n", "rule r.match: unknown resource 'pod'"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n  - id: r\n    outcome: deny\n", "rules.yaml:4: rule r is also defined at"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {more_than: {count: 3}}\n", "more_than needs count"),
    ("webhooks.yaml", "webhooks:\n  - name: w\n    url: http://checker/review\n", "webhooks.yaml:2: webhook w.url must be an https:// URL"),
    ("webhooks.yaml", "webhooks:\n  - name: w\n    url: https://checker/review\n    failure_policy: Maybe\n",
     "webhook w.failure_policy must be Fail or Ignore"),
    ("webhooks.yaml", "webhooks:\n  - name: w\n    url: https://checker/review\n    ca_file: nope.crt\n", "webhook w.ca_file"),
    ("webhooks.yaml", "webhooks:\n  - name: w\n    url: https://checker/review\n    timeout: 5m\n",
     "webhook w.timeout must be a duration between 0 and 30s"),
    ("rules.yaml", "rules: [\n", "rules.yaml:2: not valid YAML"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {consequence: doom}\n",
     "rules.yaml:4: rule r.when.consequence: unknown check 'doom'; the checks are below-disruption-budget"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {consequence: {check: namespace-workloads, above: -1}}\n",
     "rule r.when.consequence.above must be a whole number"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {consequence: {check: volume-deleted, above: 3}}\n",
     "rule r.when.consequence: volume-deleted takes no `above`"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {consequence: {check: namespace-workloads, per: zone}}\n",
     "rule r.when.consequence.per is cluster or zone, for unschedulable-nodes only"),
    ("rules.yaml", "rules:\n  - id: r\n    outcome: deny\n    when: {consequence: {check: unschedulable-nodes, by: x}}\n",
     "rules.yaml:4: rule r.when.consequence: unknown key 'by'"),
])
def test_each_mistake_is_reported_with_file_and_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    found = problems(tmp_path, name, text)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(("content_type", "body", "path", "value"), [
    ("application/json", b'{"spec": {"replicas": 0}}', "spec.replicas", 0),
    ("application/merge-patch+json", b'{"spec": {"replicas": 0}}', "spec.replicas", 0),
    ("application/strategic-merge-patch+json", b'{"spec": {"unschedulable": true}}', "spec.unschedulable", True),
    ("application/json-patch+json", b'[{"op": "replace", "path": "/spec/replicas", "value": 0}]', "spec.replicas", 0),
    ("application/apply-patch+yaml", b"spec:\n  replicas: 0\n", "spec.replicas", 0),
])
def test_every_body_encoding_reads_the_same(content_type: str, body: bytes, path: str, value: object) -> None:
    view = bodies.read(content_type, body)
    assert view.readable and bodies.lookup(view.obj or {}, path) == value


def test_unreadable_bodies_say_why() -> None:
    assert not bodies.read("application/json", b"{nope").readable
    assert "not an object" in bodies.read("application/json", b"[1]").error
    assert not bodies.read("application/vnd.kubernetes.protobuf", b"k8s\x00\xff").readable
    assert bodies.read("application/json", b"").kind == "none"
    json_patch = bodies.read("application/json-patch+json", json.dumps({"op": "add"}).encode())
    assert "list of operations" in json_patch.error


def test_cron_matches_and_finds_its_last_and_next_start() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    friday_evening = Cron.parse("0 18 * * fri")
    sat = datetime(2026, 11, 28, 12, 0, tzinfo=berlin)
    assert friday_evening.last_start(sat, timedelta(hours=62)) == datetime(2026, 11, 27, 18, 0, tzinfo=berlin)
    assert friday_evening.next_start(sat) == datetime(2026, 12, 4, 18, 0, tzinfo=berlin)
    assert Cron.parse("*/15 9-17 * * 1-5").matches(datetime(2026, 11, 27, 9, 45))
    assert not Cron.parse("*/15 9-17 * * 1-5").matches(datetime(2026, 11, 28, 9, 45))  # Saturday
    assert Cron.parse("0 0 1 jan *").matches(datetime(2027, 1, 1, 0, 0))
    for bad in ("* * * *", "0 25 * * *", "0 0 * * funday", "*/0 * * * *"):
        with pytest.raises(CronError):
            Cron.parse(bad)


def test_policy_test_runs_the_gate_cases_and_fails_readably(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    def policy_test(directory: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubegate", "policy", "test", str(directory)],
                              capture_output=True, text=True, timeout=60)

    ok = policy_test(GATES_DIR)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "43 passed, 0 failed" in ok.stdout
    shutil.copytree(GATES_DIR, tmp_path / "gates")
    (tmp_path / "gates" / "tests" / "wrong.yaml").write_text(
        "now: 2026-11-25T12:00:00+00:00\ncases:\n  - {name: namespaces go freely, user: ada, cluster: hz-1, verb: delete, resource: namespaces,"
        " object: shop, expect: allow}\n")
    bad = policy_test(tmp_path / "gates")
    assert bad.returncode == 1
    assert "FAIL wrong.yaml:3 namespaces go freely:\n  expected allow, got approval (rule delete-namespace " \
           "(critical): deleting a namespace deletes everything in it, server-side)" in bad.stdout


def test_policy_check_speaks_json_and_github_annotations(tmp_path: Path) -> None:
    gates = tmp_path / "policies" / "gates"
    gates.mkdir(parents=True)
    (gates / "rules.yaml").write_text("rules:\n  - id: r\n    outcome: explode\n")
    run = lambda *args: subprocess.run([sys.executable, "-m", "kubegate", "policy", "check", "policies/gates", *args],  # noqa: E731
                                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    report = json.loads(run("-o", "json").stdout)
    assert report["ok"] is False and report["problems"] == [
        {"file": "policies/gates/rules.yaml", "line": 2,
         "message": "rule r.outcome must be one of deny, require-approval, annotate"}]
    github = run("-o", "github")
    assert github.returncode == 1
    assert github.stdout.splitlines() == ["::error file=policies/gates/rules.yaml,line=2,title=kubegate policy check::"
                                          "rule r.outcome must be one of deny, require-approval, annotate"]


def _window(tmp_path: Path, zone: str, cron: str, duration: str) -> change_policy.FreezeWindow:
    (tmp_path / "freeze.yaml").write_text(f"windows:\n  - name: w\n    timezone: {zone}\n    cron: '{cron}'\n"
                                          f"    duration: {duration}\n")
    policy, found = change_policy.load(tmp_path)
    assert found == []
    return policy.freeze[0]


def _utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


@pytest.mark.parametrize(("zone", "cron", "duration", "inside", "outside"), [
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 (to 03:00 CEST): a 02:30 start happens at 03:00.
    ("Europe/Berlin", "30 2 * * sun", "1h", ["2026-03-29T01:00", "2026-03-29T01:59"],
     ["2026-03-29T00:59", "2026-03-29T02:00"]),
    # ... and falls back on 2026-10-25 at 03:00 (to 02:00 CET): 02:30 happens twice, the window starts once.
    ("Europe/Berlin", "30 2 * * sun", "30m", ["2026-10-25T00:30", "2026-10-25T00:59"],
     ["2026-10-25T00:29", "2026-10-25T01:00", "2026-10-25T01:30"]),
    # America/New_York springs forward on 2026-03-08 at 02:00 (EST -> EDT) ...
    ("America/New_York", "15 2 * * *", "2h", ["2026-03-08T07:00", "2026-03-08T08:59"],
     ["2026-03-08T06:59", "2026-03-08T09:00"]),
    # ... and falls back on 2026-11-01 at 02:00 (EDT -> EST): 01:30 happens twice, the window starts once.
    ("America/New_York", "30 1 * * *", "20m", ["2026-11-01T05:30", "2026-11-01T05:49"],
     ["2026-11-01T05:29", "2026-11-01T05:50", "2026-11-01T06:30", "2026-11-01T06:45"]),
])
def test_a_recurring_freeze_follows_the_wall_clock_through_daylight_saving_changes(
        tmp_path: Path, zone: str, cron: str, duration: str, inside: list[str], outside: list[str]) -> None:
    window = _window(tmp_path, zone, cron, duration)
    assert [t for t in inside if window.active(_utc(t)) is None] == []
    assert [t for t in outside if window.active(_utc(t)) is not None] == []
