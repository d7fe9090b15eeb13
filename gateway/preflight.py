"""What `kubegate serve` checks before it starts and `kubegate doctor` reports, key by key.

Local checks read every file the settings name the way serving will use it — certificates and
keys parsed and matched, the signing key against its algorithm, JWKS files, cluster CAs and
credentials — and try what serving needs of the machine (the ports are free, each cluster's host
resolves, the audit directory takes a write). A finding that would make serving fail is
`blocking`: serve refuses to start on it with the "N problem(s) in FILE" report. The rest (a
certificate that does not name `public_url`'s host) serving survives, and `doctor` fails on.

Remote checks (doctor only) ask what only the other side can answer: each cluster, as the
gateway, who it is (SelfSubjectReview) and whether it may impersonate (SelfSubjectAccessReview),
and how far its clock is from ours; Redis answers PING with the configured password; each OIDC
issuer serves its discovery document and a JWKS.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import shutil
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .clusters import upstreams as upstreams_mod
from .clusters.upstreams import Upstream
from .config.settings import Settings, SettingsError

MAX_CLOCK_SKEW = 30.0  # seconds; tokens allow this much (authn.LEEWAY_SECONDS)
IMPERSONATION = (("", "users"), ("", "groups"), ("", "serviceaccounts"), ("authentication.k8s.io", "uids"),
                 ("authentication.k8s.io", "userextras"))


@dataclass(frozen=True)
class Finding:
    check: str  # what is checked, named by its settings key ("tls.cert_file", "clusters[0] hz-1")
    ok: bool
    detail: str
    blocking: bool = True  # serving cannot work with it (serve refuses to start)


# -- local ------------------------------------------------------------------------------------

def _certificates(path: Path) -> list[x509.Certificate]:
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    if not certs:
        raise ValueError("no PEM certificate in it")
    return certs


def _private_key(path: Path) -> Any:
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def _same_key(cert: x509.Certificate, key: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt))


def _why(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0][:400]


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _covers(names: list[str], host: str) -> bool:
    for name in names:
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:]):
            return True
    return False


def _serving_tls(s: Settings) -> list[Finding]:
    if s.tls.cert_file:
        cert_path, key_path, what = s.path(s.tls.cert_file), s.path(s.tls.key_file), "tls.cert_file"
    else:
        cert_path, key_path, what = s.state / "tls" / "serving.crt", s.state / "tls" / "serving.key", "tls (generated)"
        if not cert_path.exists():
            out = [Finding("tls", True, f"a CA and serving certificate will be generated into {cert_path.parent} "
                                        f"for {', '.join(s.tls.hosts)}")]
            host = urlsplit(s.url).hostname or ""
            if host and not _covers(s.tls.hosts, host):
                out.append(Finding("public_url", False, f"the certificate to be generated would not name {host!r}, the "
                                                        "host users connect to: kubectl would refuse it; add it to "
                                                        "tls.hosts", blocking=False))
            return out
    try:
        certs = _certificates(cert_path)
    except (OSError, ValueError) as e:
        return [Finding(what, False, f"{cert_path}: not a PEM certificate ({_why(e)})")]
    try:
        key = _private_key(key_path)
    except (OSError, ValueError, TypeError) as e:
        return [Finding("tls.key_file", False, f"{key_path}: not an unencrypted PEM private key ({_why(e)})")]
    if not _same_key(certs[0], key):
        return [Finding(what, False, f"{cert_path} and {key_path} do not belong together (different keys)")]
    leaf = certs[0]
    if leaf.not_valid_after_utc.timestamp() < time.time():
        return [Finding(what, False, f"{cert_path} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")]
    host = urlsplit(s.url).hostname or ""
    names = _names(leaf)
    out = [Finding(what, True, f"{cert_path}: valid until {leaf.not_valid_after_utc:%Y-%m-%d}, names {', '.join(names)}")]
    if host and not _covers(names, host):
        fix = "add it to tls.hosts (and remove state_dir/tls to regenerate)" if not s.tls.cert_file else \
            "use a certificate that names it"
        out.append(Finding("public_url", False, f"the serving certificate does not name {host!r}, the host users "
                                                f"connect to: kubectl will refuse it; {fix}", blocking=False))
    return out


_ALGORITHM_KEYS: dict[str, Callable[[Any], bool]] = {
    "ES256": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and isinstance(k.curve, ec.SECP256R1),
    "ES384": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and isinstance(k.curve, ec.SECP384R1),
    "EdDSA": lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
    "RS256": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size >= 2048,
}
_ALGORITHM_NEEDS = {"ES256": "an EC P-256 key", "ES384": "an EC P-384 key", "EdDSA": "an Ed25519 key",
                    "RS256": "an RSA key of at least 2048 bits"}


def _signing_key(s: Settings) -> list[Finding]:
    algorithm = s.issuer.algorithm
    if s.issuer.signing_key_file:
        path, what = s.path(s.issuer.signing_key_file), "issuer.signing_key_file"
    else:
        path, what = s.state / "tls" / "token-signing.key", "issuer (generated key)"
        if not path.exists():
            return [Finding("issuer", True, f"a signing key will be generated into {path}")]
    try:
        key = _private_key(path)
    except (OSError, ValueError, TypeError) as e:
        return [Finding(what, False, f"{path}: not an unencrypted PEM private key ({_why(e)})")]
    fits = _ALGORITHM_KEYS.get(algorithm)
    if fits is None or not fits(key):
        return [Finding(what, False, f"{path}: issuer.algorithm {algorithm} needs {_ALGORITHM_NEEDS.get(algorithm, '?')}, "
                                     f"this is a {type(key).__name__.lstrip('_')}")]
    try:
        jwt.encode({"sub": "preflight"}, key, algorithm=algorithm)
    except Exception as e:  # pyjwt raises many kinds; any means tokens cannot be issued
        return [Finding(what, False, f"{path}: cannot sign with {algorithm}: {_why(e)}")]
    return [Finding(what, True, f"{path}: signs {algorithm}")]


def _jwks_files(s: Settings) -> list[Finding]:
    out = []
    for i, o in enumerate(s.oidc):
        if not o.jwks_file:
            continue
        where, path = f"oidc[{i}].jwks_file", s.path(o.jwks_file)
        try:
            keys = jwt.PyJWKSet.from_json(path.read_text()).keys
        except (OSError, ValueError, jwt.PyJWTError) as e:
            out.append(Finding(where, False, f"{path}: not a usable JWKS ({_why(e)})"))
            continue
        usable = [k for k in keys if k.algorithm_name in o.algorithms or not getattr(k, "algorithm_name", None)]
        out.append(Finding(where, bool(usable), f"{path}: {len(keys)} key(s)" + (
            "" if usable else f", none for the allowed algorithms {', '.join(o.algorithms)}")))
    return out


def _clusters(s: Settings) -> list[tuple[Finding, Upstream | None]]:
    """One finding per cluster, with the cluster as serving reaches it (None when it cannot be built)."""
    try:
        built = upstreams_mod.build(s).all
    except SettingsError as e:
        return [(Finding(e.source, False, p), None) for p in e.problems]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [(Finding("clusters", False, f"cannot read a cluster's settings: {_why(e)}"), None)]
    out: list[tuple[Finding, Upstream | None]] = []
    for i, u in enumerate(built):
        problems = []
        try:
            _certificates(u.ca_file)
        except (OSError, ValueError) as e:
            problems.append(f"its CA {u.ca_file} is not PEM ({_why(e)})")
        if u.client_cert_file and u.client_key_file:
            try:
                if not _same_key(_certificates(u.client_cert_file)[0], _private_key(u.client_key_file)):
                    problems.append(f"its client certificate {u.client_cert_file} and key do not belong together")
            except (OSError, ValueError, TypeError) as e:
                problems.append(f"its client certificate or key cannot be read ({_why(e)})")
        if u.token_file is not None:
            try:
                if not u.token_file.path.read_text().strip():
                    problems.append(f"its token file {u.token_file.path} is empty")
            except OSError as e:
                problems.append(f"its token file cannot be read ({e.strerror})")
        try:
            socket.getaddrinfo(u.host, u.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            problems.append(f"its host {u.host!r} does not resolve ({_why(e)})")
        finding = Finding(f"clusters[{i}] {u.name}", not problems, "; ".join(problems) or
                          f"https://{u.host}:{u.port} (certificate name {u.server_name})")
        out.append((finding, u if not problems else None))
    return out


def _port(host: str, port: int, what: str) -> Finding:
    if port <= 0:
        return Finding(what, True, "a free port is picked")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            return Finding(what, False, f"cannot listen on {host}:{port}: {e.strerror}")
    return Finding(what, True, f"{host}:{port} is free")


def _audit(s: Settings) -> Finding:
    directory = s.audit_path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".kubegate-write-test-"):
            pass
    except OSError as e:
        return Finding("audit.path", False, f"{directory}: cannot write there ({e.strerror})")
    return Finding("audit.path", True, f"{s.audit_path}: its directory takes writes")


def _webshell(s: Settings) -> Finding:
    """Whether the webshell's terminals can be contained here (they are refused where they cannot)."""
    from kubegate.webshell import sandbox

    kubectl = shutil.which(s.webshell.kubectl or "kubectl") or s.webshell.kubectl or "kubectl"
    made = sandbox.make(s.webshell.sandbox, kubectl)
    if made.kind == "none":
        return Finding("webshell.sandbox", True, "NONE: terminals' kubectl runs as the webshell's own user, with its "
                       "files in reach; only where the webshell is contained by other means (its own pod)", False)
    if made.problem:
        return Finding("webshell.sandbox", False, f"terminals are OFF: {made.problem}", False)
    return Finding("webshell.sandbox", True, "bwrap: each terminal command runs in a sandbox", False)


