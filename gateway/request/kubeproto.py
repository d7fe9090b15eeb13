"""Decoding of Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) into JSON objects.

kubectl's typed commands (`create namespace`, `create deployment`, `auth can-i`, `drain`...)
send protobuf, not JSON, and never fall back. The wire form is the magic `k8s\\x00` followed by a
`runtime.Unknown` envelope whose TypeMeta names the kind and whose `raw` holds the object.

Only the schema of the kinds listed in KINDS is known here (field numbers from k8s.io/api's
generated.proto). A field the schema does not know is not guessed: its path is reported in
`Decoded.unknown`, so a caller that must read it can refuse instead of deciding on a partial object.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterator

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    """The body is not a well-formed Kubernetes protobuf message of a known kind."""


@dataclass
class Decoded:
    api_version: str
    kind: str
    obj: dict[str, Any]
    unknown: list[str] = field(default_factory=list)  # JSON paths of fields the schema lacks


# A field is (json name, type). Types: "string", "bytes", "int" (int64), "int32", "bool", "time", "quantity",
# "intstr", "map:<value type>", "[]<type>", or a message name. A trailing "?" marks an
# optional (pointer) field whose zero value is meaningful and kept; other zero values are dropped,
# as Go's `omitempty` JSON encoding drops them.
Schema = dict[int, tuple[str, str]]

MESSAGES: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
        4: ("selfLink", "string"), 5: ("uid", "string"), 6: ("resourceVersion", "string"),
        7: ("generation", "int"), 8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int?"), 11: ("labels", "map:string"),
        12: ("annotations", "map:string"), 13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"), 17: ("managedFields", "[]skip"),
    },
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                       5: ("apiVersion", "string"), 6: ("controller", "bool?"),
                       7: ("blockOwnerDeletion", "bool?")},
    "LabelSelector": {1: ("matchLabels", "map:string"),
                      2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"),
                                 3: ("values", "[]string")},
    "LocalObjectReference": {1: ("name", "string")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"),
                        4: ("uid", "string"), 5: ("apiVersion", "string"),
                        6: ("resourceVersion", "string"), 7: ("fieldPath", "string")},
    "DeleteOptions": {1: ("gracePeriodSeconds", "int?"), 2: ("preconditions", "Preconditions"),
                      3: ("orphanDependents", "bool?"), 4: ("propagationPolicy", "string?"),
                      5: ("dryRun", "[]string")},
    "Preconditions": {1: ("uid", "string?"), 2: ("resourceVersion", "string?")},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec"),
                  3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:string"),
                  3: ("binaryData", "map:bytes"), 4: ("immutable", "bool?")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "string"),
               4: ("stringData", "map:string"), 5: ("immutable", "bool?")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[]ObjectReference"),
                       3: ("imagePullSecrets", "[]LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool?")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec"), 3: ("status", "empty")},
    "ServiceSpec": {
        1: ("ports", "[]ServicePort"), 2: ("selector", "map:string"), 3: ("clusterIP", "string"),
        4: ("type", "string"), 5: ("externalIPs", "[]string"), 7: ("sessionAffinity", "string"),
        8: ("loadBalancerIP", "string"), 9: ("loadBalancerSourceRanges", "[]string"),
        10: ("externalName", "string"), 11: ("externalTrafficPolicy", "string"),
        12: ("healthCheckNodePort", "int32"), 13: ("publishNotReadyAddresses", "bool"),
        17: ("ipFamilyPolicy", "string?"), 18: ("clusterIPs", "[]string"),
        19: ("ipFamilies", "[]string"), 20: ("allocateLoadBalancerNodePorts", "bool?"),
        21: ("loadBalancerClass", "string?"), 22: ("internalTrafficPolicy", "string?"),
    },
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int32"),
                    4: ("targetPort", "intstr"), 5: ("nodePort", "int32"), 6: ("appProtocol", "string?")},
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec"), 3: ("status", "PodStatus")},
    "PodStatus": {1: ("phase", "string")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        1: ("volumes", "[]Volume"), 2: ("containers", "[]Container"), 3: ("restartPolicy", "string"),
        4: ("terminationGracePeriodSeconds", "int?"), 5: ("activeDeadlineSeconds", "int?"),
        6: ("dnsPolicy", "string"), 7: ("nodeSelector", "map:string"),
        8: ("serviceAccountName", "string"), 9: ("serviceAccount", "string"),
        10: ("nodeName", "string"), 11: ("hostNetwork", "bool"), 12: ("hostPID", "bool"),
        13: ("hostIPC", "bool"), 14: ("securityContext", "PodSecurityContext"),
        15: ("imagePullSecrets", "[]LocalObjectReference"), 16: ("hostname", "string"),
        17: ("subdomain", "string"), 19: ("schedulerName", "string"),
        20: ("initContainers", "[]Container"), 21: ("automountServiceAccountToken", "bool?"),
        22: ("tolerations", "[]Toleration"), 24: ("priorityClassName", "string"),
        25: ("priority", "int32?"), 27: ("shareProcessNamespace", "bool?"),
        29: ("runtimeClassName", "string?"), 30: ("enableServiceLinks", "bool?"),
        31: ("preemptionPolicy", "string?"), 35: ("setHostnameAsFQDN", "bool?"),
        37: ("hostUsers", "bool?"),
    },
    "Container": {
        1: ("name", "string"), 2: ("image", "string"), 3: ("command", "[]string"),
        4: ("args", "[]string"), 5: ("workingDir", "string"), 6: ("ports", "[]ContainerPort"),
        7: ("env", "[]EnvVar"), 8: ("resources", "ResourceRequirements"),
        9: ("volumeMounts", "[]VolumeMount"), 13: ("terminationMessagePath", "string"),
        14: ("imagePullPolicy", "string"), 15: ("securityContext", "SecurityContext"),
        16: ("stdin", "bool"), 17: ("stdinOnce", "bool"), 18: ("tty", "bool"),
        20: ("terminationMessagePolicy", "string"), 24: ("restartPolicy", "string?"),
    },
    "ContainerPort": {1: ("name", "string"), 2: ("hostPort", "int32"), 3: ("containerPort", "int32"),
                      4: ("protocol", "string"), 5: ("hostIP", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "map:quantity"), 2: ("requests", "map:quantity")},
    "VolumeMount": {1: ("name", "string"), 2: ("readOnly", "bool"), 3: ("mountPath", "string"),
                    4: ("subPath", "string"), 5: ("mountPropagation", "string?"),
                    6: ("subPathExpr", "string")},
    "Volume": {1: ("name", "string"), 2: ("", "VolumeSource")},  # "" inlines the VolumeSource
    "VolumeSource": {1: ("hostPath", "HostPathVolumeSource"), 2: ("emptyDir", "EmptyDirVolumeSource"),
                     6: ("secret", "SecretVolumeSource"),
                     10: ("persistentVolumeClaim", "PVCVolumeSource"),
                     19: ("configMap", "ConfigMapVolumeSource")},
    "HostPathVolumeSource": {1: ("path", "string"), 2: ("type", "string?")},
    "EmptyDirVolumeSource": {1: ("medium", "string"), 2: ("sizeLimit", "quantity")},
    "SecretVolumeSource": {1: ("secretName", "string"), 3: ("defaultMode", "int32?"),
                           4: ("optional", "bool?")},
    "ConfigMapVolumeSource": {1: ("", "LocalObjectReference"), 3: ("defaultMode", "int32?"),
                              4: ("optional", "bool?")},
    "PVCVolumeSource": {1: ("claimName", "string"), 2: ("readOnly", "bool")},
    "SecurityContext": {1: ("capabilities", "Capabilities"), 2: ("privileged", "bool?"),
                        4: ("runAsUser", "int?"), 5: ("runAsNonRoot", "bool?"),
                        6: ("readOnlyRootFilesystem", "bool?"),
                        7: ("allowPrivilegeEscalation", "bool?"), 8: ("runAsGroup", "int?")},
    "Capabilities": {1: ("add", "[]string"), 2: ("drop", "[]string")},
    "PodSecurityContext": {2: ("runAsUser", "int?"), 3: ("runAsNonRoot", "bool?"),
                           5: ("fsGroup", "int?"), 6: ("runAsGroup", "int?")},
    "Toleration": {1: ("key", "string"), 2: ("operator", "string"), 3: ("value", "string"),
                   4: ("effect", "string"), 5: ("tolerationSeconds", "int?")},
    # apps/v1, batch/v1
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec"), 3: ("status", "empty")},
    "DeploymentSpec": {1: ("replicas", "int32?"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("strategy", "DeploymentStrategy"),
                       5: ("minReadySeconds", "int32"), 6: ("revisionHistoryLimit", "int32?"),
                       7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "int32?")},
    "DeploymentStrategy": {1: ("type", "string"), 2: ("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: ("maxUnavailable", "intstr"), 2: ("maxSurge", "intstr")},
    "ReplicaSet": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ReplicaSetSpec"), 3: ("status", "empty")},
    "ReplicaSetSpec": {1: ("replicas", "int32?"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("minReadySeconds", "int32")},
    "StatefulSet": {1: ("metadata", "ObjectMeta"), 2: ("spec", "StatefulSetSpec"), 3: ("status", "empty")},
    "StatefulSetSpec": {1: ("replicas", "int32?"), 2: ("selector", "LabelSelector"),
                        3: ("template", "PodTemplateSpec"), 5: ("serviceName", "string"),
                        6: ("podManagementPolicy", "string"), 8: ("revisionHistoryLimit", "int32?"),
                        9: ("minReadySeconds", "int32")},
    "DaemonSet": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DaemonSetSpec"), 3: ("status", "empty")},
    "DaemonSetSpec": {1: ("selector", "LabelSelector"), 2: ("template", "PodTemplateSpec"),
                      4: ("minReadySeconds", "int32"), 6: ("revisionHistoryLimit", "int32?")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec"), 3: ("status", "empty")},
    "JobSpec": {1: ("parallelism", "int32?"), 2: ("completions", "int32?"),
                3: ("activeDeadlineSeconds", "int?"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "bool?"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "int32?"), 8: ("ttlSecondsAfterFinished", "int32?"),
                9: ("completionMode", "string?"), 10: ("suspend", "bool?")},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"), 3: ("resources", "[]string"),
                   4: ("resourceNames", "[]string"), 5: ("nonResourceURLs", "[]string")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"),
                           3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # authorization.k8s.io/v1, authentication.k8s.io/v1, policy/v1
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSARSpec"),
                                3: ("status", "empty")},
    "SSARSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                 2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                           4: ("version", "string"), 5: ("resource", "string"),
                           6: ("subresource", "string"), 7: ("name", "string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SSRRSpec"),
                               3: ("status", "empty")},
    "SSRRSpec": {1: ("namespace", "string")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta"), 2: ("status", "empty")},
    "Eviction": {1: ("metadata", "ObjectMeta"), 2: ("deleteOptions", "DeleteOptions")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec"), 3: ("status", "empty")},
    "TokenRequestSpec": {1: ("audiences", "[]string"), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "int?")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"), 3: ("name", "string"),
                             4: ("uid", "string")},
    # A status the client sends empty: zero fields are skipped, anything else reported, not decoded.
    "empty": {},
}

# (apiVersion, kind) of top-level objects this module can decode.
KINDS: dict[tuple[str, str], str] = {
    (api_version, kind): kind
    for api_version, kinds in {
        "v1": ["Namespace", "ConfigMap", "Secret", "ServiceAccount", "Service", "Pod", "DeleteOptions"],
        "meta.k8s.io/v1": ["DeleteOptions"],
        "apps/v1": ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"],
        "batch/v1": ["Job"],
        "rbac.authorization.k8s.io/v1": ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"],
        "authorization.k8s.io/v1": ["SelfSubjectAccessReview", "SelfSubjectRulesReview"],
        "authentication.k8s.io/v1": ["SelfSubjectReview", "TokenRequest"],
        "policy/v1": ["Eviction"],
    }.items()
    for kind in kinds
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if num == 0:
            raise ProtobufError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield num, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ProtobufError("truncated length-delimited field")
            yield num, wire, buf[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise ProtobufError("truncated fixed-width field")
            yield num, wire, buf[pos:pos + size]
            pos += size
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(kind: str, wire: int, value: int | bytes, path: str) -> Any:
    if kind in ("int", "int32"):
        if wire != 0:
            raise ProtobufError(f"{path}: expected a varint")
        if kind == "int32":  # Go's generated code keeps the low 32 bits: 2^32 is 0, 2^31 is negative
            low = int(value) & 0xFFFFFFFF
            return low - (1 << 32) if low >= 1 << 31 else low
        return _signed(int(value))
    if kind == "bool":
        if wire != 0:
            raise ProtobufError(f"{path}: expected a varint")
        return bool(value)
    if not isinstance(value, bytes):
        raise ProtobufError(f"{path}: expected a length-delimited field")
    if kind == "string":
        try:
            return value.decode()
        except UnicodeDecodeError as e:
            raise ProtobufError(f"{path}: invalid UTF-8") from e
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "quantity":
        return _message("Quantity", value, path, []).get("string", "0")
    if kind == "time":
        t = _message("Time", value, path, [])
        if not t.get("seconds"):
            return None
        return dt.datetime.fromtimestamp(t["seconds"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if kind == "intstr":
        v = _message("IntOrString", value, path, [])
        return v.get("strVal", "") if v.get("type") == 1 else v.get("intVal", 0)
    raise ProtobufError(f"{path}: unknown field type {kind}")


MESSAGES.update({
    "Quantity": {1: ("string", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int32")},
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int32"), 3: ("strVal", "string")},
})


def _is_zero(v: Any) -> bool:
    return v in ("", 0, False, None) or v == {} or v == []


def _message(name: str, buf: bytes, path: str, unknown: list[str]) -> dict[str, Any]:
    schema = MESSAGES[name]
    out: dict[str, Any] = {}
    keep: set[str] = set()
    # A singular embedded message that occurs more than once is MERGED by Go's generated code
    # (it unmarshals each occurrence into the existing struct), which is what decoding the
    # occurrences' bytes concatenated gives: they are gathered here and decoded once, in order.
    merged: dict[int, bytearray] = {}
    for num, wire, value in _fields(buf):
        spec = schema.get(num)
        if spec is not None and not spec[1].startswith(("[]", "map:")) and spec[1].rstrip("?") in MESSAGES:
            if not isinstance(value, bytes):
                raise ProtobufError(f"{path}.{spec[0]}: expected an embedded message")
            merged.setdefault(num, bytearray()).extend(value)
    fields = [(num, wire, value) for num, wire, value in _fields(buf) if num not in merged]
    fields += [(num, 2, bytes(value)) for num, value in merged.items()]
    for num, wire, value in fields:
        spec = schema.get(num)
        if name == "empty" and value in (0, b""):
            continue  # clients encode their (empty) status with every non-pointer field at zero
        if spec is None:
            unknown.append(f"{path}.#{num}" if path else f"#{num}")
            continue
        key, kind = spec
        here = f"{path}.{key}" if path else key
        optional = kind.endswith("?")
        kind = kind.rstrip("?")
        repeated = kind.startswith("[]")
        kind = kind.removeprefix("[]")
        if kind == "skip":
            continue
        if kind.startswith("map:"):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{here}: expected a map entry")
            entry = {n: v for n, _, v in _fields(value)}
            k = entry.get(1, b"")
            if not isinstance(k, bytes):
                raise ProtobufError(f"{here}: map key must be a string")
            vkind = kind.removeprefix("map:")
            v = _scalar(vkind, 2, entry.get(2, b""), f"{here}[{k!r}]")
            out.setdefault(key, {})[k.decode()] = v
            keep.add(key)
            continue
        if kind in MESSAGES and kind not in ("Quantity", "Time", "IntOrString"):
            if not isinstance(value, bytes):
                raise ProtobufError(f"{here}: expected an embedded message")
            decoded: Any = _message(kind, value, here, unknown)
        else:
            decoded = _scalar(kind, wire, value, here)
        if repeated:
            out.setdefault(key, []).append(decoded)
            keep.add(key)
        elif key == "":  # an inlined (embedded) struct: its fields join this object
            out.update(decoded)
            keep.update(decoded)
        else:
            out[key] = decoded
            if optional:
                keep.add(key)
    return {k: v for k, v in out.items() if k in keep or not _is_zero(v)}


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == CONTENT_TYPE


def decode(body: bytes) -> Decoded:
    """Decode a `k8s\\x00`-framed body into its JSON form, or raise ProtobufError."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    envelope = _message("Unknown", body[len(MAGIC):], "", [])
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if envelope.get("contentEncoding"):
        raise ProtobufError(f"unsupported content encoding {envelope['contentEncoding']!r}")
    schema = KINDS.get((api_version, kind))
    if schema is None:
        raise ProtobufError(f"no protobuf schema for {api_version}/{kind}")
    raw = base64.b64decode(envelope.get("raw", ""))
    unknown: list[str] = []
    obj = _message(schema, raw, "", unknown)
    obj = {"apiVersion": api_version, "kind": kind, **obj}
    obj.setdefault("metadata", {})
    return Decoded(api_version, kind, obj, unknown)
