"""Discovery and OpenAPI documents, built from the registry of resource types.

`/openapi/v2` is a protobuf document (kubectl parses it as protobuf whatever its content type)
with no definitions: kubectl still validates a `kind: List`'s items against it on the client, and
finding no schema for a kind it passes the item, as for a kind the server does not describe. The
`/openapi/v3` documents hold just what kubectl reads: for each resource a PATCH
operation tagged with its group/version/kind and a `fieldValidation` parameter, which makes
kubectl leave validation to the server, plus a permissive schema per kind.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import Registry, ResourceType

VERSION = {
    "major": "1", "minor": "37", "gitVersion": "v1.37.0-kubegate-emulator",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
    "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "37",
}


def _resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
        "kind": rt.kind, "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    for sub in rt.subresources:
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{sub.name}", "singularName": "", "namespaced": rt.namespaced,
            "kind": sub.kind or rt.kind, "verbs": list(sub.verbs),
        }
        if sub.group is not None:
            entry.update(group=sub.group, version=sub.version)
        out.append(entry)
    return out


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(reg: Registry) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in sorted(reg.group_versions().items()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(reg: Registry, group: str) -> dict[str, Any] | None:
    versions = reg.group_versions().get(group)
    if not versions or not group:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def resource_list(reg: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = reg.in_group_version(group, version)
    if not types:
        return None
    gv = f"{group}/{version}" if group else version
    entries = [e for rt in sorted(types, key=lambda t: t.plural) for e in _resource_entries(rt)]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


# Aggregated discovery (kube-apiserver serves it by default since 1.30; kubectl asks for it first):
# every group, version and resource in one answer to GET /api and one to GET /apis.
AGGREGATED_MEDIA = {f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList": v
                    for v in ("v2", "v2beta1")}


def aggregated_version(accept: str) -> str | None:
    """The aggregated discovery version (v2, v2beta1) an Accept header asks for first, if any."""
    for offer in accept.split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in offer.split(";")[1:])}
        if offer.split(";")[0].strip() == "application/json" and params.get("g") == "apidiscovery.k8s.io" \
                and params.get("as") == "APIGroupDiscoveryList" and params.get("v") in ("v2", "v2beta1"):
            return params["v"]
    return None


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural, "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster", "singularResource": rt.singular,
        "verbs": list(rt.verbs)}
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.subresources:
        entry["subresources"] = [
            {"subresource": sub.name,
             "responseKind": {"group": sub.group if sub.group is not None else rt.group,
                              "version": sub.version if sub.version is not None else rt.version,
                              "kind": sub.kind or rt.kind},
             "verbs": list(sub.verbs)} for sub in rt.subresources]
    return entry


def aggregated(reg: Registry, core: bool, version: str) -> dict[str, Any]:
    """APIGroupDiscoveryList: for GET /api the core group (named ""), for GET /apis every other one."""
    items = []
    for group, versions in sorted(reg.group_versions().items()):
        if (group == "") != core:
            continue
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": [
            {"version": v, "freshness": "Current",
             "resources": [_aggregated_resource(rt) for rt in sorted(reg.in_group_version(group, v),
                                                                    key=lambda r: r.plural)]}
            for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _gv_document(reg: Registry, group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    field_validation = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
                        "description": "Ignore, Warn or Strict"}
    for rt in reg.in_group_version(group, version):
        gvk = {"group": group, "version": version, "kind": rt.kind}
        prefix = f"/{_gv_path(group, version)}/"
        prefix += f"namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced else f"{rt.plural}/{{name}}"
        ops = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [field_validation],
            "responses": {"200": {"description": "OK"}},
        }
        paths[prefix] = {"patch": {**ops, "x-kubernetes-action": "patch"},
                         "put": {**ops, "x-kubernetes-action": "put"}}
        schema_name = f"io.kubegate.emulator.{group or 'core'}.{version}.{rt.kind}"
        schemas[schema_name] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                "x-kubernetes-group-version-kind": [gvk]}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_v3_root(reg: Registry) -> dict[str, Any]:
    paths = {}
    for group, versions in reg.group_versions().items():
        for version in versions:
            doc = json.dumps(_gv_document(reg, group, version), sort_keys=True).encode()
            digest = hashlib.sha512(doc).hexdigest()[:32].upper()
            paths[_gv_path(group, version)] = {
                "serverRelativeURL": f"/openapi/v3/{_gv_path(group, version)}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(reg: Registry, gv_path: str) -> dict[str, Any] | None:
    parts = gv_path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    if not reg.in_group_version(group, version):
        return None
    return _gv_document(reg, group, version)


def _protobuf_field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2): its tag, its length, its bytes."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def openapi_v2_protobuf() -> bytes:
    """gnostic's openapi_v2.Document {swagger: "2.0", info: {title, version}}: no paths, no definitions."""
    info = _protobuf_field(1, b"Kubernetes") + _protobuf_field(2, VERSION["gitVersion"].encode())
    return _protobuf_field(1, b"2.0") + _protobuf_field(2, info)