def _problems(what: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return f"{len(problems)} problem(s) ({shown}): `kubegate policy check` lists {what}"


def _policies(s: Settings) -> list[Finding]:
    """The policies serving loads, checked as `kubegate policy check` and `serve` check them."""
    from kubegate.audit import policy as audit_policy

    from .authz import policy as authz_policy
    from .authz.authorizer import Authorizer
    from .gates import policy as gate_policy

    out = []
    authz_dir = s.path(s.authz.policy_dir)
    if authz_dir.is_dir():
        ps = authz_policy.load(authz_dir)
        problems = list(ps.problems)
        if ps.ok:
            try:
                Authorizer(ps)
            except authz_policy.PolicyError as e:
                problems += e.problems
        out.append(Finding("authz.policy_dir", not problems, _problems("them", problems) if problems else
                           f"{authz_dir}: {len(ps.rules)} rules, {len(ps.bindings)} bindings", False))
        out += [Finding("authz.policy_dir", True, f"warning: {w}", False) for w in ps.warnings]
    # (Not blocking here: `serve` checks the policies itself, with every problem and its line.)
    gates_dir = s.path(s.gates.policy_dir)
    if gates_dir.is_dir():
        gates, problems = gate_policy.load(gates_dir)
        out.append(Finding("gates.policy_dir", not problems, _problems("them", problems) if problems else
                           f"{gates_dir}: {len(gates.change.rules)} rules, {len(gates.limits.budgets)} budgets, "
                           f"{len(gates.change.freeze)} freeze windows, {len(gates.health.gates)} alert gates, "
                           f"{len(gates.rollouts.rollouts)} rollouts", False))
    if s.audit.policy_file:
        path = s.path(s.audit.policy_file)
        try:
            found = audit_policy.load(path)
            out.append(Finding("audit.policy_file", True, f"{path}: {len(found.rules)} rules", False))
        except audit_policy.PolicyError as e:
            out.append(Finding("audit.policy_file", False, _problems("them", e.problems), False))
        except OSError as e:
            out.append(Finding("audit.policy_file", False, f"{path}: cannot be read ({e.strerror})", False))
    return out


def local(s: Settings) -> tuple[list[Finding], list[tuple[int, Upstream]]]:
    """Every local finding, and the clusters fit to be asked (index in `clusters`, as serving reaches it)."""
    findings = [*_serving_tls(s), *_signing_key(s), *_jwks_files(s), *_policies(s)]
    clusters = _clusters(s)
    findings += [f for f, _ in clusters]
    findings.append(_port(s.listen.host, s.listen.port, "listen.port"))
    if s.metrics.port > 0:
        findings.append(_port(s.metrics.host, s.metrics.port, "metrics.port"))
    findings.append(_audit(s))
    if s.webshell.enabled:
        findings.append(_webshell(s))
    if s.store.password_file:
        try:
            if not s.path(s.store.password_file).read_text().strip():
                findings.append(Finding("store.password_file", False, "the file is empty"))
        except OSError as e:
            findings.append(Finding("store.password_file", False, f"cannot be read ({e.strerror})"))
    return findings, [(i, u) for i, (_, u) in enumerate(clusters) if u is not None]


def blocking_problems(s: Settings) -> list[str]:
    """What `kubegate serve` refuses to start with, one line each."""
    findings, _ = local(s)
    return [f"{f.check}: {f.detail}" for f in findings if not f.ok and f.blocking]


# -- remote (doctor) --------------------------------------------------------------------------

def _tls_context(u: Upstream) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(u.ca_file))
    if u.client_cert_file and u.client_key_file:
        ctx.load_cert_chain(str(u.client_cert_file), str(u.client_key_file))
    return ctx


