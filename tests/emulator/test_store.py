"""Objects, versions, conflicts, selectors, collections, namespaces, CRDs, identity and faults."""

from __future__ import annotations

import time

import pytest

from kubegate.emulator import harness
from tests.emulator.conftest import Raw, cm

CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str, image: str = "i:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "m", "image": image}]}}}}


def test_create_sets_server_fields_and_versions_grow(raw: Raw) -> None:
    code, a = raw.request("POST", CMS, cm("a"))
    _, b = raw.request("POST", CMS, cm("b"))
    assert code == 201
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    assert a["metadata"]["creationTimestamp"].endswith("Z")
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])


def test_generate_name(raw: Raw) -> None:
    code, obj = raw.request("POST", CMS, {"metadata": {"generateName": "job-"}})
    assert code == 201 and obj["metadata"]["name"].startswith("job-") and len(obj["metadata"]["name"]) > 4


def test_duplicate_create_is_409_already_exists(raw: Raw) -> None:
    raw.request("POST", CMS, cm("a"))
    code, status = raw.request("POST", CMS, cm("a"))
    assert (code, status["code"], status["reason"]) == (409, 409, "AlreadyExists")


def test_update_with_stale_version_conflicts_and_without_version_wins(raw: Raw) -> None:
    _, obj = raw.request("POST", CMS, cm("a", v="1"))
    code, updated = raw.request("PUT", f"{CMS}/a", {**obj, "data": {"v": "2"}})
    assert code == 200
    code, status = raw.request("PUT", f"{CMS}/a", {**obj, "data": {"v": "3"}})  # stale version
    assert (code, status["reason"]) == (409, "Conflict")
    unconditional = {**obj, "data": {"v": "4"}, "metadata": {"name": "a"}}
    code, last = raw.request("PUT", f"{CMS}/a", unconditional)
    assert code == 200 and last["data"] == {"v": "4"}
    assert int(last["metadata"]["resourceVersion"]) > int(updated["metadata"]["resourceVersion"])


def test_generation_moves_with_spec_only(raw: Raw) -> None:
    _, dep = raw.request("POST", DEPLOYS, deployment("d"))
    assert dep["metadata"]["generation"] == 1
    _, dep = raw.request("PATCH", f"{DEPLOYS}/d", {"metadata": {"labels": {"x": "y"}}},
                         content_type="application/merge-patch+json")
    assert dep["metadata"]["generation"] == 1
    _, dep = raw.request("PATCH", f"{DEPLOYS}/d", {"spec": {"replicas": 5}},
                         content_type="application/merge-patch+json")
    assert dep["metadata"]["generation"] == 2 and dep["status"]["observedGeneration"] == 2


def test_status_subresource_changes_only_status(raw: Raw) -> None:
    raw.request("POST", DEPLOYS, deployment("d"))
    code, dep = raw.request("PATCH", f"{DEPLOYS}/d/status",
                            {"status": {"replicas": 7}, "spec": {"replicas": 9}},
                            content_type="application/merge-patch+json")
    assert code == 200 and dep["status"]["replicas"] == 7 and dep["spec"]["replicas"] == 1


def test_create_in_missing_namespace_is_404(raw: Raw) -> None:
    code, status = raw.request("POST", "/api/v1/namespaces/nowhere/configmaps", cm("a"))
    assert (code, status["message"]) == (404, 'namespaces "nowhere" not found')


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("labelSelector=tier%3Dweb", ["a", "b"], id="equality"),
    pytest.param("labelSelector=tier%21%3Dweb", ["c", "d"], id="inequality-includes-unlabelled"),
    pytest.param("labelSelector=tier+in+%28web%2Cdb%29%2Cenv%3Dprod", ["a", "c"], id="set-and-equality"),
    pytest.param("labelSelector=%21tier", ["d"], id="does-not-exist"),
    pytest.param("fieldSelector=metadata.name%3Db", ["b"], id="field"),
    pytest.param("fieldSelector=metadata.name%21%3Db%2Cmetadata.namespace%3Ddefault", ["a", "c", "d"],
                 id="field-conjunction"),
])
def test_list_selectors(raw: Raw, query: str, expected: list[str]) -> None:
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "web"}),
                         ("c", {"tier": "db", "env": "prod"}), ("d", {})):
        raw.request("POST", CMS, cm(name, labels))
    code, listing = raw.request("GET", f"{CMS}?{query}")
    assert code == 200
    assert [i["metadata"]["name"] for i in listing["items"]] == expected


def test_malformed_selector_is_400(raw: Raw) -> None:
    code, status = raw.request("GET", f"{CMS}?labelSelector=a+in+%28b")
    assert (code, status["reason"]) == (400, "BadRequest")


def test_deletecollection_honours_selectors(raw: Raw) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        raw.request("POST", CMS, cm(name, {"tier": tier}))
    code, gone = raw.request("DELETE", f"{CMS}?labelSelector=tier%3Dweb")
    assert code == 200 and sorted(i["metadata"]["name"] for i in gone["items"]) == ["a", "b"]
    _, rest = raw.request("GET", CMS)
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]


