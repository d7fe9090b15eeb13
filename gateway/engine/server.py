"""Assembling and running a gateway: mitmproxy's bare Master with our one addon, plus a small
listener for /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import web
from mitmproxy import options
from mitmproxy.addons import core, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from kubegate.aio import abort_leftover_transports
from kubegate.audit import policy as audit_policy
from kubegate.audit.sink import JsonlSink
from kubegate.audit.writer import BackgroundWriter
from kubegate.audit.webhook import Target, TeeSink, WebhookSink

from .. import audit_record
from ..identity import keys
from . import mitm_patches
from . import upstream_tls
from ..clusters import upstreams
from .addon import GatewayAddon
from kubegate.audit import events

from ..authz.access import AccessRequest, AccessService
from ..identity.authn import LEEWAY_SECONDS, Authenticator
from ..authz.authorizer import PolicyHolder
from ..gates.approvals import ApprovalService, Ticket
from ..gates.breaker_api import BreakerApi
from ..gates.change import ApprovalApi, ApprovalGate, FreezeGate, RulesGate, WebhookGate
from ..context import GateContext
from ..gates.brake import Brake, BrakeApi, BrakeGate, BrakeService
from ..gates.health import HealthGate
from ..gates.notify import Notifier
from ..gates.rollout import RolloutGate
from ..identity.revocations import Revocation, Revocations
from ..gates.policy import GatePolicyHolder
from ..gates.preview import PreviewApi, PreviewDryRun, PreviewPrefix, PreviewService
from ..identity.identity import Identity
from ..gates.rate import ApiRate, RateGate
from ..state.store import BreakerState, MemoryStore, StateStore, StoreUnavailable
from ..state.redis_store import RedisStore
from ..consequences.reader import ReadLimits
from ..clusters.client import UpstreamClient, UpstreamError
from ..metrics import Metrics
from .probes import serve_probes
from ..config.settings import Settings
from ..request.info import RequestInfo
from ..identity.sessions import SessionService
from ..overload import Admission
from ..stages import Admit, GateStages, SelfReviews, Stage, TokensApi, default_stages

log = logging.getLogger("kubegate.server")
CONNECTION_SWEEP_SECONDS = 0.5  # how often slow, idle and surplus connections are looked for
STREAM_SWEEP_SECONDS = 1.0  # how soon a logout, an expired token or a lapsed grant ends the streams it opened
REVOCATION_SYNC_SECONDS = 1.0  # how soon a token revoked on another replica is refused here
PURGE_EVERY_TICKS = 12  # with the 5 s expiry tick: once a minute


StagesHook = Callable[[list[Stage]], list[Stage]]


@dataclass(frozen=True)
class WorkerRole:
    """This process is worker `slot` of `kubegate serve --workers N` (see workers.py): it listens on
    the supervisor's `port` beside the other workers, appends to the shared audit log, reports its
    readiness to `status_dir`, and leaves /metrics, probes and the webshell to the supervisor."""

    slot: int
    port: int
    status_dir: Path


class Gateway:
    def __init__(self, settings: Settings, *, stages_hook: StagesHook | None = None,
                 clock: Callable[[], float] = time.time, worker: WorkerRole | None = None) -> None:
        mitm_patches.install()
        self.settings = settings
        self.worker = worker
        self.tls = keys.serving_tls(settings)
        self.authenticator = Authenticator.from_settings(settings, keys.signing_key_pem(settings), clock)
        self.upstreams = upstreams.build(settings)
        for u in self.upstreams.all:
            u.tls_context = upstream_tls.build_context(u)
        self.metrics = Metrics()
        self._revision_labels: set[tuple[str, str]] = set()
        self.metrics.serving_cert_expiry.set(keys.certificate_expiry(self.tls.cert_file))
        audit = settings.audit
        local = audit_log(settings, shared=worker is not None)
        written: Any = local
        if audit.webhook.url:
            hook = audit.webhook
            spool = settings.path(hook.spool_dir) if hook.spool_dir else settings.state / "audit-spool"
            if worker is not None:  # one spool per worker slot: a spool has one reader
                spool = spool / f"worker-{worker.slot}"
            center = WebhookSink(Target(hook.url, str(settings.path(hook.ca_file)) if hook.ca_file else ""), spool,
                                 max_spool_bytes=hook.max_spool_bytes, batch_events=hook.batch_events,
                                 batch_seconds=hook.batch_seconds, on_depth=self.metrics.audit_spool_bytes.set)
            written = TeeSink(local, center)
        self.sink: Any = BackgroundWriter(written, on_written=self._audit_written,
                                          on_failure=lambda n: self.metrics.audit_failures.inc(n),
                                          on_depth=self.metrics.audit_pending.set)
        recorder = audit_record.Recorder(
            audit_policy.load(settings.path(audit.policy_file)) if audit.policy_file else audit_policy.Policy(),
            audit.max_object_bytes, tuple(audit.redact_fields), revisions=self._revisions)
        self.policy = PolicyHolder(
            settings.path(settings.authz.policy_dir),
            on_reload=lambda ok, _: self._reloaded(ok, "authz"))
        self.gates = GatePolicyHolder(
            settings.path(settings.gates.policy_dir),
            on_reload=lambda ok, _: self._reloaded(ok, "gates"))
        self._reloaded(True, "")
        self.clock = clock
        self.store = build_store(settings)
        self.counter = UpstreamClient()
        self.cluster_health: dict[str, bool] = {}  # filled by the readiness probe
        self.cluster_problems: dict[str, str] = {}
        self.access = AccessService(self.store, self.policy, clock=clock, audit=self._audit_access,
                                    clusters=lambda: self.upstreams.by_name)
        self.approvals = ApprovalService(self.store, self.policy, clock=clock, audit=self._audit_approval)
        self.previews = PreviewService(self.store, clock=clock)
        self.notifier = Notifier(settings.notifications, settings.url, settings.path, self.metrics)
        self.brakes = BrakeService(self.store, self.policy, shared=not isinstance(self.store, MemoryStore), clock=clock,
                                   audit=self._audit_brake, on_change=self.metrics.brakes_active.set)
        change = lambda: self.gates.current.change  # noqa: E731 - the set in force at each request
        g = settings.gates
        reads = ReadLimits(g.blast_radius_reads, g.blast_radius_objects, g.blast_radius_seconds)
        self.webhooks = WebhookGate(change, clock=clock, metrics=self.metrics, client=self.counter, limits=reads)
        self.health = HealthGate(lambda: self.gates.current.health, metrics=self.metrics)
        gates = GateStages(
            api_limits=ApiRate(self.gates, self.store, clock=clock, metrics=self.metrics),
            breaker_api=BreakerApi(self.store, self.policy, clock=clock, metrics=self.metrics,
                                   on_reset=self._audit_breaker_reset),
            approval_api=ApprovalApi(self.approvals, change, clock),
            freeze=FreezeGate(change, clock),
            rules=RulesGate(change, self.store, self.counter, clock=clock, metrics=self.metrics, limits=reads),
            limits=RateGate(self.gates, self.store, self.counter, clock=clock, metrics=self.metrics,
                            on_trip=self._audit_breaker_trip),
            webhooks=self.webhooks,
            approvals=ApprovalGate(self.approvals, public_url=settings.url, metrics=self.metrics,
                                   client=self.counter, limits=reads),
            preview_prefix=PreviewPrefix(), preview=PreviewDryRun(self.previews, self.counter, reads),
            preview_api=PreviewApi(self.previews), brake=BrakeGate(self.brakes), brake_api=BrakeApi(self.brakes),
            health=self.health,
            rollout=RolloutGate(lambda: self.gates.current.rollouts, lambda: list(self.upstreams.all), self.counter,
                                verify=self.webhooks.verify, clock=clock))
        can_i = SelfReviews(self.policy, self.counter, self.access, self._later_gates)
        self.sessions = SessionService(self.store, self.authenticator.own, clock=clock)
        self.revocations = Revocations(self.store, max_ttl_seconds=settings.issuer.max_ttl_seconds, clock=clock)
        o = settings.overload
        self.admission = Admission(max_inflight=o.max_inflight, max_long_running=o.max_long_running,
                                   queue_length=o.queue_length, queue_wait_seconds=o.queue_wait_seconds,
                                   long_running_user_share=o.long_running_user_share,
                                   max_watches_per_user=o.max_watches_per_user,
                                   max_streams_per_user=o.max_streams_per_user)
        stages = default_stages(audit_ready=self.sink.healthy, authenticator=self.authenticator,
                                upstreams=self.upstreams, policy=self.policy, access=self.access, gates=gates,
                                can_i=can_i, sessions=self.sessions, admission=Admit(self.admission, self.metrics),
                                audit_accepts_changes=getattr(self.sink, "accepts_mutations", lambda: True),
                                metrics=self.metrics, revocations=self.revocations,
                                tokens_api=TokensApi(self.revocations, self.policy, self._audit_revocation))
        self.stages = stages_hook(stages) if stages_hook else stages
        recordings = (settings.path(audit.recordings_dir) if audit.recordings_dir else settings.state / "recordings") \
            if audit.record_sessions else None
        self.addon = GatewayAddon(self.stages, self.upstreams, self.sink, self.metrics, recorder, recordings)
        listen = settings.listen
        self.addon.request_seconds, self.addon.idle_seconds, self.addon.max_unheard_per_source = \
            listen.request_seconds, listen.idle_seconds, listen.max_unauthenticated_per_source
        self.addon.min_body_rate = listen.min_body_bytes_per_second
        self.master: Master | None = None
        self.webshell: Any = None  # kubegate.webshell.app.Webshell, when settings.webshell.enabled
        self.port = 0
        self.metrics_port = 0
        self._task: asyncio.Task[None] | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _revisions(self) -> dict[str, str]:
        return {"kubegate.io/policy-revision": self.policy.current.policy.revision,
                "kubegate.io/gates-revision": self.gates.current.revision}

    def _reloaded(self, ok: bool, which: str) -> None:
        if which:
            self.metrics.policy_reloads.labels("loaded" if ok else "refused", which).inc()
            self.metrics.policy_last_reload.labels(which, "loaded" if ok else "refused").set(time.time())
        if ok and hasattr(self, "gates"):
            now = {("authz", self.policy.current.policy.revision), ("gates", self.gates.current.revision)}
            for old in self._revision_labels - now:
                # 0 first: under workers the series lives on in this worker's metrics file
                self.metrics.policy_revision.labels(*old).set(0)
                self.metrics.policy_revision.remove(*old)
            for labels in now:
                self.metrics.policy_revision.labels(*labels).set(1)
            self._revision_labels = now

    def _audit_written(self, batch: list[dict[str, Any]], seconds: float) -> None:
        self.metrics.audit_write_seconds.observe(seconds)
        for event in batch:
            self.metrics.audit_events.labels(event.get("stage", "")).inc()

    def _audit_access(self, event: str, request: AccessRequest, actor: str) -> None:
        """Each step of an access request (requested, approved, denied, expired) is an audit event."""
        try:
            self.sink.write(events.access_event(event, request.id, actor, request.user, request.role,
                                                request.scope, request.reason, time.time()))
        except OSError:
            self.metrics.audit_failures.inc()

    def _audit_approval(self, event: str, ticket: Ticket, actor: str) -> None:
        """Each step of an approval ticket (requested, approved, denied, used) is an audit event, and
        a notification to the approvers' targets (queued: never on the request path)."""
        self._write_audit(events.approval_event(event, ticket.id, actor, ticket.user, ticket.kind,
                                                f"{ticket.verb} {ticket.resource} {ticket.namespace}/{ticket.name} "
                                                f"in {ticket.cluster}", "; ".join(ticket.reasons), time.time()))
        self.notifier.ticket(event, ticket, actor)

    def _audit_revocation(self, record: Revocation) -> None:
        self._write_audit(events.revocation_event(record.key, record.by, record.reason, time.time()))
        log.warning("%s revoked by %s: %s", record.key, record.by, record.reason)

    async def _sync_revocations(self, interval: float) -> None:
        """Revocations made on any replica reach this process within INTERVAL."""
        while True:
            try:
                await self.revocations.sync()
            except StoreUnavailable as e:
                log.debug("revocations not read now (%s); those read last stay in force", e)
            except Exception:  # noqa: BLE001 - the loop must go on
                log.exception("cannot read the token revocations")
            await asyncio.sleep(interval)

    def _audit_brake(self, event: str, brake: Brake, actor: str) -> None:
        self._write_audit(events.brake_event(event, brake.id, actor, brake.scope, brake.reason, time.time()))
        log.warning("emergency brake %s %s by %s: %s (%s)", brake.id, event, actor, brake.scope, brake.reason)

    def _audit_breaker_trip(self, state: BreakerState, ctx: GateContext) -> None:
        actor = ctx.identity.user if ctx.identity else "kubegate"
        self._write_audit(events.breaker_event("tripped", state.key, actor, state.label, state.reason, time.time()))

    def _audit_breaker_reset(self, state: BreakerState, who: Identity) -> None:
        self._write_audit(events.breaker_event("reset", state.key, who.user, state.label, state.reason, time.time()))

    def _write_audit(self, event: dict[str, object]) -> None:
        try:
            self.sink.write(event)
        except OSError:
            self.metrics.audit_failures.inc()

    async def _probe_clusters(self, interval: float) -> None:
        """Whether each cluster answers the gateway (a SelfSubjectReview as a probe identity); readiness
        fails while none does, and a refused gateway credential is logged, naming the cluster."""
        while True:
            await asyncio.sleep(interval)
            await self._probe_once()

    async def _probe_once(self) -> None:
        probe = Identity("kubegate:readiness-probe")
        for upstream in self.upstreams.all:
            try:
                # Who does the cluster take us for? Proves the credential and the right to impersonate.
                review = await self.counter.create(upstream, probe, "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                                   {"apiVersion": "authentication.k8s.io/v1",
                                                    "kind": "SelfSubjectReview"}, "readiness-probe")
                seen = _reviewed_username(review)
                if seen is None:
                    ok, why = False, (f"the cluster's SelfSubjectReview answer has no status.userInfo.username: "
                                      f"{json.dumps(review, default=str)[:200]}")
                else:
                    ok, why = seen == probe.user, "" if seen == probe.user else \
                        f"the cluster sees the gateway as {seen!r}, not as the user it impersonates"
            except UpstreamError as e:
                ok = False
                why = ("the gateway's credential was refused" if e.status in (401, 403) else e.message)[:300]
            except Exception as e:  # noqa: BLE001 - any answer the probe did not expect is the cluster's problem
                ok, why = False, f"the cluster's answer to the readiness probe cannot be read: {type(e).__name__}: {e}"[:300]
            self.metrics.cluster_reachable.labels(upstream.name).set(1 if ok else 0)
            if ok != self.cluster_health.get(upstream.name) and not ok:
                log.error("cluster %s does not answer the gateway: %s", upstream.name, why)
            self.cluster_health[upstream.name], self.cluster_problems[upstream.name] = ok, why

    def _proxyserver(self) -> Any:
        return self.master.addons.get("proxyserver") if self.master is not None else None

    async def _sweep_connections(self, interval: float) -> None:
        """Connection limits (listen.request_seconds, idle_seconds, max_unauthenticated_per_source)."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.addon.sweep_connections(self._proxyserver(), time.monotonic())
            except Exception:  # noqa: BLE001 - the sweep must go on
                log.exception("cannot sweep connections")

    async def _end_revoked_streams(self, interval: float) -> None:
        """Streams opened with a session that has ended (on any replica: the store says), a token
        that has expired, or access that no longer allows them (a grant lapsed or revoked, a policy
        changed) are ended, each with an audit event saying why."""
        while True:
            await asyncio.sleep(interval)
            if not self.addon.streams:
                continue
            try:
                for request_id, why in await self._revoked_streams():
                    if self.addon.end_stream(self._proxyserver(), request_id, why):
                        log.info("stream %s ended: %s", request_id, why)
            except Exception:  # noqa: BLE001 - the sweep must go on; the next round tries again
                log.exception("cannot sweep open streams for revocation")

    async def _revoked_streams(self) -> list[tuple[str, str]]:
        now = self.clock()
        authorizer = self.policy.current
        await self.access.sync(authorizer)  # approved grants in, expired ones out
        ended: dict[str, bool] = {}
        out = []
        for request_id, (_, ctx) in list(self.addon.streams.items()):
            identity, info, upstream = ctx.identity, ctx.info, ctx.upstream
            if identity is None or info is None or upstream is None:
                continue
            if ctx.credential_expires and now > ctx.credential_expires + LEEWAY_SECONDS:
                out.append((request_id, "the token it was opened with has expired"))
                continue
            if why := self.revocations.refused(identity.user, ctx.credential_id, ctx.credential_issued):
                out.append((request_id, f"the token it was opened with was revoked ({why})"))
                continue
            if identity.session:
                if identity.session not in ended:
                    try:
                        ended[identity.session] = await self.sessions.ended(identity.session)
                    except StoreUnavailable:
                        ended[identity.session] = False  # asked again next round
                if ended[identity.session]:
                    out.append((request_id, f"its session {identity.session} has ended (logged out)"))
                    continue
            decision = authorizer.decide(identity, upstream.name, info)
            if not decision.allowed:
                out.append((request_id, f"access to it has ended: {decision.reason}"))
        return out

    def _later_gates(self, cluster: str, info: RequestInfo) -> list[str]:
        """The gates that may still refuse or hold a request the policy allows (for can-i answers)."""
        gates = self.gates.current
        now = self.clock()
        out = [f"freeze window {w.name} (in force now)" for w in gates.change.freeze
               if w.match.matches(cluster, info) and w.active(now)]
        out += [f"rule {r.id}" for r in gates.change.rules if r.match.matches(cluster, info) and r.outcome != "annotate"]
        if info.verb in ("delete", "deletecollection") and (b := gates.limits.budget_for(info.group_resource)):
            out.append(f"delete budget {b.name}")
        return out

    async def _expire_grants(self, interval: float) -> None:
        """Grants lapse on the request path too; this audits an expiry when nobody is asking. Now and
        then it also lapses undecided access requests and purges old records and tickets."""
        ticks = 0
        while True:
            await asyncio.sleep(interval)
            ticks += 1
            try:
                await self.access.expire()
                await self._count_open_work()
                if ticks % PURGE_EVERY_TICKS == 0:
                    await self.access.purge()
                    await self.approvals.purge()
                    await self.previews.purge()
                    await self.brakes.purge()
                    await self.revocations.purge()
                    await self.sessions.purge()
            except StoreUnavailable as e:
                log.warning("cannot expire access grants or purge old records now: %s", e)

    async def _count_open_work(self) -> None:
        """The gauges of what waits on people: approval tickets pending, access grants in force."""
        now = self.clock()
        tickets = await self.approvals.all()
        self.metrics.approvals_pending.set(sum(1 for t in tickets if t.status == "pending" and t.live(now)))
        requests = await self.access.all()
        self.metrics.grants_active.set(sum(1 for r in requests if r.active(now)))

    async def start(self) -> None:
        first = self.upstreams.default or self.upstreams.all[0]
        listen = self.settings.listen
        port, confdir = listen.port, self.settings.state / "mitmproxy"
        if self.worker is not None:
            mitm_patches.reuse_port(True)
            port, confdir = self.worker.port, confdir / f"worker-{self.worker.slot}"
        opts = options.Options(
            mode=[f"reverse:https://{first.host}:{first.port}@{listen.host}:{port}"],
            confdir=str(confdir),
        )
        self.master = Master(opts)
        # Our addon before TlsConfig: it sets up upstream TLS itself, which TlsConfig then leaves alone.
        self.master.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(),
                               self.addon, tlsconfig.TlsConfig())
        opts.update(
            connection_strategy="lazy",  # no upstream connection before a request is allowed
            certs=[f"*={self.tls.bundle_file}"],
            http2=False, http3=False,  # see mitm_patches: errors must be Status, which needs HTTP/1.1
            body_size_limit=str(self.settings.max_request_body_bytes),
            ssl_insecure=False,
            keep_host_header=False,
        )
        logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
        self._task = asyncio.create_task(self.master.run(), name="mitmproxy")
        started = asyncio.create_task(self.addon.started.wait())
        await asyncio.wait([started, self._task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if not self.addon.started.is_set():
            started.cancel()
            if self._task.done() and self._task.exception():
                raise RuntimeError(f"the proxy failed to start: {self._task.exception()}")
            raise RuntimeError("the proxy did not start within 30 seconds")
        proxy = self.master.addons.get("proxyserver")
        addrs = proxy.listen_addrs() if proxy else []
        if not addrs:
            raise RuntimeError(f"cannot listen on {listen.host}:{listen.port}")
        self.port = addrs[0][1]
        if self.settings.metrics.port >= 0 and self.worker is None:
            await self._start_metrics()
        if self.settings.webshell.enabled and self.worker is None:
            await self._start_webshell()
        interval = self.settings.authz.reload_interval_seconds
        try:  # a first answer before serving, so /readyz tells the truth from the start
            await asyncio.wait_for(self._probe_once(), 3)
        except asyncio.TimeoutError:
            log.warning("the clusters did not answer the readiness probe within 3s")
        self._tasks = [asyncio.create_task(self.policy.watch(interval), name="policy-watch"),
                       asyncio.create_task(self.gates.watch(interval), name="gate-policy-watch"),
                       asyncio.create_task(self._expire_grants(5.0), name="grant-expiry"),
                       asyncio.create_task(self._probe_clusters(self.settings.metrics.cluster_probe_seconds),
                                           name="cluster-probe"),
                       asyncio.create_task(self._end_revoked_streams(STREAM_SWEEP_SECONDS), name="stream-revocation"),
                       asyncio.create_task(self._sync_revocations(REVOCATION_SYNC_SECONDS), name="token-revocations"),
                       asyncio.create_task(self._sweep_connections(CONNECTION_SWEEP_SECONDS), name="connection-limits")]
        if self.worker is not None:
            self._tasks.append(asyncio.create_task(self._report_status(), name="worker-status"))
            self._tasks.append(asyncio.create_task(self._flush_metrics(), name="metrics-flush"))
        self.notifier.start()
        self.metrics.ready.set(1)
        log.info("kubegate serving on https://%s:%d", listen.host, self.port)

    async def _start_webshell(self) -> None:
        """The browser terminal on its own listener; it reaches this gateway over HTTPS only."""
        self.webshell = await start_webshell(self.settings, self.tls, self.port, self.upstreams, self.sink.write)

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether to send this process traffic, and why, one line per check as kube-apiserver's
        /readyz?verbose. A refused policy reload is reported, not failed: the last good set serves."""
        checks = [("engine", self.addon.started.is_set() and not self.addon.draining,
                   "the proxy is not listening" + (" (stopping)" if self.addon.draining else " yet")),
                  ("audit", self.sink.healthy(), "audit events cannot be written"),
                  ("clusters", any(self.cluster_health.values()) if self.cluster_health else True,
                   "no cluster answers: " + "; ".join(f"{n}: {why}" for n, why in self.cluster_problems.items()))]
        ready = all(ok for _, ok, _ in checks)
        lines = [f"[+]{name} ok" if ok else f"[-]{name} failed: {why}" for name, ok, why in checks]
        lines += [f"[+]cluster {n} ok" if ok else f"[-]cluster {n}: {self.cluster_problems.get(n, '')}"
                  for n, ok in sorted(self.cluster_health.items())]
        if self.webshell is not None:
            lines += self.webshell.health()
        for what, holder in (("authz policy", self.policy), ("gate policy", self.gates)):
            lines.append(f"[!]{what}: a reload was refused, the previous set serves: {'; '.join(holder.refused[:3])}"
                         if holder.refused else f"[+]{what} ok")
        return ready, lines

    async def _report_status(self, interval: float = 0.25) -> None:
        """A worker's readiness and counts, for the supervisor's /readyz (a file it reads; written
        whole, then renamed, so it never reads half of one). A worker whose supervisor is gone stops."""
        assert self.worker is not None
        parent = os.getppid()
        path = self.worker.status_dir / f"worker-{self.worker.slot}.json"
        while True:
            ready, lines = self.readiness()
            status = {"slot": self.worker.slot, "pid": os.getpid(), "ready": ready, "checks": lines,
                      "served": self.addon.served, "in_flight": self.addon.in_flight,
                      "draining": self.addon.draining}
            temporary = path.with_name(f".{path.name}.{os.getpid()}")
            try:
                temporary.write_text(json.dumps(status))
                os.replace(temporary, path)
            except OSError as e:
                log.warning("cannot report this worker's status to %s: %s", path, e)
            if os.getppid() != parent:
                log.error("the supervisor (pid %d) is gone; this worker stops", parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            await asyncio.sleep(interval)

    async def _flush_metrics(self, interval: float = 1.0) -> None:
        """A worker's stage timings into its multiprocess files every second (the supervisor's
        /metrics reads the files, never asks the worker): see Metrics.observe_stages."""
        while True:
            await asyncio.sleep(interval)
            self.metrics.flush_stages()

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking connections and let the requests in flight finish (up to `grace_seconds`);
        watches and exec sessions are not waited for: they end at stop, and clients reconnect (to
        another worker or replica), as when kube-apiserver shuts down."""
        if self.webshell is not None:
            # First, while this gateway still listens: its browser sessions end here (logouts).
            await self.webshell.stop()
            self.webshell = None
        self.addon.draining = True
        self.metrics.ready.set(0)
        proxy = self._proxyserver()
        if proxy is not None:
            for instance in list(proxy.servers):
                await instance.stop()
        deadline = time.monotonic() + grace_seconds
        while self._unfinished() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._unfinished():
            log.warning("%d request(s) and %d connection(s) without a request yet still open after %gs; "
                        "stopping anyway", self.addon.in_flight - self.admission.long_running,
                        len(self.addon.unheard), grace_seconds)

    def _unfinished(self) -> bool:
        """Ordinary requests in flight, or connections accepted that have not sent their request yet."""
        return self.addon.in_flight - self.admission.long_running > 0 or bool(self.addon.unheard)

    async def _start_metrics(self) -> None:
        self._metrics_runner = await serve_probes(self.settings.metrics.host, self.settings.metrics.port,
                                                  self.metrics.exposition, self.readiness)
        self.metrics_port = self._metrics_runner.addresses[0][1]

    async def stop(self) -> None:
        self.metrics.ready.set(0)
        self.metrics.flush_stages()  # a worker's last second of stage timings
        if self.webshell is not None:
            await self.webshell.stop()
        for task in self._tasks:
            task.cancel()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self.master is not None:
            self.master.shutdown()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=10)
        await self.counter.close()
        await self.webhooks.close()
        await self.notifier.close()
        await self.health.close()
        await self.store.close()
        self.sink.close()

    async def serve_until_signalled(self, on_started: Callable[["Gateway"], None]) -> None:
        """Serve until SIGINT or SIGTERM (the foreground process: `kubegate serve`, the demo); then
        drain: no new connections, the requests in flight finish (`listen.drain_seconds` at most)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.sink.reopen)  # after an outside log rotation
        await self.start()
        try:
            on_started(self)
            await stop.wait()
            await self.drain(self.settings.listen.drain_seconds)
        finally:
            await self.stop()


