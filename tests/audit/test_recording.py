"""Exec sessions through the gateway are recorded (asciicast v2): what was typed and what came back,
with timing; the audit log vouches for the recording, and `kubegate audit play` replays it."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from kubegate import spdy
from kubegate.emulator import harness
from tests.conftest import GatewayHandle, Kubectl, memory_kib, start_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayHandle]:
    state = tmp_path_factory.mktemp("recording")
    upstream = harness.start(state / "emulator")
    gw = start_gateway(state / "gw", upstream)
    yield gw
    gw.stop()
    upstream.stop()


# kubectl speaks WebSocket (v5.channel.k8s.io) by default, SPDY/3.1 when told not to, as older
# clients and many client libraries do.
TRANSPORTS = {"websocket": {}, "spdy": {"KUBECTL_REMOTE_COMMAND_WEBSOCKETS": "false"}}


def session_event(gw: GatewayHandle, pod: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        done = [e for e in gw.audit_events() if e.get("objectRef", {}).get("subresource") == "exec"
                and e["objectRef"].get("name") == pod
                and e["stage"] == "ResponseComplete" and "kubegate.io/recording" in e["annotations"]]
        if done:
            return done[-1]
        assert time.monotonic() < deadline, "the session's ResponseComplete event was not written"
        time.sleep(0.05)


def cast(gw: GatewayHandle, event: dict[str, object]) -> tuple[dict[str, object], list[list[object]]]:
    name = event["annotations"]["kubegate.io/recording"]  # type: ignore[index]
    lines = (gw.settings.state / "recordings" / name).read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def exec_method(gw: GatewayHandle, pod: str) -> str:
    """How the session reached the cluster: GET (WebSocket) or POST (SPDY/3.1)."""
    return next(r.method for r in gw.upstream.requests if r.path.endswith(f"/pods/{pod}/exec"))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_piped_exec_records_input_and_output(gw: GatewayHandle, kubectl_path: str, tmp_path: Path,
                                               transport: str) -> None:
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    pod = f"rec-1-{transport}"
    kubectl("run", pod, "--image=busybox")
    out = kubectl("exec", "-i", pod, "--", "cat", input="secret-ish line\n", env=TRANSPORTS[transport])
    assert out.stdout == "secret-ish line\n"
    assert exec_method(gw, pod) == ("POST" if transport == "spdy" else "GET")
    header, events = cast(gw, session_event(gw, pod))
    assert header["version"] == 2 and f"exec default/{pod}" in str(header["title"])
    assert ["i", "secret-ish line\n"] in [e[1:] for e in events]
    assert ["o", "secret-ish line\n"] in [e[1:] for e in events]
    times = [float(e[0]) for e in events]  # type: ignore[arg-type]
    assert times == sorted(times)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_large_piped_exec_passes_through_without_the_gateway_holding_it(
        gw: GatewayHandle, kubectl_path: str, tmp_path: Path, transport: str) -> None:
    """A client that sends faster than the session is recorded is slowed down; the gateway does not
    buffer the difference (it once grew by about what the client sent)."""
    assert gw.proc is not None
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    pod = f"rec-big-{transport}"
    kubectl("run", pod, "--image=busybox")
    payload = bytes(range(256)) * (256 * 1024)  # 64 MiB
    Path(f"/proc/{gw.proc.pid}/clear_refs").write_text("5")  # the peak RSS starts again from now
    before = memory_kib(gw.proc.pid, "VmRSS")
    out = subprocess.run([kubectl_path, "exec", "-i", pod, "--", "cat"], input=payload, capture_output=True,
                         env=kubectl.env(TRANSPORTS[transport]), timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-500:]
    assert out.stdout == payload
    grew_mib = (memory_kib(gw.proc.pid, "VmHWM") - before) / 1024
    assert grew_mib < 24, f"the gateway grew by {grew_mib:.0f} MiB relaying 64 MiB each way"
    event = session_event(gw, pod)
    assert event["responseStatus"]["code"] == 101  # type: ignore[index]
    _, recorded = cast(gw, event)
    assert sum(len(str(e[2])) for e in recorded if e[1] == "i") >= 60 * 1024 * 1024


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_interactive_tty_session_is_recorded_and_replays(gw: GatewayHandle, kubectl_path: str,
                                                            tmp_path: Path, transport: str) -> None:
    kubectl = Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))
    pod = f"rec-2-{transport}"
    kubectl("run", pod, "--image=busybox")
    pid, fd = pty.fork()  # kubectl -t wants a terminal: it gets a pseudo-terminal of the test's own
    if pid == 0:
        os.execve(kubectl_path, [kubectl_path, "exec", "-it", pod, "--", "sh"],
                  {**kubectl.env(TRANSPORTS[transport])})
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
    assert exec_method(gw, pod) == ("POST" if transport == "spdy" else "GET")
    event = session_event(gw, pod)
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


def test_a_spdy_session_the_recording_cannot_follow_is_ended(gw: GatewayHandle, kubectl_path: str,
                                                              tmp_path: Path) -> None:
    """Data on a stream never opened: the cluster would take it, the recording cannot place it, so
    the gateway ends the session instead of letting it run unrecorded."""
    Kubectl(kubectl_path, gw.kubeconfig(tmp_path / "kc", "ada"))("run", "rec-3", "--image=busybox")
    context = ssl.create_default_context(cafile=str(gw.ca_file))
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(("POST /api/v1/namespaces/default/pods/rec-3/exec?command=cat&stdin=true&stdout=true "
                      "HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                      "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n"
                      f"Authorization: Bearer {gw.token('ada')}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        frames = spdy.Writer()
        conn.sendall(frames.syn_stream(1, {"streamtype": "error"}) + frames.syn_stream(3, {"streamtype": "stdin"})
                     + frames.syn_stream(5, {"streamtype": "stdout"}) + spdy.Writer.data(3, b"seen\n"))
        time.sleep(0.3)
        conn.sendall(spdy.Writer.data(99, b"unplaceable\n"))
        ended = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if not conn.recv(65536):
                    ended = True
                    break
            except (ConnectionError, ssl.SSLError):
                ended = True
                break
            except TimeoutError:
                continue
        assert ended
    event = session_event(gw, "rec-3")
    annotations = event["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["kubegate.io/recording-stopped"] == "unreadable SPDY framing; session ended"
    _, events = cast(gw, event)
    assert ["i", "seen\n"] in [e[1:] for e in events]
    assert any(e[1] == "m" and "stream 99" in str(e[2]) for e in events)
