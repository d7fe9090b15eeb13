"""limits.yaml: the starter set loads; each class of mistake is reported with file:line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kubegate.gateway.gates import limits_policy
from kubegate.gateway.identity.identity import Identity
from kubegate.gateway.gates.rate import deleted_kind
from kubegate.gateway.request.info import RequestInfo, classify
from kubegate.gateway.request.query import Query

GATES_DIR = Path(__file__).resolve().parents[3] / "policies" / "gates"


def problems_in(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "limits.yaml").write_text(textwrap.dedent(text))
    return limits_policy.load(tmp_path)[1]


def test_starter_set_loads_with_a_budget_for_every_kind() -> None:
    policy, problems = limits_policy.load(GATES_DIR)
    assert problems == []
    assert policy.budget_for("pods").name == "pod-deletes"  # type: ignore[union-attr]
    assert policy.budget_for("namespaces").name == "namespace-deletes"  # type: ignore[union-attr]
    assert policy.budget_for("deployments.apps").name == "workload-deletes"  # type: ignore[union-attr]
    assert policy.budget_for("widgets.example.com").name == "other-deletes"  # type: ignore[union-attr]
    pods = policy.budget_for("pods")
    assert pods is not None and [(w.label, w.limit) for w in pods.windows] == \
        [("1m", 50), ("5m", 200), ("1h", 1000), ("24h", 5000)]


def test_a_groups_own_budget_and_qps_limit_apply_to_its_members_alone() -> None:
    policy, _ = limits_policy.load(GATES_DIR)
    agent, person = ("kubegate:agents", "system:authenticated"), ("team-shop", "system:authenticated")
    for kind in ("pods", "deployments.apps", "widgets.example.com"):
        assert policy.budget_for(kind, agent).name == "agent-deletes"  # type: ignore[union-attr]
    assert policy.budget_for("pods", person).name == "pod-deletes"  # type: ignore[union-attr]
    info = classify("GET", "/api/v1/namespaces/shop/pods", Query())
    assert [q.name for q in policy.qps if q.matches(info, "kubectl/v1.37.1", agent)] == ["agents", "per-user",
                                                                                          "kubectl-lists"]
    assert [q.name for q in policy.qps if q.matches(info, "kubectl/v1.37.1", person)] == ["per-user", "kubectl-lists"]


def test_two_budgets_for_one_kind_are_a_problem_only_within_one_group(tmp_path: Path) -> None:
    (tmp_path / "limits.yaml").write_text(textwrap.dedent("""
        budgets:
          - {name: a, resources: [pods], windows: {1h: 1}}
          - {name: b, resources: [pods], groups: [bots], windows: {1h: 1}}
          - {name: c, resources: [pods], groups: [bots], windows: {1h: 1}}
        """))
    problems = limits_policy.load(tmp_path)[1]
    assert len(problems) == 1 and "budget c: pods is already charged to budget b" in problems[0]


BUDGET = """
budgets:
  - name: pods
    resources: [pods]
    windows: {1m: 5, 1h: 20}
