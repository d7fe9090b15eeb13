"""Prometheus metrics: the one module that imports prometheus_client.

Series stay bounded whatever clients send: the `resource` label is a resource the cluster has
answered for (a response other than 404 once forwarded: what its discovery serves), else
`other`; unauthenticated requests carry no resource at all. No `_created` series (they double
every counter and no dashboard reads them).

With `kubegate serve --workers N` each worker writes its series to prometheus_client's
multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by the supervisor); the supervisor's one
/metrics aggregates them (`SupervisorMetrics`): counters and histograms summed over workers, each
gauge as its `multiprocess_mode` says (in-flight requests summed over live workers, readiness the
minimum, a budget's remaining tokens the most recent any worker saw).
"""

from __future__ import annotations

import bisect
import platform
import threading
from pathlib import Path
from typing import Any

import prometheus_client
from prometheus_client import (CollectorRegistry, Counter, GCCollector, Gauge, Histogram, Info, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client import multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kubegate import __version__

prometheus_client.disable_created_metrics()

CONTENT_TYPE = CONTENT_TYPE_LATEST
_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)
# Whole requests and the cluster's part of them: kube-apiserver's own request-duration buckets' range.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OTHER = "other"
MAX_RESOURCES = 2000  # per cluster; past it (a cluster with thousands of CRDs) new ones are `other`


def _build_info(registry: CollectorRegistry) -> None:
    Info("kubegate_build", "kubegate's version and the Python it runs on.", registry=registry).info(
        {"version": __version__, "python": platform.python_version()})


class KnownResources:
    """The resources each cluster has answered for, learned from its responses (bounded)."""

    def __init__(self) -> None:
        self._known: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def label(self, cluster: str, resource: str, code: int, forwarded: bool) -> str:
        if not resource:
            return ""
        known = self._known.get(cluster)
        if known is not None and resource in known:
            return resource
        if forwarded and code != 404 and code < 500:
            with self._lock:
                known = self._known.setdefault(cluster, set())
                if len(known) < MAX_RESOURCES:
                    known.add(resource)
                    return resource
        return OTHER


