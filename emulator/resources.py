"""The resource types the emulator serves: built-ins plus whatever CustomResourceDefinitions add."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple[str, ...]
    group: str | None = None  # when the subresource's kind lives in another group (scale, eviction)
    version: str | None = None


STATUS = Subresource("status", "", ("get", "patch", "update"))


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[Subresource, ...] = ()
    categories: tuple[str, ...] = ()
    # An object of this type stands for something that runs: give it a synthetic ready status.
    runs: bool = False
    # Review-style resources (SelfSubjectAccessReview...) are computed, answered and never stored.
    virtual: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return self.group, self.version

    def subresource(self, name: str) -> Subresource | None:
        for sub in self.subresources:
            if sub.name == name:
                return sub
        return None

    def has_status(self) -> bool:
        return self.subresource("status") is not None


_SCALE = Subresource("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1")
_WORKLOAD = (STATUS, _SCALE)
_ALL = ("all",)

BUILTINS: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",),
                 ("create", "delete", "get", "list", "patch", "update", "watch"),
                 (STATUS, Subresource("finalize", "Namespace", ("update",)))),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), subresources=(STATUS,)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), categories=_ALL, runs=True, subresources=(
        STATUS,
        Subresource("log", "Pod", ("get",)),
        Subresource("exec", "PodExecOptions", ("create", "get")),
        Subresource("attach", "PodAttachOptions", ("create", "get")),
        Subresource("portforward", "PodPortForwardOptions", ("create", "get")),
        Subresource("eviction", "Eviction", ("create",), "policy", "v1"),
    )),
    ResourceType("", "v1", "services", "Service", True, ("svc",), categories=_ALL,
                 subresources=(STATUS,)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), subresources=(
        Subresource("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),)),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    # Stored as given; a claim's delete releases its bound volume as the volume's reclaim policy says.
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
                 subresources=(STATUS,)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), subresources=(STATUS,)),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    ResourceType("apps", "v1", "deployments", "Deployment", True, ("deploy",), categories=_ALL,
                 runs=True, subresources=_WORKLOAD),
    ResourceType("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), categories=_ALL,
                 runs=True, subresources=_WORKLOAD),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), categories=_ALL,
                 runs=True, subresources=_WORKLOAD),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), categories=_ALL,
                 runs=True, subresources=(STATUS,)),
    ResourceType("batch", "v1", "jobs", "Job", True, categories=_ALL, subresources=(STATUS,)),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    # Stored as given (no controllers act on them): what a Helm chart deploys beside its workloads.
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
                 subresources=(STATUS,)),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",),
                 categories=_ALL, subresources=(STATUS,)),
    ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, ("ing",), subresources=(STATUS,)),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                 "CustomResourceDefinition", False, ("crd", "crds"), subresources=(STATUS,)),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                 "SelfSubjectAccessReview", False, verbs=("create",), virtual=True),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectrulesreviews",
                 "SelfSubjectRulesReview", False, verbs=("create",), virtual=True),
    ResourceType("authentication.k8s.io", "v1", "selfsubjectreviews",
                 "SelfSubjectReview", False, verbs=("create",), virtual=True),
)


@dataclass
class Registry:
    """Resource types by group/version, with CRD-defined types added and removed at run time."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls) -> "Registry":
        reg = cls()
        for rt in BUILTINS:
            reg.add(rt)
        return reg

    def add(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def remove_group_resource(self, group: str, plural: str) -> None:
        for key in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def group_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for group, version, _ in self.types:
            versions = out.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self.types.items() if (g, v) == (group, version)]

    def all(self) -> Iterable[ResourceType]:
        return self.types.values()


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition object defines (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    plural, kind, group = names.get("plural"), names.get("kind"), spec.get("group")
    if not (plural and kind and group):
        raise ValueError("spec.group, spec.names.plural and spec.names.kind are required")
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    out = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True) or not ver.get("name"):
            continue
        subs: tuple[Subresource, ...] = ()
        if "status" in ((ver.get("subresources") or {})):
            subs = (STATUS,)
        out.append(ResourceType(group, ver["name"], plural, kind, namespaced,
                                tuple(names.get("shortNames") or ()), subresources=subs,
                                categories=tuple(names.get("categories") or ())))
    if not out:
        raise ValueError("spec.versions must list at least one served version")
    return out