def test_namespace_delete_cascades(raw: Raw) -> None:
    raw.request("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    raw.request("POST", "/api/v1/namespaces/doomed/configmaps", cm("a"))
    raw.request("POST", "/apis/apps/v1/namespaces/doomed/deployments", deployment("d"))
    code, _ = raw.request("DELETE", "/api/v1/namespaces/doomed")
    assert code == 200
    assert raw.request("GET", "/api/v1/namespaces/doomed/configmaps/a")[0] == 404
    assert raw.request("GET", "/apis/apps/v1/deployments")[1]["items"] == []


def test_dry_run_changes_nothing(raw: Raw) -> None:
    code, obj = raw.request("POST", f"{CMS}?dryRun=All", cm("a"))
    assert code == 201 and obj["metadata"]["name"] == "a"
    assert raw.request("GET", f"{CMS}/a")[0] == 404


def test_crd_adds_a_served_resource(raw: Raw) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget", "singular": "widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True}]}}
    assert raw.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)[0] == 201
    _, resources = raw.request("GET", "/apis/example.com/v1")
    assert [r["name"] for r in resources["resources"]] == ["widgets"]
    widgets = "/apis/example.com/v1/namespaces/default/widgets"
    code, w = raw.request("POST", widgets, {"apiVersion": "example.com/v1", "kind": "Widget",
                                            "metadata": {"name": "w1"}, "spec": {"size": 3}})
    assert code == 201 and w["spec"] == {"size": 3}
    raw.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert raw.request("GET", widgets)[0] == 404


def test_openapi_v3_advertises_field_validation(raw: Raw) -> None:
    _, root = raw.request("GET", "/openapi/v3")
    _, doc = raw.request("GET", root["paths"]["apis/apps/v1"]["serverRelativeURL"])
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert {"name": "fieldValidation"}.items() <= patch["parameters"][0].items()


def test_errors_are_status_with_matching_code(raw: Raw) -> None:
    code, status = raw.request("GET", f"{CMS}/missing")
    assert code == status["code"] == 404
    assert (status["kind"], status["status"], status["reason"]) == ("Status", "Failure", "NotFound")


def test_unauthenticated_is_401(raw: Raw) -> None:
    code, status = raw.request("GET", CMS, token="not-a-token")
    assert (code, status["code"]) == (401, 401)


def test_impersonation_needs_an_impersonating_credential(raw: Raw, fresh_upstream: harness.RunningEmulator) -> None:
    headers = {"Impersonate-User": "alice", "Impersonate-Group": "devs",
               "Impersonate-Extra-Kubegate.io%2Fsession": "s1"}
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    code, status = raw.request("POST", path, review, headers=headers, token=fresh_upstream.plain_token)
    assert (code, status["reason"]) == (403, "Forbidden")
    code, out = raw.request("POST", path, review, headers=headers, token=fresh_upstream.gateway_token)
    assert code == 201
    assert out["status"]["userInfo"] == {"username": "alice", "groups": ["devs", "system:authenticated"],
                                         "extra": {"kubegate.io/session": ["s1"]}}
    record = fresh_upstream.requests[-1]
    assert record.authenticated == harness.GATEWAY.username
    assert record.impersonation["impersonate-user"] == ["alice"]


def test_client_certificate_authenticates(fresh_upstream: harness.RunningEmulator) -> None:
    import http.client
    import json
    import ssl

    ctx = ssl.create_default_context(cafile=str(fresh_upstream.ca_file))
    ctx.load_cert_chain(fresh_upstream.client_cert_file, fresh_upstream.client_key_file)
    conn = http.client.HTTPSConnection("127.0.0.1", fresh_upstream.port, context=ctx)
    conn.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                 body=b'{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1"}',
                 headers={"Content-Type": "application/json", "Impersonate-User": "bob"})
    body = json.loads(conn.getresponse().read())
    conn.close()
    assert body["status"]["userInfo"]["username"] == "bob"
    assert fresh_upstream.requests[-1].authenticated == harness.CLIENT_CERT_USER


def test_oversized_body_is_413_status(raw: Raw) -> None:
    code, status = raw.request("POST", CMS, cm("big", blob="x" * (4 * 1024 * 1024)))
    assert (code, status["reason"]) == (413, "RequestEntityTooLarge")


def test_injected_faults(raw: Raw, fresh_upstream: harness.RunningEmulator) -> None:
    from kubegate.emulator.server import Fault

    fresh_upstream.call(lambda: fresh_upstream.emulator.faults.append(Fault(path="/configmaps", status=503, times=1)))
    assert raw.request("GET", CMS)[0] == 503
    assert raw.request("GET", CMS)[0] == 200  # times=1: only the first
    fresh_upstream.call(lambda: fresh_upstream.emulator.faults.append(Fault(path="/configmaps", latency=0.3, times=1)))
    start = time.monotonic()
    raw.request("GET", CMS)
    assert time.monotonic() - start >= 0.3
    fresh_upstream.call(lambda: fresh_upstream.emulator.faults.append(Fault(path="/configmaps", drop=True)))
    import http.client
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        raw.request("GET", CMS)


