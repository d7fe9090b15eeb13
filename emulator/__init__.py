"""A Kubernetes API server emulator that real kubectl and client-go accept, for tests and demos.

kube-apiserver cannot run on the machines kubegate is developed on, so the gateway is tested
against this instead. It serves, over TLS: discovery and a minimal /openapi/v3; a store with a
global resourceVersion, uid, creationTimestamp, generation and generateName; get, list (label
and field selectors, limit/continue), create, update (resourceVersion preconditions), patch
(JSON, merge, strategic, server-side apply), delete, deletecollection, and namespace deletion
that cascades to the namespace's objects; watch (events after a resourceVersion, selectors,
timeoutSeconds, bookmarks, sendInitialEvents, 410 for compacted versions); pod logs (with
follow), scale, status and eviction subresources; exec and attach over WebSocket
(v5/v4.channel.k8s.io) running a tiny built-in command set; Self{Subject}AccessReview,
SelfSubjectRulesReview and SelfSubjectReview answered from the impersonated identity;
protobuf request bodies; bearer-token and client-certificate authentication with
impersonation limited to credentials allowed to impersonate; a request log; and injected
faults (latency, error status, dropped connection). What a change sets off, as the cluster's
controllers would leave it once settled: the garbage collector by ownerReference (Background,
Foreground and Orphan propagation; a dependent another live owner keeps loses only its reference),
a claim's bound volume deleted or released by its reclaim policy, PodDisruptionBudget status
computed from the Ready pods its selector selects, evictions refused (429) below a budget, and —
opt-in (`controllers=True`, `--controllers`) — workload controllers: a Deployment owns a
ReplicaSet per pod template, ReplicaSets and StatefulSets own their pods (scaled with `replicas`,
a deleted pod replaced), a DaemonSet a pod per schedulable node; pods are spread over the two
nodes (zone `emu-a`). Ready is what a pod's status says: tests make one unready through
`pods/status`. `dryRun=All` is honoured on every write (nothing is stored, nothing cascades). It reads requests as kube-apiserver does
where that decides what runs: boolean query options the apimachinery way (any value but `0` or
`false` is true), DeleteOptions from the body when there is one (the query only otherwise, as in
`handlers/delete.go`). In tests it sits behind a Go `net/http` front (tests/go/front), so the
query it reads is Go's parse of what the client sent.

What it does not emulate:
- admission (no webhooks, no defaulting beyond replicas and Secret type, no schema validation:
  fieldValidation is accepted and ignored), RBAC (every authenticated user may do everything,
  except users listed in `deny_users`), quotas, API priority and fairness;
- the kubelet and most controllers: without `controllers=True` nothing creates pods for a
  workload; rollouts are instant (no maxSurge/maxUnavailable pacing), Jobs and CronJobs make no
  pods, no endpoints or EndpointSlices are made for Services; HorizontalPodAutoscalers,
  NetworkPolicies and Ingresses are stored and served, never enforced; a workload's status is a
  synthetic all-ready one (its pods' readiness does not feed back into readyReplicas);
  finalizers and graceful deletion are ignored (deletion, and Foreground propagation, are
  immediate); no real scheduling (no taints, no resources) and NoExecute taints evict nothing;
- Table output (`as=Table`): lists are plain lists, which kubectl prints as NAME and AGE;
  protobuf responses (always JSON; aggregated discovery is served, as JSON only);
  HTTP/2; `/openapi/v2` schemas (the document is served without definitions, so kubectl's
  client-side check of a `kind: List`'s items finds nothing to check);
- port-forward; SPDY/3.1 exec/attach only in protocol v4 (no v5 stdin close, no flow-control
  window of its own: it sends without waiting for WINDOW_UPDATE); a real shell (see commands.py);
- strategic merge patch beyond the built-in merge keys (see patch.py); managedFields;
- continue tokens are positions, not snapshots: a page reflects the store when it is read;
- body decoding is Python's (JSON, PyYAML, kubegate's protobuf decoder), not Kubernetes' Go
  decoders: where the two differ, the cross-decoder tests (tests/gateway/request) compare the
  gateway's readers with Go's own instead.
"""
