"""kubegate's settings: one YAML file, read and validated once at start.

Every problem in the file is collected and reported together (`SettingsError.problems`),
so an operator fixes a config in one round instead of one error per restart.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from kubegate import strict_yaml


DEFAULT_MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's own limit on a request body
SIGNING_ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256")
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")


class SettingsError(Exception):
    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def report(self) -> str:
        lines = [f"kubegate: {len(self.problems)} problem(s) in {self.source}:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


@dataclass
class Listen:
    host: str = "127.0.0.1"
    """Address to listen on. Default 127.0.0.1; use 0.0.0.0 behind a Service."""
    port: int = 8443
    """TCP port. 0 picks a free port (tests)."""
    drain_seconds: float = 25.0
    """On SIGTERM, how long a gateway process goes on serving the requests in flight after it stops
    taking connections (watches and exec sessions are closed, not waited for). Keep it under the
    pod's terminationGracePeriodSeconds."""
    request_seconds: float = 30.0
    """A connection that has not delivered a request head this long after it was accepted (its TLS
    handshake and the head) is closed: slow or half-sent clients hold nothing. A request's body then
    has as long again, plus a second per min_body_bytes_per_second received."""
    min_body_bytes_per_second: int = 1024
    """The slowest a request body may arrive on average (after its first request_seconds): a body
    trickled slower is cut, a large upload at any reasonable speed takes as long as it needs."""
    idle_seconds: float = 120.0
    """A kept-alive connection with no request for this long is closed (Go clients idle out at 90 s)."""
    max_unauthenticated_per_source: int = 64
    """Connections one source address may hold before any of them has delivered a request; past it
    new ones are closed at once."""


@dataclass
class Tls:
    cert_file: str = ""
    """PEM serving certificate (with its chain). Empty: a CA and certificate are generated once into state_dir/tls."""
    key_file: str = ""
    """PEM private key of cert_file."""
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1", "localhost"])
    """Names and IPs the generated certificate is valid for (ignored with cert_file)."""


@dataclass
class Issuer:
    """Tokens kubegate issues itself (`kubegate token issue`, `kubegate kubeconfig`, the webshell)."""

    issuer: str = "https://kubegate.local"
    """The `iss` claim of issued tokens."""
    audience: str = "kubegate"
    """The `aud` claim issued tokens carry and that is required of them."""
    signing_key_file: str = ""
    """PEM private key (EC P-256/P-384, Ed25519 or RSA). Empty: generated once into state_dir/tls."""
    algorithm: str = "ES256"
    """Signing algorithm; must fit the key. One of ES256, ES384, EdDSA, RS256."""
    max_ttl_seconds: int = 7 * 24 * 3600
    """Longest lifetime an issued token may have. Default one week."""
    allow_system_groups: bool = False
    """Whether issued tokens may carry `system:` groups (other than system:authenticated), which
    the cluster reserves for itself (system:masters bypasses RBAC). Off: refused at issue and at use."""


@dataclass
class Oidc:
    """An external OpenID Connect issuer, configured like kube-apiserver's --oidc-* flags."""

    issuer: str = ""
    """Exact `iss` value (https URL)."""
    audiences: list[str] = field(default_factory=list)
    """Accepted `aud` values; at least one is required."""
    jwks_file: str = ""
    """JWKS document on disk. At most one of jwks_file and jwks_url; neither: discovered from the issuer."""
    jwks_url: str = ""
    """JWKS URL, fetched with the system CAs (or jwks_ca_file), cached, refreshed on an unknown `kid`.
    Empty (and no jwks_file): the `jwks_uri` of the issuer's `/.well-known/openid-configuration`."""
    jwks_ca_file: str = ""
    """CA bundle to verify the issuer's discovery document and jwks_url with (empty: the system CAs)."""
    required_claims: dict[str, str] = field(default_factory=dict)
    """Claims every token must carry with exactly these values (kube-apiserver's --oidc-required-claim)."""
    jwks_refresh_seconds: int = 3600
    """How long a fetched JWKS is trusted before it is fetched again."""
    username_claim: str = "sub"
    """Claim that names the user."""
    username_prefix: str | None = None
    """Prefix for usernames. Default, as kube-apiserver: "<issuer>#" unless username_claim is email; "-" for none."""
    groups_claim: str = "groups"
    """Claim holding the user's groups (a list or a string)."""
    groups_prefix: str = ""
    """Prefix for group names."""
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256"])
    """Signature algorithms accepted from this issuer (never `none`, never HMAC)."""
    allow_system_groups: bool = False
    """Whether this issuer's tokens may carry `system:` groups (after groups_prefix; other than
    system:authenticated). Off, as kube-apiserver's structured authentication recommends: refused."""


