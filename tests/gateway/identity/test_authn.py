"""Bearer-token authentication on its own: issued tokens, OIDC issuers, and every bad token."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from kubegate.gateway.identity.authn import Authenticator, OidcIssuer, TokenIssuer
from kubegate.gateway.errors import Denial
from kubegate.gateway.config.settings import Issuer, Oidc

NOW = 1_800_000_000.0


def pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def own_key() -> bytes:
    return pem(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def own(clock: Clock, own_key: bytes) -> TokenIssuer:
    return TokenIssuer(Issuer(), own_key, clock)


@pytest.fixture
def idp_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def oidc(tmp_path: Path, idp_key: rsa.RSAPrivateKey, clock: Clock) -> OidcIssuer:
    jwk = json.loads(RSAAlgorithm.to_jwk(idp_key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    cfg = Oidc(issuer="https://idp.example.com", audiences=["kubegate"], jwks_file="jwks.json",
               username_claim="email", groups_claim="groups", groups_prefix="idp:")
    return OidcIssuer(cfg, lambda p: tmp_path / p, clock)


def auth(own: TokenIssuer, oidc: OidcIssuer, clock: Clock, header: str | None) -> Any:
    return asyncio.run(Authenticator(own, [oidc], clock).authenticate(header))


def idp_token(key: Any, now: float = NOW, **overrides: Any) -> str:
    claims = {"iss": "https://idp.example.com", "aud": "kubegate", "sub": "u-123", "email": "ann@example.com",
              "email_verified": True, "groups": ["sre"], "iat": int(now), "exp": int(now) + 600, **overrides}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_issued_token_round_trip(own: TokenIssuer, oidc: OidcIssuer, clock: Clock) -> None:
    token = own.issue("alice", ["dev", "oncall"], uid="u1", extra={"team": ["a"]}, session="s-1")
    ident = auth(own, oidc, clock, f"Bearer {token}")
    assert (ident.user, ident.groups, ident.uid, ident.session) == ("alice", ("dev", "oncall"), "u1", "s-1")
    assert ident.extra == {"team": ("a",)}
    assert ident.upstream_groups() == ("dev", "oncall", "system:authenticated")


def test_oidc_token_with_prefixes(own: TokenIssuer, oidc: OidcIssuer, clock: Clock, idp_key: Any) -> None:
    ident = auth(own, oidc, clock, f"Bearer {idp_token(idp_key)}")
    assert (ident.user, ident.groups) == ("ann@example.com", ("idp:sre",))


def test_issued_token_ttl_is_bounded(own: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        own.issue("alice", ttl_seconds=own.cfg.max_ttl_seconds + 1)


def test_expiry_follows_the_clock(own: TokenIssuer, oidc: OidcIssuer, clock: Clock) -> None:
    token = own.issue("alice", ttl_seconds=60)
    authenticator = Authenticator(own, [oidc], clock)
    assert asyncio.run(authenticator.authenticate(f"Bearer {token}")).user == "alice"
    clock.now += 3600  # cached or not, an expired token stops working
    with pytest.raises(Denial, match="expired"):
        asyncio.run(authenticator.authenticate(f"Bearer {token}"))


def _bad_tokens(own: TokenIssuer, own_key: bytes, idp_key: Any, now: float = NOW) -> dict[str, str]:
    """Header values that must each get 401, built around `now` (fixed here, the real clock live)."""
    public_pem = own.public_key.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": own.cfg.issuer, "aud": own.cfg.audience, "sub": "root", "groups": ["system:masters"],
              "iat": int(now), "exp": int(now) + 600}
    unsigned = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}."
    hs_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    hs_sig = b64(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    stranger = TokenIssuer(dataclasses.replace(own.cfg, allow_system_groups=True),
                           pem(ec.generate_private_key(ec.SECP256R1())), own.clock)
    past = TokenIssuer(own.cfg, own_key, lambda: now - 7200)  # the right key, two hours ago, for one hour
    key = serialization.load_pem_private_key(own_key, password=None)
    return {
        "garbage": "Bearer not-a-jwt",
        "basic-scheme": "Basic YWxpY2U6cHc=",
        "empty-bearer": "Bearer ",
        "alg-none": f"Bearer {unsigned}",
        "hs256-with-public-key": f"Bearer {hs_input}.{hs_sig}",
        "other-key-same-issuer": f"Bearer {stranger.issue('root', ['system:masters'])}",
        "expired": f"Bearer {past.issue('root', ttl_seconds=3600)}",
        "wrong-audience": f"Bearer {jwt.encode({**claims, 'aud': 'other'}, key, algorithm='ES256')}",
        "wrong-issuer": f"Bearer {jwt.encode({**claims, 'iss': 'https://evil'}, key, algorithm='ES256')}",
        "not-yet-valid": f"Bearer {jwt.encode({**claims, 'nbf': int(now) + 3600}, key, algorithm='ES256')}",
        "no-exp": f"Bearer {jwt.encode({k: v for k, v in claims.items() if k != 'exp'}, key, algorithm='ES256')}",
        "oidc-unknown-kid": "Bearer " + jwt.encode({**claims, "iss": "https://idp.example.com", "aud": "kubegate",
                                                    "email": "x@y"}, idp_key, algorithm="RS256",
                                                   headers={"kid": "nope"}),
        "oidc-unverified-email": f"Bearer {idp_token(idp_key, now, email_verified=False)}",
        "oidc-rs-key-as-hmac": "Bearer " + _hmac_with(idp_key.public_key(), {
            "iss": "https://idp.example.com", "aud": "kubegate", "email": "x@y", "iat": int(now),
            "exp": int(now) + 60}),
    }


def _hmac_with(public_key: Any, claims: dict[str, Any]) -> str:
    secret = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'k1'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


BAD = ["garbage", "basic-scheme", "empty-bearer", "alg-none", "hs256-with-public-key", "other-key-same-issuer",
       "expired", "wrong-audience", "wrong-issuer", "not-yet-valid", "no-exp", "oidc-unknown-kid",
       "oidc-unverified-email", "oidc-rs-key-as-hmac"]


@pytest.mark.parametrize("case", BAD)
def test_bad_tokens_are_401(own: TokenIssuer, own_key: bytes, oidc: OidcIssuer, clock: Clock, idp_key: Any,
                            case: str) -> None:
    header = _bad_tokens(own, own_key, idp_key)[case]
    with pytest.raises(Denial) as err:
        auth(own, oidc, clock, header)
    assert err.value.code == 401 and err.value.reason == "Unauthorized"


def test_missing_header_is_401(own: TokenIssuer, oidc: OidcIssuer, clock: Clock) -> None:
    with pytest.raises(Denial) as err:
        auth(own, oidc, clock, None)
    assert err.value.code == 401 and "no bearer token" in err.value.message


def test_jwks_url_is_fetched_and_cached(tmp_path: Path, idp_key: Any, clock: Clock, own: TokenIssuer) -> None:
    from aiohttp import web

    from kubegate import pki

    jwk = json.loads(RSAAlgorithm.to_jwk(idp_key.public_key()))
    jwk.update(kid="k1")
    hits: list[float] = []

    async def scenario() -> tuple[str, str, int]:
        async def jwks(_: web.Request) -> web.Response:
            hits.append(time.time())
            return web.json_response({"keys": [jwk]})

        ca = pki.make_ca("idp-ca")
        leaf = pki.make_leaf(ca, "idp", ["127.0.0.1"])
        ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
        leaf.write(tmp_path / "tls.crt", tmp_path / "tls.key")
        import ssl

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        app = web.Application()
        app.router.add_get("/jwks", jwks)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        try:
            cfg = Oidc(issuer="https://idp.example.com", audiences=["kubegate"],
                       jwks_url=f"https://127.0.0.1:{port}/jwks", jwks_ca_file="ca.crt", username_prefix="-")
            authenticator = Authenticator(own, [OidcIssuer(cfg, lambda p: tmp_path / p, clock)], clock)
            first = await authenticator.authenticate(f"Bearer {idp_token(idp_key)}")
            second = await authenticator.authenticate(f"Bearer {idp_token(idp_key, sub='u-456')}")
            return first.user, second.user, len(hits)
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == ("u-123", "u-456", 1)
