"""A real OpenID Connect provider for login tests (PyPI oidc-provider-mock), served over TLS in its
own process: `python -m tests.oidc.provider CERT KEY` prints its issuer URL, then serves until ended.

The tests drive its authorization-code flow as a login tool (kubelogin) would, minus the browser:
the authorization form is posted with the user's subject and the code exchanged for an ID token.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests


def main() -> None:
    import werkzeug.serving
    from oidc_provider_mock import app

    cert, key = sys.argv[1], sys.argv[2]
    server = werkzeug.serving.make_server("127.0.0.1", 0, app(), threaded=True, ssl_context=(cert, key))
    print(f"issuer https://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


@dataclass
class Provider:
    issuer: str
    ca_file: Path
    proc: subprocess.Popen[str]

    def user(self, sub: str, claims: dict[str, Any]) -> None:
        requests.put(f"{self.issuer}/users/{sub}", json=claims, verify=str(self.ca_file), timeout=10).raise_for_status()

    def id_token(self, sub: str, client_id: str = "kubegate", scope: str = "openid email") -> str:
        """Log in as SUB: the authorization-code flow, the form posted, the code exchanged."""
        redirect = "http://127.0.0.1:8000/callback"
        query = urllib.parse.urlencode({"client_id": client_id, "redirect_uri": redirect, "response_type": "code",
                                        "scope": scope, "state": "s"})
        ca = str(self.ca_file)  # per request: a session's `verify` loses to REQUESTS_CA_BUNDLE
        with requests.Session() as http:
            form = http.get(f"{self.issuer}/oauth2/authorize?{query}", timeout=10, verify=ca)
            form.raise_for_status()
            answer = http.post(f"{self.issuer}/oauth2/authorize?{query}", data={"sub": sub},
                               allow_redirects=False, timeout=10, verify=ca)
            code = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["Location"]).query)["code"][0]
            token = http.post(f"{self.issuer}/oauth2/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "client_id": client_id, "client_secret": "unused"}, timeout=10, verify=ca)
            token.raise_for_status()
            return str(token.json()["id_token"])

    def stop(self) -> None:
        self.proc.terminate()  # started by start(), ended by its PID
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_tls(root: Path) -> Provider:
    """A provider over TLS with a CA of its own made in ROOT (its ca_file is what clients trust)."""
    from kubegate import pki

    ca = pki.make_ca("idp-ca")
    ca.write(root / "ca.crt", root / "ca.key")
    pki.make_leaf(ca, "idp", ["127.0.0.1"]).write(root / "idp.crt", root / "idp.key")
    return start(root / "idp.crt", root / "idp.key", root / "ca.crt")


def start(cert: Path, key: Path, ca_file: Path) -> Provider:
    proc = subprocess.Popen([sys.executable, "-m", "tests.oidc.provider", str(cert), str(key)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"issuer (https://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the OIDC provider did not start: {line!r}")
    return Provider(match.group(1), ca_file, proc)


if __name__ == "__main__":
    main()
