"""/metrics as an operator scrapes it: process and build metrics, request and upstream latency,
bounded labels whatever clients send, and liveness without a token."""

from __future__ import annotations

import time
import urllib.request

import pytest
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from kubegate.emulator import harness
from kubegate.gateway.identity import keys as gw_keys
from kubegate.gateway.identity.authn import TokenIssuer
from tests.conftest import GatewayHandle, start_gateway


@pytest.fixture(scope="module")
def gw(upstream: harness.RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> GatewayHandle:
    handle = start_gateway(tmp_path_factory.mktemp("metrics"), upstream)
    yield handle  # type: ignore[misc]
    handle.stop()


def _scrape(gw: GatewayHandle) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    assert "_created" not in text  # no doubled series per counter
    return {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def _get(gw: GatewayHandle, path: str, token: str | None) -> int:
    http = urllib3.PoolManager(ca_certs=str(gw.ca_file), retries=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.request("GET", gw.url + path, headers=headers).status


def test_metrics_an_operator_reads(gw: GatewayHandle) -> None:
    admin = gw.token("ada")
    assert _get(gw, "/api/v1/namespaces/default/pods", admin) == 200
    for i in range(5):  # made-up resources: each would be a new series if labels came from the path
        assert _get(gw, f"/api/v1/namespaces/default/made-up-{i}", admin) == 404
    assert _get(gw, "/api/v1/pods", None) == 401
    assert _get(gw, "/api/v1/pods", "not-a-jwt") == 401
    time.sleep(0.3)
    m = _scrape(gw)

    assert m["process_cpu_seconds"] and m["python_info"]
    assert m["kubegate_build_info"][0][1]["version"] == "0.1.0"
    buckets = [labels for name, labels, _ in m["kubegate_request_duration_seconds"] if name.endswith("_count")]
    assert {"verb": "list", "resource": "pods", "decision": "allow"} in buckets
    resources = {labels["resource"] for _, labels, _ in m["kubegate_requests"]}
    assert "other" in resources and not [r for r in resources if r.startswith("made-up")]
    upstream = {labels["cluster"]: value for name, labels, value in m["kubegate_upstream_duration_seconds"]
                if name.endswith("_count")}
    assert upstream and min(upstream.values()) >= 6
    failures = {labels["reason"]: value for _, labels, value in m["kubegate_authn_failures"]}
    assert failures["missing"] >= 1 and failures["malformed"] >= 1
    assert m["kubegate_inflight_requests"][0][2] == 0
    assert {labels["cluster"]: value for _, labels, value in m["kubegate_cluster_reachable"]} == {"emu": 1.0}
    assert m["kubegate_serving_certificate_expiry_timestamp_seconds"][0][2] > time.time() + 86400


def test_liveness_and_readiness_need_no_token(gw: GatewayHandle) -> None:
    for path in ("/livez", "/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}{path}", timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"ok"


def test_refusals_are_audited_with_why_the_token_failed(gw: GatewayHandle) -> None:
    past = TokenIssuer(gw.settings.issuer, gw_keys.signing_key_pem(gw.settings), lambda: time.time() - 7200)
    assert _get(gw, "/api/v1/pods", past.issue("ada", ["kubegate:cluster-admins"], ttl_seconds=60)) == 401
    events = [e for e in gw.audit_events() if (e.get("annotations") or {}).get("kubegate.io/authn-failure")]
    assert {"missing", "malformed", "expired"} <= {e["annotations"]["kubegate.io/authn-failure"] for e in events}


def test_authorization_refusals_count_among_the_gates_refusals(gw: GatewayHandle) -> None:
    """The most common refusal shows on the dashboard's "refusals by gate" panel and feeds the
    refusal-spike alert: by the rule that refused, or no-rule when none allowed."""
    viewer = gw.token("vic", ["kubegate:viewers"])
    for _ in range(3):
        assert _get(gw, "/api/v1/namespaces/default/secrets", viewer) == 403  # secrets-need-secret-reader
    assert _get(gw, "/api/v1/namespaces/default/pods", gw.token("nobody", [])) == 403  # no rule allows it
    time.sleep(0.3)
    refusals = {(labels["gate"], labels["reason"], labels["name"]): value
                for name, labels, value in _scrape(gw)["kubegate_gate_refusals"] if name.endswith("_total")}
    assert refusals[("authz", "deny", "secrets-need-secret-reader")] == 3
    assert refusals[("authz", "no-rule", "no-rule")] == 1


def test_resource_labels_carry_the_group_and_subresource(gw: GatewayHandle) -> None:
    admin = gw.token("ada")
    assert _get(gw, "/apis/apps/v1/namespaces/default/deployments", admin) == 200
    assert _get(gw, "/apis/apps/v1/namespaces/default/deployments/nope/scale", admin) == 404
    time.sleep(0.3)
    resources = {labels["resource"] for _, labels, _ in _scrape(gw)["kubegate_requests"]}
    assert "deployments.apps" in resources and "deployments" not in resources


def test_stage_timings_reach_the_scrape_counted_once_each(gw: GatewayHandle) -> None:
    """Stage timings are counted in plain numbers on the request path and handed to the histogram
    at scrape time: every request's stages are in the scrape that follows it, none twice."""
    def authn_count() -> float:
        return next(value for name, labels, value in _scrape(gw)["kubegate_stage_duration_seconds"]
                    if name.endswith("_count") and labels["stage"] == "authn")

    admin = gw.token("ada")
    _get(gw, "/api/v1/namespaces/default/pods", admin)
    time.sleep(0.3)  # the response's event is counted after the client has its answer
    before = authn_count()
    assert authn_count() == before  # a scrape hands over nothing twice
    for _ in range(7):
        assert _get(gw, "/api/v1/namespaces/default/pods", admin) == 200
    time.sleep(0.3)
    assert authn_count() == before + 7


def test_counted_stage_timings_read_as_observed_ones() -> None:
    """The bulk hand-over gives the exposition that observing each value one by one gives."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from kubegate.gateway.metrics import _STAGE_BUCKETS, BucketCounts, add_to_histogram

    values = [0.00001, 0.00005, 0.00007, 0.0001, 0.0003, 0.002, 0.049, 0.25, 0.9, 1.0, 3.5, 0.0]
    observed_registry, counted_registry = CollectorRegistry(), CollectorRegistry()
    observed = Histogram("t", "t", ["stage"], buckets=_STAGE_BUCKETS, registry=observed_registry)
    counted = Histogram("t", "t", ["stage"], buckets=_STAGE_BUCKETS, registry=counted_registry)
    counts = BucketCounts(_STAGE_BUCKETS)
    for i, value in enumerate(values):
        stage = "authz" if i % 3 else "authn"
        observed.labels(stage).observe(value)
        counts.add({stage: value})
    for stage, row in counts.drain().items():
        add_to_histogram(counted.labels(stage), row)
    assert generate_latest(counted_registry) == generate_latest(observed_registry)
    assert counts.drain() == {}
