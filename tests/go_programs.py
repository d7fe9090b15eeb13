"""Go in the test path: kube-apiserver's own parsers, built from Debian's Go and its golang-*-dev sources.

kube-apiserver cannot run here, but the code it parses requests with can: Go's `net/http` and
`net/url`, `sigs.k8s.io/json`, `sigs.k8s.io/yaml`, gogo protobuf. The programs under tests/go/
are built once per test session in GOPATH mode (Debian's Go is 1.19, its Go libraries live in the
system GOPATH); `./dev test` installs the packages.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubegate import pki
from kubegate.emulator import harness

GO_SOURCES = Path(__file__).resolve().parent / "go"
SYSTEM_GOPATH = Path("/usr/share/gocode")  # where Debian's golang-*-dev packages install sources


_BUILT: dict[str, Path] = {}


def binary(program: str) -> Path:
    """The program, built once per test process (into a directory removed at exit)."""
    if program not in _BUILT:
        out_dir = Path(tempfile.mkdtemp(prefix=f"kubegate-go-{program}-"))
        atexit.register(shutil.rmtree, out_dir, True)
        _BUILT[program] = build(program, out_dir)
    return _BUILT[program]


def build(program: str, out_dir: Path) -> Path:
    """`tests/go/<program>/*.go` built into out_dir; fails the test run if Go is missing."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is not installed: run the tests through ./dev test (it installs golang-go and the "
                    "golang-*-dev packages)")
    out = out_dir / program
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(SYSTEM_GOPATH), "GOFLAGS": "",
           "GOCACHE": os.environ.get("GOCACHE", str(Path.home() / ".cache" / "go-build"))}
    sources = sorted(str(f) for f in (GO_SOURCES / program).glob("*.go") if not f.name.endswith("_test.go"))
    proc = subprocess.run([go, "build", "-o", str(out), *sources],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"building tests/go/{program} failed:\n{proc.stderr}")
    return out


@dataclass
class GoFront:
    """A Go net/http front before an emulator: the emulator gets the query exactly as Go parsed it."""

    url: str
    ca_file: Path
    log_file: Path
    upstream: harness.RunningEmulator
    proc: subprocess.Popen[bytes]

    def seen(self) -> list[str]:
        """`METHOD PATH?QUERY` of each request the front passed on, the query as Go re-encoded it."""
        return [line for line in self.log_file.read_text().splitlines()[1:] if line]

    def cluster(self, name: str = "emu", **extra: object) -> dict[str, object]:
        """The gateway's cluster entry for this front (the emulator's own token)."""
        return {"name": name, "server": self.url, "ca_file": str(self.ca_file),
                "token": self.upstream.gateway_token, **extra}

    def stop(self) -> None:
        self.proc.terminate()  # started here, ended by its PID
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def start_front(binary: Path, upstream: harness.RunningEmulator, workdir: Path) -> GoFront:
    workdir.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca("go-front test CA")
    leaf = pki.make_leaf(ca, "go-front", ["127.0.0.1", "localhost"])
    (workdir / "ca.crt").write_bytes(ca.cert_pem)
    leaf.write(workdir / "tls.crt", workdir / "tls.key")
    log_file = workdir / "front.log"
    with open(log_file, "wb") as out, open(workdir / "front.err", "wb") as err:
        proc = subprocess.Popen(
            [str(binary), "-upstream", upstream.url, "-upstream-ca", str(upstream.ca_file),
             "-cert", str(workdir / "tls.crt"), "-key", str(workdir / "tls.key")],
            stdout=out, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        first = log_file.read_text().split("\n", 1)[0]
        if first.startswith("listening on "):
            return GoFront(first.removeprefix("listening on ").strip(), workdir / "ca.crt", log_file, upstream, proc)
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"the Go front did not start: {(workdir / 'front.err').read_text()}")
