"""Protection marks other tools already put on objects, honoured by the gateway too.

- OpenKruise's `policy.kruise.io/delete-protection` label: `Always` forbids deleting the object;
  `Cascading` forbids it while it still holds something (a namespace with pods, a workload with
  replicas, a CRD with custom resources). Kruise enforces it with its own webhook; the gateway
  enforces it for clusters without Kruise and says so before the apiserver does.
- GitOps ownership: Argo CD's tracking annotation `argocd.argoproj.io/tracking-id` (or its
  `argocd.argoproj.io/instance` label, when configured as the tracking label), Flux's
  `kustomize.toolkit.fluxcd.io/name` and `helm.toolkit.fluxcd.io/name` labels. A manual change to
  such an object is undone at the next sync or drifts from Git: it takes a ticket. Argo CD's
  default label `app.kubernetes.io/instance` is not read as ownership (Helm sets it on every
  release too); configure annotation tracking in Argo CD to be recognised.
"""

from __future__ import annotations

from .kube import Obj, labels_of, meta

KRUISE_LABEL = "policy.kruise.io/delete-protection"


def kruise_protection(obj: Obj, kind: str, holds: str) -> str:
    """Why OpenKruise's delete protection forbids deleting OBJ, or "". HOLDS says what the object
    still holds ("" when nothing), for `Cascading`."""
    value = labels_of(obj).get(KRUISE_LABEL, "")
    name = meta(obj).get("name", "")
    if value == "Always":
        return f"{kind} {name} has {KRUISE_LABEL}=Always"
    if value == "Cascading" and holds:
        return f"{kind} {name} has {KRUISE_LABEL}=Cascading and still holds {holds}"
    return ""


def gitops_owner(obj: Obj) -> str:
    """The GitOps tool (and its application) that manages OBJ, or ""."""
    labels = labels_of(obj)
    annotations = meta(obj).get("annotations")
    annotations = annotations if isinstance(annotations, dict) else {}
    if tracking := annotations.get("argocd.argoproj.io/tracking-id"):
        return f"Argo CD application {str(tracking).split(':', 1)[0]}"
    if instance := labels.get("argocd.argoproj.io/instance"):
        return f"Argo CD application {instance}"
    if name := labels.get("kustomize.toolkit.fluxcd.io/name"):
        return f"Flux Kustomization {labels.get('kustomize.toolkit.fluxcd.io/namespace', '')}/{name}".replace(" /", " ")
    if name := labels.get("helm.toolkit.fluxcd.io/name"):
        return f"Flux HelmRelease {labels.get('helm.toolkit.fluxcd.io/namespace', '')}/{name}".replace(" /", " ")
    return ""
