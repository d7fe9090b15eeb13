"""Classification with kube-apiserver's semantics, and refusal of what it might read differently."""

from __future__ import annotations

import pytest

from kubegate.gateway.errors import Denial
from kubegate.gateway.request.info import RequestInfo
from kubegate.gateway.request.info import classify as classify_parsed
from kubegate.gateway.request.query import Query

P = pytest.param


def classify(method: str, path: str, query: str) -> RequestInfo:
    return classify_parsed(method, path, Query.parse(query))


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    P("GET", "/api/v1/namespaces/prod/pods", "", ("list", "", "prod", "pods", "", ""), id="list"),
    P("GET", "/api/v1/pods", "watch=true", ("watch", "", "", "pods", "", ""), id="watch-all-namespaces"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=1&resourceVersion=5", ("watch", "", "a", "pods", "", ""),
      id="watch-1"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=false", ("list", "", "a", "pods", "", ""), id="watch-false"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=FALSE", ("list", "", "a", "pods", "", ""), id="watch-FALSE"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=0", ("list", "", "a", "pods", "", ""), id="watch-0"),
    # apimachinery's bool conversion: any other value, the empty one included, is a watch.
    P("GET", "/api/v1/namespaces/a/pods", "watch=", ("watch", "", "a", "pods", "", ""), id="watch-empty"),
    P("GET", "/api/v1/namespaces/a/pods", "watch", ("watch", "", "a", "pods", "", ""), id="watch-bare"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=maybe", ("watch", "", "a", "pods", "", ""), id="watch-maybe"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=f", ("watch", "", "a", "pods", "", ""), id="watch-f"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=no", ("watch", "", "a", "pods", "", ""), id="watch-no"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=+false", ("watch", "", "a", "pods", "", ""), id="watch-space-false"),
    P("GET", "/apis/apps/v1/watch/namespaces/a/deployments/web", "", ("watch", "apps", "a", "deployments", "", "web"),
      id="legacy-watch-path"),
    P("GET", "/api/v1/namespaces/a/pods/web", "", ("get", "", "a", "pods", "", "web"), id="get"),
    P("HEAD", "/api/v1/namespaces/a/pods/web", "", ("get", "", "a", "pods", "", "web"), id="head-is-get"),
    P("POST", "/apis/apps/v1/namespaces/a/deployments", "", ("create", "apps", "a", "deployments", "", ""),
      id="create"),
    P("PUT", "/apis/apps/v1/namespaces/a/deployments/web", "", ("update", "apps", "a", "deployments", "", "web"),
      id="update"),
    P("PATCH", "/apis/apps/v1/namespaces/a/deployments/web/scale", "",
      ("patch", "apps", "a", "deployments", "scale", "web"), id="patch-scale"),
    P("DELETE", "/api/v1/namespaces/a/pods/web", "", ("delete", "", "a", "pods", "", "web"), id="delete"),
    P("DELETE", "/api/v1/namespaces/a/pods", "labelSelector=x%3Dy", ("deletecollection", "", "a", "pods", "", ""),
      id="deletecollection"),
    P("GET", "/api/v1/namespaces/a/pods/web/exec", "command=sh&command=-c&command=ls",
      ("create", "", "a", "pods", "exec", "web"), id="websocket-exec-is-create"),
    P("GET", "/api/v1/namespaces/a/pods/web/attach", "", ("create", "", "a", "pods", "attach", "web"),
      id="attach-is-create"),
    P("GET", "/api/v1/namespaces/a/pods/web/portforward", "", ("create", "", "a", "pods", "portforward", "web"),
      id="portforward-is-create"),
    P("POST", "/api/v1/namespaces/a/pods/web/exec", "", ("create", "", "a", "pods", "exec", "web"), id="spdy-exec"),
    P("GET", "/api/v1/namespaces/a/pods/web/log", "follow=true", ("get", "", "a", "pods", "log", "web"), id="logs"),
    P("GET", "/api/v1/namespaces/kube-system", "", ("get", "", "kube-system", "namespaces", "", "kube-system"),
      id="namespace-object-carries-its-name"),
    P("DELETE", "/api/v1/namespaces/prod", "", ("delete", "", "prod", "namespaces", "", "prod"), id="delete-namespace"),
    P("PUT", "/api/v1/namespaces/prod/finalize", "", ("update", "", "prod", "namespaces", "finalize", "prod"),
      id="namespace-finalize"),
    P("GET", "/api/v1/namespaces", "", ("list", "", "", "namespaces", "", ""), id="list-namespaces"),
    P("GET", "/api/v1/nodes/n1/proxy/metrics/cadvisor", "", ("get", "", "", "nodes", "proxy", "n1"), id="node-proxy"),
    P("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregate-to-admin", "",
      ("get", "rbac.authorization.k8s.io", "", "clusterroles", "", "system:aggregate-to-admin"), id="colon-in-name"),
])
def test_resource_requests(method: str, path: str, query: str, expected: tuple[str, ...]) -> None:
    info = classify(method, path, query)
    assert info.is_resource
    assert (info.verb, info.api_group, info.namespace, info.resource, info.subresource, info.name) == expected