@dataclass
class Cluster:
    name: str = ""
    """Name used in /clusters/<name>/ and in policies. Letters, digits, '-', '.'."""
    default: bool = False
    """Serve this cluster on paths without a /clusters/<name> prefix. One cluster at most."""
    server: str = ""
    """https URL of kube-apiserver (or take it from kubeconfig)."""
    ca_file: str = ""
    """CA bundle that signs the apiserver's certificate."""
    ca_data: str = ""
    """The same, inline as base64 PEM (as in a kubeconfig)."""
    tls_server_name: str = ""
    """Name to verify the apiserver's certificate against, when it differs from the URL's host."""
    token: str = ""
    """The gateway's bearer token for this cluster (prefer token_file)."""
    token_file: str = ""
    """File holding the gateway's bearer token, re-read when it changes (projected tokens rotate)."""
    client_cert_file: str = ""
    """The gateway's client certificate (PEM), with client_key_file."""
    client_key_file: str = ""
    """Private key of client_cert_file."""
    kubeconfig: str = ""
    """Take server, CA and credential from this kubeconfig instead."""
    context: str = ""
    """Context of `kubeconfig` to use (default: its current-context)."""


@dataclass
class AuditWebhook:
    url: str = ""
    """The audit center (https://...), which takes audit.k8s.io/v1 EventList POSTs like kube-apiserver's
    webhook backend. Empty: no audit center."""
    ca_file: str = ""
    """CA bundle the audit center's certificate is verified with (empty: the system CAs)."""
    spool_dir: str = ""
    """Where events wait until the center takes them. Default: state_dir/audit-spool."""
    max_spool_bytes: int = 1024 * 1024 * 1024
    """When the spool is this full, changes are refused (reads go on) rather than go unrecorded."""
    batch_events: int = 400
    """Events per POST at most."""
    batch_seconds: float = 1.0
    """How long a short batch waits for more events."""


@dataclass
class Audit:
    path: str = ""
    """JSONL file of audit.k8s.io/v1 events. Default: state_dir/audit.jsonl."""
    policy_file: str = ""
    """An audit.k8s.io/v1 Policy (kube-apiserver's format) choosing each request's level. Empty: Metadata for all."""
    max_object_bytes: int = 64 * 1024
    """Request and response objects larger than this (as JSON) are left out of events, with a marker."""
    redact_fields: list[str] = field(default_factory=list)
    """Dotted paths redacted in every recorded object, besides Secret data and tokens (always)."""
    rotate_bytes: int = 100 * 1024 * 1024
    """Start a new file past this size (0: never by size)."""
    rotate_seconds: int = 24 * 3600
    """Start a new file after this long (0: never by time)."""
    keep_files: int = 30
    """How many rotated files are kept (0: all)."""
    webhook: AuditWebhook = field(default_factory=AuditWebhook)
    """The audit center, fed from a spool on disk."""
    recordings_dir: str = ""
    """Where exec/attach sessions are recorded (asciicast v2; what is typed too). Default: state_dir/recordings."""
    record_sessions: bool = True
    """Record every exec/attach session over WebSocket."""
    sync: str = "none"
    """How far each write to the log goes before kubegate goes on: `none` (the file: survives the process, as
    kube-apiserver's log backend), `batch` (also fdatasync once per batch of completions), `always` (fdatasync
    after every write, each write-ahead record too: survives the machine before a change is forwarded).
    docs/audit.md#write-ahead has what each costs."""