async def _cluster(session: aiohttp.ClientSession, i: int, u: Upstream) -> list[Finding]:
    where = f"clusters[{i}] {u.name}"
    base = f"https://{u.host}:{u.port}{u.base_path}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if auth := u.authorization():
        headers["Authorization"] = auth
    ctx = _tls_context(u)

    async def post(path: str, body: dict[str, Any]) -> tuple[int, Any, str]:
        async with session.post(base + path, data=json.dumps(body), headers=headers, ssl=ctx,
                                server_hostname=u.server_name) as resp:
            text = await resp.text()
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            return resp.status, data, resp.headers.get("Date", "")

    out = []
    try:
        status, review, date = await post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError, OSError) as e:
        return [Finding(where, False, f"cannot reach {base}: {_why(e)}")]
    if status in (401, 403):
        return [Finding(where, False, f"{base} refused the gateway's credential ({status})")]
    if status != 201 and status != 200:
        return [Finding(where, False, f"{base} answered the SelfSubjectReview with {status}")]
    user = ((review or {}).get("status") or {}).get("userInfo") or {}
    out.append(Finding(where, True, f"{base} knows the gateway as {user.get('username', '?')!r}"))
    if date:
        skew = abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time())
        out.append(Finding(f"{where} clock", skew <= MAX_CLOCK_SKEW,
                           f"the cluster's clock is {skew:.0f}s from ours" +
                           ("" if skew <= MAX_CLOCK_SKEW else f" (more than {MAX_CLOCK_SKEW:.0f}s: tokens misjudged)")))
    missing = []
    for group, resource in IMPERSONATION:
        status, answer, _ = await post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"group": group, "resource": resource, "verb": "impersonate",
                                            **({"subresource": "kubegate.io/session"} if resource == "userextras" else {})}}})
        if not ((answer or {}).get("status") or {}).get("allowed"):
            missing.append(f"{group + '/' if group else ''}{resource}")
    out.append(Finding(f"{where} impersonation", not missing,
                       "may impersonate users, groups, service accounts, uids and the session extra" if not missing else
                       f"may not impersonate {', '.join(missing)}: apply deploy/impersonator-rbac.yaml there"))
    return out