def _reviewed_username(review: Any) -> str | None:
    """status.userInfo.username of a SelfSubjectReview answer, or None where the answer has none."""
    status = review.get("status") if isinstance(review, dict) else None
    info = status.get("userInfo") if isinstance(status, dict) else None
    name = info.get("username") if isinstance(info, dict) else None
    return name if isinstance(name, str) else None


# Test-only: terminals run any kubectl arguments, so the containment tests show the sandbox holds alone.
NO_ARGUMENT_CHECK = "KUBEGATE_TEST_WEBSHELL_NO_ARGUMENT_CHECK"


async def start_webshell(s: Settings, tls: keys.ServingTls, gateway_port: int, clusters: upstreams.Upstreams,
                         audit: Callable[[dict[str, Any]], None]) -> Any:
    """The webshell (kubegate.webshell.app.Webshell), serving; it reaches the gateway at
    `gateway_port` over HTTPS only, as any client does."""
    from urllib.parse import urlsplit

    from kubegate.webshell.app import Webshell
    from kubegate.webshell.config import OidcLogin, WebshellConfig

    w = s.webshell
    oidc = next((o for o in s.oidc if o.issuer == w.oidc_issuer), None) if w.oidc_issuer else None
    local = "127.0.0.1" if s.listen.host in ("0.0.0.0", "::") else s.listen.host
    cfg = WebshellConfig(
        host=w.host, port=w.port, public_url=w.public_url or f"https://{w.host}:{w.port}",
        cert_file=tls.cert_file, key_file=tls.key_file,
        gateway_url=f"https://{local}:{gateway_port}", gateway_ca_file=tls.ca_file,
        gateway_server_name=urlsplit(s.url).hostname or local,
        clusters=tuple(u.name for u in clusters.all),
        default_cluster=(clusters.default or clusters.all[0]).name,
        work_dir=s.path(w.work_dir) if w.work_dir else s.state / "webshell",
        recordings_dir=s.path(s.audit.recordings_dir) if s.audit.recordings_dir else s.state / "recordings",
        audit_log=s.audit_path,
        kubectl=shutil.which(w.kubectl or "kubectl") or w.kubectl, audit=audit,
        oidc=OidcLogin(oidc.issuer, w.oidc_client_id, str(s.path(oidc.jwks_ca_file)) if oidc.jwks_ca_file else "")
        if oidc else None,
        idle_seconds=w.idle_seconds, max_seconds=w.max_seconds, auditor_groups=tuple(w.auditor_groups),
        sandbox=w.sandbox, check_arguments=os.environ.get(NO_ARGUMENT_CHECK) != "1")
    webshell = Webshell(cfg)
    await webshell.start()
    if not w.public_url and w.port == 0:
        webshell.origin = f"https://{w.host}:{webshell.port}"
        webshell.cfg = dataclasses.replace(cfg, public_url=webshell.origin)
    return webshell


