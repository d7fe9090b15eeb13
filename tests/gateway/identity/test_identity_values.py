"""Identity values cannot inject headers: a signed claim with CR/LF, NUL or surrounding whitespace is
refused where tokens are verified (401 naming the claim) and issued, and the cluster's own
`system:` groups are refused unless the issuer may assign them."""

from __future__ import annotations

import subprocess
import sys
import time

import jwt
import pytest

from kubegate.gateway.config.settings import Issuer
from kubegate.gateway.identity import identity
from kubegate.gateway.identity.authn import TokenIssuer
from tests.gateway.conftest import Isolated, assert_status

P = pytest.param
INJECT = "alice\r\nImpersonate-Group: system:masters"


@pytest.mark.parametrize(("value", "why"), [
    P("alice", "", id="plain"),
    P("https://issuer.example#5f2c", "", id="issuer-hash-sub"),
    P("josé@example.com", "", id="non-ascii"),
    P("a b", "", id="inner-space"),
    P(INJECT, "control character U+000D", id="crlf"),
    P("alice\nx", "control character U+000A", id="lf"),
    P("alice\x00", "control character U+0000", id="nul"),
    P("alice\x7f", "control character U+007F", id="del"),
    P("ali\x85ce", "control character U+0085", id="c1-next-line"),
    P("alice\u2028x", "control character U+2028", id="line-separator"),
    P("admin ", "whitespace at either end", id="trailing-space"),
    P("\tadmin", "whitespace at either end", id="leading-tab"),
    P("", "is empty", id="empty"),
    P("x" * 1025, "longer than 1024", id="too-long"),
])
def test_identity_values_must_be_printable_text(value: str, why: str) -> None:
    problem = identity.value_problem(value)
    assert (why in problem and problem) if why else problem == ""


@pytest.mark.parametrize(("user", "groups", "uid", "extra", "named"), [
    P(INJECT, [], "", {}, "user", id="user"),
    P("alice", ["dev", "ops\r\nX: y"], "", {}, "group 'ops\\r\\nX: y'", id="group"),
    P("alice", [], "u\n1", {}, "uid", id="uid"),
    P("alice", [], "", {"scopes": ["a\r\nb"]}, "extra 'scopes' value", id="extra-value"),
    P("alice", [], "", {"k\r\nImpersonate-User: root": ["a"]}, "extra key", id="extra-key"),
])
def test_token_issue_refuses_unprintable_claims(user: str, groups: list[str], uid: str,
                                                extra: dict[str, list[str]], named: str) -> None:
    issuer = TokenIssuer(Issuer(), _key())
    with pytest.raises(ValueError) as err:
        issuer.issue(user, groups, uid=uid, extra=extra)
    assert named in str(err.value)


def test_token_issue_refuses_system_groups_unless_allowed() -> None:
    with pytest.raises(ValueError, match="system:masters"):
        TokenIssuer(Issuer(), _key()).issue("alice", ["system:masters"])
    TokenIssuer(Issuer(), _key()).issue("alice", ["system:authenticated"])  # the one every caller has
    TokenIssuer(Issuer(allow_system_groups=True), _key()).issue("alice", ["system:masters"])


def test_the_cli_refuses_an_injected_user(isolated: Isolated) -> None:
    config = isolated.gw.settings.state / "kubegate.yaml"
    proc = subprocess.run([sys.executable, "-m", "kubegate", "token", "issue", "-c", str(config), "--user", INJECT],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "user contains the control character U+000D" in proc.stderr
    assert "Traceback" not in proc.stderr


def _signed(isolated: Isolated, **claims: object) -> str:
    now = int(time.time())
    key = (isolated.gw.settings.state / "tls" / "token-signing.key").read_bytes()
    cfg = isolated.gw.settings.issuer
    body = {"iss": cfg.issuer, "aud": cfg.audience, "sub": "alice", "groups": ["kubegate:viewers"],
            "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, key, algorithm=cfg.algorithm)


@pytest.mark.parametrize(("claims", "named"), [
    P({"sub": INJECT}, "user contains the control character U+000D", id="sub-crlf"),
    P({"sub": "admin "}, "user has whitespace at either end", id="sub-trailing-space"),
    P({"groups": ["kubegate:viewers", "x\r\nImpersonate-User: root"]}, "group", id="group-crlf"),
    P({"uid": "1\n2"}, "uid contains", id="uid-lf"),
    P({"extra": {"scopes": ["view\r\nImpersonate-Group: system:masters"]}}, "extra 'scopes' value", id="extra"),
    P({"extra": {"a\nb": ["x"]}}, "extra key", id="extra-key"),
    P({"sid": "s\r\n1"}, "sid contains", id="session"),
    P({"groups": ["kubegate:viewers", "system:masters"]}, "system:masters", id="system-masters"),
    P({"groups": ["system:nodes"]}, "system:nodes", id="system-nodes"),
])
def test_signed_tokens_whose_claims_cannot_name_a_user_get_401(isolated: Isolated, claims: dict[str, object],
                                                               named: str) -> None:
    resp = isolated.send("GET", "/api/v1/namespaces/default/pods", token=_signed(isolated, **claims))
    body = assert_status(resp, 401, "Unauthorized")
    assert named in body["message"]
    assert isolated.upstream.requests == []


def test_system_authenticated_in_a_token_is_fine(isolated: Isolated) -> None:
    token = _signed(isolated, groups=["kubegate:viewers", "system:authenticated"])
    resp = isolated.send("GET", "/api/v1/namespaces/default/pods", token=token)
    assert resp.status == 200
    (record,) = isolated.upstream.requests
    assert record.impersonation["impersonate-group"] == ["kubegate:viewers", "system:authenticated"]


def _key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