async def _redis(s: Settings) -> list[Finding]:
    if not s.store.redis_url:
        return [Finding("store", True, "state in this process (one replica; no Redis configured)")]
    import redis.asyncio as aioredis

    password = s.path(s.store.password_file).read_text().strip() if s.store.password_file else None
    extra: dict[str, Any] = {"ssl_ca_certs": str(s.path(s.store.ca_file))} if s.store.ca_file else {}
    client = aioredis.from_url(s.store.redis_url, password=password, socket_timeout=3, socket_connect_timeout=3,
                               **extra)
    try:
        await client.ping()
    except Exception as e:  # redis-py raises its own errors and OSError subclasses alike
        return [Finding("store.redis_url", False, f"{urlsplit(s.store.redis_url).netloc.rpartition('@')[2]}: {_why(e)}")]
    finally:
        await client.aclose()
    return [Finding("store.redis_url", True, "Redis answers PING")]


async def _oidc(session: aiohttp.ClientSession, s: Settings) -> list[Finding]:
    out = []
    for i, o in enumerate(s.oidc):
        where = f"oidc[{i}] {o.issuer}"
        ctx = ssl.create_default_context(cafile=str(s.path(o.jwks_ca_file)) if o.jwks_ca_file else None)
        jwks_url = o.jwks_url
        if not o.jwks_file:
            url = o.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                async with session.get(url, ssl=ctx) as resp:
                    doc = await resp.json(content_type=None) if resp.status == 200 else None
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as e:
                doc = None
                out.append(Finding(where, bool(jwks_url), f"no discovery document at {url}: {_why(e)}",
                                   blocking=False))
            if isinstance(doc, dict):
                same = doc.get("issuer") == o.issuer
                out.append(Finding(where, same, f"discovery: issuer {doc.get('issuer')!r}" +
                                   ("" if same else f" is not {o.issuer!r}")))
                jwks_url = jwks_url or str(doc.get("jwks_uri") or "")
        if not jwks_url:
            continue
        try:
            async with session.get(jwks_url, ssl=ctx) as resp:
                keys = jwt.PyJWKSet.from_json(await resp.text()).keys
            out.append(Finding(f"{where} jwks", True, f"{jwks_url}: {len(keys)} key(s)"))
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError, jwt.PyJWTError) as e:
            out.append(Finding(f"{where} jwks", False, f"{jwks_url}: {_why(e)}"))
    return out


async def remote(s: Settings, clusters: list[tuple[int, Upstream]]) -> list[Finding]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        found = await asyncio.gather(*(_cluster(session, i, u) for i, u in clusters), _redis(s), _oidc(session, s))
    return [f for group in found for f in group]
