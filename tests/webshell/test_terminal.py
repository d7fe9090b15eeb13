"""The webshell's terminal, driven over its WebSocket: kubectl runs as the user with the session's
own token; everything else is refused with a clear line and audited."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import settled_text
from tests.webshell.conftest import WebshellHandle


def test_kubectl_runs_as_the_user_with_the_sessions_token(webshell: WebshellHandle) -> None:
    client = webshell.login("ada")
    webshell.gw.upstream.clear_requests()
    shown = client.run(["kubectl get configmaps -n default", "kubectl auth whoami"])
    assert "kubegate webshell: ada on cluster emu" in shown
    listing = shown.split("kubectl get configmaps -n default", 1)[1].split("$ ", 1)[0]
    assert "NAME" in listing or "No resources found in default namespace" in listing
    assert "ada" in shown.split("kubectl auth whoami", 1)[1]
    seen = [r for r in webshell.gw.upstream.requests if r.path.endswith("/configmaps")]
    assert seen and all(r.user.username == "ada" for r in seen)
    sessions = {r.user.extra.get("kubegate.io/session") for r in seen}
    assert len(sessions) == 1 and None not in sessions  # the session's token, never an admin's


IDENTITY = "is not available: the webshell acts as you"
OUTSIDE = "is outside this session's directory"
ESCAPES = [
    # No shell.
    ("bash", "'bash' is not available"),
    ("sh -c id", "'sh' is not available"),
    ("kubectl get pods; cat /etc/passwd", "pipes, redirections and command lists are not available"),
    ("kubectl get pods | sh", "pipes, redirections and command lists are not available"),
    ("kubectl get $(id)", "command substitution"),
    ("kubectl get `id`", "command substitution"),
    ("KUBECONFIG=/etc/kubegate kubectl get pods", "setting environment variables is not available"),
    ("alias k=bash", "'alias' is not available"),
    ("kubectl get pods > /tmp/x", "pipes, redirections and command lists are not available"),
    ("/usr/bin/kubectl get pods", "programs are not run by path"),
    ("python3 -c 'import os'", "'python3' is not available"),
    ("kubectl get pods -l app=$HOME", "variables are not available"),
    ("kubectl get pods ~/x", "~ is not expanded"),
    # Who kubectl is and where it connects, however the flag is written.
    ("kubectl --kubeconfig=/etc/passwd get pods", f"--kubeconfig {IDENTITY}"),
    ("kubectl get pods --token=abc", f"--token {IDENTITY}"),
    ("kubectl --server=https://10.0.0.1 get pods", f"--server {IDENTITY}"),
    ("kubectl -s https://10.0.0.1 get pods", f"--server {IDENTITY}"),
    ("kubectl get pods -As https://10.0.0.1", f"--server {IDENTITY}"),
    ("kubectl get -As=https://10.0.0.1 pods", f"--server {IDENTITY}"),
    ("kubectl get pods -Ashttps://10.0.0.1", f"--server {IDENTITY}"),
    ("kubectl --as=system:admin get pods", f"--as {IDENTITY}"),
    ("kubectl --as-group=system:masters get pods", f"--as-group {IDENTITY}"),
    ("kubectl get pods --as_group=system:masters", f"--as-group {IDENTITY}"),
    ("kubectl --as-user-extra=a=b get pods", f"--as-user-extra {IDENTITY}"),
    ("kubectl get pods --proxy-url=http://10.0.0.1:3128", f"--proxy-url {IDENTITY}"),
    ("kubectl --kuberc=/etc/passwd get pods", f"--kuberc {IDENTITY}"),
    ("kubectl get pods --cache-dir=/var/lib", f"--cache-dir {IDENTITY}"),
    ("kubectl -n default --context other get pods", f"--context {IDENTITY}"),
    # Local files, however kubectl is told to read them.
    ("kubectl cp default/web-0:/etc/hosts /etc/cron.d/x", OUTSIDE),
    ("kubectl apply -f /etc/passwd", OUTSIDE),
    ("kubectl apply -f ../../../kubeconfig", OUTSIDE),
    ("kubectl apply -Rf /etc/passwd", OUTSIDE),
    ("kubectl apply -Rf/etc/passwd", OUTSIDE),
    ("kubectl apply -Rf=/etc/passwd", OUTSIDE),
    ("kubectl apply -f ok.yaml,/etc/passwd", OUTSIDE),
    ("kubectl apply -f ok.yaml -f ../kubeconfig", OUTSIDE),
    ("kubectl apply --filename=/etc/passwd", OUTSIDE),
    ("kubectl apply -k /etc", OUTSIDE),
    ("kubectl kustomize /etc", OUTSIDE),
    ("kubectl kustomize ..", OUTSIDE),
    ("kubectl kustomize . -o /tmp/out.yaml", OUTSIDE),
    ("kubectl get pods -o go-template-file=/etc/passwd", OUTSIDE),
    ("kubectl get pods -ojsonpath-file=/etc/passwd", OUTSIDE),
    ("kubectl get pods -o custom-columns-file=/etc/passwd", OUTSIDE),
    ("kubectl get pods -o templatefile --template=/etc/passwd", OUTSIDE),
    ("kubectl get pods --output=go-template-file --template /etc/passwd", OUTSIDE),
    ("kubectl create secret tls x --cert=/etc/ssl/private/x.crt --key=ok.key", OUTSIDE),
    ("kubectl create secret tls x --cert=ok.crt --key ../kubeconfig", OUTSIDE),
    ("kubectl create configmap x --from-file=/etc/passwd", OUTSIDE),
    ("kubectl create configmap x --from-file=k=/etc/passwd", OUTSIDE),
    ("kubectl create configmap x --from_file=/etc/passwd", OUTSIDE),
    ("kubectl create cm x --from-env-file=/etc/environment", OUTSIDE),
    ("kubectl create secret generic x --from-file=a.txt,/etc/shadow", OUTSIDE),
    ("kubectl debug pod/web-0 --custom=/etc/passwd", OUTSIDE),
    ("kubectl patch deploy web --patch-file=/etc/passwd", OUTSIDE),
    ("kubectl cluster-info dump --output-directory=/tmp/dump", OUTSIDE),
    ("kubectl apply -f https://example.com/x.yaml", "URLs are not fetched"),
    ("kubectl apply -f http://169.254.169.254/latest/meta-data", "URLs are not fetched"),
    # Flags this kubectl does not have, and flags the allow-list does not know to be safe.
    ("kubectl get pods --log-file=/tmp/x", "kubectl would not read this line as written (unknown flag: --log-file)"),
    ("kubectl get pods -Z", "kubectl would not read this line as written"),
    ("kubectl kustomize . --enable-helm --helm-command=/bin/sh", "--enable-helm is not available for `kubectl kustomize`"),
    ("kubectl kustomize . --load-restrictor=LoadRestrictionsNone", "--load-restrictor is not available"),
    ("kubectl get pods --profile=cpu --profile-output=/tmp/p", "--profile is not available"),
    # Commands.
    ("kubectl config view --raw", "`kubectl config` is not available"),
    ("kubectl edit configmap x", "kubectl edit opens a local editor"),
    ("kubectl apply edit-last-applied deploy/web", "it opens a local editor"),
    ("kubectl port-forward pod/x 8080", "port-forward would listen on the webshell's host"),
    ("kubectl proxy", "kubectl proxy would listen"),
    ("kubectl kuberc view", "kubectl's preferences file is not available"),
    ("kubectl create token default", "the webshell hands out no credentials"),
    ("kubectl whoami-plugin", "is not available in the webshell (plugins"),
]


def test_escape_attempts_are_refused_and_audited(webshell: WebshellHandle) -> None:
    client = webshell.login("eve", ("kubegate:viewers",))
    shown = client.run([line for line, _ in ESCAPES])
    for line, why in ESCAPES:
        after = shown.split(line, 1)
        assert len(after) == 2, f"{line!r} was not echoed"
        answer = after[1].split("$ ", 1)[0]
        assert "kubegate: refused:" in answer and why in answer, f"{line!r}: {answer!r}"
    refused = [e["annotations"] for e in webshell.gw.audit_events()
               if (e.get("annotations") or {}).get("kubegate.io/webshell-event") == "refused"
               and e["user"]["username"] == "eve"]
    assert [a["kubegate.io/webshell-line"] for a in refused] == [line for line, _ in ESCAPES]
    assert all(a["kubegate.io/webshell-refusal"] for a in refused)


def test_what_the_policy_refuses_the_gateway_refuses(webshell: WebshellHandle) -> None:
    """kubectl exec into a pod the user may not use: the shell lets kubectl try, the gateway refuses."""
    emu = webshell.gw.upstream
    pods = emu.emulator.registry.lookup("", "v1", "pods")
    emu.call(lambda: emu.emulator.store.create(pods, "default", {
        "metadata": {"name": "guarded"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    client = webshell.login("eve", ("kubegate:viewers",))
    shown = client.run(["kubectl exec -n default guarded -- id", "kubectl create configmap nope -n default"])
    exec_answer = shown.split("kubectl exec -n default guarded -- id", 1)[1].split("$ ", 1)[0]
    assert 'user "eve" may not create pods/exec "guarded"' in exec_answer
    create_answer = shown.split("kubectl create configmap nope -n default", 1)[1].split("$ ", 1)[0]
    assert 'user "eve" may not create configmaps in namespace "default"' in create_answer


def test_the_recording_is_vouched_for_by_the_audit_log(webshell: WebshellHandle, tmp_path: Path) -> None:
    client = webshell.login("ada")
    client.run(["kubectl get configmaps -n default", "bash"])
    log, recordings = webshell.gw.settings.audit_path, webshell.gw.settings.state / "recordings"
    settled_text(log)
    ok = subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify", str(log), "--recordings", str(recordings)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "chained without a break" in ok.stdout, ok.stdout + ok.stderr
    cast = max(recordings.glob("webshell-*.cast"), key=lambda c: c.stat().st_mtime)  # this session's
    lines = cast.read_text().splitlines()
    assert any('"i"' in line and "b" in line for line in lines)  # keystrokes ...
    assert any('"o"' in line and "refused" in line for line in lines)  # ... and output, with timing
    # A tampered copy: one byte of output changed.
    copy = tmp_path / "recordings"
    shutil.copytree(recordings, copy)
    (copy / cast.name).write_text(cast.read_text().replace("refused", "REFUSED", 1))
    bad = subprocess.run([sys.executable, "-m", "kubegate", "audit", "verify", str(log), "--recordings", str(copy)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and f"{copy / cast.name}: changed after the session" in bad.stdout


def test_tab_completes_kubectl(webshell: WebshellHandle) -> None:
    client = webshell.login("ada")
    shown = client.run(["kubectl api-reso\t"])  # Tab: kubectl's own completion fills the subcommand
    assert "kubectl api-resources" in shown and "NAME" in shown.split("kubectl api-resources", 1)[1]
