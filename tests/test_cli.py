"""The kubegate command line as an operator and a user meet it."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubegate.gateway.config import settings
from tests.conftest import GatewayHandle, Kubectl


def kubegate(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kubegate", *args], capture_output=True, text=True, timeout=60,
                          check=check)


def test_help_lists_the_commands() -> None:
    out = kubegate("--help", check=True).stdout
    for command in ("serve", "token", "kubeconfig", "demo"):
        assert command in out


def test_serve_reports_every_config_problem_at_once(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({
        "listen": {"port": 99999}, "bogus": True,
        "clusters": [{"name": "a b", "server": "http://insecure", "token": "t"},
                     {"name": "c", "server": "https://x", "ca_file": "/missing.crt"}],
        "oidc": [{"issuer": "https://idp", "audiences": []}],
    }))
    proc = kubegate("serve", "-c", str(config))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for problem in ("listen.port", "bogus: unknown key", "clusters[0].name", "clusters[0].server: must be an https",
                    "clusters[1].ca_file: file /missing.crt does not exist", "oidc[0].audiences",
                    "clusters[1]: exactly one credential"):
        assert problem in proc.stderr, proc.stderr


def test_a_settings_mistake_is_named_by_its_line_with_a_likely_fix(tmp_path: Path) -> None:
    config = tmp_path / "kubegate.yaml"
    config.write_text("listen:\n  prot: 8443\ngatez:\n  policy_dir: x\noverload:\n  max_inflight: many\n")
    proc = kubegate("serve", "-c", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for problem in ("line 2: settings.listen.prot: unknown key (did you mean port?)",
                    "line 3: settings.gatez: unknown key (did you mean gates?)",
                    "line 6: settings.overload.max_inflight: expected int, got str"):
        assert problem in proc.stderr, proc.stderr


@pytest.mark.parametrize(("text", "problem"), [
    pytest.param("clusters: [", "not valid YAML", id="yaml"),
    pytest.param("clusters: []", "at least one cluster", id="no-clusters"),
    pytest.param("- just a list", "must be a mapping", id="not-a-mapping"),
    pytest.param("clusters: [{name: a, kubeconfig: /nope}]", "does not exist", id="missing-kubeconfig"),
    pytest.param("listen: {port: 1}\nstate_dir: /tmp\nlisten: {port: 2}\n",
                 'line 3: not valid YAML: found duplicate key "listen"', id="duplicate-key"),
    pytest.param("state_dir: !!python/object/apply:os.system [true]\n",
                 "line 1: not valid YAML: explicit tag tag:yaml.org,2002:python/object/apply:os.system is not allowed",
                 id="tag"),
    pytest.param("state_dir: \xff\n", "not UTF-8 text", id="not-utf8"),
])
def test_serve_refuses_broken_configs(tmp_path: Path, text: str, problem: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_bytes(text.encode("latin-1"))
    proc = kubegate("serve", "-c", str(config))
    assert proc.returncode == 2 and problem in proc.stderr and "Traceback" not in proc.stderr


def test_kubeconfig_command_onboards_a_user(gateway: GatewayHandle, kubectl_path: str, tmp_path: Path) -> None:
    config = gateway.settings.state / "kubegate.yaml"
    proc = kubegate("kubeconfig", "-c", str(config), "--user", "zed", "--group", "qa", "--namespace", "kube-system",
                    "--ttl", "2h", check=True)
    kubeconfig = tmp_path / "zed.kubeconfig"
    kubeconfig.write_text(proc.stdout)
    doc = yaml.safe_load(proc.stdout)
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"]
    # The settings say port 0 (tests); point the kubeconfig at the port actually bound.
    doc["clusters"][0]["cluster"]["server"] = gateway.url
    kubeconfig.write_text(yaml.safe_dump(doc))
    kubectl = Kubectl(kubectl_path, kubeconfig)
    whoami = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]
    assert (whoami["username"], whoami["groups"]) == ("zed", ["qa", "system:authenticated"])
    assert doc["contexts"][0]["context"]["namespace"] == "kube-system"


def test_kubeconfig_for_an_unknown_cluster_is_refused(gateway: GatewayHandle) -> None:
    proc = kubegate("kubeconfig", "-c", str(gateway.settings.state / "kubegate.yaml"), "--user", "a",
                    "--cluster", "nope")
    assert proc.returncode == 2 and "no cluster named 'nope'" in proc.stderr


@pytest.mark.parametrize("command", [["token", "issue"], ["kubeconfig"]])
def test_issuing_without_the_gateways_keys_is_refused_not_improvised(gateway: GatewayHandle, tmp_path: Path,
                                                                    command: list[str]) -> None:
    """On a machine without the gateway's state, a new key would sign tokens the gateway rejects."""
    config = yaml.safe_load((gateway.settings.state / "kubegate.yaml").read_text())
    config["state_dir"] = str(tmp_path / "elsewhere")
    (tmp_path / "kubegate.yaml").write_text(yaml.safe_dump(config))
    proc = kubegate(*command, "-c", str(tmp_path / "kubegate.yaml"), "--user", "a")
    assert proc.returncode == 1
    assert f"no token-signing key in {tmp_path / 'elsewhere' / 'tls'}" in proc.stderr
    assert not (tmp_path / "elsewhere" / "tls" / "token-signing.key").exists()


