"""Where a terminal's kubectl runs: a sandbox in which the webshell's host does not exist.

The restricted shell checks kubectl's arguments, but a check is a list, and lists miss things. So
kubectl itself runs in a bubblewrap sandbox (Debian `bubblewrap`, `bwrap`) made anew for every
command: new mount, PID, IPC, UTS, user and cgroup namespaces; uid and gid 65534 in the sandbox's
user namespace (the webshell's own user outside it: run the webshell as a dedicated user, as the
chart does); no capabilities; a cleared environment; and a filesystem that holds only

    /usr/bin/kubectl          the kubectl binary (read-only)
    /session/kubeconfig       the session's kubeconfig: the gateway's URL and CA, the session token (read-only)
    /session/files            the session's own files (the working directory)
    /session/home             HOME
    /etc/hosts, /etc/resolv.conf, /etc/nsswitch.conf   name resolution, to reach the gateway (read-only)
    /dev (a minimal one), /tmp (empty, private)

No /proc at all: kubectl does not need one, and without it there is no process to look at (and no
new proc mount, which a container's masked /proc would refuse).

Nothing else of the host is there: not the gateway's keys, settings, state, audit log or recordings,
not its environment, not its processes. The network is shared (kubectl must reach the gateway); in
a cluster, the webshell's own pod and its NetworkPolicy bound what that network reaches.

`webshell.sandbox: none` runs kubectl without a sandbox, as the webshell's own user: only for a
webshell that is contained by other means (its own pod, with nothing of the gateway's in it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["bwrap", "none"]
KINDS = ("bwrap", "none")
UNPRIVILEGED = 65534  # nobody/nogroup, inside the sandbox
INSIDE_KUBECTL = "/usr/bin/kubectl"
INSIDE = Path("/session")
NAME_RESOLUTION = ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf")


@dataclass(frozen=True)
class Sandbox:
    kind: Kind
    kubectl: str  # the kubectl binary on the host
    bwrap: str = ""
    problem: str = field(default="")  # why no sandbox can be made here ("" when it works)

    @property
    def usable(self) -> bool:
        return self.kind == "none" or not self.problem

    def command(self, session: Path, args: list[str]) -> list[str]:
        """The argv that runs kubectl ARGS for the session whose directory is SESSION."""
        if self.kind == "none":
            return [self.kubectl, *args]
        binds = ["--ro-bind", self.kubectl, INSIDE_KUBECTL,
                 "--ro-bind", str(session / "kubeconfig"), str(INSIDE / "kubeconfig"),
                 "--bind", str(session / "files"), str(INSIDE / "files"),
                 "--bind", str(session / "home"), str(INSIDE / "home")]
        for path in NAME_RESOLUTION:
            binds += ["--ro-bind-try", path, path]
        env = {**self.environment(session), "PATH": "/usr/bin"}
        return [self.bwrap, "--unshare-all", "--share-net", "--die-with-parent", "--cap-drop", "ALL",
                "--uid", str(UNPRIVILEGED), "--gid", str(UNPRIVILEGED), "--hostname", "webshell",
                "--dev", "/dev", "--tmpfs", "/tmp", *binds,
                "--chdir", str(INSIDE / "files"), "--clearenv",
                *[arg for key, value in sorted(env.items()) for arg in ("--setenv", key, value)],
                "--", INSIDE_KUBECTL, *args]

    def environment(self, session: Path) -> dict[str, str]:
        """kubectl's whole environment (paths as kubectl sees them)."""
        root = INSIDE if self.kind == "bwrap" else session
        return {"KUBECONFIG": str(root / "kubeconfig"), "HOME": str(root / "home"), "TERM": "xterm-256color",
                "LANG": "C.UTF-8", "KUBECTL_KUBERC": "false"}  # no preferences file: no aliases, no default flags

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "kubectl": self.kubectl, "bwrap": self.bwrap})

    @classmethod
    def from_json(cls, text: str) -> "Sandbox":
        data = json.loads(text)
        return cls(data["kind"], data["kubectl"], data.get("bwrap", ""))


def make(kind: str, kubectl: str) -> Sandbox:
    """The sandbox of KIND for KUBECTL, tried once for real: its `problem` says why it cannot be made."""
    kubectl = os.path.realpath(kubectl)
    if kind == "none":
        return Sandbox("none", kubectl)
    bwrap = shutil.which("bwrap") or ""
    if not bwrap:
        return Sandbox("bwrap", kubectl, problem="bubblewrap (bwrap) is not installed (Debian: apt-get install bubblewrap)")
    sandbox = Sandbox("bwrap", kubectl, bwrap)
    return Sandbox("bwrap", kubectl, bwrap, problem=_try(sandbox))


def _try(sandbox: Sandbox) -> str:
    """"" when kubectl runs in SANDBOX here; otherwise what went wrong, in one line."""
    with tempfile.TemporaryDirectory(prefix="kubegate-sandbox-check-") as tmp:
        session = Path(tmp)
        for sub in ("files", "home"):
            (session / sub).mkdir()
        (session / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
        try:
            done = subprocess.run(sandbox.command(session, ["version", "--client", "-o", "json"]), capture_output=True,
                                  text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap cannot run: {e}"
        if done.returncode != 0 or "clientVersion" not in done.stdout:
            why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            return f"bwrap cannot make a sandbox here: {why[:200]}"
    return ""
