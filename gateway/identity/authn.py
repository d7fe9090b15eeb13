"""Bearer-token authentication: tokens kubegate issues, and OIDC id-tokens from configured issuers.

This is the one module that imports pyjwt. The issuer is picked by the token's (unverified)
`iss` claim and nothing else; from then on only that issuer's keys and algorithm allow-list
count, so `alg: none`, HMAC signed with a public key, and RSA/EC confusion all fail.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization

from ..errors import Denial
from . import identity as identity_rules
from .identity import Identity
from ..config.settings import Issuer, Oidc, Settings

log = logging.getLogger("kubegate.authn")

LEEWAY_SECONDS = 30  # clock skew tolerated on exp/nbf/iat
CACHE_SIZE = 10_000


# Why a token was refused, in a few words: the audit annotation kubegate.io/authn-failure and the
# label of kubegate_authn_failures (bounded: one of these).
AUTHN_FAILURES = ("missing", "malformed", "expired", "not-yet-valid", "untrusted-issuer", "wrong-audience",
                  "bad-signature", "unknown-key", "disallowed-algorithm", "bad-claims", "revoked", "invalid")


def unauthorized(message: str, why: str = "invalid") -> Denial:
    return Denial(401, f"kubegate: {message}", "Unauthorized", annotations={"kubegate.io/authn-failure": why})


class TokenIssuer:
    """Mints the gateway's own tokens (and verifies them)."""

    def __init__(self, cfg: Issuer, key_pem: bytes, clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self._private = serialization.load_pem_private_key(key_pem, password=None)
        self.public_key = self._private.public_key()

    def issue(self, user: str, groups: list[str] | tuple[str, ...] = (), *, ttl_seconds: int = 3600,
              uid: str = "", extra: dict[str, list[str]] | None = None, session: str = "") -> str:
        if found := identity_rules.problems(user, tuple(groups), uid, extra):
            raise ValueError(f"cannot issue a token: {'; '.join(found)}")
        if (reserved := identity_rules.system_groups(groups)) and not self.cfg.allow_system_groups:
            raise ValueError(f"cannot issue a token with the cluster's own groups {', '.join(reserved)} "
                             "(issuer.allow_system_groups is off)")
        if not 0 < ttl_seconds <= self.cfg.max_ttl_seconds:
            raise ValueError(f"ttl must be between 1 and {self.cfg.max_ttl_seconds} seconds")
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.cfg.issuer, "aud": self.cfg.audience, "sub": user, "groups": list(groups),
            "iat": now, "nbf": now, "exp": now + ttl_seconds, "jti": secrets.token_urlsafe(12),
        }
        if uid:
            claims["uid"] = uid
        if extra:
            claims["extra"] = extra
        if session:
            claims["sid"] = session
        return jwt.encode(claims, self._private, algorithm=self.cfg.algorithm)  # type: ignore[arg-type]

    def verify(self, token: str) -> Identity:
        claims = _decode(token, self.public_key, [self.cfg.algorithm], self.cfg.audience, self.cfg.issuer,
                         self.clock)
        groups = claims.get("groups", [])
        extra = claims.get("extra") or {}
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise unauthorized("the token's groups claim is malformed", "bad-claims")
        if not isinstance(extra, dict) or not all(isinstance(v, list) for v in extra.values()):
            raise unauthorized("the token's extra claim is malformed", "bad-claims")
        return _identity(_string_claim(claims, "sub"), tuple(groups), str(claims.get("uid", "")),
                         {str(k): tuple(str(x) for x in v) for k, v in extra.items()},
                         self.cfg.issuer, str(claims.get("sid", "")), self.cfg.allow_system_groups)


def _identity(user: str, groups: tuple[str, ...], uid: str, extra: dict[str, tuple[str, ...]], issuer: str,
              session: str, allow_system_groups: bool) -> Identity:
    """The identity a verified token names, or 401 naming the claim that cannot be one."""
    if found := identity_rules.problems(user, groups, uid, extra):
        raise unauthorized(f"the token's claims cannot name a user: {'; '.join(found)}", "bad-claims")
    if session and (why := identity_rules.value_problem(session)):
        raise unauthorized(f"the token's claims cannot name a user: sid {why}", "bad-claims")
    if (reserved := identity_rules.system_groups(groups)) and not allow_system_groups:
        raise unauthorized(f"the token claims the cluster's own groups ({', '.join(reserved)}), which its "
                           "issuer may not assign", "bad-claims")
    return Identity(user=user, groups=groups, uid=uid, extra=extra, issuer=issuer, session=session)


def _string_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise unauthorized(f"the token has no usable {name!r} claim", "bad-claims")
    return value


