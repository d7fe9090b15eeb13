"""Change gates through a gateway on a fake clock, with real kubectl: freeze windows (time zones),
the day-one rule library (JSON, patch and protobuf bodies), risk webhooks, approval tickets."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from aiohttp import web
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from kubegate import pki
from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, python_client, start_gateway_in_process
from tests.gateway.conftest import send
from tests.served_app import ServedApp

P = pytest.param
RULES = (Path(__file__).resolve().parents[3] / "policies" / "gates" / "rules.yaml").read_text()
FREEZE = """
windows:
  - name: year-end
    description: the year-end trading freeze
    timezone: America/New_York
    from: "2026-12-18T00:00"
    to: "2027-01-04T09:00"
    match: {namespaces: ["frozen-*"]}
    exempt_groups: [kubegate:oncall]
  - name: weekend
    timezone: Europe/Berlin
    cron: "0 18 * * fri"
    duration: 62h
    match: {namespaces: ["weekend-*"]}
"""


LIMITS = """
budgets:
  - name: namespace-deletes
    resources: [namespaces]
    per: [cluster, user]        # per user: other tests' namespace deletes do not touch nina's budget
    windows: {1h: 1}
"""


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = ts("2026-11-25T12:00")  # a Wednesday, outside every window

    def __call__(self) -> float:
        return self.now


class ReviewServer:
    """A business-side risk checker over HTTPS; what it answers depends on the namespace."""

    def __init__(self, directory: Path) -> None:
        ca = pki.make_ca("checker-ca")
        ca.write(directory / "ca.crt", directory / "ca.key")
        leaf = pki.make_leaf(ca, "checker", ["127.0.0.1"])
        leaf.write(directory / "tls.crt", directory / "tls.key")
        self.ca_file = directory / "ca.crt"
        self.reviews: list[dict[str, Any]] = []

        async def review(request: web.Request) -> web.Response:
            data = await request.json()
            self.reviews.append(data)
            req = data["request"]
            ns = req["requestInfo"]["namespace"]
            answer: dict[str, Any] = {"uid": req["uid"], "allowed": True}
            if ns.startswith("wh-deny"):
                answer = {"uid": req["uid"], "allowed": False, "reason": "inspection INC-314 is still open"}
            elif ns.startswith("wh-slow"):
                await asyncio.sleep(2)
            elif ns.startswith(("wh-garbage", "wh-default")):
                return web.Response(text="<html>oops</html>", content_type="text/html")
            elif ns.startswith("wh-approve"):
                answer["requiresApproval"], answer["reason"] = True, "peak hours: a second pair of eyes"
            return web.json_response({"apiVersion": "kubegate.io/v1", "kind": "ChangeReview", "response": answer})

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(directory / "tls.crt", directory / "tls.key")
        app = web.Application()
        app.router.add_post("/review", review)
        self.served = ServedApp(app, ssl_context=ctx)
        self.port = self.served.port

    def stop(self) -> None:
        self.served.stop()


def webhooks_yaml(port: int, ca: Path) -> str:
    return f"""
webhooks:
  - name: inspection
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    timeout: 1s
    failure_policy: Fail
    match: {{namespaces: ["wh-deny*", "wh-slow-fail*", "wh-garbage*", "wh-approve*", "wh-ok*"]}}
  - name: advisory
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    timeout: 1s
    failure_policy: Ignore
    match: {{namespaces: ["wh-slow-ignore*"]}}
  - name: cached
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    cache: 1m
    match: {{namespaces: ["wh-cached*"], verbs: [patch]}}
  - name: defaults
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    timeout: 1s
    match: {{namespaces: ["wh-default*"]}}
  - name: small
    url: https://127.0.0.1:{port}/review
    ca_file: {ca}
    failure_policy: Ignore
    max_review_bytes: 2048
    match: {{namespaces: ["wh-small*"]}}
