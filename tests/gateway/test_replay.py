"""The replay's reading of audit events: what it judges again and what it refuses to guess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubegate.gateway import replay
from kubegate.gateway.authz import policy as authz_policy
from kubegate.gateway.gates import policy as gate_policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _event(verb: str, resource: str, *, ns: str = "shop", name: str = "", query: str = "", body: Any = None,
           user: str = "ada", groups: tuple[str, ...] = ("kubegate:cluster-admins",), **annotations: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "auditID": f"id-{verb}-{resource}-{name}-{len(query)}",
        "stage": "ResponseComplete", "verb": verb, "requestURI": f"/api/v1/namespaces/{ns}/{resource}"
        + (f"?{query}" if query else ""),
        "user": {"username": user, "groups": [*groups, "system:authenticated"]},
        "objectRef": {"resource": resource, "namespace": ns, "name": name, "apiVersion": "v1"},
        "requestReceivedTimestamp": "2026-11-25T10:00:00.000000Z",  # a Wednesday: no weekend freeze
        "annotations": {"kubegate.io/cluster": "hz-1", "authorization.k8s.io/decision": "allow", **annotations}}
    if body is not None:
        event["requestObject"] = body
    return event


def _replay(tmp_path: Path, events: list[dict[str, Any]]) -> replay.Report:
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    judge = replay.Judge(authz_policy.load_checked(POLICIES / "authz"),
                         gate_policy.load_checked(POLICIES / "gates").change)
    return replay.replay([log], judge)


def test_kubectl_command_is_replayed_from_its_annotation(tmp_path: Path) -> None:
    forced = _event("delete", "configmaps", name="a", **{"kubegate.io/kubectl-command": "kubectl replace"})
    report = _replay(tmp_path, [forced, _event("delete", "configmaps", name="b")])
    # The recorded delete under `kubectl replace --force` did not ask for approval; the policy does.
    assert [(f.request.info.name, f.new.by, f.new.outcome) for f in report.flips] == [("a", "rule replace-force", "approval")]


def test_what_an_event_lacks_is_not_guessed(tmp_path: Path) -> None:
    patch = _event("patch", "deployments", name="web", body={"spec": {"replicas": 0}}, ns="payments")
    patch["objectRef"]["apiGroup"] = "apps"
    metadata_only = _event("create", "deployments", name="web2", ns="payments")
    metadata_only["objectRef"]["apiGroup"] = "apps"
    selected = _event("deletecollection", "pods", query="labelSelector=app%3Dweb")
    report = _replay(tmp_path, [patch, metadata_only, selected])
    assert report.flips == []
    reasons = {rule: why for (rule, why) in report.unreplayable}
    assert {why for (rule, why) in report.unreplayable if rule == "scale-to-zero-in-production"} == {
        "a patch is judged by the object it leaves, and the live object is not in audit events",
        "the request body was not recorded (audit level Metadata)"}
    assert "selector selects" in reasons["deletecollection-without-selector"]


def test_a_recorded_body_is_judged(tmp_path: Path) -> None:
    create = _event("create", "deployments", name="web", body={"spec": {"replicas": 0}}, ns="payments")
    create["objectRef"]["apiGroup"] = "apps"
    report = _replay(tmp_path, [create])
    assert [(f.old.outcome, f.new.outcome, f.new.by) for f in report.flips] == [
        ("allow", "approval", "rule scale-to-zero-in-production")]


def test_one_request_per_audit_id_and_refusals_before_authorization_skipped(tmp_path: Path) -> None:
    watch = _event("watch", "pods")
    started = {**watch, "stage": "ResponseStarted"}
    unauthenticated = {**_event("get", "pods"), "auditID": "x", "annotations": {"kubegate.io/decision": "deny"}}
    report = _replay(tmp_path, [started, watch, unauthenticated])
    assert report.requests == 1
    assert sum(report.skipped.values()) == 1
