"""The DeleteOptions a delete will run with, read the way kube-apiserver reads them (or refused).

kube-apiserver's delete handlers (`endpoints/handlers/delete.go`, DeleteResource and
DeleteCollection) decode the options from the BODY whenever the body is non-empty, and only
otherwise from the query; a body of another kind is a 400. So `?dryRun=All` next to a
DeleteOptions body is NOT a dry run. The gates must see the same options: they are taken from
the body first here, and a query that says something else than the body is refused rather than
half-believed. An eviction is the one create that deletes: its options are the Eviction's own
`deleteOptions`, with the query's `dryRun` filled in where the body has none (the eviction
REST's `propagateDryRun`), and a disagreement between the two is the apiserver's error too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import Denial
from . import bodies
from .query import Query, apimachinery_bool

# DeleteOptions fields that can also be given as query parameters.
QUERY_KEYS = ("dryRun", "propagationPolicy", "gracePeriodSeconds", "orphanDependents")
PROPAGATION = ("Orphan", "Background", "Foreground")


def _bad(message: str) -> Denial:
    return Denial(400, f"kubegate: {message}; the request was not forwarded", "BadRequest")


@dataclass(frozen=True)
class DeleteOptions:
    dry_run: bool = False
    propagation_policy: str = ""  # "" = the resource's default
    grace_period_seconds: int | None = None
    orphan_dependents: bool | None = None
    source: str = "none"  # where they came from: "body", "query" or "none"


def _dry_run(values: Any, where: str) -> bool:
    if values is None:
        return False
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _bad(f"dryRun in the {where} must be a list of strings")
    unknown = [v for v in values if v != "All"]
    if unknown:
        raise _bad(f"dryRun in the {where} has {unknown[0]!r}; kube-apiserver accepts only 'All'")
    return bool(values)


def from_query(query: Query) -> DeleteOptions:
    policy = query.get("propagationPolicy")
    if policy and policy not in PROPAGATION:
        raise _bad(f"propagationPolicy {policy!r} is not one of {', '.join(PROPAGATION)}")
    grace = query.get("gracePeriodSeconds")
    any_set = any(k in query for k in QUERY_KEYS)
    return DeleteOptions(
        dry_run=_dry_run(query.values("dryRun") or None, "query"),
        propagation_policy=policy,
        grace_period_seconds=int(grace) if grace else None,  # integer-checked by Query.parse
        orphan_dependents=query.flag("orphanDependents") if "orphanDependents" in query else None,
        source="query" if any_set else "none",
    )


def _from_object(obj: dict[str, Any], where: str) -> DeleteOptions:
    policy = obj.get("propagationPolicy")
    if policy is not None and policy not in PROPAGATION:
        raise _bad(f"propagationPolicy {policy!r} in the {where} is not one of {', '.join(PROPAGATION)}")
    grace = obj.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int)):
        raise _bad(f"gracePeriodSeconds in the {where} must be an integer")
    orphan = obj.get("orphanDependents")
    if orphan is not None and not isinstance(orphan, bool):
        raise _bad(f"orphanDependents in the {where} must be a boolean")
    return DeleteOptions(_dry_run(obj.get("dryRun"), where), policy or "", grace, orphan, "body")


def _disagreement(body: DeleteOptions, query: Query) -> str:
    """The first query parameter that says something else than the body, or ""."""
    q = from_query(query)
    checks = {
        "dryRun": body.dry_run != q.dry_run,
        "propagationPolicy": body.propagation_policy != q.propagation_policy,
        "gracePeriodSeconds": body.grace_period_seconds != q.grace_period_seconds,
        "orphanDependents": body.orphan_dependents != q.orphan_dependents,
    }
    return next((k for k in QUERY_KEYS if k in query and checks[k]), "")


def for_delete(query: Query, read: bodies.Body) -> DeleteOptions:
    """The options of a delete or deletecollection: the body's when there is one (`read`, as the
    classify stage read it), else the query's."""
    if read.kind == "none":
        return from_query(query)
    if not read.readable or read.obj is None:
        raise _bad(f"the DeleteOptions body cannot be read ({read.error or read.kind})")
    kind = read.obj.get("kind")
    if kind not in (None, "", "DeleteOptions"):
        raise _bad(f"a delete's body must be DeleteOptions, not {kind!r}")
    opts = _from_object(read.obj, "body")
    if clash := _disagreement(opts, query):
        raise _bad(f"the query's {clash} says something else than the DeleteOptions body, which is what "
                   "kube-apiserver reads; give the options in one place")
    return opts


def for_eviction(query: Query, read: bodies.Body) -> DeleteOptions:
    """An eviction's options: the Eviction's deleteOptions, its dryRun filled from the query."""
    q_dry = _dry_run(query.values("dryRun") or None, "query")
    if not read.readable or read.obj is None:
        # The apiserver refuses an Eviction it cannot decode; an unreadable one is not a dry run.
        return DeleteOptions(dry_run=False, source="none")
    inner = read.obj.get("deleteOptions")
    if inner is None:
        return DeleteOptions(dry_run=q_dry, source="query" if q_dry else "none")
    if not isinstance(inner, dict):
        raise _bad("the Eviction's deleteOptions must be an object")
    opts = _from_object(inner, "Eviction's deleteOptions")
    # (Both given, they cannot disagree: each may only be ["All"], which _dry_run checked.)
    if not inner.get("dryRun"):
        opts = DeleteOptions(q_dry, opts.propagation_policy, opts.grace_period_seconds, opts.orphan_dependents,
                             "body")
    return opts