"""


class Env:
    def __init__(self, gw: GatewayHandle, upstream: harness.RunningEmulator, clock: Clock, tmp: Path,
                 kubectl_path: str, checker: ReviewServer) -> None:
        self.gw, self.upstream, self.clock, self.tmp, self.checker = gw, upstream, clock, tmp, checker
        self.kubectl_path = kubectl_path
        self.direct = k8s.CoreV1Api(python_client(upstream.url, upstream.ca_file, upstream.admin_token))

    @property
    def ada(self) -> Kubectl:
        return self.as_user("ada", "kubegate:cluster-admins")

    def as_user(self, user: str, *groups: str) -> Kubectl:
        """kubectl with a token issued now, on the gateway's clock (tests move it by months)."""
        return Kubectl(self.kubectl_path, self.gw.kubeconfig(self.tmp / user, user, groups))

    def namespace(self, name: str) -> str:
        self.direct.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
        return name

    def approvals(self, user: str, *args: str, groups: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        kc = self.gw.kubeconfig(self.tmp / f"{user}-cli", user, groups)
        return subprocess.run([sys.executable, "-m", "kubegate", *args, "--kubeconfig", str(kc)],
                              capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, kubectl_path: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("change")
    checker = ReviewServer(tmp)
    upstream = harness.start(tmp / "emulator")
    clock = Clock()
    gw = start_gateway_in_process(tmp / "gw", upstream, clock=clock, limits=LIMITS, gate_files={
        "rules.yaml": RULES, "freeze.yaml": FREEZE, "webhooks.yaml": webhooks_yaml(checker.port, checker.ca_file)})
    try:
        yield Env(gw, upstream, clock, tmp, kubectl_path, checker)
    finally:
        gw.stop()
        upstream.stop()
        checker.stop()


@pytest.fixture(autouse=True)
def wednesday(env: Env) -> None:
    env.clock.now = ts("2026-11-25T12:00")


def ticket_of(stderr: str) -> str:
    assert "Approval ticket " in stderr, stderr
    return stderr.split("Approval ticket ")[1].split()[0]


@pytest.mark.kubectl
@pytest.mark.parametrize(("utc", "frozen"), [
    ("2026-12-18T04:59", False),  # 23:59 in New York: not yet (it would be inside if read as UTC)
    ("2026-12-18T05:01", True),   # 00:01 in New York
    ("2027-01-04T13:59", True),   # 08:59 in New York
    ("2027-01-04T14:00", False),  # 09:00 in New York: over
])
def test_a_calendar_freeze_window_honours_its_time_zone(env: Env, utc: str, frozen: bool) -> None:
    ns = env.namespace(f"frozen-{utc[:10]}-{utc[11:13]}{utc[14:]}")
    env.clock.now = ts(utc)
    out = env.ada("create", "configmap", "c", "-n", ns, check=False)
    if not frozen:
        assert out.returncode == 0, out.stderr
        return
    assert out.returncode == 1
    assert "change freeze year-end is in force until 2027-01-04T09:00:00-05:00 (the year-end trading freeze)" \
        in out.stderr
    assert "this change needs break-glass approval" in out.stderr
    assert "kubegate approvals approve" in out.stderr
    assert env.upstream.requests[-1].method != "POST" or f"/namespaces/{ns}/configmaps" not in env.upstream.requests[-1].path


@pytest.mark.kubectl
@pytest.mark.parametrize(("utc", "frozen"), [
    ("2026-11-27T16:59", False),  # Friday 17:59 in Berlin
    ("2026-11-27T17:00", True),   # Friday 18:00 in Berlin
    ("2026-11-30T06:59", True),   # Monday 07:59 in Berlin
    ("2026-11-30T07:00", False),  # Monday 08:00: 62 hours later
])
def test_a_recurring_freeze_window_follows_its_cron_in_its_zone(env: Env, utc: str, frozen: bool) -> None:
    ns = env.namespace(f"weekend-{utc[8:10]}-{utc[11:13]}{utc[14:]}")
    env.clock.now = ts(utc)
    out = env.ada("create", "configmap", "c", "-n", ns, check=False)
    assert (out.returncode == 1 and "change freeze weekend is in force" in out.stderr) == frozen, out.stderr


@pytest.mark.kubectl
def test_break_glass_through_a_freeze_is_an_approval_used_once(env: Env) -> None:
    ns = env.namespace("frozen-break-glass")
    env.clock.now = ts("2026-12-24T12:00")
    dan = env.as_user("dan", "kubegate:cluster-admins")
    refused = dan("create", "configmap", "hotfix", "-n", ns, check=False)
    ticket = ticket_of(refused.stderr)
    sre = env.approvals("sam", "approvals", "approve", ticket, groups=("kubegate:sre",))
    assert sre.returncode == 1 and "may not approve break-glass tickets" in sre.stderr
    ok = env.approvals("ada", "approvals", "approve", ticket, groups=("kubegate:cluster-admins",))
    assert ok.returncode == 0, ok.stderr
    assert "configmap/hotfix created" in dan("create", "configmap", "hotfix", "-n", ns).stdout
    oncall = env.as_user("olga", "kubegate:cluster-admins", "kubegate:oncall")
    assert oncall("create", "configmap", "exempt", "-n", ns).returncode == 0  # exempt group


@pytest.mark.kubectl
def test_rule_requires_approval_then_the_identical_retry_passes_exactly_once(env: Env) -> None:
    ns = env.namespace("prod-shop")
    dev = env.as_user("dev", "kubegate:cluster-admins")
    dev("create", "deployment", "web", "--image=nginx", "--replicas=3", "-n", ns)
    refused = dev("scale", "deployment", "web", "--replicas=0", "-n", ns, check=False)
    assert refused.returncode == 1 and "Error from server (Forbidden)" in refused.stderr
    assert "rule scale-to-zero-in-production (high): scaling a workload in a production namespace" in refused.stderr
    ticket = ticket_of(refused.stderr)
    again = dev("scale", "deployment", "web", "--replicas=0", "-n", ns, check=False)
    assert ticket_of(again.stderr) == ticket  # the same request waits on the same ticket

    own = env.approvals("dev", "approvals", "approve", ticket, groups=("kubegate:cluster-admins",))
    assert own.returncode == 1 and "nobody may approve their own request" in own.stderr
    shown = env.approvals("sam", "approvals", "show", ticket, groups=("kubegate:sre",))
    assert "pending" in shown.stdout and "scale-to-zero-in-production" in shown.stdout
    assert env.approvals("sam", "approvals", "approve", ticket, groups=("kubegate:sre",)).returncode == 0

    other = dev("scale", "deployment", "web", "--replicas=1", "-n", ns, check=False)  # not the approved change
    assert other.returncode == 0  # (1 replica is no rule's business)
    assert "scaled" in dev("scale", "deployment", "web", "--replicas=0", "-n", ns).stdout
    dev("scale", "deployment", "web", "--replicas=2", "-n", ns)
    third = dev("scale", "deployment", "web", "--replicas=0", "-n", ns, check=False)
    assert third.returncode == 1 and ticket_of(third.stderr) != ticket  # used once; a new ticket now
    steps = [(e["annotations"]["kubegate.io/approval-event"], e["user"]["username"]) for e in env.gw.audit_events()
             if e.get("annotations", {}).get("kubegate.io/approval-user") == "dev"
             and e["objectRef"]["name"] == ticket]
    assert steps == [("requested", "dev"), ("approved", "sam"), ("used", "dev")]


@pytest.mark.kubectl
def test_a_protobuf_create_deployment_is_judged_by_its_body(env: Env) -> None:
    ns = env.namespace("prod-proto")
    out = env.ada("create", "deployment", "zero", "--image=nginx", "--replicas=0", "-n", ns, check=False)
    assert out.returncode == 1 and "rule scale-to-zero-in-production" in out.stderr
    assert "could not be read" not in out.stderr  # decided on the decoded body, not conservatively
    created = [r for r in env.upstream.requests if r.method == "POST" and r.path.endswith(f"/{ns}/deployments")]
    assert created == []
    assert env.ada("create", "deployment", "two", "--image=nginx", "--replicas=2", "-n", ns).returncode == 0
    sent = [r for r in env.upstream.requests if r.method == "POST" and r.path.endswith(f"/{ns}/deployments")]
    assert sent and sent[-1].header("Content-Type")[0].startswith("application/vnd.kubernetes.protobuf")


def test_an_unreadable_body_gets_the_rules_conservative_outcome(env: Env) -> None:
    from tests.gateway.conftest import send

    ns = env.namespace("prod-garbled")
    resp = send(env.gw.port, env.gw.ca_file, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                headers={"Authorization": f"Bearer {env.gw.token('ada')}",
                         "Content-Type": "application/vnd.kubernetes.protobuf"}, body=b"k8s\x00\xff\xfe garbage")
    status = json.loads(resp.body)
    assert resp.status == 403 and "rule scale-to-zero-in-production" in status["message"]
    assert "the body could not be read" in status["message"]


@pytest.mark.kubectl
def test_rule_denials_and_rbac_escalation(env: Env) -> None:
    ns = env.namespace("rbac-test")
    out = env.ada("create", "clusterrolebinding", "oops", "--clusterrole=cluster-admin", "--user=mallory", check=False)
    assert out.returncode == 1
    assert "rule bind-cluster-admin (critical): binding cluster-admin grants everything" in out.stderr
    assert "Approval ticket" in out.stderr
    assert env.ada("create", "clusterrolebinding", "ok", "--clusterrole=view", "--user=x").returncode == 0
    api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
    with pytest.raises(ApiException) as err:
        api.delete_collection_namespaced_config_map(ns)
    assert err.value.status == 403 and "deletecollection-without-selector" in json.loads(err.value.body)["message"]
    api.delete_collection_namespaced_config_map(ns, label_selector="app=old")  # with a selector: fine


@pytest.mark.kubectl
def test_namespace_delete_and_protected_objects_need_approval(env: Env) -> None:
    ns = env.namespace("shop-protected")
    env.direct.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(
        name="pricing", labels={"kubegate.io/protected": "true"})))
    env.direct.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="scratch")))
    out = env.ada("delete", "configmap", "pricing", "-n", ns, check=False)
    assert "rule change-protected-object" in out.stderr
    assert env.ada("delete", "configmap", "scratch", "-n", ns).returncode == 0
    # kubectl's Kubectl-Command header is kept with the change: `policy replay` judges `kubectl_command` rules by it.
    deleted = [e for e in env.gw.audit_events() if e["verb"] == "delete"
               and (e.get("objectRef") or {}).get("name") == "scratch" and e["stage"] == "ResponseComplete"]
    assert [e["annotations"].get("kubegate.io/kubectl-command") for e in deleted] == ["kubectl delete"]
    out = env.ada("delete", "namespace", ns, check=False)
    assert out.returncode == 1 and "rule delete-namespace (critical)" in out.stderr