def test_control_api_needs_an_admin(raw: Raw, fresh_upstream: harness.RunningEmulator) -> None:
    assert raw.request("GET", "/_emulator/requests", token=fresh_upstream.plain_token)[0] == 403
    code, records = raw.request("GET", "/_emulator/requests")
    assert code == 200 and isinstance(records, list)


AGGREGATED = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")


def test_aggregated_discovery_tells_what_the_legacy_documents_tell(raw: Raw) -> None:
    """What kube-apiserver serves by default (and kubectl asks for first): every group, version and
    resource in one answer to /api and one to /apis, the same resources the per-version lists name."""
    legacy: set[tuple[str, str, str, str]] = set()
    _, groups = raw.request("GET", "/apis")
    versions = [("", "v1")] + [(g["name"], v["version"]) for g in groups["groups"] for v in g["versions"]]
    for group, version in versions:
        _, listing = raw.request("GET", f"/apis/{group}/{version}" if group else f"/api/{version}")
        legacy |= {(group, version, r["name"], r["kind"]) for r in listing["resources"]}
    aggregated: set[tuple[str, str, str, str]] = set()
    for path in ("/api", "/apis"):
        _, doc = raw.request("GET", path, headers={"Accept": AGGREGATED})
        assert doc["kind"] == "APIGroupDiscoveryList" and doc["apiVersion"] == "apidiscovery.k8s.io/v2"
        for item in doc["items"]:
            assert (item["metadata"]["name"] == "") == (path == "/api")
            for v in item["versions"]:
                for r in v["resources"]:
                    aggregated.add((item["metadata"]["name"], v["version"], r["resource"], r["responseKind"]["kind"]))
                    aggregated |= {(item["metadata"]["name"], v["version"], f"{r['resource']}/{s['subresource']}",
                                    s["responseKind"]["kind"]) for s in r.get("subresources", [])}
    assert aggregated == legacy
    _, apps = raw.request("GET", "/apis", headers={"Accept": AGGREGATED})
    deployments = next(r for i in apps["items"] if i["metadata"]["name"] == "apps" for v in i["versions"]
                       for r in v["resources"] if r["resource"] == "deployments")
    assert deployments["scope"] == "Namespaced" and "deploy" in deployments["shortNames"]
    scale = next(s for s in deployments["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_aggregated_discovery_is_served_only_to_who_asks(raw: Raw) -> None:
    conn = raw._conn()
    conn.request("GET", "/apis", headers={"Authorization": f"Bearer {raw.token}", "Accept": AGGREGATED})
    answer = conn.getresponse()
    answer.read()
    conn.close()
    assert answer.getheader("Content-Type") == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    _, legacy = raw.request("GET", "/apis", headers={"Accept": "application/json, */*"})
    assert legacy["kind"] == "APIGroupList"
    _, beta = raw.request("GET", "/api", headers={"Accept": AGGREGATED.split(",", 1)[1]})
    assert beta["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


def test_a_generated_name_that_clashes_is_tried_again_as_kube_apiserver_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubegate.emulator import store as store_module
    from kubegate.emulator.resources import Registry

    registry = Registry.with_builtins()
    store = store_module.Store(registry)
    configmaps = registry.lookup("", "v1", "configmaps")
    namespaces = registry.lookup("", "v1", "namespaces")
    assert configmaps is not None and namespaces is not None
    store.create(namespaces, "", {"metadata": {"name": "default"}})
    suffixes = iter(["aaaaa", "aaaaa", "bbbbb"] + ["ccccc"] * 9)  # the last create: its name and 7 more tries
    monkeypatch.setattr(store_module, "_generated_name", lambda prefix: prefix + next(suffixes))
    first = store.create(configmaps, "default", {"metadata": {"generateName": "job-"}})
    second = store.create(configmaps, "default", {"metadata": {"generateName": "job-"}})
    assert (first["metadata"]["name"], second["metadata"]["name"]) == ("job-aaaaa", "job-bbbbb")
    store.create(configmaps, "default", {"metadata": {"generateName": "job-"}})  # job-ccccc
    with pytest.raises(store_module.ApiError) as clash:  # eight tries, every one taken: 409, as the apiserver
        store.create(configmaps, "default", {"metadata": {"generateName": "job-"}})
    assert clash.value.code == 409 and clash.value.reason == "AlreadyExists"


def test_generated_names_use_the_apiservers_suffixes() -> None:
    from kubegate.emulator.store import _generated_name

    names = {_generated_name("web-") for _ in range(200)}
    assert len(names) > 190
    assert all(len(n) == 9 and set(n[4:]) <= set("bcdfghjklmnpqrstvwxz2456789") for n in names)