def test_token_issue_is_accepted_by_the_gateway(gateway: GatewayHandle) -> None:
    from tests.gateway.conftest import send

    token = kubegate("token", "issue", "-c", str(gateway.settings.state / "kubegate.yaml"), "--user", "yan",
                     "--group", "ops", "--ttl", "10m", check=True).stdout.strip()
    resp = send(gateway.port, gateway.ca_file, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                body=b'{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}')
    assert resp.json()["status"]["userInfo"]["username"] == "yan"


def test_token_ttl_beyond_the_maximum_is_refused(gateway: GatewayHandle) -> None:
    proc = kubegate("token", "issue", "-c", str(gateway.settings.state / "kubegate.yaml"), "--user", "a",
                    "--ttl", "400d")
    assert proc.returncode == 2 and "ttl must be between" in proc.stderr


def test_single_cluster_becomes_the_default() -> None:
    cfg = settings.from_mapping({"clusters": [{"name": "only", "server": "https://k", "ca_data": "eA==",
                                               "token": "t"}]})
    assert cfg.default_cluster() is not None and cfg.default_cluster().name == "only"  # type: ignore[union-attr]


def test_two_defaults_are_refused() -> None:
    with pytest.raises(settings.SettingsError, match="at most one cluster may be the default"):
        settings.from_mapping({"clusters": [
            {"name": n, "server": "https://k", "ca_data": "eA==", "token": "t", "default": True} for n in "ab"]})


def test_serve_refuses_an_invalid_policy(tmp_path: Path, upstream: object) -> None:
    import shutil

    from tests.conftest import POLICY_DIR, emulator_cluster, write_gateway_config

    bad = tmp_path / "authz"
    shutil.copytree(POLICY_DIR, bad)
    (bad / "roles.csv").write_text((bad / "roles.csv").read_text() + "p, role:viewer, *:*, pod, get, *, allow\n")
    config = write_gateway_config(tmp_path / "gw", [emulator_cluster(upstream)],  # type: ignore[arg-type]
                                  authz={"policy_dir": str(bad)})
    proc = kubegate("serve", "-c", str(config))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    import re

    assert "the authorization policy" in proc.stderr
    assert re.search(r"authz/roles\.csv:\d+: unknown resource 'pod'", proc.stderr), proc.stderr


def test_version_as_text_and_json() -> None:
    text = kubegate("version")
    assert text.returncode == 0 and text.stdout.startswith("kubegate 0.1.0 (Python ")
    assert text.stdout.rstrip().endswith(", interpreted)")  # the wheel's build: no module compiled
    info = json.loads(kubegate("version", "-o", "json").stdout)
    assert info["kubegate"] == "0.1.0" and info["mitmproxy"] and info["compiled"] == []
    assert kubegate("--version").stdout.strip() == "kubegate 0.1.0"


