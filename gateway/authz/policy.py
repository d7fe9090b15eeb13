"""Authorization policy as files: loading with file:line, and the checks `kubegate policy check` runs.

A policy directory holds `model.conf` (the Casbin model) and `*.csv` files of lines:

    p, SUBJECT, SCOPE, OBJECT, VERBS, NAME, allow|deny[, ID]
    g, SUBJECT, ROLE, SCOPE

SUBJECT   `user:NAME`, `group:NAME`, `role:NAME`, `*` (everyone); on deny lines also
          `!role:a|role:b` (everyone who holds none of those).
SCOPE     `CLUSTER:NAMESPACE` with globs: `*:*` everywhere, `hz-1:shop`, `*:team-*`; cluster-scoped
          objects and non-resource URLs have an empty namespace (`hz-1:`), which `*` also matches.
OBJECT    `RESOURCE[.GROUP][/SUBRESOURCE]` (`pods`, `deployments.apps`, `pods/exec`) with globs in
          which `*` does not cross `/` (so `*` never grants a subresource; `*/*` or `pods/*` do),
          `**` for every resource; or a non-resource URL (`/version`, `/openapi/*`: a trailing `*` is a
          prefix, as in Kubernetes RBAC). Only patterns that start with `/` match non-resource URLs
          (`*` and `**` never do; `/*` is every one).
VERBS     `*`, a verb, or `|`-separated verbs; `read` = get|list|watch, `write` = create|update|
          patch|delete|deletecollection.
NAME      object name glob, or `|`-separated names (`*` for any).

ID        the rule's name (`viewers-read`: lowercase letters, digits, `-`, `.`), unique in the set.
          Refusals, audit events, `auth can-i` and test cases name rules by it, never by file:line,
          so comments and reordering change nothing. Without one a rule is named by its file and a
          hash of its fields (`roles.9c1e04b2`): stable too, but it changes when the rule does.

A deny that matches always wins over any allow.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

VERB_GROUPS = {"read": ("get", "list", "watch"),
               "write": ("create", "update", "patch", "delete", "deletecollection")}
RESOURCE_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
                            "impersonate", "bind", "escalate", "approve", "use"})
NONRESOURCE_VERBS = frozenset({"get", "post", "put", "patch", "delete", "head"})
# Resources of the built-in API groups; a literal one outside this list is most likely a typo.
# Resources of other groups (custom resources) are taken as written.
BUILTIN_RESOURCES = frozenset("""
bindings componentstatuses configmaps endpoints events limitranges namespaces nodes persistentvolumeclaims
persistentvolumes pods podtemplates replicationcontrollers resourcequotas secrets serviceaccounts services
controllerrevisions.apps daemonsets.apps deployments.apps replicasets.apps statefulsets.apps
cronjobs.batch jobs.batch horizontalpodautoscalers.autoscaling
ingresses.networking.k8s.io ingressclasses.networking.k8s.io networkpolicies.networking.k8s.io
poddisruptionbudgets.policy clusterrolebindings.rbac.authorization.k8s.io clusterroles.rbac.authorization.k8s.io
rolebindings.rbac.authorization.k8s.io roles.rbac.authorization.k8s.io
csidrivers.storage.k8s.io csinodes.storage.k8s.io storageclasses.storage.k8s.io volumeattachments.storage.k8s.io
customresourcedefinitions.apiextensions.k8s.io mutatingwebhookconfigurations.admissionregistration.k8s.io
validatingwebhookconfigurations.admissionregistration.k8s.io leases.coordination.k8s.io
priorityclasses.scheduling.k8s.io runtimeclasses.node.k8s.io endpointslices.discovery.k8s.io
certificatesigningrequests.certificates.k8s.io tokenreviews.authentication.k8s.io
selfsubjectreviews.authentication.k8s.io selfsubjectaccessreviews.authorization.k8s.io
selfsubjectrulesreviews.authorization.k8s.io subjectaccessreviews.authorization.k8s.io
localsubjectaccessreviews.authorization.k8s.io events.events.k8s.io
accessrequests.kubegate.io breakers.kubegate.io approvals.kubegate.io brakes.kubegate.io tokenrevocations.kubegate.io
""".split())
BUILTIN_GROUPS = frozenset(r.split(".", 1)[1] for r in BUILTIN_RESOURCES if "." in r) | {""}
SUBRESOURCES = frozenset({"status", "scale", "log", "exec", "attach", "portforward", "proxy", "eviction",
                          "binding", "finalize", "ephemeralcontainers", "resize", "token", "approval"})

_SUBJECT_RE = re.compile(r"^(\*|(user|group|role):[^\s,|!]+)$")
_SCOPE_RE = re.compile(r"^[^\s:]+:[^\s:]*$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{0,62}$")


@dataclass(frozen=True)
class Source:
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Rule:
    subject: str
    scope: str
    obj: str
    verbs: str
    name: str
    effect: str  # allow | deny
    source: Source
    given_id: str = ""

    @property
    def id(self) -> str:
        if self.given_id:
            return self.given_id
        stem = self.source.file.rsplit("/", 1)[-1].removesuffix(".csv")
        return f"{stem}.{hashlib.sha256(self.text().encode()).hexdigest()[:8]}"

    def fields(self) -> tuple[str, str, str, str, str]:
        return self.subject, self.scope, self.obj, self.verbs, self.name

    def text(self) -> str:
        return f"p, {self.subject}, {self.scope}, {self.obj}, {self.verbs}, {self.name}, {self.effect}"


@dataclass(frozen=True)
class Binding:
    subject: str
    role: str
    scope: str
    source: Source


@dataclass
class PolicySet:
    directory: Path
    model_text: str
    rules: list[Rule] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: message"
    warnings: list[str] = field(default_factory=list)  # "file:line: message"; serving goes on
    revision: str = ""  # a content hash of the set: which policy decided, in every audit event

    @property
    def ok(self) -> bool:
        return not self.problems


class PolicyError(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))


# -- matching (shared by the Casbin matcher functions and by the checks) ------------------------

# What mints a credential (or reads someone else's standing): a token or certificate made through
# the gateway works against the apiserver directly, past every gate and the audit. Break-glass only.
CREDENTIAL_MINTING = (("serviceaccounts/token", "create"), ("certificatesigningrequests.certificates.k8s.io", "create"),
                      ("certificatesigningrequests.certificates.k8s.io/approval", "update"),
                      ("tokenreviews.authentication.k8s.io", "create"),
                      ("subjectaccessreviews.authorization.k8s.io", "create"))
BREAK_GLASS = "role:break-glass"


def _credential_grants(allows: list["Rule"], denies: list["Rule"]) -> list[str]:
    """Warnings for allow rules that let a subject other than break-glass mint credentials, where no
    deny rule (everywhere, `*:*`) takes it back."""
    out = []
    for rule in allows:
        if rule.subject == BREAK_GLASS:
            continue
        granted = [f"{verb} {obj}" for obj, verb in CREDENTIAL_MINTING
                   if object_match(obj, rule.obj) and verb_match(verb, rule.verbs)
                   and not any(d.scope == "*:*" and object_match(obj, d.obj) and verb_match(verb, d.verbs)
                               and subject_in(frozenset({rule.subject}), d.subject) for d in denies)]
        if granted:
            out.append(f"{rule.source}: {rule.subject} may {', '.join(granted)}: that mints a credential that works "
                       "against the apiserver directly, past every gate and the audit; grant it through "
                       f"{BREAK_GLASS} only (`kubegate docs security`: \"Minting credentials\")")
    return out


@functools.lru_cache(maxsize=65536)  # pure, called per rule per decision on few distinct values
def expand_verbs(pattern: str) -> frozenset[str]:
    out: set[str] = set()
    for part in pattern.split("|"):
        out.update(VERB_GROUPS.get(part, (part,)))
    return frozenset(out)


@functools.lru_cache(maxsize=65536)  # pure, called per rule per decision on few distinct values
def verb_match(verb: str, pattern: str) -> bool:
    return pattern == "*" or verb in expand_verbs(pattern)


def _glob(value: str, pattern: str, separator: str | None) -> bool:
    if pattern in ("*", "**") and separator is None:
        return True
    if separator is None:
        return fnmatch.fnmatchcase(value, pattern)
    if pattern == "**":
        return True
    vparts, pparts = value.split(separator), pattern.split(separator)
    return len(vparts) == len(pparts) and all(fnmatch.fnmatchcase(v, p) for v, p in zip(vparts, pparts))


@functools.lru_cache(maxsize=65536)  # pure, called per rule per decision on few distinct values
def object_match(obj: str, pattern: str) -> bool:
    if "|" in pattern:
        return any(object_match(obj, p) for p in pattern.split("|"))
    if obj.startswith("/") or pattern.startswith("/"):
        # Non-resource URLs are matched only by patterns that are URLs themselves: `*` and `**`
        # never reach `/logs/`, `/debug/pprof/` or `/metrics`.
        if not (obj.startswith("/") and pattern.startswith("/")):
            return False
        if pattern.endswith("*"):
            return obj.startswith(pattern[:-1])
        return obj == pattern
    if pattern == "**":
        return True
    return _glob(obj, pattern, "/")


@functools.lru_cache(maxsize=65536)  # pure, called per rule per decision on few distinct values
def scope_match(scope: str, pattern: str) -> bool:
    cluster, _, namespace = scope.partition(":")
    pcluster, _, pnamespace = pattern.partition(":")
    return fnmatch.fnmatchcase(cluster, pcluster) and fnmatch.fnmatchcase(namespace, pnamespace)


@functools.lru_cache(maxsize=65536)  # pure, called per rule per decision on few distinct values
def name_match(name: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in pattern.split("|"))


def subject_in(principals: frozenset[str], pattern: str) -> bool:
    """Deny-rule subjects: `*`, one principal, or `!a|b` = holds none of them."""
    if pattern == "*":
        return True
    if pattern.startswith("!"):
        return not any(p in principals for p in pattern[1:].split("|"))
    return pattern in principals


# -- loading -----------------------------------------------------------------------------------

def _without_comment(raw: str) -> str:
    """The line without its `#` comment; a `#` inside double quotes is text (`"user:https://idp#alice"`)."""
    quoted = False
    for i, ch in enumerate(raw):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return raw[:i].strip()
    return raw.strip()


def _split(line: str) -> list[str]:
    return [c.strip() for c in next(csv.reader(io.StringIO(line), skipinitialspace=True))]


def load(directory: Path | str) -> PolicySet:
    """Read a policy directory; syntax and semantic problems are collected in `problems`."""
    directory = Path(directory)
    model = directory / "model.conf"
    if not directory.is_dir():
        return PolicySet(directory, "", problems=[f"{directory}: not a directory"])
    if not model.is_file():
        return PolicySet(directory, "", problems=[f"{model}: missing (the Casbin model)"])
    ps = PolicySet(directory, model.read_text())
    files = sorted(directory.glob("*.csv"))
    content = hashlib.sha256(ps.model_text.encode())
    for path in files:
        content.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    ps.revision = content.hexdigest()[:16]
    if not files:
        ps.problems.append(f"{directory}: no *.csv policy files")
    for path in files:
        rel = str(path.relative_to(directory.parent)) if directory.parent != path.parent else path.name
        for number, raw in enumerate(path.read_text().splitlines(), start=1):
            line = _without_comment(raw)
            if not line:
                continue
            where = Source(rel, number)
            try:
                cells = _split(line)
            except (csv.Error, StopIteration) as e:
                ps.problems.append(f"{where}: unreadable line: {e}")
                continue
            _parse_line(ps, cells, where)
    check(ps)
    return ps


def _parse_line(ps: PolicySet, cells: list[str], where: Source) -> None:
    kind = cells[0]
    if kind == "p":
        if len(cells) not in (7, 8):
            ps.problems.append(f"{where}: a p line has 7 fields and an optional id (p, subject, scope, object, "
                               f"verbs, name, allow|deny[, id]), found {len(cells)}")
            return
        _, subject, scope, obj, verbs, name, effect = cells[:7]
        rule_id = cells[7] if len(cells) == 8 else ""
        if effect not in ("allow", "deny"):
            ps.problems.append(f"{where}: effect must be allow or deny, found {effect!r}")
            return
        if rule_id and not _ID_RE.match(rule_id):
            ps.problems.append(f"{where}: rule id {rule_id!r} must be lowercase letters, digits, '-' and '.'")
            return
        ps.rules.append(Rule(subject, scope, obj, verbs, name, effect, where, rule_id))
    elif kind == "g":
        if len(cells) != 4:
            ps.problems.append(f"{where}: a g line has 4 fields (g, subject, role, scope), found {len(cells)}")
            return
        _, subject, role, scope = cells
        ps.bindings.append(Binding(subject, role, scope, where))
    else:
        ps.problems.append(f"{where}: unknown line type {kind!r} (p or g)")
    if any(c == "" for c in cells):
        ps.problems.append(f"{where}: empty field (use * for any)")


# -- checks ------------------------------------------------------------------------------------

def _check_object(obj: str, where: Source, problems: list[str]) -> bool:
    if "|" in obj:
        return all([_check_object(o, where, problems) for o in obj.split("|")])
    if obj == "**" or obj.startswith("/"):
        return True
    resource, _, sub = obj.partition("/")
    if "/" in sub:
        problems.append(f"{where}: object {obj!r} has more than one '/'")
        return False
    if sub and not any(c in sub for c in "*?[") and sub not in SUBRESOURCES:
        problems.append(f"{where}: unknown subresource {sub!r} in {obj!r}")
        return False
    if any(c in resource for c in "*?["):
        return True
    group = resource.split(".", 1)[1] if "." in resource else ""
    if group in BUILTIN_GROUPS and resource not in BUILTIN_RESOURCES:
        bare = resource.split(".", 1)[0]
        hint = next((r for r in sorted(BUILTIN_RESOURCES) if r.split(".", 1)[0] in (bare + "s", bare + "es")),
                    next((r for r in sorted(BUILTIN_RESOURCES) if r.startswith(bare)), None))
        problems.append(f"{where}: unknown resource {resource!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        return False
    return True


def _check_verbs(rule: Rule, problems: list[str]) -> bool:
    if rule.verbs == "*":
        return True
    allowed = NONRESOURCE_VERBS if rule.obj.startswith("/") else RESOURCE_VERBS
    unknown = sorted(expand_verbs(rule.verbs) - allowed)
    if unknown:
        problems.append(f"{rule.source}: unknown verb(s) {', '.join(unknown)} for "
                        f"{'non-resource URLs' if rule.obj.startswith('/') else 'resources'}")
        return False
    return True


def _literal(value: str) -> bool:
    return not any(c in value for c in "*?[|!")


def _covers(outer: Rule, inner: Rule) -> bool:
    """True when every request `inner` matches is matched by `outer` (checked conservatively)."""
    def field_covers(o: str, i: str, match: object) -> bool:
        if o == i:
            return True
        if o == "**":  # every resource, and no non-resource URL
            return match is not object_match or not i.startswith("/")
        if o == "*":
            return match is not object_match or ("/" not in i and i != "**")
        return _literal(i) and bool(match(i, o))  # type: ignore[operator]

    scope_ok = inner.scope == outer.scope or outer.scope == "*:*" or (
        _literal(inner.scope) and scope_match(inner.scope, outer.scope))
    verbs_ok = outer.verbs == "*" or (inner.verbs != "*" and expand_verbs(inner.verbs) <= expand_verbs(outer.verbs))
    return (scope_ok and verbs_ok and field_covers(outer.obj, inner.obj, object_match)
            and field_covers(outer.name, inner.name, name_match))


def check(ps: PolicySet) -> None:
    """Semantic checks; appends "file:line: message" problems to the set."""
    problems = ps.problems
    seen: dict[str, Rule] = {}
    for rule in ps.rules:
        if rule.id in seen:
            problems.append(f"{rule.source}: rule id {rule.id!r} is already used by {seen[rule.id].source}")
        seen.setdefault(rule.id, rule)
    for rule in ps.rules:
        if rule.effect == "deny" and rule.subject.startswith("!"):
            subjects = rule.subject[1:].split("|")
        else:
            subjects = [rule.subject]
        for s in subjects:
            if not _SUBJECT_RE.match(s):
                problems.append(f"{rule.source}: subject {s!r} must be user:NAME, group:NAME, role:NAME or *")
        if rule.subject.startswith("!") and rule.effect != "deny":
            problems.append(f"{rule.source}: '!' subjects are for deny rules only")
        if not _SCOPE_RE.match(rule.scope):
            problems.append(f"{rule.source}: scope {rule.scope!r} must be CLUSTER:NAMESPACE (globs allowed)")
        _check_object(rule.obj, rule.source, problems)
        _check_verbs(rule, problems)
    for b in ps.bindings:
        if not _SUBJECT_RE.match(b.subject) or b.subject == "*":
            problems.append(f"{b.source}: binding subject {b.subject!r} must be user:, group: or role:")
        if not b.role.startswith("role:"):
            problems.append(f"{b.source}: {b.role!r} is not a role (role:NAME)")
        if not _SCOPE_RE.match(b.scope):
            problems.append(f"{b.source}: scope {b.scope!r} must be CLUSTER:NAMESPACE (globs allowed)")

    # Roles that nothing can ever give anyone: neither bound nor grantable through access requests.
    bound = {b.role for b in ps.bindings}
    grantable = [r for r in ps.rules if r.effect == "allow" and r.obj == "accessrequests.kubegate.io"
                 and verb_match("approve", r.verbs)]
    used_roles = {r.subject for r in ps.rules if r.subject.startswith("role:")}
    for role in sorted(used_roles - bound):
        if not any(name_match(role.removeprefix("role:"), r.name) for r in grantable):
            first = next(r for r in ps.rules if r.subject == role)
            problems.append(f"{first.source}: {role} is never granted: no g line binds it and no access "
                            "request for it can be approved")
    for b in ps.bindings:
        if b.role not in used_roles and b.role not in {x.subject for x in ps.bindings}:
            problems.append(f"{b.source}: {b.role} has no rules (a typo?)")

    allows = [r for r in ps.rules if r.effect == "allow"]
    denies = [r for r in ps.rules if r.effect == "deny"]
    # `**` once reached non-resource URLs too; now only `/...` patterns do. Say so where a subject
    # holds `**` and no URL rule, as it may have relied on it.
    with_urls = {r.subject for r in allows if r.obj.startswith("/")}
    for rule in allows:
        if rule.obj == "**" and rule.subject not in with_urls:
            ps.warnings.append(f"{rule.source}: {rule.subject} gets every resource from '**' but no non-resource "
                               "URL (/healthz, /metrics, /logs/...): add a rule with a '/...' object (e.g. '/*') "
                               "if that was meant")
    ps.warnings += _credential_grants(allows, denies)
    for i, rule in enumerate(allows):
        for other in allows[:i]:
            if rule.subject == other.subject and _covers(other, rule):
                problems.append(f"{rule.source}: shadowed by {other.source} ({other.text()}): it can never add access")
                break
        for deny in denies:
            if deny.fields()[1:] == rule.fields()[1:] and (deny.subject in ("*", rule.subject)):
                problems.append(f"{rule.source}: conflicts with {deny.source}: the same request is allowed and "
                                "denied (deny wins); remove one")
                break
            if (deny.subject == "*" or deny.subject == rule.subject) and _covers(deny, rule):
                problems.append(f"{rule.source}: unreachable: every request it allows is denied by {deny.source}")
                break


def load_checked(directory: Path | str) -> PolicySet:
    ps = load(directory)
    if not ps.ok:
        raise PolicyError(ps.problems)
    return ps