def _decode(token: str, key: Any, algorithms: list[str], audience: str | list[str], issuer: str,
            clock: Callable[[], float]) -> dict[str, Any]:
    try:
        # pyjwt checks exp/nbf/iat against the real clock; check them ourselves against `clock`
        # so that tests with fake time and production agree.
        claims = jwt.decode(token, key=key, algorithms=algorithms, audience=audience, issuer=issuer,
                            options={"require": ["exp", "iat", "iss", "aud"], "verify_exp": False,
                                     "verify_nbf": False, "verify_iat": False})
    except jwt.InvalidAudienceError:
        raise unauthorized("the token is not meant for this gateway (audience)", "wrong-audience") from None
    except jwt.InvalidIssuerError:
        raise unauthorized("the token's issuer is not trusted", "untrusted-issuer") from None
    except jwt.InvalidAlgorithmError:
        raise unauthorized("the token's signing algorithm is not allowed for its issuer", "disallowed-algorithm") from None
    except jwt.MissingRequiredClaimError as e:
        raise unauthorized(f"the token lacks the {e.claim!r} claim", "bad-claims") from None
    except jwt.InvalidSignatureError:
        raise unauthorized("the token's signature is invalid", "bad-signature") from None
    except (jwt.InvalidTokenError, jwt.InvalidKeyError, ValueError, TypeError) as e:
        raise unauthorized(f"the token is invalid ({type(e).__name__})") from None
    now = clock()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, (int, float)) or now > exp + LEEWAY_SECONDS:
        raise unauthorized("the token has expired; get a new one (kubegate kubeconfig or your identity provider)", "expired")
    if isinstance(nbf, (int, float)) and now + LEEWAY_SECONDS < nbf:
        raise unauthorized("the token is not valid yet", "not-yet-valid")
    return claims


class KeySource(Protocol):
    async def key(self, kid: str | None, alg: str) -> Any: ...


@dataclass
class Jwks:
    """Keys of an OIDC issuer, from a file or a URL; refetched when a token names an unknown kid."""

    cfg: Oidc
    base: Callable[[str], Any]
    clock: Callable[[], float] = time.time
    _keys: dict[str, Any] = field(default_factory=dict)
    _fetched: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _load(self, document: str) -> None:
        try:
            jwks = jwt.PyJWKSet.from_json(document)
        except (jwt.PyJWKSetError, ValueError) as e:
            raise ValueError(f"the JWKS of {self.cfg.issuer} is invalid: {e}") from e
        keys = {}
        for i, k in enumerate(jwks.keys):
            keys[k.key_id or f"#{i}"] = k
        self._keys = keys
        self._fetched = self.clock()

    async def _refresh(self) -> None:
        async with self._lock:
            if self.cfg.jwks_file:
                self._load(self.base(self.cfg.jwks_file).read_text())
                return
            ctx = ssl.create_default_context(cafile=str(self.base(self.cfg.jwks_ca_file))
                                             if self.cfg.jwks_ca_file else None)
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                url = self.cfg.jwks_url or await self._discover(session, ctx)
                async with session.get(url, ssl=ctx) as resp:
                    if resp.status != 200:
                        raise ValueError(f"fetching {url} answered {resp.status}")
                    self._load(await resp.text())

    async def _discover(self, session: aiohttp.ClientSession, ctx: ssl.SSLContext) -> str:
        """The issuer's jwks_uri, from its discovery document (which must name the same issuer)."""
        url = self.cfg.issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with session.get(url, ssl=ctx) as resp:
            if resp.status != 200:
                raise ValueError(f"fetching {url} answered {resp.status}")
            doc = await resp.json(content_type=None)
        if not isinstance(doc, dict) or doc.get("issuer") != self.cfg.issuer:
            raise ValueError(f"{url} names issuer {doc.get('issuer') if isinstance(doc, dict) else None!r}, "
                             f"not {self.cfg.issuer!r}")
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise ValueError(f"{url} names no https jwks_uri")
        return jwks_uri

    async def key(self, kid: str | None, alg: str) -> Any:
        stale = self.clock() - self._fetched > self.cfg.jwks_refresh_seconds
        unknown = kid is not None and kid not in self._keys
        # An unknown kid refetches at most once a minute, so bad tokens cannot hammer the issuer.
        if not self._keys or stale or (unknown and self.clock() - self._fetched > 60):
            try:
                await self._refresh()
            except (OSError, ValueError, aiohttp.ClientError, asyncio.TimeoutError) as e:
                log.warning("cannot refresh JWKS of %s: %s", self.cfg.issuer, e)
                if not self._keys:
                    raise Denial(503, f"kubegate: the keys of issuer {self.cfg.issuer} cannot be "
                                      "fetched; try again later", "ServiceUnavailable", retry_after=5) from e
        if kid is None:
            if len(self._keys) != 1:
                raise unauthorized("the token names no key (kid) and its issuer has several", "unknown-key")
            return next(iter(self._keys.values())).key
        found = self._keys.get(kid)
        if found is None:
            raise unauthorized("the token is signed with a key its issuer does not publish", "unknown-key")
        return found.key