class BucketCounts:
    """Observations of several labelled series of one histogram, as plain numbers: per series, a
    count per bucket (the last one +Inf) and the sum; `drain` hands them over and starts again."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._pending: dict[str, list[float]] = {}

    def add(self, values: dict[str, float]) -> None:
        pending, bounds = self._pending, self._bounds
        width = len(bounds) + 1
        for series, value in values.items():
            row = pending.get(series)
            if row is None:
                row = pending[series] = [0.0] * (width + 1)
            row[bisect.bisect_left(bounds, value)] += 1  # the first bucket whose bound is >= value
            row[width] += value

    def drain(self) -> dict[str, list[float]]:
        pending, self._pending = self._pending, {}
        return pending


def add_to_histogram(child: Any, row: list[float]) -> None:
    """Add a BucketCounts row (per-bucket counts, then the sum) to a histogram's child at once.

    prometheus_client has no public call that adds many observations; a child keeps one value per
    bucket (`_buckets`, non-cumulative, the last +Inf) and the sum (`_sum`), in memory or in the
    multiprocess files alike: those are what `observe` increments one at a time."""
    buckets, total = row[:-1], row[-1]
    for value, count in zip(child._buckets, buckets):
        if count:
            value.inc(count)
    child._sum.inc(total)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._stage_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, ...], Any] = {}
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        _build_info(self.registry)
        self.known_resources = KnownResources()
        self.request_seconds = Histogram(
            "kubegate_request_duration_seconds",
            "Time from a request's arrival to its response headers, by verb, resource and decision "
            "(long-running requests, watch and exec/attach/logs/proxy, are left out as kube-apiserver does).",
            ["verb", "resource", "decision"], buckets=_REQUEST_BUCKETS, registry=self.registry)
        self.upstream_seconds = Histogram(
            "kubegate_upstream_duration_seconds",
            "Time from forwarding a request to the cluster's response headers, by cluster.",
            ["cluster"], buckets=_REQUEST_BUCKETS, registry=self.registry)
        self.inflight = Gauge("kubegate_inflight_requests", "Requests being judged or relayed now.",
                              multiprocess_mode="livesum", registry=self.registry)
        self.cluster_reachable = Gauge(
            "kubegate_cluster_reachable", "1 while the cluster answers the gateway's own credential (readiness probe).",
            ["cluster"], multiprocess_mode="livemax", registry=self.registry)
        self.policy_last_reload = Gauge(
            "kubegate_policy_last_reload_timestamp_seconds", "When a policy set was last loaded or refused.",
            ["policy", "result"], multiprocess_mode="max", registry=self.registry)
        self.authn_failures = Counter(
            "kubegate_authn_failures", "Requests refused by authentication, by reason.", ["reason"],
            registry=self.registry)
        self.serving_cert_expiry = Gauge(
            "kubegate_serving_certificate_expiry_timestamp_seconds",
            "When the gateway's serving certificate expires (Unix time).", multiprocess_mode="livemin", registry=self.registry)
        self.overload_rejected = Counter(
            "kubegate_overload_rejected", "Requests refused with 429 by overload protection, by why.", ["reason"],
            registry=self.registry)
        self.overload_wait = Histogram(
            "kubegate_overload_wait_seconds", "Time requests waited in their user's queue for a seat.",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)
        self.overload_seats = Gauge(
            "kubegate_overload_seats_in_use", "Seats held by requests being worked on, by kind.", ["kind"],
            multiprocess_mode="livesum", registry=self.registry)
        self.overload_queued = Gauge(
            "kubegate_overload_queued", "Requests waiting in users' queues for a seat.", multiprocess_mode="livesum", registry=self.registry)
        self.approvals_pending = Gauge(
            "kubegate_approvals_pending", "Approval tickets waiting for a second person.", multiprocess_mode="livemax", registry=self.registry)
        self.notifications = Counter(
            "kubegate_notifications", "Approver notifications, by target and result (sent, failed after every "
            "retry, dropped from a full queue).", ["target", "result"], registry=self.registry)
        self.brakes_active = Gauge(
            "kubegate_brakes_active", "Emergency brakes in force (as last read here): changes in their scope need "
            "break-glass.", multiprocess_mode="livemax", registry=self.registry)
        self.alert_gate_firing = Gauge(
            "kubegate_alert_gate_firing", "Alerts an alert gate sees firing in a cluster (-1: its Alertmanager "
            "cannot be asked).", ["gate", "cluster"], multiprocess_mode="livemax", registry=self.registry)
        self.grants_active = Gauge(
            "kubegate_access_grants_active", "Time-bound access grants in force.", multiprocess_mode="livemax", registry=self.registry)
        self.requests = Counter(
            "kubegate_requests", "Requests by cluster, verb, resource, response code and decision.",
            ["cluster", "verb", "resource", "code", "decision", "stage"], registry=self.registry)
        self.stage_seconds = Histogram(
            "kubegate_stage_duration_seconds", "Time spent in each stage of the request path.",
            ["stage"], buckets=_STAGE_BUCKETS, registry=self.registry)
        self._stage_timings = BucketCounts(_STAGE_BUCKETS)
        self.audit_failures = Counter(
            "kubegate_audit_write_failures", "Audit events that could not be written at once.",
            registry=self.registry)
        self.upstream_errors = Counter(
            "kubegate_upstream_errors", "Requests that failed between the gateway and a cluster.",
            ["cluster", "code"], registry=self.registry)
        self.policy_reloads = Counter(
            "kubegate_policy_reloads", "Policy directory changes seen, by policy and whether the new set was loaded.",
            ["result", "policy"], registry=self.registry)
        self.policy_revision = Gauge(
            "kubegate_policy_revision", "1 for the revision (content hash) of each policy set in force.",
            ["policy", "revision"], multiprocess_mode="livemax", registry=self.registry)
        self.gate_refusals = Counter(
            "kubegate_gate_refusals", "Requests refused by a risk gate, by gate, reason and rule/budget/limit name.",
            ["gate", "reason", "name"], registry=self.registry)
        self.budget_remaining = Gauge(
            "kubegate_budget_remaining", "Deletes left in each budget window, as last seen by this replica.",
            ["budget", "scope", "window"], multiprocess_mode="livemostrecent", registry=self.registry)
        self.breaker_open = Gauge(
            "kubegate_breaker_open", "1 while a delete budget's circuit breaker is open (as last seen here).",
            ["budget", "scope"], multiprocess_mode="livemostrecent", registry=self.registry)
        self.breaker_trips = Counter(
            "kubegate_breaker_trips", "Circuit breakers opened by this replica.", ["budget"], registry=self.registry)
        self.store_errors = Counter(
            "kubegate_store_unavailable", "State store calls that failed, by what they were for.",
            ["use"], registry=self.registry)
        self.ready = Gauge("kubegate_ready", "1 while the gateway serves requests.", multiprocess_mode="livemin", registry=self.registry)
        self.audit_events = Counter("kubegate_audit_events", "Audit events written.", ["stage"],
                                    registry=self.registry)
        self.audit_dropped = Counter("kubegate_audit_events_dropped",
                                     "Audit events lost (stays 0: an event that cannot be written waits, and "
                                     "nothing new is served meanwhile).", registry=self.registry)
        self.audit_write_seconds = Histogram("kubegate_audit_write_seconds",
                                             "Time to write one batch of audit events to the sinks (local file, "
                                             "spool queue), on the audit writer thread.",
                                             buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1),
                                             registry=self.registry)
        self.audit_pending = Gauge("kubegate_audit_pending",
                                   "Audit events queued for the writer thread after its last batch.",
                                   multiprocess_mode="livesum", registry=self.registry)
        self.audit_spool_bytes = Gauge("kubegate_audit_spool_bytes",
                                       "Audit events waiting on disk for the audit center.", multiprocess_mode="livesum", registry=self.registry)

    def observe_stages(self, seconds: dict[str, float]) -> None:
        """A request's time in each stage: counted in plain numbers here (a request passes a dozen
        stages; a histogram observation takes two locks each), handed to the histogram by
        `flush_stages` at scrape time and every second."""
        self._stage_timings.add(seconds)

    def flush_stages(self) -> None:
        """What `observe_stages` counted since the last flush, into kubegate_stage_duration_seconds
        (its children kept: the stage names are few and fixed). On the event loop's thread only,
        as `observe_stages` is: the two never interleave."""
        children = self._stage_children
        for stage, row in self._stage_timings.drain().items():
            child = children.get(stage)
            if child is None:
                child = children[stage] = self.stage_seconds.labels(stage)
            add_to_histogram(child, row)

    def count_request(self, labels: tuple[str, str, str, str, str, str]) -> None:
        """kubegate_requests for one request: its child kept once seen (every label value is bounded)."""
        child = self._request_children.get(labels)
        if child is None:
            child = self._request_children[labels] = self.requests.labels(*labels)
        child.inc()

    def exposition(self) -> bytes:
        self.flush_stages()
        return generate_latest(self.registry)


class SupervisorMetrics:
    """The one /metrics of `kubegate serve --workers N`: every worker's series aggregated from the
    multiprocess directory, the supervisor's own process metrics, and the workers' count and restarts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=str(directory))
        ProcessCollector(registry=self.registry)  # the supervisor's process: workers' are not summed
        _build_info(self.registry)
        self.workers = Gauge("kubegate_workers", "Worker processes serving (ready) of `serve --workers N`.",
                             registry=self.registry)
        self.workers_wanted = Gauge("kubegate_workers_configured", "N of `serve --workers N`.",
                                    registry=self.registry)
        self.restarts = Counter("kubegate_worker_restarts",
                                "Workers started again, by why: `exited` (it ended unasked) or `rolling` "
                                "(a rolling restart, SIGUSR2).", ["reason"], registry=self.registry)

    def worker_gone(self, pid: int) -> None:
        """A worker ended: its live gauges (in flight, queued, ready…) no longer count."""
        multiprocess.mark_process_dead(pid, str(self.directory))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