@pytest.mark.parametrize(("method", "path", "verb"), [
    P("GET", "/version", "get", id="version"),
    P("GET", "/api", "get", id="api"),
    P("GET", "/api/v1", "get", id="core-discovery"),
    P("GET", "/apis/apps", "get", id="group-discovery"),
    P("GET", "/apis/apps/v1", "get", id="gv-discovery"),
    P("GET", "/openapi/v3/apis/apps/v1", "get", id="openapi"),
    P("GET", "/healthz", "get", id="healthz"),
    P("POST", "/logs", "post", id="post-non-resource"),
])
def test_non_resource_requests(method: str, path: str, verb: str) -> None:
    info = classify(method, path, "")
    assert not info.is_resource and info.verb == verb


@pytest.mark.parametrize(("method", "path", "query"), [
    P("GET", "/api/v1/namespaces/a/pods/../secrets", "", id="dot-dot"),
    P("GET", "/api/v1/namespaces/a/./pods", "", id="dot"),
    P("GET", "/api/v1/namespaces/a/pods/%2e%2e", "", id="encoded-dot-dot"),
    P("GET", "/api/v1/namespaces/a/pods/%2E", "", id="encoded-dot-upper"),
    P("GET", "/api/v1//namespaces/a/pods", "", id="double-slash"),
    P("GET", "/api/v1/namespaces/a%2Fb/pods", "", id="encoded-slash"),
    P("GET", "/api/v1/namespaces/a%5cb/pods", "", id="encoded-backslash"),
    P("GET", "/api/v1/namespaces/a\\b/pods", "", id="backslash"),
    P("GET", "/api/v1/namespaces/a/pods;x=y", "", id="semicolon"),
    P("GET", "/api/v1/namespaces/a/pods/%00", "", id="encoded-nul"),
    P("GET", "/api/v1/namespaces/a/pods/%252e%252e", "", id="double-encoded"),
    P("GET", "/api/v1/namespaces/a/pods/web/exec/extra", "", id="trailing-junk"),
    P("GET", "/api/v1/namespaces/a/pods/w%20b", "", id="encoded-space"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=false&watch=true", id="duplicate-watch"),
    P("DELETE", "/api/v1/namespaces/a/pods", "labelSelector=a%3Db&labelSelector=", id="duplicate-selector"),
    P("GET", "/api/v1/namespaces/a/pods", "watch=1;", id="semicolon-in-query"),
    P("GET", "/api/v1/proxy/namespaces/a/pods/web", "", id="deprecated-proxy-path"),
    P("PATCH", "/api/v1/namespaces/a/pods", "", id="patch-without-name"),
    P("POST", "/api/v1/namespaces/a/pods/web", "", id="create-with-name"),
    P("GET", "relative/path", "", id="relative"),
])
def test_ambiguous_requests_are_refused(method: str, path: str, query: str) -> None:
    with pytest.raises(Denial) as err:
        classify(method, path, query)
    assert err.value.code == 400 and err.value.reason == "BadRequest"


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "OPTIONS", "PROPFIND"])
def test_unknown_methods_are_refused(method: str) -> None:
    with pytest.raises(Denial) as err:
        classify(method, "/api/v1/pods", "")
    assert err.value.code == 405