@dataclass
class Authz:
    policy_dir: str = "policies/authz"
    """Directory of the authorization policy (model.conf and *.csv). Required: without a valid policy nothing is served."""
    reload_interval_seconds: float = 2.0
    """How often the directory is checked for changes (a changed, valid set replaces the old one)."""


@dataclass
class Store:
    """Where state shared by replicas lives: access grants, delete budgets, QPS buckets, breakers."""

    redis_url: str = ""
    """redis:// or rediss:// URL shared by every replica. Empty: state lives in this process (a single replica)."""
    password_file: str = ""
    """File holding the Redis password (instead of writing it into redis_url)."""
    ca_file: str = ""
    """CA bundle to verify a rediss:// server with."""
    key_prefix: str = "kubegate:"
    """Prefix of every key kubegate writes. On Redis Cluster give it a hash tag, e.g. "{kubegate}:"."""
    timeout_seconds: float = 0.5
    """How long a gate waits for Redis before treating it as unavailable (see gates.on_store_failure)."""


@dataclass
class Gates:
    policy_dir: str = "policies/gates"
    """Directory of the risk-gate policy (limits.yaml: delete budgets, breakers, QPS limits). Missing files: no such gates."""
    blast_radius_reads: int = 100
    """Calls to a cluster one change's blast radius may make (as the requester); past it the radius
    says "at least" and every availability check applies."""
    blast_radius_objects: int = 20000
    """Objects one change's blast radius may list; past it, as past blast_radius_reads."""
    blast_radius_seconds: float = 3.0
    """Wall time one change's blast radius may take; past it, as past blast_radius_reads."""


@dataclass
class Metrics:
    host: str = "127.0.0.1"
    """Address of the /metrics, /healthz and /readyz listener."""
    port: int = 9443
    """Its port (plain HTTP). 0 picks a free port; -1 disables the listener."""
    cluster_probe_seconds: float = 10.0
    """How often each cluster is asked (GET /version, as a probe identity) for /readyz."""


@dataclass
class Overload:
    """Overload protection per process, like kube-apiserver's API Priority and Fairness (docs/performance.md)."""

    max_inflight: int = 400
    """Requests worked on at once (watches and exec/logs/proxy streams apart); past it they queue per user."""
    max_long_running: int = 2000
    """Watches and exec/attach/port-forward/log/proxy streams open at once; past it a new one waits (at most
    queue_wait_seconds) and each freed seat goes to the waiting user holding fewest; then 429."""
    long_running_user_share: float = 0.25
    """The fraction of max_long_running one user may hold (so one user cannot take every seat); past it: 429."""
    max_watches_per_user: int = 250
    """Watches one user may have open at once (0: no cap of its own); past it: 429 naming the limit."""
    max_streams_per_user: int = 20
    """exec, attach and port-forward sessions one user may have open at once (0: no cap); past it: 429."""
    queue_length: int = 50
    """Requests one user may have waiting; past it: 429. Freed seats go to the users in turn."""
    queue_wait_seconds: float = 10.0
    """Longest wait in a queue; then 429 with Retry-After."""


@dataclass
class Terminals:
    """What a webshell's terminals are, wherever the webshell runs (in `kubegate serve` or on its own)."""

    kubectl: str = ""
    """The kubectl the terminals run. Default: the one on PATH."""
    sandbox: str = "bwrap"
    """Where terminals' kubectl runs: `bwrap` (a bubblewrap sandbox per command, in which the host's files,
    environment and processes do not exist; without one, terminals are refused), or `none` (kubectl runs
    as the webshell's own user: only for a webshell contained by other means, its own pod). docs/webshell.md."""
    work_dir: str = ""
    """Where each session's own directory lives (files, kubeconfig)."""
    idle_seconds: int = 900
    """A session with no request for this long ends (its terminals close, its token stops working)."""
    max_seconds: int = 8 * 3600
    """No session lives longer than this (nor longer than the login it started from)."""
    auditor_groups: list[str] = field(default_factory=lambda: ["kubegate:auditors", "kubegate:cluster-admins"])
    """Groups that may see every session and recording."""