@pytest.mark.kubectl
def test_webhook_deny_reason_reaches_kubectl(env: Env) -> None:
    ns = env.namespace("wh-deny")
    out = env.ada("create", "configmap", "c", "-n", ns, check=False)
    assert out.returncode == 1
    assert "risk webhook inspection refused the change: inspection INC-314 is still open" in out.stderr
    review = env.checker.reviews[-1]
    assert review["kind"] == "ChangeReview" and review["request"]["user"]["username"] == "ada"
    assert review["request"]["object"]["metadata"]["name"] == "c"
    assert review["request"]["requestInfo"]["resource"] == "configmaps"


@pytest.mark.kubectl
@pytest.mark.parametrize(("ns", "passes", "message"), [
    ("wh-slow-fail", False, "risk webhook inspection timed out, and its failure policy refuses the change"),
    ("wh-slow-ignore", True, ""),
    ("wh-garbage", False, "risk webhook inspection failed: the answer is not a kubegate.io/v1 ChangeReview "
                          "(not even JSON), and its failure policy refuses the change"),
    ("wh-ok", True, ""),
])
def test_webhook_failures_follow_the_failure_policy(env: Env, ns: str, passes: bool, message: str) -> None:
    env.namespace(ns)
    out = env.ada("create", "configmap", "c", "-n", ns, check=False)
    assert (out.returncode == 0) == passes, out.stderr
    assert message in out.stderr


