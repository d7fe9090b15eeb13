"""Exec sessions through the gateway are recorded (asciicast v2): what was typed and what came back,
with timing; the audit log vouches for the recording, and `kubegate audit play` replays it."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, start_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    state = tmp_path_factory.mktemp("recording")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gw", upstream)
    yield gw
    gw.stop()
    upstream.stop()


def session_event(gw: GatewayHandle) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        done = [e for e in gw.audit_events() if e.get("objectRef", {}).get("subresource") == "exec"
                and e["stage"] == "ResponseComplete" and "kubegate.io/recording" in e["annotations"]]
        if done:
            return done[-1]
        assert time.monotonic() < deadline, "the session's ResponseComplete event was not written"
        time.sleep(0.05)


def cast(gw: GatewayHandle, event: dict[str, object]) -> tuple[dict[str, object], list[list[object]]]:
    name = event["annotations"]["kubegate.io/recording"]  # type: ignore[index]
    lines = (gw.settings.state / "recordings" / name).read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_a_piped_exec_records_input_and_output(gw: GatewayHandle, kubectl_path: str, tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    kubectl("run", "rec-1", "--image=busybox")
    out = kubectl("exec", "-i", "rec-1", "--", "cat", input="secret-ish line\n")
    assert out.stdout == "secret-ish line\n"
    header, events = cast(gw, session_event(gw))
    assert header["version"] == 2 and "exec default/rec-1" in str(header["title"])
    assert ["i", "secret-ish line\n"] in [e[1:] for e in events]
    assert ["o", "secret-ish line\n"] in [e[1:] for e in events]
    times = [float(e[0]) for e in events]  # type: ignore[arg-type]
    assert times == sorted(times)


def test_an_interactive_tty_session_is_recorded_and_replays(gw: GatewayHandle, kubectl_path: str,
                                                            tmp_path: Path) -> None:
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    kubectl("run", "rec-2", "--image=busybox")
    pid, fd = pty.fork()  # kubectl -t wants a terminal: it gets a pseudo-terminal of the test's own
    if pid == 0:
        os.execve(kubectl_path, [kubectl_path, "exec", "-it", "rec-2", "--", "sh"],
                  {**os.environ, "KUBECONFIG": str(tmp_path / "kc")})
    seen = b""
    try:
        def read_until(marker: bytes, timeout: float = 15) -> None:
            nonlocal seen
            deadline = time.monotonic() + timeout
            while marker not in seen:
                assert time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
                if select.select([fd], [], [], 0.2)[0]:
                    try:
                        seen += os.read(fd, 4096)
                    except OSError:
                        break
        time.sleep(1)
        os.write(fd, b"echo typed-$((6*7))\r")
        read_until(b"typed-")
        os.write(fd, b"exit\r")
        time.sleep(0.5)
    finally:
        try:
            os.waitpid(pid, 0)  # started here, waited for by its PID
        except ChildProcessError:
            pass
        os.close(fd)
    event = session_event(gw)
    _, events = cast(gw, event)
    typed = "".join(str(e[2]) for e in events if e[1] == "i")
    shown = "".join(str(e[2]) for e in events if e[1] == "o")
    assert "echo typed-" in typed and "typed-" in shown
    assert any(e[1] == "r" for e in events)  # kubectl sends the terminal's size
    name = str(event["annotations"]["kubegate.io/recording"])  # type: ignore[index]
    log = str(gw.settings.audit_path)
    play = subprocess.run([sys.executable, "-m", "kubegate", "audit", "play", name, "--dir",
                           str(gw.settings.state / "recordings"), "--speed", "0", "--verify-with", log],
                          capture_output=True, text=True, timeout=60)
    assert play.returncode == 0, play.stderr
    assert "typed-" in play.stdout
    # A recording changed after the session is caught by the hash the audit log keeps.
    path = gw.settings.state / "recordings" / name
    path.write_text(path.read_text().replace("typed-", "TYPED-"))
    tampered = subprocess.run([sys.executable, "-m", "kubegate", "audit", "play", str(path), "--speed", "0",
                               "--verify-with", log], capture_output=True, text=True, timeout=60)
    assert tampered.returncode == 1 and "was changed after the session" in tampered.stderr
