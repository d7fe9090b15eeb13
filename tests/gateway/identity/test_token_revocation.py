"""Token revocation, offboarding without a policy edit or a new signing key: one leaked token, or
every earlier token of a user, refused on every replica within about a second (through Redis),
their open streams ended; a new login works; who may revoke is policy; each one is audited."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, start_replicas

PODS = "/api/v1/namespaces/default/pods"


class Pair:
    def __init__(self, a: GatewayHandle, b: GatewayHandle, tmp: Path) -> None:
        self.a, self.b, self.tmp = a, b, tmp

    def get(self, gw: GatewayHandle, token: str, path: str = PODS) -> requests.Response:
        return requests.get(gw.url + path, headers={"Authorization": f"Bearer {token}"},
                            verify=str(self.a.ca_file), timeout=10)

    def cli(self, user: str, groups: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
        kubeconfig = self.tmp / f"{user}-kubeconfig"
        harness.write_kubeconfig(kubeconfig, self.a.url, self.a.ca_file.read_text(), self.a.token(user, groups),
                                 user=user)
        return subprocess.run([sys.executable, "-m", "kubegate", "token", *args, "--kubeconfig", str(kubeconfig)],
                              capture_output=True, text=True, timeout=60)

    def refused_soon(self, token: str, bound: float = 10) -> requests.Response:
        """The answer on the other replica once it refuses TOKEN (a bound for the test, not a measurement)."""
        deadline = time.monotonic() + bound
        while True:
            answer = self.get(self.b, token)
            if answer.status_code == 401 or time.monotonic() > deadline:
                return answer
            time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, upstream: harness.RunningEmulator) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("revoke")
    with contextlib.ExitStack() as started:  # whatever started is stopped, even when a later start fails
        _, a, b = start_replicas(started, tmp, upstream, "tr")
        yield Pair(a, b, tmp)


ADMIN = ("kubegate:cluster-admins",)


def test_a_leaked_token_is_refused_everywhere_and_the_users_others_still_work(pair: Pair) -> None:
    leaked, other = pair.a.token("eve", ["kubegate:viewers"]), pair.a.token("eve", ["kubegate:viewers"])
    assert pair.get(pair.b, leaked).status_code == 200
    (pair.tmp / "leaked.jwt").write_text(leaked)
    done = pair.cli("ada", ADMIN, "revoke", "--token-file", str(pair.tmp / "leaked.jwt"), "--reason", "INC-12: pasted in a chat")
    assert done.returncode == 0, done.stderr
    refused = pair.refused_soon(leaked)
    assert refused.status_code == 401 and "was revoked by ada: INC-12: pasted in a chat" in refused.json()["message"]
    assert pair.get(pair.b, other).status_code == 200  # only that one token
    listed = pair.cli("ada", ADMIN, "revocations")
    assert "token" in listed.stdout and "INC-12" in listed.stdout


def test_offboarding_ends_every_earlier_token_and_its_streams_and_a_new_login_works(pair: Pair) -> None:
    earlier = pair.a.token("olaf", ["kubegate:viewers"])
    watch = requests.get(pair.b.url + PODS + "?watch=1&timeoutSeconds=120",
                         headers={"Authorization": f"Bearer {earlier}"}, verify=str(pair.a.ca_file), stream=True,
                         timeout=(10, 60))
    assert watch.status_code == 200
    done = pair.cli("ada", ADMIN, "revoke", "--user", "olaf", "--reason", "left the company")
    assert done.returncode == 0 and "every token of olaf issued before now revoked" in done.stdout, done.stderr
    refused = pair.refused_soon(earlier)
    assert refused.status_code == 401 and "every token of olaf issued before" in refused.json()["message"]
    started = time.monotonic()
    try:
        for _ in watch.iter_content(chunk_size=None):  # the watch opened with it is ended too
            if time.monotonic() - started > 30:
                break
    except requests.RequestException:
        pass  # the gateway closed the connection under it
    assert time.monotonic() - started < 30
    watch.close()
    time.sleep(1.1)  # a token issued in a later second than the revocation
    assert pair.get(pair.b, pair.a.token("olaf", ["kubegate:viewers"])).status_code == 200
    revoked = [e for e in pair.a.audit_events() if e["annotations"].get("kubegate.io/token-event") == "revoked"]
    assert {e["annotations"]["kubegate.io/token-revoked"] for e in revoked} >= {"user:olaf"}
    closed = [e for e in pair.b.audit_events() if "was revoked" in e["annotations"].get("kubegate.io/stream-closed", "")]
    assert closed


def test_who_may_revoke_is_policy(pair: Pair) -> None:
    refused = pair.cli("sam", ("kubegate:sre",), "revoke", "--user", "ada", "--reason", "coup")
    assert refused.returncode == 1 and 'user "sam" may not create token revocations' in refused.stderr
    assert pair.get(pair.b, pair.a.token("ada", ADMIN)).status_code == 200
