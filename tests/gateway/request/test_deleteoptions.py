"""The options a delete runs with, read as kube-apiserver reads them: the body when there is one,
else the query; an Eviction's own deleteOptions with the query's dryRun filled in (what `kubectl
drain` sends); every value checked, and a query that contradicts the body refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubegate.gateway.errors import Denial
from kubegate.gateway.request import bodies
from kubegate.gateway.request.deleteoptions import DeleteOptions, for_delete, for_eviction, from_query
from kubegate.gateway.request.query import Query


def q(raw: str = "") -> Query:
    return Query.parse(raw)


def body(obj: Any) -> bodies.Body:
    return bodies.read("application/json", json.dumps(obj).encode())


NO_BODY = bodies.read("application/json", b"")


def refused(call: Any, *args: Any) -> str:
    with pytest.raises(Denial) as e:
        call(*args)
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    assert "not forwarded" in e.value.message
    return e.value.message


# -- from the query --------------------------------------------------------------------------------

def test_a_bare_delete_has_the_defaults_from_nowhere() -> None:
    assert from_query(q()) == DeleteOptions(False, "", None, None, "none")
    assert for_delete(q(), NO_BODY) == DeleteOptions(source="none")


@pytest.mark.parametrize("policy", ["Orphan", "Background", "Foreground"])
def test_each_propagation_policy_is_read_from_the_query(policy: str) -> None:
    opts = for_delete(q(f"propagationPolicy={policy}"), NO_BODY)
    assert opts.propagation_policy == policy and opts.source == "query" and not opts.dry_run


@pytest.mark.parametrize("policy", ["orphan", "Cascade", "Background "])
def test_an_unknown_propagation_policy_is_refused(policy: str) -> None:
    assert repr(policy) in refused(from_query, q(f"propagationPolicy={policy.replace(' ', '%20')}"))


@pytest.mark.parametrize(("raw", "expected"), [
    ("dryRun=All", DeleteOptions(dry_run=True, source="query")),
    ("gracePeriodSeconds=0", DeleteOptions(grace_period_seconds=0, source="query")),
    ("gracePeriodSeconds=30", DeleteOptions(grace_period_seconds=30, source="query")),
    ("orphanDependents=true", DeleteOptions(orphan_dependents=True, source="query")),
    ("orphanDependents=false", DeleteOptions(orphan_dependents=False, source="query")),
    ("pretty=true", DeleteOptions(source="none")),  # not an option of the delete: not "from the query"
])
def test_each_query_option_is_read(raw: str, expected: DeleteOptions) -> None:
    assert from_query(q(raw)) == expected


def test_a_dry_run_other_than_all_is_refused_in_the_query() -> None:
    assert "'Server'" in refused(from_query, q("dryRun=Server"))
    message = refused(from_query, q("dryRun=All&dryRun=Server"))
    assert "'Server'" in message and "only 'All'" in message


# -- from the body ---------------------------------------------------------------------------------

def test_the_body_is_what_a_delete_runs_with() -> None:
    opts = for_delete(q(), body({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                                 "gracePeriodSeconds": 5, "orphanDependents": False, "dryRun": ["All"]}))
    assert opts == DeleteOptions(True, "Foreground", 5, False, "body")


def test_a_body_without_kind_is_read_as_delete_options() -> None:
    assert for_delete(q(), body({"propagationPolicy": "Orphan"})) == DeleteOptions(propagation_policy="Orphan",
                                                                                  source="body")
    assert for_delete(q(), body({})) == DeleteOptions(source="body")


def test_a_dry_run_in_the_query_beside_a_body_without_one_is_refused_not_believed() -> None:
    # kube-apiserver reads only the body: this delete is NOT a dry run there; half-believing the
    # query would let a real delete pass as a preview.
    assert "dryRun" in refused(for_delete, q("dryRun=All"), body({"kind": "DeleteOptions"}))


@pytest.mark.parametrize(("raw", "in_body", "clash"), [
    ("propagationPolicy=Orphan", {"propagationPolicy": "Background"}, "propagationPolicy"),
    ("propagationPolicy=Orphan", {}, "propagationPolicy"),
    ("gracePeriodSeconds=0", {"gracePeriodSeconds": 30}, "gracePeriodSeconds"),
    ("gracePeriodSeconds=0", {}, "gracePeriodSeconds"),
    ("orphanDependents=true", {"orphanDependents": False}, "orphanDependents"),
    ("orphanDependents=false", {}, "orphanDependents"),
    ("dryRun=All", {"dryRun": []}, "dryRun"),
])
def test_a_query_that_says_something_else_than_the_body_is_refused(raw: str, in_body: dict[str, Any],
                                                                   clash: str) -> None:
    message = refused(for_delete, q(raw), body({"kind": "DeleteOptions", **in_body}))
    assert f"the query's {clash} says something else" in message


@pytest.mark.parametrize(("raw", "in_body"), [
    ("propagationPolicy=Orphan", {"propagationPolicy": "Orphan"}),
    ("gracePeriodSeconds=0", {"gracePeriodSeconds": 0}),
    ("orphanDependents=true", {"orphanDependents": True}),
    ("dryRun=All", {"dryRun": ["All"]}),
    ("pretty=true", {"propagationPolicy": "Foreground"}),
])
def test_a_query_that_agrees_with_the_body_is_accepted(raw: str, in_body: dict[str, Any]) -> None:
    assert for_delete(q(raw), body({"kind": "DeleteOptions", **in_body})).source == "body"


@pytest.mark.parametrize(("in_body", "named"), [
    ({"propagationPolicy": "orphan"}, "propagationPolicy 'orphan' in the body"),
    ({"gracePeriodSeconds": "30"}, "gracePeriodSeconds in the body must be an integer"),
    ({"gracePeriodSeconds": True}, "gracePeriodSeconds in the body must be an integer"),
    ({"gracePeriodSeconds": 1.5}, "gracePeriodSeconds in the body must be an integer"),
    ({"orphanDependents": "true"}, "orphanDependents in the body must be a boolean"),
    ({"dryRun": "All"}, "dryRun in the body must be a list of strings"),
    ({"dryRun": [1]}, "dryRun in the body must be a list of strings"),
    ({"dryRun": ["All", "Server"]}, "dryRun in the body has 'Server'"),
])
def test_each_bad_body_value_is_named(in_body: dict[str, Any], named: str) -> None:
    assert named in refused(for_delete, q(), body({"kind": "DeleteOptions", **in_body}))


def test_a_body_of_another_kind_or_unreadable_is_refused() -> None:
    assert "not 'Pod'" in refused(for_delete, q(), body({"kind": "Pod"}))
    assert "cannot be read" in refused(for_delete, q(), bodies.read("application/json", b"{not json"))
    assert "cannot be read" in refused(for_delete, q(), body(["not", "an", "object"]))


def test_a_zero_grace_period_in_the_body_is_kept_as_zero_not_dropped() -> None:
    assert for_delete(q(), body({"gracePeriodSeconds": 0})).grace_period_seconds == 0


# -- an eviction (kubectl drain) ------------------------------------------------------------------

def eviction(delete_options: Any = None) -> bodies.Body:
    obj: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0", "namespace": "shop"}}
    if delete_options is not None:
        obj["deleteOptions"] = delete_options
    return body(obj)


def test_an_eviction_as_kubectl_drain_sends_it() -> None:
    # kubectl drain: {"deleteOptions": {"gracePeriodSeconds": N}} unless --grace-period=-1; with
    # --dry-run=server, dryRun=["All"] inside the deleteOptions.
    assert for_eviction(q(), eviction({"gracePeriodSeconds": 30})) == DeleteOptions(False, "", 30, None, "body")
    assert for_eviction(q(), eviction({"dryRun": ["All"]})).dry_run
    assert for_eviction(q(), eviction({"propagationPolicy": "Foreground"})).propagation_policy == "Foreground"


def test_an_eviction_takes_the_query_dry_run_where_its_options_have_none() -> None:
    assert for_eviction(q("dryRun=All"), eviction()) == DeleteOptions(dry_run=True, source="query")
    assert for_eviction(q(), eviction()) == DeleteOptions(dry_run=False, source="none")
    filled = for_eviction(q("dryRun=All"), eviction({"gracePeriodSeconds": 0, "orphanDependents": True}))
    assert filled == DeleteOptions(True, "", 0, True, "body")
    assert for_eviction(q("dryRun=All"), eviction({"dryRun": ["All"]})).dry_run


def test_an_unreadable_eviction_is_no_dry_run() -> None:
    assert for_eviction(q("dryRun=All"), bodies.read("application/json", b"{")) == DeleteOptions(False, source="none")


@pytest.mark.parametrize(("options", "named"), [
    ("soon", "the Eviction's deleteOptions must be an object"),
    ({"propagationPolicy": "Everything"}, "propagationPolicy 'Everything' in the Eviction's deleteOptions"),
    ({"gracePeriodSeconds": "0"}, "gracePeriodSeconds in the Eviction's deleteOptions must be an integer"),
    ({"dryRun": ["Server"]}, "dryRun in the Eviction's deleteOptions has 'Server'"),
])
def test_bad_eviction_options_are_named(options: Any, named: str) -> None:
    assert named in refused(for_eviction, q(), eviction(options))


def test_a_bad_query_dry_run_on_an_eviction_is_refused() -> None:
    assert "dryRun in the query has 'Server'" in refused(for_eviction, q("dryRun=Server"), eviction())