class OidcIssuer:
    def __init__(self, cfg: Oidc, base: Callable[[str], Any], clock: Callable[[], float] = time.time) -> None:
        self.cfg, self.clock = cfg, clock
        self.jwks = Jwks(cfg, base, clock)
        if cfg.username_prefix is None:
            self.user_prefix = "" if cfg.username_claim == "email" else f"{cfg.issuer}#"
        else:
            self.user_prefix = "" if cfg.username_prefix == "-" else cfg.username_prefix

    async def verify(self, token: str, header: dict[str, Any]) -> Identity:
        alg = header.get("alg")
        if alg not in self.cfg.algorithms:
            raise unauthorized("the token's signing algorithm is not allowed for its issuer", "disallowed-algorithm")
        key = await self.jwks.key(header.get("kid"), alg)
        claims = _decode(token, key, self.cfg.algorithms, self.cfg.audiences, self.cfg.issuer, self.clock)
        if self.cfg.username_claim == "email" and claims.get("email_verified") is False:
            raise unauthorized("the token's email is not verified", "bad-claims")
        for claim, wanted in self.cfg.required_claims.items():
            if claims.get(claim) != wanted:
                raise unauthorized(f"the token's {claim!r} claim is not {wanted!r}, which this issuer requires",
                                   "bad-claims")
        user = _string_claim(claims, self.cfg.username_claim)
        raw_groups = claims.get(self.cfg.groups_claim, [])
        if isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
            raise unauthorized(f"the token's {self.cfg.groups_claim!r} claim is malformed", "bad-claims")
        return _identity(self.user_prefix + user, tuple(self.cfg.groups_prefix + g for g in raw_groups),
                         str(claims.get("sub", "")), {}, self.cfg.issuer, "", self.cfg.allow_system_groups)


@dataclass(frozen=True)
class Presented:
    """A verified bearer token: who it names, and what revocation reads of it."""

    identity: Identity
    expires: float  # exp
    token_id: str  # jti ("" when the token has none)
    issued_at: float  # iat (0 when the token has none)


class Authenticator:
    """Bearer token → Identity, with a bounded cache of verified tokens (verification costs)."""

    def __init__(self, own: TokenIssuer, oidc: list[OidcIssuer], clock: Callable[[], float] = time.time) -> None:
        self.own, self.clock = own, clock
        self.oidc = {o.cfg.issuer: o for o in oidc}
        self._cache: OrderedDict[str, Presented] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, key_pem: bytes,
                      clock: Callable[[], float] = time.time) -> "Authenticator":
        own = TokenIssuer(settings.issuer, key_pem, clock)
        return cls(own, [OidcIssuer(o, settings.path, clock) for o in settings.oidc], clock)

    async def authenticate(self, authorization: str | None) -> Identity:
        return (await self.authenticate_presented(authorization)).identity

    async def authenticate_expiring(self, authorization: str | None) -> tuple[Identity, float]:
        """The caller, and when the token it presented expires (its `exp`)."""
        found = await self.authenticate_presented(authorization)
        return found.identity, found.expires

    async def authenticate_presented(self, authorization: str | None) -> "Presented":
        """The caller and the token it presented (`exp`, `jti`, `iat`: revocation reads them)."""
        if not authorization:
            raise unauthorized("no bearer token: every request needs one (kubegate kubeconfig prints a kubeconfig)", "missing")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 16384:
            raise unauthorized("the Authorization header must be 'Bearer <token>'", "malformed")
        cached = self._cache.get(token)
        if cached is not None and self.clock() <= cached.expires + LEEWAY_SECONDS:
            self._cache.move_to_end(token)
            return cached
        found = await self._verify(token)
        self._cache[token] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    async def _verify(self, token: str) -> "Presented":
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.DecodeError, ValueError, TypeError):
            raise unauthorized("the bearer token is not a well-formed JWT", "malformed") from None
        issuer = unverified.get("iss")
        try:  # (read here, used only once the signature is verified below)
            exp, iat = float(unverified.get("exp") or 0), float(unverified.get("iat") or 0)
        except (TypeError, ValueError):
            raise unauthorized("the token's exp or iat is not a number", "bad-claims") from None
        jti = unverified.get("jti")
        jti = jti if isinstance(jti, str) else ""
        if issuer == self.own.cfg.issuer:
            return Presented(self.own.verify(token), exp, jti, iat)
        oidc = self.oidc.get(issuer) if isinstance(issuer, str) else None
        if oidc is None:
            raise unauthorized("the token's issuer is not trusted", "untrusted-issuer")
        return Presented(await oidc.verify(token, header), exp, jti, iat)
