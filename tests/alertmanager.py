"""A real Alertmanager for the tests (Debian's prometheus-alertmanager): started on a free loopback
port without clustering, alerts posted through its API v2, stopped by its PID."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.redis_server import _free_port

CONFIG = """\
route: {receiver: nobody, group_wait: 1h}
receivers: [{name: nobody}]
"""


def _stamp(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Alertmanager:
    directory: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> "Alertmanager":
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            pytest.fail("Alertmanager is not installed: run the tests through ./dev test (it installs Debian's "
                        "prometheus-alertmanager)")
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "alertmanager.yml").write_text(CONFIG)
        log = open(self.directory / "alertmanager.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.directory / 'alertmanager.yml'}",
             f"--storage.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = (self.directory / "alertmanager.log").read_text(errors="replace")[-2000:]
                self.stop()
                pytest.fail(f"Alertmanager did not start on port {self.port}: {text}")
            time.sleep(0.05)
        return self

    def fire(self, name: str, labels: dict[str, str], *, minutes_ago: int = 3) -> str:
        """Post a firing alert; returns its startsAt as Alertmanager reports it."""
        starts = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
        self._post([{"labels": {"alertname": name, **labels}, "startsAt": _stamp(starts),
                     "endsAt": _stamp(datetime.now(timezone.utc) + timedelta(hours=1))}])
        return _stamp(starts)

    def resolve(self, name: str, labels: dict[str, str]) -> None:
        """Post the same alert as ended (endsAt now): it is no longer active."""
        now = datetime.now(timezone.utc)
        self._post([{"labels": {"alertname": name, **labels}, "startsAt": _stamp(now - timedelta(minutes=10)),
                     "endsAt": _stamp(now - timedelta(seconds=1))}])

    def _post(self, alerts: list[dict[str, object]]) -> None:
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 200

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
