"""The gateway and its clusters: routing, credentials, verification, failures, streaming."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path
from typing import Iterator

import pytest

from kubegate import pki
from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, emulator_cluster, start_gateway
from tests.gateway.conftest import Isolated, assert_status

PODS = "/api/v1/namespaces/default/pods"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[tuple[harness.RunningEmulator, harness.RunningEmulator]]:
    a, b = harness.start(tmp_path / "a"), harness.start(tmp_path / "b")
    yield a, b
    a.stop()
    b.stop()


def test_unreachable_cluster_is_503_status(tmp_path: Path, upstream: harness.RunningEmulator,
                                           kubectl_path: str) -> None:
    dead = {"name": "dead", "server": f"https://127.0.0.1:{free_port()}", "ca_file": str(upstream.ca_file),
            "token": "x"}
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[dead])
    try:
        resp = Isolated(gw, upstream).send("GET", PODS, token=gw.token("alice"))
        body = assert_status(resp, 503, "ServiceUnavailable")
        assert "unreachable" in body["message"]
        kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "alice"))
        proc = kubectl("get", "--raw", PODS, check=False)
        assert "Error from server (ServiceUnavailable)" in proc.stderr
        (event,) = [e for e in gw.audit_events() if e["auditID"] == resp.headers.get("audit-id", e["auditID"])][:1]
        assert event["responseStatus"]["code"] == 503
    finally:
        gw.stop()


def test_cluster_with_wrong_ca_is_502_status_and_gets_no_request(tmp_path: Path,
                                                                 upstream: harness.RunningEmulator) -> None:
    other_ca = pki.make_ca("someone-else")
    other_ca.write(tmp_path / "other-ca.crt", tmp_path / "other-ca.key")
    gw = start_gateway(tmp_path / "gw", upstream,
                       clusters=[emulator_cluster(upstream, ca_file=str(tmp_path / "other-ca.crt"))])
    try:
        upstream.clear_requests()
        resp = Isolated(gw, upstream).send("GET", PODS, token=gw.token("alice"))
        body = assert_status(resp, 502, "InternalError")
        assert "could not be verified" in body["message"]
        assert upstream.requests == []  # no HTTP request ever crossed the unverified connection
    finally:
        gw.stop()


def test_two_clusters_route_by_prefix(tmp_path: Path, emulators: tuple[harness.RunningEmulator, ...],
                                      kubectl_path: str) -> None:
    a, b = emulators
    gw = start_gateway(tmp_path / "gw", a, clusters=[emulator_cluster(a, "hz-1", default=True),
                                                     emulator_cluster(b, "sh-2")])
    try:
        a.clear_requests()
        b.clear_requests()
        on_a = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc-a", "alice", server=f"{gw.url}/clusters/hz-1"))
        on_b = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc-b", "alice", server=f"{gw.url}/clusters/sh-2"))
        default = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc-d", "alice"))
        on_a("create", "namespace", "only-on-a")
        on_b("create", "namespace", "only-on-b")
        assert "only-on-b" in on_b("get", "ns", "-o", "name").stdout
        assert "only-on-b" not in on_a("get", "ns", "-o", "name").stdout
        assert "only-on-a" in default("get", "ns", "-o", "name").stdout  # no prefix: the default cluster
        assert any(r.path == "/api/v1/namespaces" and r.method == "POST" for r in b.requests)
        assert not any(r.path.startswith("/clusters") for r in a.requests + b.requests)
        annotations = {e["annotations"]["kubegate.io/cluster"] for e in gw.audit_events()}
        assert annotations == {"hz-1", "sh-2"}
    finally:
        gw.stop()


def test_unknown_cluster_is_404_and_no_default_needs_a_prefix(
        tmp_path: Path, emulators: tuple[harness.RunningEmulator, ...]) -> None:
    a, b = emulators
    gw = start_gateway(tmp_path / "gw", a, clusters=[emulator_cluster(a, "hz-1"), emulator_cluster(b, "sh-2")])
    try:
        iso = Isolated(gw, a)
        a.clear_requests()
        b.clear_requests()  # the readiness probe asked both at start
        body = assert_status(iso.send("GET", f"/clusters/nope{PODS}", token=gw.token("alice")), 404, "NotFound")
        assert "no cluster named 'nope'" in body["message"] and "hz-1, sh-2" in body["message"]
        body = assert_status(iso.send("GET", PODS, token=gw.token("alice")), 404, "NotFound")
        assert "/clusters/<name>" in body["message"]
        assert a.requests == [] and b.requests == []
    finally:
        gw.stop()


def test_client_certificate_credential(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    cluster = {"name": "emu", "server": upstream.url, "ca_file": str(upstream.ca_file),
               "client_cert_file": str(upstream.client_cert_file), "client_key_file": str(upstream.client_key_file)}
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[cluster])
    try:
        upstream.clear_requests()
        assert Isolated(gw, upstream).send("GET", PODS, token=gw.token("carol")).status == 200
        (record,) = upstream.requests
        assert record.authenticated == harness.CLIENT_CERT_USER
        assert record.user is not None and record.user.username == "carol"
        assert record.header("Authorization") == []
    finally:
        gw.stop()


def test_cluster_from_kubeconfig(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    kubeconfig = upstream.kubeconfig(tmp_path / "upstream.kubeconfig", token=upstream.gateway_token)
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[{"name": "emu", "kubeconfig": str(kubeconfig)}])
    try:
        upstream.clear_requests()
        assert Isolated(gw, upstream).send("GET", PODS, token=gw.token("dave")).status == 200
        assert upstream.requests[0].authenticated == harness.GATEWAY.username
    finally:
        gw.stop()


def test_token_file_is_reread_when_rotated(tmp_path: Path, upstream: harness.RunningEmulator) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("stale-token")
    gw = start_gateway(tmp_path / "gw", upstream, clusters=[
        {"name": "emu", "server": upstream.url, "ca_file": str(upstream.ca_file), "token_file": str(token_file)}])
    try:
        iso = Isolated(gw, upstream)
        stale = iso.send("GET", PODS, token=gw.token("erin"))  # the upstream refuses the stale credential:
        assert stale.status == 503 and "refused the gateway's credential" in stale.json()["message"]  # not a 401
        token_file.write_text(upstream.gateway_token + "\n")
        import os
        os.utime(token_file, (1, 2))  # a different mtime, even within the same second
        assert iso.send("GET", PODS, token=gw.token("erin")).status == 200
    finally:
        gw.stop()


def test_watch_events_stream_through_before_the_watch_ends(gateway: GatewayHandle) -> None:
    token = gateway.token("watcher")
    ctx = ssl.create_default_context(cafile=str(gateway.ca_file))
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=ctx, timeout=20)
    ns = f"w-{free_port()}"
    create = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=ctx, timeout=20)
    try:
        create.request("POST", "/api/v1/namespaces", body=json.dumps({"metadata": {"name": ns}}),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        rv = json.loads(create.getresponse().read())["metadata"]["resourceVersion"]
        conn.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=600",
                     headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        assert resp.status == 200
        create.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=json.dumps({"metadata": {"name": "c"}}),
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        create.getresponse().read()
        event = json.loads(resp.readline())  # arrives while the watch (600 s) is still open
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "c")
        assert not resp.isclosed()
    finally:
        conn.close()
        create.close()


def test_large_list_passes_although_larger_than_the_request_body_limit(tmp_path: Path,
                                                                      upstream: harness.RunningEmulator) -> None:
    gw = start_gateway(tmp_path / "gw", upstream, max_request_body_bytes=4096)
    try:
        iso = Isolated(gw, upstream)
        token = gw.token("frank")
        ns = f"big-{free_port()}"
        iso.send("POST", "/api/v1/namespaces", token=token, headers={"Content-Type": "application/json"},
                 body=json.dumps({"metadata": {"name": ns}}).encode())
        for i in range(20):
            resp = iso.send("POST", f"/api/v1/namespaces/{ns}/configmaps", token=token,
                            headers={"Content-Type": "application/json"},
                            body=json.dumps({"metadata": {"name": f"c{i}"}, "data": {"v": "x" * 1000}}).encode())
            assert resp.status == 201
        listing = iso.send("GET", f"/api/v1/namespaces/{ns}/configmaps", token=token)
        assert listing.status == 200 and len(listing.body) > 4096 * 4
        assert len(listing.json()["items"]) == 20
    finally:
        gw.stop()


def test_metrics_health_and_readiness(gateway: GatewayHandle) -> None:
    import urllib.request

    port = gateway.metrics_port
    Isolated(gateway, gateway.upstream).send("GET", PODS, token=gateway.token("metrics-user"))
    Isolated(gateway, gateway.upstream).send("GET", PODS)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'kubegate_requests_total{cluster="emu",code="200",decision="allow",resource="pods",stage="",verb="list"}' in text
    assert 'decision="deny"' in text and 'stage="authn"' in text
    assert 'kubegate_stage_duration_seconds_bucket{le="0.001",stage="authn"}' in text
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read() == b"ok"
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10).read() == b"ok"