def terminal_problems(t: Terminals, where: str = "") -> list[str]:
    problems = []
    if not (shutil.which(t.kubectl) if t.kubectl else shutil.which("kubectl")):
        problems.append(f"{where}kubectl: {t.kubectl or 'kubectl'} is not an executable (nor on PATH)")
    if t.idle_seconds <= 0 or t.max_seconds <= 0:
        problems.append(f"{where}idle_seconds and {where}max_seconds: must be positive")
    if t.sandbox not in ("bwrap", "none"):
        problems.append(f"{where}sandbox: {t.sandbox!r}; one of bwrap, none")
    return problems


@dataclass
class Webshell(Terminals):
    """The browser terminal (docs/webshell.md): its own HTTPS listener, started by `kubegate serve`
    (work_dir default: state_dir/webshell)."""

    enabled: bool = False
    """Serve the webshell."""
    host: str = "127.0.0.1"
    """Address of its listener (it uses the gateway's serving certificate: list its names in tls.hosts)."""
    port: int = 8444
    """Its port; 0 picks a free one."""
    public_url: str = ""
    """Where browsers reach it (its origin, for cookies, the WebSocket Origin check and the SSO redirect). Default: https://<host>:<port>."""
    oidc_issuer: str = ""
    """Single sign-on: one of oidc[].issuer, used with the authorization-code flow and PKCE. Empty: token login only."""
    oidc_client_id: str = "kubegate-webshell"
    """The webshell's (public) client id at that issuer; its redirect URI is <public_url>/login/callback."""


@dataclass
class Located:
    """A settings file whose relative paths are relative to the file."""

    state_dir: str = "state"
    """Where what the process makes and keeps lives (keys, certificates, logs), unless set apart."""
    base_dir: str = ""
    """(not a key) the directory relative paths in the file are resolved against."""

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir or ".") / p

    @property
    def state(self) -> Path:
        return self.path(self.state_dir)


@dataclass
class NotificationTarget:
    """Where approvers are told that a ticket waits for them (and how it ended)."""

    name: str = ""
    """Names the target in logs and metrics."""
    url: str = ""
    """https:// endpoint (http:// only on a loopback address)."""
    kind: str = "webhook"
    """`webhook`: kubegate's JSON body (docs/change-gates.md#notifications); `slack`: a Slack-compatible
    incoming webhook (`{"text": ...}`, also taken by Mattermost, Rocket.Chat, Teams workflows)."""
    ca_file: str = ""
    """CA bundle for the endpoint's certificate. Default: the system's."""
    events: list[str] = field(default_factory=lambda: ["requested", "approved", "denied", "expired"])
    """Which steps of a ticket: requested, approved, denied, used, expired, withdrawn."""
    timeout_seconds: float = 5.0
    """How long one delivery may take; a failed one is retried (5 attempts, backing off) and never
    holds a request up."""


@dataclass
class Settings(Located):
    listen: Listen = field(default_factory=Listen)
    public_url: str = ""
    """URL clients use to reach the gateway, written into kubeconfigs. Default: https://<listen>."""
    state_dir: str = "state"
    """Where generated keys, certificates and the default audit log live."""
    tls: Tls = field(default_factory=Tls)
    issuer: Issuer = field(default_factory=Issuer)
    oidc: list[Oidc] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    audit: Audit = field(default_factory=Audit)
    authz: Authz = field(default_factory=Authz)
    metrics: Metrics = field(default_factory=Metrics)
    store: Store = field(default_factory=Store)
    gates: Gates = field(default_factory=Gates)
    webshell: Webshell = field(default_factory=Webshell)
    overload: Overload = field(default_factory=Overload)
    notifications: list[NotificationTarget] = field(default_factory=list)
    """Approver notifications: where each step of an approval ticket is sent."""
    max_request_body_bytes: int = DEFAULT_MAX_BODY
    """Largest request body accepted (and inspected). Larger: 413. Default 3 MiB, as kube-apiserver."""

    @property
    def audit_path(self) -> Path:
        return self.path(self.audit.path) if self.audit.path else self.state / "audit.jsonl"

    def default_cluster(self) -> Cluster | None:
        return next((c for c in self.clusters if c.default), None)

    def cluster(self, name: str) -> Cluster | None:
        return next((c for c in self.clusters if c.name == name), None)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.listen.host in ("0.0.0.0", "::") else self.listen.host
        return self.public_url or f"https://{host}:{self.listen.port}"