@pytest.mark.kubectl
@pytest.mark.parametrize("verb_args", [
    P(("create", "configmap", "c"), id="create"),
    P(("label", "namespace", "NS", "x=y"), id="patch"),
])
def test_a_failing_webhook_without_a_policy_stops_every_change(env: Env, verb_args: tuple[str, ...]) -> None:
    ns = env.namespace(f"wh-default-{verb_args[0]}")
    args = [a.replace("NS", ns) for a in verb_args]
    out = env.ada(*args, "-n", ns, check=False)
    assert out.returncode == 1
    assert "risk webhook defaults failed" in out.stderr and "refuses the change" in out.stderr


@pytest.mark.kubectl
def test_an_oversized_review_is_never_sent_and_the_change_refused(env: Env) -> None:
    ns = env.namespace("wh-small")
    seen = len(env.checker.reviews)
    big = env.ada("create", "configmap", "big", "-n", ns, "--from-literal=k=" + "x" * 4096, check=False)
    assert big.returncode == 1 and "too large for risk webhook small" in big.stderr, big.stderr
    assert "risk webhook small" in big.stderr
    assert len(env.checker.reviews) == seen  # not sent: its Ignore policy cannot be forced
    assert env.ada("create", "configmap", "small", "-n", ns).returncode == 0
    assert len(env.checker.reviews) == seen + 1


