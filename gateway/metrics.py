"""Prometheus metrics: the one module that imports prometheus_client."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kubegate_requests", "Requests by cluster, verb, resource, response code and decision.",
            ["cluster", "verb", "resource", "code", "decision", "stage"], registry=self.registry)
        self.stage_seconds = Histogram(
            "kubegate_stage_duration_seconds", "Time spent in each stage of the request path.",
            ["stage"], buckets=_STAGE_BUCKETS, registry=self.registry)
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
            ["policy", "revision"], registry=self.registry)
        self.gate_refusals = Counter(
            "kubegate_gate_refusals", "Requests refused by a risk gate, by gate, reason and rule/budget/limit name.",
            ["gate", "reason", "name"], registry=self.registry)
        self.budget_remaining = Gauge(
            "kubegate_budget_remaining", "Deletes left in each budget window, as last seen by this replica.",
            ["budget", "scope", "window"], registry=self.registry)
        self.breaker_open = Gauge(
            "kubegate_breaker_open", "1 while a delete budget's circuit breaker is open (as last seen here).",
            ["budget", "scope"], registry=self.registry)
        self.breaker_trips = Counter(
            "kubegate_breaker_trips", "Circuit breakers opened by this replica.", ["budget"], registry=self.registry)
        self.store_errors = Counter(
            "kubegate_store_unavailable", "State store calls that failed, by what they were for.",
            ["use"], registry=self.registry)
        self.ready = Gauge("kubegate_ready", "1 while the gateway serves requests.", registry=self.registry)
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
                                   registry=self.registry)
        self.audit_spool_bytes = Gauge("kubegate_audit_spool_bytes",
                                       "Audit events waiting on disk for the audit center.", registry=self.registry)

    def observe_stages(self, seconds: dict[str, float]) -> None:
        for stage, value in seconds.items():
            self.stage_seconds.labels(stage).observe(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