def test_bash_completion_completes_commands_and_actions() -> None:
    script = kubegate("completion", "bash").stdout
    probe = ("source /dev/stdin; "
             "COMP_WORDS=(kubegate pol); COMP_CWORD=1; _shtab_kubegate; echo \"${COMPREPLY[@]}\"; "
             "COMP_WORDS=(kubegate policy re); COMP_CWORD=2; _shtab_kubegate; echo \"${COMPREPLY[@]}\"")
    out = subprocess.run(["bash", "-c", probe], input=script, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["policy", "replay"]


def test_serve_logs_json_lines(tmp_path: Path, upstream: object) -> None:
    import signal

    from tests.conftest import emulator_cluster, write_gateway_config

    config = write_gateway_config(tmp_path, [emulator_cluster(upstream)])  # type: ignore[arg-type]
    proc = subprocess.Popen([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        records = []
        for _ in range(200):
            line = proc.stderr.readline()
            if not line:
                break
            records.append(json.loads(line))  # every line is one JSON object
            if "kubegate serving on" in records[-1]["message"]:
                break
        served = records[-1]
        assert served["level"] == "INFO" and served["logger"].startswith("kubegate") and served["time"]
    finally:
        proc.send_signal(signal.SIGTERM)  # started here, ended by its PID
        proc.communicate(timeout=20)


def test_a_reader_that_goes_away_ends_a_command_quietly(tmp_path: Path) -> None:
    """`kubegate ... | head`: the pipe closes early; no BrokenPipe traceback, the shell's 141. (The
    output is far larger than a pipe's buffer, so the command is still writing when head leaves.)"""
    from tests.audit.test_chain import write_log

    log = write_log(tmp_path, 3000)
    shell = (f"{shlex.quote(sys.executable)} -m kubegate audit search {shlex.quote(str(log))} -o json "
             "| head -c 20 >/dev/null; echo ${PIPESTATUS[0]}")
    out = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "141" and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_demo_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "kubegate", "demo", "--port", str(port), "--dir",
                              str(tmp_path / "demo")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"port {port} on 127.0.0.1 is taken" in out.stderr and "--port 0" in out.stderr
    assert "Traceback" not in out.stderr


def test_every_documentation_pointer_in_a_message_names_an_installed_topic() -> None:
    """Messages and the starter settings point to `kubegate docs TOPIC` (a pip user has no checkout);
    each topic they name prints, and no message points to a path of the repository instead."""
    repo = Path(__file__).resolve().parent.parent
    sources = [p for d in ("gateway", "kubegate", "webshell", "audit") for p in (repo / d).rglob("*.py")]
    sources.append(repo / "kubegate" / "starter" / "kubegate.yaml")
    named: dict[str, Path] = {}
    bare: list[str] = []
    for path in sources:
        text = path.read_text()
        for topic in re.findall(r"kubegate docs ([a-z][\w-]*)", text):
            named.setdefault(topic, path)
        # A repository path inside a string a user reads (not a docstring or comment line).
        for line in text.splitlines():
            stripped = line.strip()
            if "docs/" in stripped and ('"' in stripped or "'" in stripped) and not stripped.startswith("#") \
                    and ("log." in stripped or "print(" in stripped or "help=" in stripped or "f\"" in stripped):
                bare.append(f"{path.relative_to(repo)}: {stripped}")
    assert {"readme", "security", "webshell", "configuration"} <= set(named)
    listing = kubegate("docs", check=True).stdout
    for topic, where in named.items():
        assert f"  {topic} " in listing, f"{where} names `kubegate docs {topic}`, which is no topic"
        assert kubegate("docs", topic).returncode == 0
    assert not bare, "\n".join(bare)