def _build(cls: type, data: Any, where: str, problems: list[str]) -> Any:
    """A dataclass from a mapping, recording unknown keys and wrong types instead of failing."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{where}: must be a mapping")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "base_dir"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = fields.get(key)
        here = f"line {data.line_of(key)}: " if isinstance(data, strict_yaml.Located) else ""
        if f is None:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            problems.append(f"{here}{where}.{key}: unknown key" + (f" (did you mean {close[0]}?)" if close else ""))
            continue
        before = len(problems)
        kwargs[key] = _coerce(f, value, f"{where}.{key}", problems)
        problems[before:] = [p if p.startswith("line ") else here + p for p in problems[before:]]
    return cls(**kwargs)


# Field types as written in the annotations above (strings, under `from __future__ import annotations`).
_NESTED: dict[str, type] = {"Listen": Listen, "Tls": Tls, "Issuer": Issuer, "Audit": Audit, "Metrics": Metrics,
                            "AuditWebhook": AuditWebhook,
                            "Authz": Authz, "Store": Store, "Gates": Gates, "Webshell": Webshell,
                            "Overload": Overload}
_LISTS: dict[str, type] = {"list[Oidc]": Oidc, "list[Cluster]": Cluster, "list[NotificationTarget]": NotificationTarget}
_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                         "list[str]": (list,), "dict[str, str]": (dict,),
                                         "str | None": (str, type(None))}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _coerce(f: dataclasses.Field[Any], value: Any, where: str, problems: list[str]) -> Any:
    kind = str(f.type)
    if kind in _NESTED:
        return _build(_NESTED[kind], value, where, problems)
    if kind in _LISTS:
        if not isinstance(value, list):
            problems.append(f"{where}: must be a list")
            return []
        return [_build(_LISTS[kind], v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    expected = _SCALARS.get(kind)
    if expected is not None and (not isinstance(value, expected) or (int in expected and isinstance(value, bool))):
        problems.append(f"{where}: expected {kind}, got {type(value).__name__}")
        return _default(f)
    if kind == "list[str]" and not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: every entry must be a string")
        return [str(v) for v in value]
    if kind == "dict[str, str]" and not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        problems.append(f"{where}: every key and value must be a string (quote true, false and numbers)")
        return {}
    return value


def _https_url(value: str, where: str, problems: list[str]) -> None:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        problems.append(f"{where}: must be an https:// URL, got {value!r}")


def _readable(settings: Settings, value: str, where: str, problems: list[str]) -> None:
    if value and not settings.path(value).is_file():
        problems.append(f"{where}: file {settings.path(value)} does not exist")


def validate(s: Settings) -> list[str]:
    problems: list[str] = []
    if s.audit.webhook.url:
        _https_url(s.audit.webhook.url, "audit.webhook.url", problems)
        _readable(s, s.audit.webhook.ca_file, "audit.webhook.ca_file", problems)
    _readable(s, s.audit.policy_file, "audit.policy_file", problems)
    if not 0 <= s.listen.port <= 65535:
        problems.append("listen.port: must be 0..65535")
    if s.listen.drain_seconds < 0:
        problems.append("listen.drain_seconds: must be 0 or more")
    if not -1 <= s.metrics.port <= 65535:
        problems.append("metrics.port: must be -1..65535")
    if s.public_url:
        _https_url(s.public_url, "public_url", problems)
    if bool(s.tls.cert_file) != bool(s.tls.key_file):
        problems.append("tls: cert_file and key_file go together")
    _readable(s, s.tls.cert_file, "tls.cert_file", problems)
    _readable(s, s.tls.key_file, "tls.key_file", problems)
    if s.issuer.algorithm not in SIGNING_ALGORITHMS:
        problems.append(f"issuer.algorithm: must be one of {', '.join(SIGNING_ALGORITHMS)}")
    _readable(s, s.issuer.signing_key_file, "issuer.signing_key_file", problems)
    if s.issuer.max_ttl_seconds <= 0:
        problems.append("issuer.max_ttl_seconds: must be positive")
    if not s.path(s.authz.policy_dir).is_dir():
        problems.append(f"authz.policy_dir: {s.path(s.authz.policy_dir)} is not a directory")
    if s.authz.reload_interval_seconds <= 0:
        problems.append("authz.reload_interval_seconds: must be positive")
    if s.store.redis_url and urlsplit(s.store.redis_url).scheme not in ("redis", "rediss", "unix"):
        problems.append(f"store.redis_url: must be a redis://, rediss:// or unix:// URL, got {s.store.redis_url!r}")
    _readable(s, s.store.password_file, "store.password_file", problems)
    _readable(s, s.store.ca_file, "store.ca_file", problems)
    if s.store.timeout_seconds <= 0:
        problems.append("store.timeout_seconds: must be positive")
    if not s.path(s.gates.policy_dir).is_dir():
        problems.append(f"gates.policy_dir: {s.path(s.gates.policy_dir)} is not a directory")
    if s.max_request_body_bytes < 1024:
        problems.append("max_request_body_bytes: must be at least 1024")
    seen_issuers = {s.issuer.issuer}
    targets: set[str] = set()
    for i, t in enumerate(s.notifications):
        where = f"notifications[{i}]"
        parts = urlsplit(t.url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            problems.append(f"{where}.url: must be an https:// URL (http:// only on a loopback address), got {t.url!r}")
        if t.kind not in ("webhook", "slack"):
            problems.append(f"{where}.kind: must be webhook or slack, got {t.kind!r}")
        unknown = [e for e in t.events if e not in ("requested", "approved", "denied", "used", "expired", "withdrawn")]
        if unknown or not t.events:
            problems.append(f"{where}.events: each one of requested, approved, denied, used, expired, withdrawn "
                            f"(unknown: {', '.join(unknown) or 'none given'})")
        if not 0 < t.timeout_seconds <= 60:
            problems.append(f"{where}.timeout_seconds: above 0 and at most 60")
        if not t.name or t.name in targets:
            problems.append(f"{where}.name: required, and unique among the notification targets")
        targets.add(t.name)
        _readable(s, t.ca_file, f"{where}.ca_file", problems)
    for i, o in enumerate(s.oidc):
        where = f"oidc[{i}]"
        _https_url(o.issuer, f"{where}.issuer", problems)
        if o.issuer in seen_issuers:
            problems.append(f"{where}.issuer: {o.issuer!r} is configured twice")
        seen_issuers.add(o.issuer)
        if not o.audiences:
            problems.append(f"{where}.audiences: at least one audience is required")
        if o.jwks_file and o.jwks_url:
            problems.append(f"{where}: jwks_file and jwks_url exclude each other (neither: discovery from the issuer)")
        if o.jwks_url:
            _https_url(o.jwks_url, f"{where}.jwks_url", problems)
        _readable(s, o.jwks_file, f"{where}.jwks_file", problems)
        _readable(s, o.jwks_ca_file, f"{where}.jwks_ca_file", problems)
        bad = [a for a in o.algorithms if a not in OIDC_ALGORITHMS]
        if bad or not o.algorithms:
            problems.append(f"{where}.algorithms: {bad or 'empty'}; allowed: {', '.join(OIDC_ALGORITHMS)}")
    g = s.gates
    if g.blast_radius_reads < 1 or g.blast_radius_objects < 1 or not 0 < g.blast_radius_seconds <= 60:
        problems.append("gates: blast_radius_reads and blast_radius_objects at least 1, blast_radius_seconds above 0 "
                        "and at most 60")
    if s.listen.request_seconds <= 0 or s.listen.idle_seconds <= 0 or s.listen.max_unauthenticated_per_source < 1 \
            or s.listen.min_body_bytes_per_second < 1:
        problems.append("listen: request_seconds and idle_seconds positive, max_unauthenticated_per_source and "
                        "min_body_bytes_per_second at least 1")
    if s.audit.sync not in ("none", "batch", "always"):
        problems.append(f"audit.sync: {s.audit.sync!r}; one of none, batch, always")
    ov = s.overload
    if not 0 < ov.long_running_user_share <= 1 or ov.max_watches_per_user < 0 or ov.max_streams_per_user < 0:
        problems.append("overload: long_running_user_share above 0 and at most 1; max_watches_per_user and "
                        "max_streams_per_user at least 0")
    if ov.max_inflight < 1 or ov.max_long_running < 1 or ov.queue_length < 0 or ov.queue_wait_seconds <= 0:
        problems.append("overload: max_inflight and max_long_running at least 1, queue_length at least 0, "
                        "queue_wait_seconds positive")
    w = s.webshell
    if w.enabled:
        if not 0 <= w.port <= 65535:
            problems.append("webshell.port: must be 0..65535")
        if w.public_url:
            _https_url(w.public_url, "webshell.public_url", problems)
        if w.oidc_issuer and w.oidc_issuer not in {o.issuer for o in s.oidc}:
            problems.append(f"webshell.oidc_issuer: {w.oidc_issuer!r} is none of oidc[].issuer")
        problems += terminal_problems(w, "webshell.")
    if not s.clusters:
        problems.append("clusters: at least one cluster is required")
    names: set[str] = set()
    for i, c in enumerate(s.clusters):
        where = f"clusters[{i}]"
        if not c.name or not all(ch.isalnum() or ch in "-." for ch in c.name):
            problems.append(f"{where}.name: required; letters, digits, '-' and '.' only")
        elif c.name in names:
            problems.append(f"{where}.name: {c.name!r} is used twice")
        names.add(c.name)
        if c.kubeconfig:
            _readable(s, c.kubeconfig, f"{where}.kubeconfig", problems)
            if c.server or c.token or c.token_file or c.client_cert_file:
                problems.append(f"{where}: kubeconfig excludes server and credential keys")
            continue
        _https_url(c.server, f"{where}.server", problems)
        if not (c.ca_file or c.ca_data):
            problems.append(f"{where}: ca_file or ca_data is required (the apiserver is always verified)")
        if c.ca_data:
            try:
                base64.b64decode(c.ca_data, validate=True)
            except (binascii.Error, ValueError):
                problems.append(f"{where}.ca_data: not valid base64")
        creds = [bool(c.token), bool(c.token_file), bool(c.client_cert_file)]
        if sum(creds) != 1:
            problems.append(f"{where}: exactly one credential is required: token, token_file, or client_cert_file")
        if bool(c.client_cert_file) != bool(c.client_key_file):
            problems.append(f"{where}: client_cert_file and client_key_file go together")
        for key in ("ca_file", "token_file", "client_cert_file", "client_key_file"):
            _readable(s, getattr(c, key), f"{where}.{key}", problems)
    if sum(c.default for c in s.clusters) > 1:
        problems.append("clusters: at most one cluster may be the default")
    return problems


def from_mapping(data: Any, *, source: str = "<settings>", base_dir: str = "") -> Settings:
    problems: list[str] = []
    settings: Settings = _build(Settings, data, "settings", problems)
    settings.base_dir = base_dir
    if len(settings.clusters) == 1 and not any(c.default for c in settings.clusters):
        settings.clusters[0].default = True  # a single cluster needs no prefix
    problems += validate(settings)
    if problems:
        raise SettingsError(source, [p.removeprefix("settings.") for p in problems])
    return settings


def load(path: str | Path) -> Settings:
    return read(path, from_mapping)


T = TypeVar("T")


def read(path: str | Path, build: Callable[..., T]) -> T:
    """A settings file read strictly (duplicate keys, line numbers) and built with BUILD."""
    path = Path(path)
    try:
        data = strict_yaml.read(path)
    except strict_yaml.Problem as e:
        raise SettingsError(str(path), [e.report()]) from None
    return build(data, source=str(path), base_dir=str(path.parent.resolve()))