def audit_log(settings: Settings, *, shared: bool) -> JsonlSink:
    """The local audit log as the settings describe it (`shared`: written by several processes)."""
    audit = settings.audit
    return JsonlSink(settings.audit_path, rotate_bytes=audit.rotate_bytes, rotate_seconds=audit.rotate_seconds,
                     keep_files=audit.keep_files, shared=shared, sync=audit.sync)


def build_store(settings: Settings) -> StateStore:
    """Redis when configured (state shared by every replica), else this process's memory."""
    cfg = settings.store
    if not cfg.redis_url:
        return MemoryStore()
    password = settings.path(cfg.password_file).read_text().strip() if cfg.password_file else None
    return RedisStore(cfg.redis_url, prefix=cfg.key_prefix, timeout_seconds=cfg.timeout_seconds,
                      password=password, ca_file=str(settings.path(cfg.ca_file)) if cfg.ca_file else None)


@dataclass
class RunningGateway:
    """A gateway serving from a background thread (tests and the demo)."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.gateway.port}"

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.gateway.stop()
            # Client connections outlive the listener; end them (and their sockets) as asyncio.run would.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await abort_leftover_transports()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def start_in_thread(settings: Settings, *, stages_hook: StagesHook | None = None,
                    clock: Callable[[], float] = time.time) -> RunningGateway:
    loop = asyncio.new_event_loop()
    ready: "asyncio.Future[Gateway]" = loop.create_future()

    async def boot() -> None:
        try:
            gw = Gateway(settings, stages_hook=stages_hook, clock=clock)
            await gw.start()
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            ready.set_exception(e)
        else:
            ready.set_result(gw)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.create_task(boot())
        loop.run_forever()

    thread = threading.Thread(target=run, name="kubegate-gateway", daemon=True)
    thread.start()

    async def wait() -> Gateway:
        return await ready

    gateway = asyncio.run_coroutine_threadsafe(wait(), loop).result(timeout=60)
    return RunningGateway(gateway, loop, thread)