@pytest.mark.kubectl
def test_webhook_can_ask_for_approval(env: Env) -> None:
    ns = env.namespace("wh-approve")
    out = env.ada("create", "configmap", "c", "-n", ns, check=False)
    assert "risk webhook inspection asks for approval: peak hours" in out.stderr
    ticket = ticket_of(out.stderr)
    assert env.approvals("sam", "approvals", "approve", ticket, groups=("kubegate:sre",)).returncode == 0
    assert env.ada("create", "configmap", "c", "-n", ns).returncode == 0


def test_freeze_status_shows_now_and_next(env: Env) -> None:
    env.clock.now = ts("2026-11-28T12:00")  # Saturday: the weekend window is in force
    out = env.approvals("vic", "freeze", "status", groups=("kubegate:viewers",))
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "FROZEN now" in lines["weekend"] and "2026-11-27T18:00:00+01:00 -> 2026-11-30T08:00:00+01:00" in lines["weekend"]
    assert "next" in lines["year-end"] and "2026-12-18T00:00:00-05:00" in lines["year-end"]


def test_a_broken_rules_file_is_refused_by_reload_and_the_old_rules_keep_serving(env: Env) -> None:
    import urllib.request

    rules = env.gw.settings.path(env.gw.settings.gates.policy_dir) / "rules.yaml"
    good = rules.read_text()
    try:
        rules.write_text(good.replace("outcome: deny\n    match: {verbs: [deletecollection]}",
                                      "outcome: maybe\n    match: {verbs: [deletecollection]}"))
        metrics = f"http://127.0.0.1:{env.gw.metrics_port}/metrics"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if 'kubegate_policy_reloads_total{policy="gates",result="refused"} 1.0' in \
                    urllib.request.urlopen(metrics).read().decode():
                break
            time.sleep(0.1)
        else:
            pytest.fail("the broken rules file was not refused")
        api = k8s.CoreV1Api(python_client(env.gw.url, env.gw.ca_file, env.gw.token("ada")))
        with pytest.raises(ApiException) as err:
            api.delete_collection_namespaced_config_map("default")
        assert "deletecollection-without-selector" in json.loads(err.value.body)["message"]
    finally:
        rules.write_text(good)


def test_identical_reviews_are_answered_from_the_cache(env: Env) -> None:
    ns = env.namespace("wh-cached")
    env.direct.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="c")))
    seen = len(env.checker.reviews)
    for value in ("gold", "silver", "gold", "silver"):  # kubectl sends a patch only when the value changes
        env.ada("label", "configmap", "c", f"tier={value}", "--overwrite", "-n", ns)
    assert len(env.checker.reviews) == seen + 2  # two distinct changes, each asked once
    env.clock.now += 61
    env.ada("label", "configmap", "c", "tier=gold", "--overwrite", "-n", ns)
    assert len(env.checker.reviews) == seen + 3  # the cached answer has expired


@pytest.mark.kubectl
def test_a_delete_waiting_for_approval_costs_no_budget(env: Env) -> None:
    first, second = env.namespace("budget-a"), env.namespace("budget-b")
    nina = env.as_user("nina", "kubegate:cluster-admins")
    for _ in range(2):  # asking twice while the ticket is pending takes nothing from the 1/h budget
        waiting = nina("delete", "namespace", first, check=False)
        assert "rule delete-namespace" in waiting.stderr
    ticket = ticket_of(waiting.stderr)
    assert env.approvals("sam", "approvals", "approve", ticket, groups=("kubegate:sre",)).returncode == 0
    assert f'namespace "{first}" deleted' in nina("delete", "namespace", first).stdout
    out = nina("delete", "namespace", second, check=False)  # the one token is spent now
    assert "Error from server (TooManyRequests)" in out.stderr
    assert "has room for 0 more namespaces" in out.stderr


# -- approvals bind the exact request -----------------------------------------------------------

def _raw(env: Env, method: str, path: str, user: str = "ada", body: bytes | None = None) -> Any:
    token = env.gw.token(user, ["kubegate:cluster-admins"])
    return send(env.gw.port, env.gw.ca_file, method, path, headers={"Authorization": f"Bearer {token}"}, body=body)


def _approve_ticket_of(env: Env, resp: Any) -> str:
    assert resp.status == 403, resp.body
    ticket = ticket_of(json.loads(resp.body)["message"])
    assert env.approvals("sam", "approvals", "approve", ticket, groups=("kubegate:sre",)).returncode == 0
    return ticket


