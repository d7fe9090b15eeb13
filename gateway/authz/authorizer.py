"""Authorization decisions with Casbin: the one module that imports casbin.

Allow rules live in one enforcer per subject and are asked once per principal (the
caller, its groups, `*`, and every role those hold in the request's scope). Deny rules live in a
second enforcer asked once with the whole principal set, so a deny can say "everyone who lacks
role X". Each enforcer's `enforce_ex` names the rule it matched, which becomes the audit
annotation and the reason in a 403.

pycasbin re-parses its matcher on every call (~100 µs; `_Enforcer` builds it once instead), and
walks every rule of an enforcer through an interpreter, so decisions are cached per request
tuple, and role expansion per (user, groups, scope). Both caches belong to one Authorizer: a
policy reload builds a new Authorizer and swaps it in whole, so nothing stale survives it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import casbin
from casbin.model import Model
from casbin.persist.adapter import Adapter

from . import policy
from ..config.hot_reload import Watched
from ..identity.identity import Identity
from .policy import Binding, PolicySet, Rule
from ..request.info import RequestInfo


# pycasbin logs the whole model and policy at INFO on every load (and on every hot reload): noise in
# the gateway's log, and the policy's content is the policy files' business. Its warnings still show.
logging.getLogger("casbin").setLevel(logging.WARNING)

DECISION_CACHE = 100_000
PRINCIPAL_CACHE = 20_000
_REQUIRED_MODEL = ("r = sub, dom, obj, act, name", "p = sub, dom, obj, act, name")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: Rule | None

    @property
    def reason(self) -> str:
        if self.rule is None:
            return "no rule allows it"
        return f"{'allowed' if self.allowed else 'denied'} by rule {self.rule.id} ({self.rule.source})"


def request_object(info: RequestInfo) -> str:
    """The OBJECT policies name: resource[.group][/subresource], or the URL path."""
    return info.object_ref if info.is_resource else info.path


def describe_refusal(user: str, cluster: str, info: RequestInfo, decision: Decision) -> str:
    if info.is_resource:
        what = f"{info.verb} {request_object(info)}" + (f' "{info.name}"' if info.name else "")
        where = (f'in namespace "{info.namespace}" of cluster "{cluster}"' if info.namespace
                 else f'of cluster "{cluster}"')
    else:
        what, where = f"{info.verb} {info.path}", f'on cluster "{cluster}"'
    return f'kubegate: user "{user}" may not {what} {where} ({decision.reason})'


class _RulesAdapter(Adapter):
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    def load_policy(self, model: Any) -> None:
        for rule in self.rules:
            model.add_policy("p", "p", list(rule.fields()))


class _Enforcer(casbin.Enforcer):
    """pycasbin builds its matcher (an ast.parse and an evaluator) on every enforce call; an
    enforcer's matcher text never changes, so it is built once and given each call's functions."""

    _expression: Any = None
    _expression_text = ""

    def _get_expression(self, expr: str, functions: Any = None) -> Any:
        if self._expression is None or expr != self._expression_text:
            self._expression = casbin.Enforcer._get_expression(expr, functions)
            self._expression_text = expr
        else:
            self._expression.functions = functions
        return self._expression


def _enforcer(ps: PolicySet, rules: list[Rule], *, subject_match: Callable[[Any, str], bool]) -> Any:
    model = Model()
    model.load_model_from_text(ps.model_text)
    enforcer = _Enforcer(model, _RulesAdapter(rules))
    enforcer.add_function("subjectMatch", subject_match)
    enforcer.add_function("scopeMatch", policy.scope_match)
    enforcer.add_function("objectMatch", policy.object_match)
    enforcer.add_function("verbMatch", policy.verb_match)
    enforcer.add_function("nameMatch", policy.name_match)
    return enforcer


ExtraBindings = Callable[[str], Iterable[Binding]]


class Authorizer:
    def __init__(self, ps: PolicySet, extra_bindings: ExtraBindings | None = None) -> None:
        missing = [line for line in _REQUIRED_MODEL if line not in ps.model_text]
        if missing:
            raise policy.PolicyError([f"{ps.directory}/model.conf: must define {', '.join(missing)}"])
        self.policy = ps
        allows = [r for r in ps.rules if r.effect == "allow"]
        denies = [r for r in ps.rules if r.effect == "deny"]
        self._allow_by_subject: dict[str, list[Rule]] = {}
        for r in allows:
            self._allow_by_subject.setdefault(r.subject, []).append(r)
        # One enforcer per subject: Casbin scans every rule it holds on each call, so each
        # principal is asked only about its own rules (FastEnforcer's index does not fit rules
        # whose scope is a glob).
        self._allow = {s: _enforcer(ps, rs, subject_match=lambda a, b: a == b)
                       for s, rs in self._allow_by_subject.items()}
        self._deny = _enforcer(ps, denies, subject_match=policy.subject_in)
        self._rules = {(r.effect, r.fields()): r for r in reversed(ps.rules)}  # first definition wins
        self._edges: dict[str, list[Binding]] = {}
        for b in ps.bindings:
            self._edges.setdefault(b.subject, []).append(b)
        self._denies = denies
        self._named_objects = [r.obj for r in ps.rules if r.name != "*"]
        self._names_matter: dict[str, bool] = {}
        self.extra_bindings = extra_bindings
        self._decisions: OrderedDict[tuple[Any, ...], Decision] = OrderedDict()
        self._principals: OrderedDict[tuple[Any, ...], frozenset[str]] = OrderedDict()
        self._probe()

    def _probe(self) -> None:
        """Evaluate the matcher once per enforcer: a model.conf that names an unknown function (or
        cannot be evaluated at all) is refused here, by `policy check` and hot reload, rather than
        turning every request into a 500 after it was loaded."""
        try:
            for subject, enforcer in self._allow.items():
                enforcer.enforce_ex(subject, "probe:probe", "probe", "get", "probe")
            self._deny.enforce_ex(frozenset({"*"}), "probe:probe", "probe", "get", "probe")
        except Exception as e:  # casbin/simpleeval raise many kinds: any of them means "cannot serve"
            raise policy.PolicyError([f"{self.policy.directory}/model.conf: the matcher cannot be evaluated: "
                                      f"{type(e).__name__}: {e}"]) from None

    def invalidate(self) -> None:
        """Drop cached decisions (time-bound grants changed)."""
        self._decisions.clear()
        self._principals.clear()

    def principals(self, identity: Identity, scope: str) -> frozenset[str]:
        key = (identity.user, identity.groups, scope)
        cached = self._principals.get(key)
        if cached is not None:
            return cached
        start = {"*", f"user:{identity.user}", *(f"group:{g}" for g in identity.upstream_groups())}
        seen, queue = set(start), list(start)
        extra = list(self.extra_bindings(identity.user)) if self.extra_bindings else []
        while queue:
            subject = queue.pop()
            edges = self._edges.get(subject, [])
            if subject == f"user:{identity.user}":
                edges = [*edges, *extra]
            for b in edges:
                if b.role not in seen and policy.scope_match(scope, b.scope):
                    seen.add(b.role)
                    queue.append(b.role)
        result = frozenset(seen)
        self._principals[key] = result
        if len(self._principals) > PRINCIPAL_CACHE:
            self._principals.popitem(last=False)
        return result

    def decide(self, identity: Identity, cluster: str, info: RequestInfo) -> Decision:
        scope = f"{cluster}:{info.namespace}"
        obj = request_object(info)
        names_matter = self._names_matter.get(obj)
        if names_matter is None:  # only rules naming objects make the name part of the decision
            names_matter = any(policy.object_match(obj, p) for p in self._named_objects)
            self._names_matter[obj] = names_matter
        key = (identity.user, identity.groups, scope, obj, info.verb, info.name if names_matter else "")
        cached = self._decisions.get(key)
        if cached is not None:
            self._decisions.move_to_end(key)
            return cached
        decision = self._evaluate(self.principals(identity, scope), scope, obj, info.verb, info.name)
        self._decisions[key] = decision
        if len(self._decisions) > DECISION_CACHE:
            self._decisions.popitem(last=False)
        return decision

    @staticmethod
    def _may_match(rule: Rule, scope: str, obj: str, verb: str, name: str) -> bool:
        # The same functions the Casbin matcher calls: a pre-check that spares Casbin's per-call
        # cost (it re-parses its matcher every time) for principals with no candidate rule.
        return (policy.verb_match(verb, rule.verbs) and policy.object_match(obj, rule.obj)
                and policy.scope_match(scope, rule.scope) and policy.name_match(name, rule.name))

    def _evaluate(self, principals: frozenset[str], scope: str, obj: str, verb: str, name: str) -> Decision:
        if any(policy.subject_in(principals, r.subject) and self._may_match(r, scope, obj, verb, name)
               for r in self._denies):
            denied, explain = self._deny.enforce_ex(principals, scope, obj, verb, name)
            if denied:
                return Decision(False, self._rules.get(("deny", tuple(explain))))
        for subject in sorted(principals):
            candidates = self._allow_by_subject.get(subject, ())
            if any(self._may_match(r, scope, obj, verb, name) for r in candidates):
                allowed, explain = self._allow[subject].enforce_ex(subject, scope, obj, verb, name)
                if allowed:
                    return Decision(True, self._rules.get(("allow", tuple(explain))))
        return Decision(False, None)

    def decide_for(self, user: str, groups: Iterable[str], cluster: str, info: RequestInfo) -> Decision:
        return self.decide(Identity(user=user, groups=tuple(groups)), cluster, info)


class PolicyHolder(Watched[Authorizer]):
    """The Authorizer in force, and the watch that replaces it when the policy files change."""

    def __init__(self, directory: Path, extra_bindings: ExtraBindings | None = None,
                 on_reload: Callable[[bool, list[str]], None] | None = None) -> None:
        self.extra_bindings = extra_bindings
        super().__init__(directory, lambda: Authorizer(policy.load_checked(directory), self.extra_bindings),
                         what="authorization policy", describe=_describe,
                         errors=(policy.PolicyError,), on_reload=on_reload)

    def decide_own(self, identity: Identity, cluster: str, verb: str, resource: str, *, namespace: str = "",
                   name: str = "") -> Decision:
        """A decision on one of kubegate's own objects (`<resource>.kubegate.io`: access requests,
        approval tickets, breakers), by the policy in force, as for any Kubernetes object."""
        info = RequestInfo(path="", verb=verb, is_resource=True, api_group="kubegate.io", namespace=namespace,
                           resource=resource, name=name)
        return self.current.decide(identity, cluster, info)

    def set_extra_bindings(self, extra_bindings: ExtraBindings) -> None:
        """Bindings from outside the files (approved access requests), for this and every later set."""
        self.extra_bindings = extra_bindings
        self.current.extra_bindings = extra_bindings
        self.current.invalidate()


def _describe(a: Authorizer) -> str:
    return f"{len(a.policy.rules)} rules, {len(a.policy.bindings)} bindings"