"""


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("budgets: [\n  {name: x\n", "limits.yaml:3: not valid YAML", id="yaml-syntax"),
    pytest.param("budget: []\n", "limits.yaml:1: limits.yaml: unknown key 'budget'", id="unknown-top-key"),
    pytest.param(BUDGET + "    per: [cluster]\n    burst: 3\n", "limits.yaml:3: budgets[0]: unknown key 'burst'",
                 id="unknown-budget-key"),
    pytest.param("budgets:\n  - name: Pods!\n    resources: [pods]\n    windows: {1m: 5}\n",
                 "limits.yaml:2: budgets[0].name is required", id="bad-name"),
    pytest.param("budgets:\n  - name: p\n    resources: [pod]\n    windows: {1m: 5}\n",
                 "limits.yaml:2: budget p: unknown resource 'pod'", id="unknown-resource"),
    pytest.param("budgets:\n  - name: p\n    resources: [pods]\n    windows: {1 minute: 5}\n",
                 "is not a period", id="bad-period"),
    pytest.param("budgets:\n  - name: p\n    resources: [pods]\n    windows: {1m: 0}\n",
                 "the limit must be a whole number >= 1", id="zero-limit"),
    pytest.param("budgets:\n  - name: p\n    resources: [pods]\n    windows: {1m: 50, 1h: 40}\n",
                 "limits.yaml:2: budget p.windows: 1h allows 40, no more than 1m (50), so the 1m window can "
                 "never stop a delete: unreachable", id="unreachable-window"),
    pytest.param("budgets:\n  - name: p\n    resources: [pods]\n    per: [team]\n    windows: {1m: 5}\n",
                 "'team' is not one of cluster, namespace, user", id="bad-scope"),
    pytest.param("budgets:\n  - name: p\n    resources: [pods]\n    windows: {1m: 5}\n    breaker: {cooldown: soon}\n",
                 "limits.yaml:5: budget p.breaker.cooldown: 'soon' is neither", id="bad-cooldown"),
    pytest.param(BUDGET + "  - name: more-pods\n    resources: [services, pods]\n    windows: {1m: 5}\n",
                 "limits.yaml:6: budget more-pods: pods is already charged to budget pods (", id="overlap"),
    pytest.param(BUDGET + "  - name: pods\n    resources: [services]\n    windows: {1m: 5}\n",
                 "limits.yaml:6: budget pods is also defined at", id="duplicate-name"),
    pytest.param("qps:\n  - name: q\n    verbs: [lsit]\n    qps: 5\n", "limits.yaml:2: qps limit q.verbs: unknown verb 'lsit'",
                 id="unknown-verb"),
    pytest.param("qps:\n  - name: q\n    qps: 0\n", "limits.yaml:2: qps limit q.qps must be a number > 0", id="zero-qps"),
    pytest.param("qps:\n  - name: q\n    qps: 5\n    burst: 0\n", "burst must be a whole number >= 1", id="zero-burst"),
    pytest.param("on_store_failure: {mutating: maybe}\n",
                 "limits.yaml:1: on_store_failure.mutating must be deny or allow", id="bad-failure-mode"),
])
def test_each_mistake_is_reported_with_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_in(tmp_path, text)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(str(tmp_path / "limits.yaml")) for p in problems)


def test_policy_check_covers_gates_and_exits_1_with_file_line(tmp_path: Path) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "limits.yaml").write_text("budgets:\n  - name: p\n    resources: [pods]\n    windows: {1m: 50, 1h: 40}\n")
    proc = subprocess.run([sys.executable, "-m", "kubegate", "policy", "check", str(gates)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{gates / 'limits.yaml'}:2: budget p.windows: 1h allows 40" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "kubegate", "policy", "check", str(GATES_DIR.parent)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "8 delete budgets, 3 QPS limits, 2 freeze windows, 22 rules, 0 webhooks, 0 alert gates, 0 rollouts: OK" in ok.stdout
    assert "38 rules, 9 bindings: OK" in ok.stdout


@pytest.mark.parametrize(("method", "path", "query", "kind"), [
    ("DELETE", "/api/v1/namespaces/shop/pods/web-1", "", "pods"),
    ("DELETE", "/api/v1/namespaces/shop/pods", "labelSelector=app%3Dweb", "pods"),
    ("DELETE", "/apis/apps/v1/namespaces/shop/deployments/web", "", "deployments.apps"),
    ("DELETE", "/api/v1/namespaces/shop", "", "namespaces"),
    ("POST", "/api/v1/namespaces/shop/pods/web-1/eviction", "", "pods"),  # kubectl drain
    ("DELETE", "/api/v1/namespaces/shop/pods/web-1/status", "", None),
    ("GET", "/api/v1/namespaces/shop/pods", "", None),
    ("POST", "/api/v1/namespaces/shop/pods", "", None),
])
def test_what_counts_as_a_delete(method: str, path: str, query: str, kind: str | None) -> None:
    assert deleted_kind(classify(method, path, Query.parse(query))) == kind


def test_dry_run_and_budget_scopes() -> None:
    budget = limits_policy.load(GATES_DIR)[0].budget_for("configmaps")
    assert budget is not None
    info = RequestInfo(path="", verb="delete", is_resource=True, namespace="shop", resource="configmaps", name="c")
    assert budget.scope("hz-1", info, Identity("ada")) == "other-deletes/cluster=hz-1/namespace=shop"
