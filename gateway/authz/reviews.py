"""`kubectl auth can-i` told the truth: SelfSubjectAccessReview and SelfSubjectRulesReview answered
from kubegate's policy, together with the cluster's own answer.

Forwarded as they are, these reviews are answered by the cluster's RBAC alone: a viewer is told
`yes`, then kubegate refuses the request. So the gateway answers them itself: a review is allowed
when kubegate's policy (with the caller's approved grants) allows it AND the cluster does (asked as
the caller, impersonated). The reason names the deciding rule; gates that may still refuse at
request time (delete budgets, freeze windows, approval rules) are named in it, not reported as a
denial. A rules review lists what kubegate's allow rules grant in the namespace, each kept only
where the cluster's own rules cover it; deny rules cannot be written as RBAC rules, so their
presence makes the list `incomplete`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from ..identity.identity import Identity
from ..request.info import RequestInfo
from . import policy
from .authorizer import Authorizer

GROUP = "authorization.k8s.io"
ACCESS, RULES = "selfsubjectaccessreviews", "selfsubjectrulesreviews"


class ReviewError(ValueError):
    pass


def is_review(info: RequestInfo) -> bool:
    return (info.is_resource and info.api_group == GROUP and info.verb == "create" and not info.subresource
            and info.resource in (ACCESS, RULES))


def review_info(spec: Any) -> RequestInfo:
    """The request a SelfSubjectAccessReview asks about, as the gateway would classify it."""
    if not isinstance(spec, dict):
        raise ReviewError("spec must be an object")
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        return RequestInfo(path="", verb=str(ra.get("verb") or ""), is_resource=True,
                           api_group=str(ra.get("group") or ""), api_version=str(ra.get("version") or ""),
                           namespace=str(ra.get("namespace") or ""), resource=str(ra.get("resource") or ""),
                           subresource=str(ra.get("subresource") or ""), name=str(ra.get("name") or ""))
    if isinstance(nra, dict):
        return RequestInfo(path=str(nra.get("path") or ""), verb=str(nra.get("verb") or ""), is_resource=False)
    raise ReviewError("spec needs resourceAttributes or nonResourceAttributes")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


def access(authorizer: Authorizer, identity: Identity, cluster: str, info: RequestInfo,
           cluster_status: dict[str, Any], later_gates: list[str]) -> Verdict:
    decision = authorizer.decide(identity, cluster, info)
    theirs = bool(cluster_status.get("allowed"))
    if not decision.allowed:
        return Verdict(False, f"kubegate: {decision.reason}")
    if not theirs:
        why = cluster_status.get("reason") or "its RBAC does not allow it"
        return Verdict(False, f"kubegate: {decision.reason}; but the cluster does not allow it ({why})")
    note = f"; at request time {', '.join(later_gates)} may still refuse or hold it" if later_gates else ""
    return Verdict(True, f"kubegate: {decision.reason}; the cluster allows it too{note}")


def _rbac_rules(rule: policy.Rule) -> list[dict[str, Any]]:
    """A policy rule as RBAC rules: one per API group, so that no (group, resource) pair is claimed
    that the rule does not grant (`deployments.apps|configmaps` is not `configmaps.apps`: RBAC and
    kubectl read a rule's groups and resources as their cross product)."""
    verbs = sorted(policy.expand_verbs(rule.verbs)) if rule.verbs != "*" else ["*"]
    names = [] if rule.name == "*" else rule.name.split("|")
    if rule.obj.startswith("/"):
        return [{"verbs": verbs, "nonResourceURLs": [rule.obj]}]
    by_group: dict[str, list[str]] = {}
    for obj in rule.obj.split("|"):
        if obj == "**":
            by_group.setdefault("*", []).extend(["*", "*/*"])
            continue
        main, _, sub = obj.partition("/")
        resource, _, group = main.partition(".")
        by_group.setdefault("*" if resource == "*" and not group else group, []).append(
            f"{resource}/{sub}" if sub else resource)
    out = []
    for group, resources in sorted(by_group.items()):
        one: dict[str, Any] = {"verbs": verbs, "apiGroups": [group], "resources": sorted(set(resources))}
        if names:
            one["resourceNames"] = names
        out.append(one)
    return out


def _covered(mine: dict[str, Any], theirs: list[dict[str, Any]], kind: str) -> bool:
    """Whether one of the cluster's rules covers all of `mine` (globs as RBAC reads them)."""
    def all_in(values: list[str], allowed: list[str]) -> bool:
        return all(any(a == "*" or fnmatch.fnmatchcase(v, a) for a in allowed) for v in values)
    for rule in theirs:
        if not all_in(mine["verbs"], rule.get("verbs") or []):
            continue
        if kind == "nonResource":
            if all_in(mine["nonResourceURLs"], rule.get("nonResourceURLs") or []):
                return True
        elif all_in(mine["apiGroups"], rule.get("apiGroups") or []) and \
                all_in(mine["resources"], rule.get("resources") or []):
            return True
    return False


def rules(authorizer: Authorizer, identity: Identity, cluster: str, namespace: str,
          cluster_status: dict[str, Any]) -> dict[str, Any]:
    scope = f"{cluster}:{namespace}"
    principals = authorizer.principals(identity, scope)
    resource_rules, url_rules = [], []
    for rule in authorizer.policy.rules:
        if rule.effect != "allow" or rule.subject not in principals or not policy.scope_match(scope, rule.scope):
            continue
        for converted in _rbac_rules(rule):
            if "nonResourceURLs" in converted:
                if _covered(converted, cluster_status.get("nonResourceRules") or [], "nonResource"):
                    url_rules.append(converted)
            elif _covered(converted, cluster_status.get("resourceRules") or [], "resource"):
                resource_rules.append(converted)
    denies = [r for r in authorizer.policy.rules if r.effect == "deny" and policy.subject_in(principals, r.subject)
              and policy.scope_match(scope, r.scope)]
    status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": url_rules,
                              "incomplete": bool(denies) or bool(cluster_status.get("incomplete"))}
    if denies:
        status["evaluationError"] = ("kubegate deny rules apply too and are not listed: "
                                     + "; ".join(f"{r.id} ({r.source})" for r in denies[:5]))
    return status