def test_an_approved_exec_admits_only_that_command(env: Env) -> None:
    ns = env.namespace("wh-approve-exec")
    env.direct.create_namespaced_pod(ns, k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p"), spec=k8s.V1PodSpec(
        containers=[k8s.V1Container(name="c", image="busybox")])))
    approved = f"/api/v1/namespaces/{ns}/pods/p/exec?command=cat&command=/etc/config&stdout=true"
    ticket = _approve_ticket_of(env, _raw(env, "POST", approved))
    shown = env.approvals("sam", "approvals", "show", ticket, groups=("kubegate:sre",)).stdout
    assert f"POST /api/v1/namespaces/{ns}/pods/p/exec?command=cat&command=%2Fetc%2Fconfig&stdout=true" in shown
    for other in ("command=sh&command=-c&command=rm+-rf+%2Fdata&stdout=true",  # another command
                  "command=cat&command=/etc/config&command=/etc/shadow&stdout=true",  # one argument more
                  "command=cat&command=/etc/config&stdout=true&stdin=true"):  # another option
        resp = _raw(env, "POST", f"/api/v1/namespaces/{ns}/pods/p/exec?{other}")
        assert resp.status == 403 and ticket_of(json.loads(resp.body)["message"]) != ticket
    # The approved request itself, with its query in another order and spelling: the same to Go.
    resp = _raw(env, "POST", f"/api/v1/namespaces/{ns}/pods/p/exec?stdout=true&command=cat&command=%2Fetc%2Fconfig")
    assert resp.status != 403, resp.body
    assert env.gw.front is not None
    assert [line for line in env.gw.front.seen() if "/exec?" in line] == \
        [f"POST /api/v1/namespaces/{ns}/pods/p/exec?command=cat&command=%2Fetc%2Fconfig&stdout=true"]


def test_an_approved_selector_admits_no_wider_one(env: Env) -> None:
    ns = env.namespace("wh-approve-selector")
    for name, labels in (("a", {"tier": "canary"}), ("b", {"tier": "stable"}), ("c", {})):
        env.direct.create_namespaced_config_map(ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(
            name=name, labels=labels)))
    ticket = _approve_ticket_of(env, _raw(env, "DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier%3Dcanary"))
    resp = _raw(env, "DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier")
    assert resp.status == 403 and ticket_of(json.loads(resp.body)["message"]) != ticket
    assert sorted(c.metadata.name for c in env.direct.list_namespaced_config_map(ns).items) == ["a", "b", "c"]
    assert _raw(env, "DELETE", f"/api/v1/namespaces/{ns}/configmaps?labelSelector=tier%3Dcanary").status == 200
    assert sorted(c.metadata.name for c in env.direct.list_namespaced_config_map(ns).items) == ["b", "c"]


def test_an_approved_body_admits_no_other_body_or_content_type(env: Env) -> None:
    ns = env.namespace("wh-approve-body")
    path = f"/api/v1/namespaces/{ns}/configmaps"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
    refused = _raw(env, "POST", path, body=body.encode())
    pending = env.approvals("sam", "approvals", "show", ticket_of(json.loads(refused.body)["message"]),
                            groups=("kubegate:sre",)).stdout
    assert '"k": "v"' in pending  # the approver reads the body, not only its digest
    ticket = _approve_ticket_of(env, refused)
    shown = env.approvals("sam", "approvals", "show", ticket, groups=("kubegate:sre",)).stdout
    assert '"k": "v"' not in shown and "not kept once the ticket is approved" in shown  # decided: the body goes
    other = body.replace('"v"', '"w"').encode()
    resp = _raw(env, "POST", path, body=other)
    assert resp.status == 403 and ticket_of(json.loads(resp.body)["message"]) != ticket


def test_a_change_ticket_does_not_pass_a_freeze(env: Env) -> None:
    ns = env.namespace("frozen-glass")
    env.clock.now = ts("2026-12-18T04:30")  # 23:30 in New York: the year-end freeze starts at midnight
    try:
        first = _raw(env, "DELETE", f"/api/v1/namespaces/{ns}", user="nora")
        assert "rule delete-namespace" in json.loads(first.body)["message"]
        ticket = _approve_ticket_of(env, first)
        env.clock.now = ts("2026-12-18T05:05")  # 00:05: frozen; the change ticket is still within its hour
        retry = _raw(env, "DELETE", f"/api/v1/namespaces/{ns}", user="nora")
        message = json.loads(retry.body)["message"]
        assert retry.status == 403 and "break-glass" in message and ticket_of(message) != ticket
        env.direct.read_namespace(ns)  # still there
    finally:
        env.clock.now = Clock().now
