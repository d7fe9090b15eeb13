"""Single sign-on into the webshell: the authorization-code flow with PKCE against a real OpenID
Connect provider process; the gateway verifies the ID token when the webshell trades it for a
session token."""

from __future__ import annotations

import urllib.parse
from typing import Iterator

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, kubectl_binary, start_gateway
from tests.oidc import provider as oidc_provider


@pytest.fixture(scope="module")
def gw(idp: oidc_provider.Provider, upstream: harness.RunningEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    handle = start_gateway(tmp_path_factory.mktemp("sso-gw"), upstream,
                           oidc=[{"issuer": idp.issuer, "audiences": ["kubegate-webshell"],
                                  "jwks_ca_file": str(idp.ca_file), "username_claim": "email",
                                  "groups_prefix": "sso:"}],
                           webshell={"enabled": True, "port": 0, "kubectl": kubectl_binary(),
                                     "oidc_issuer": idp.issuer, "oidc_client_id": "kubegate-webshell"})
    yield handle
    handle.stop()


def test_sign_in_with_the_provider(idp: oidc_provider.Provider, gw: GatewayHandle) -> None:
    shell, ca = gw.webshell_url, str(gw.ca_file)
    with requests.Session() as browser:
        login = browser.get(f"{shell}/login", verify=ca, timeout=10)
        assert 'href="/login/oidc"' in login.text
        start = browser.get(f"{shell}/login/oidc", verify=ca, timeout=10, allow_redirects=False)
        assert start.status_code == 302
        authorize = start.headers["Location"]
        asked = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize).query)
        assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
        assert asked["redirect_uri"] == [f"{shell}/login/callback"] and asked["client_id"] == ["kubegate-webshell"]
        # The provider's own page: the user picks who they are (the browser tests click it).
        assert browser.get(authorize, verify=str(idp.ca_file), timeout=10).status_code == 200
        back = browser.post(authorize, data={"sub": "alice"}, verify=str(idp.ca_file), timeout=10,
                            allow_redirects=False)
        callback = back.headers["Location"]
        assert callback.startswith(f"{shell}/login/callback?")
        done = browser.get(callback, verify=ca, timeout=20, allow_redirects=False)
        assert done.status_code == 303 and done.headers["Location"] == "/", done.text
        home = browser.get(f"{shell}/", verify=ca, timeout=10)
        assert "alice@example.com" in home.text and "Open a terminal" in home.text
        cookie = next(c for c in browser.cookies if c.name == "__Host-kubegate-session")
        assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
        # A replayed callback (the code is used, the state cookie gone) signs nobody in.
        again = requests.get(callback, verify=ca, timeout=10, allow_redirects=False)
        assert again.status_code == 401 and "did not come back as it left" in again.text
    logins = [e for e in gw.audit_events() if (e.get("annotations") or {}).get("kubegate.io/webshell-event") == "login"]
    assert logins and logins[-1]["user"]["username"] == "alice@example.com"
