"""The Helm chart (charts/kubegate) with the real helm v4: lint and render for the default values and
each value set in charts/kubegate/ci/; every rendered object checked against Kubernetes' own
OpenAPI schemas (PyPI kubernetes-validate, strict, Kubernetes 1.32 and 1.37); the security
properties a reviewer asks for; the manifests applied to the emulated cluster with kubectl; and the
rendered settings, Secrets and policy ConfigMaps laid out as the pod would see them and served by a
real `kubegate serve` that kubectl then uses."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess as sp
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from kubegate.emulator import harness
from kubegate.gateway.identity.authn import TokenIssuer
from kubegate.gateway.config import settings as gw_settings
from tests.conftest import GatewayHandle, end_process
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubegate"
VALUE_SETS = {"default": None, **{p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))}}
NAMESPACE = "kubegate-system"
SCHEMA_VERSIONS = ("1.32.0", "1.37.0")
# Kinds from CRDs (cert-manager, prometheus-operator): not in Kubernetes' schemas; applied to the
# emulator with their CRDs installed instead.
CRD_KINDS = {"Certificate": ("cert-manager.io", "v1", "certificates"),
             "ServiceMonitor": ("monitoring.coreos.com", "v1", "servicemonitors"),
             "PrometheusRule": ("monitoring.coreos.com", "v1", "prometheusrules")}


def helm(*args: str) -> sp.CompletedProcess[str]:
    binary = shutil.which("helm")
    if binary is None:
        pytest.fail("helm is not installed: run the tests through ./dev test (it installs helm v4 into .venv/bin)")
    return sp.run([binary, *args], capture_output=True, text=True, timeout=120)


def render(name: str, *extra: str) -> list[dict[str, Any]]:
    """The chart rendered as `helm template` renders it (without the cluster); the Secrets the chart
    would generate once on a real install are generated for the test (GitOps renders fail instead:
    see test_a_render_without_the_cluster_never_generates_secrets)."""
    values = VALUE_SETS[name]
    out = helm("template", "kg", str(CHART), "--namespace", NAMESPACE, *(["-f", str(values)] if values else []),
               "--set", "generateSecretsWithoutCluster=true", *extra)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_passes(name: str) -> None:
    values = VALUE_SETS[name]
    out = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []),
               "--set", "generateSecretsWithoutCluster=true")
    assert out.returncode == 0 and "0 chart(s) failed" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_fits_its_kubernetes_schema(name: str) -> None:
    docs = render(name)
    crds = [d["kind"] for d in docs if d["kind"] in CRD_KINDS]
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} against Kubernetes {version}: {e.message} "
                            f"at {'.'.join(str(p) for p in e.path)}")
    assert (name == "production") == bool(crds)  # only the production set asks for CRD kinds


@pytest.mark.parametrize("name", VALUE_SETS)
def test_security_properties(name: str) -> None:
    docs = render(name)
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        # The gateway's identity may impersonate and nothing else.
        assert {v for rule in role["rules"] for v in rule["verbs"]} == {"impersonate"}
        assert all(rule.get("apiGroups") in ([""], ["authentication.k8s.io"]) for rule in role["rules"])
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        assert not [v for v in pod["volumes"] if "hostPath" in v]
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
            assert "privileged" not in sc and c["resources"]["requests"] and c["resources"]["limits"]["memory"]
            assert c.get("livenessProbe") and c.get("readinessProbe")
    gateway = _one(docs, "Deployment", "kg-kubegate")
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Worker processes: one per CPU by default; the production set asks for two and the sysctl that
    # lets a leaving worker's waiting connections move to the other.
    workers = "2" if name == "production" else "auto"
    assert container["args"][-2:] == ["--workers", workers]
    sysctls = gateway["spec"]["template"]["spec"]["securityContext"].get("sysctls", [])
    assert sysctls == ([{"name": "net.ipv4.tcp_migrate_req", "value": "1"}] if name == "production" else [])
    pdb = _one(docs, "PodDisruptionBudget")
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    replicas = hpa[0]["spec"]["minReplicas"] if hpa else gateway["spec"]["replicas"]
    assert replicas >= 2 and pdb["spec"]["minAvailable"] < replicas
    anti = gateway["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == \
        "kubernetes.io/hostname"
    in_cluster = any(d["kind"] == "ClusterRole" for d in docs)
    assert gateway["spec"]["template"]["spec"]["automountServiceAccountToken"] is in_cluster
    assert [d for d in docs if d["kind"] == "NetworkPolicy"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_manifests_apply_to_the_emulated_cluster(name: str, fresh_upstream: harness.RunningEmulator,
                                                     kubectl_path: str, tmp_path: Path) -> None:
    docs = render(name)
    kubeconfig = fresh_upstream.kubeconfig(tmp_path / "admin.kubeconfig")
    setup = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for kind, (group, version, plural) in CRD_KINDS.items():
        setup.append({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                      "metadata": {"name": f"{plural}.{group}"},
                      "spec": {"group": group, "scope": "Namespaced",
                               "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
                               "versions": [{"name": version, "served": True, "storage": True, "schema": {
                                   "openAPIV3Schema": {"type": "object",
                                                       "x-kubernetes-preserve-unknown-fields": True}}}]}})
    (tmp_path / "setup.yaml").write_text(yaml.safe_dump_all(setup))
    (tmp_path / "chart.yaml").write_text(yaml.safe_dump_all(docs))
    for manifest in ("setup.yaml", "chart.yaml"):
        out = sp.run([kubectl_path, "--kubeconfig", str(kubeconfig), "apply", "-f", str(tmp_path / manifest)],
                     capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    listed = sp.run([kubectl_path, "--kubeconfig", str(kubeconfig), "get", "deployments,services,configmaps,secrets,"
                     "poddisruptionbudgets,networkpolicies", "-n", NAMESPACE, "-o", "name"],
                    capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    names = set(listed.stdout.split())
    for d in docs:
        if d["kind"] in ("Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "NetworkPolicy"):
            plural = {"PodDisruptionBudget": "poddisruptionbudget.policy", "NetworkPolicy":
                      "networkpolicy.networking.k8s.io", "Deployment": "deployment.apps"}.get(d["kind"], d["kind"].lower())
            assert f"{plural}/{d['metadata']['name']}" in names


# -- the pod's view: rendered settings, Secrets and ConfigMaps served for real ----------------

def _secret_files(secret: dict[str, Any]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def _lay_out(docs: list[dict[str, Any]], root: Path, existing: dict[str, dict[str, bytes]],
             deployment: str = "kg-kubegate", settings_file: str = "etc/kubegate/settings/kubegate.yaml") -> dict[str, Any]:
    """Write every volume of DEPLOYMENT's container where the pod mounts it (under ROOT); the
    settings it reads, with each absolute path under ROOT. `existing` holds what the chart does
    not render (Secrets and ConfigMaps the values name)."""
    pod = _one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in pod["containers"][0]["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        files: dict[str, bytes] = {}
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            rendered = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
            files = {k: v.encode() for k, v in rendered[0]["data"].items()} if rendered else existing[name]
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            rendered = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
            files = _secret_files(rendered[0]) if rendered else existing[name]
            if items := volume["secret"].get("items"):
                files = {i["path"]: files[i["key"]] for i in items}
        for key, content in files.items():
            (target / key).write_bytes(content)
    settings = yaml.safe_load((root / settings_file).read_text())

    def under_root(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: under_root(v) for k, v in node.items()}
        if isinstance(node, list):
            return [under_root(v) for v in node]
        return str(root) + node if isinstance(node, str) and node.startswith("/") else node
    return under_root(settings)  # type: ignore[no-any-return]


def _policies(directory: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (REPO / "policies" / directory).iterdir() if p.is_file()}


def _serve(config: Path, log: Path) -> tuple[sp.Popen[str], int, str]:
    with open(log, "wb") as err:
        proc = sp.Popen([sys.executable, "-m", "kubegate", "serve", "-c", str(config), "--log-level", "warning"],
                        stdout=sp.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    deadline, line = time.monotonic() + 60, ""
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()
        if line.startswith("kubegate serving on"):
            webshell = line.rstrip().split(", webshell on ")[1] if ", webshell on " in line else ""
            return proc, int(line.split("https://127.0.0.1:")[1].split(",")[0]), webshell
    proc.kill()
    proc.wait(10)
    raise AssertionError(f"kubegate serve did not start: {log.read_text()}")


@pytest.fixture
def served(request: pytest.FixtureRequest, fresh_upstream: harness.RunningEmulator, redis_server: RedisServer,
           tmp_path: Path) -> Iterator[tuple[dict[str, Any], Path, int, list[dict[str, Any]], str]]:
    """The chart's gateway for one value set, run from its rendered files against the emulator:
    only addresses change (listen on loopback, the cluster and Redis where the test runs them)."""
    docs = render(request.param)
    emu = fresh_upstream
    kubeconfig = tmp_path / "gateway.kubeconfig"
    harness.write_kubeconfig(kubeconfig, emu.url, emu.ca_file.read_text(), emu.gateway_token, user="kubegate",
                             cluster="target")
    existing = {"kubegate-hz-1": {"kubeconfig": kubeconfig.read_bytes()},
                "kubegate-sh-2": {"config": kubeconfig.read_bytes().replace(b"kubegate@target", b"kubegate@sh-2")}}
    root = tmp_path / "pod"
    sa = root / "var/run/secrets/kubernetes.io/serviceaccount"  # what the kubelet projects
    sa.mkdir(parents=True)
    (sa / "token").write_text(emu.gateway_token)
    (sa / "ca.crt").write_text(emu.ca_file.read_text())
    data = _lay_out(docs, root, existing)
    data["listen"], data["metrics"] = {"host": "127.0.0.1", "port": 0}, {"host": "127.0.0.1", "port": 0}
    for cluster in data["clusters"]:
        if cluster.get("server") == "https://kubernetes.default.svc":
            cluster["server"] = emu.url
    if "store" in data:
        data["store"] = {"redis_url": redis_server.url, "key_prefix": f"chart-{request.param}:"}
    config = root / "etc/kubegate/settings/served.yaml"
    config.write_text(yaml.safe_dump(data))
    proc, port, _ = _serve(config, tmp_path / "gateway.log")
    shell: sp.Popen[str] | None = None
    webshell = ""
    try:
        if any(d["kind"] == "Deployment" and d["metadata"]["name"] == "kg-kubegate-webshell" for d in docs):
            shell, webshell = _serve_webshell(docs, tmp_path / "webshell-pod", port, tmp_path / "webshell.log")
        yield data, config, port, docs, webshell
    finally:
        if shell is not None:
            end_process(shell)
        end_process(proc)


def _serve_webshell(docs: list[dict[str, Any]], root: Path, gateway_port: int, log: Path) -> tuple[sp.Popen[str], str]:
    """The chart's webshell pod, from its rendered files: its settings name the gateway's Service;
    here the gateway listens on loopback, so only that address (and the listen address) change."""
    data = _lay_out(docs, root, {}, "kg-kubegate-webshell", "etc/kubegate-webshell/settings/webshell.yaml")
    data["listen"] = {"host": "127.0.0.1", "port": 0}
    data.pop("public_url", None)
    host = data["gateway"]["url"].split("//")[1].split(":")[0]
    data["gateway"].update(url=f"https://127.0.0.1:{gateway_port}", server_name=host)
    data["kubectl"] = shutil.which("kubectl")
    config = root / "etc/kubegate-webshell/settings/served.yaml"
    config.write_text(yaml.safe_dump(data))
    with open(log, "wb") as err:
        proc = sp.Popen([sys.executable, "-m", "kubegate", "webshell", "-c", str(config), "--log-level", "warning"],
                        stdout=sp.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("kubegate webshell on "):
        end_process(proc)
        raise AssertionError(f"kubegate webshell did not start: {log.read_text()}")
    return proc, line.split(" on ", 1)[1].split(",", 1)[0]


@pytest.mark.parametrize("served", ["default", "multi-cluster", "webshell"], indirect=True)
def test_the_rendered_gateway_serves_kubectl(served: tuple[dict[str, Any], Path, int, list[dict[str, Any]], str],
                                             kubectl_path: str, tmp_path: Path) -> None:
    data, config, port, docs, webshell = served
    if webshell:  # the webshell pod's login page answers, with its own certificate for its host, and it is ready
        import urllib3

        ca = base64.b64decode(_one(docs, "Secret", "kg-kubegate-webshell-tls")["data"]["ca.crt"])
        (tmp_path / "ca.crt").write_bytes(ca)
        http = urllib3.PoolManager(ca_certs=str(tmp_path / "ca.crt"), server_hostname="shell.corp.example",
                                   assert_hostname="shell.corp.example", retries=False)
        page = http.request("GET", f"{webshell}/login", timeout=10)
        assert page.status == 200 and "Sign in with single sign-on" in page.data.decode()
        ready = http.request("GET", f"{webshell}/readyz?verbose", timeout=10)
        assert ready.status == 200 and "[+]webshell sandbox ok (bwrap)" in ready.data.decode()
    cfg = gw_settings.load(config)
    # The chart's own serving certificate and signing key: kubectl verifies the first against the
    # public host, and the gateway accepts a token signed with the second.
    tls = _one(docs, "Secret", "kg-kubegate-tls")
    ca_pem = _secret_files(tls)["ca.crt"].decode()
    issuer = TokenIssuer(cfg.issuer, Path(cfg.issuer.signing_key_file).read_bytes())
    host = data["public_url"].split("//")[1].split(":")[0]
    user_config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
                   "clusters": [{"name": "kg", "cluster": {
                       "server": f"https://127.0.0.1:{port}", "tls-server-name": host,
                       "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
                   "users": [{"name": "ada", "user": {"token": issuer.issue("ada", ["kubegate:cluster-admins"])}}],
                   "contexts": [{"name": "c", "context": {"cluster": "kg", "user": "ada"}}]}
    (tmp_path / "user.kubeconfig").write_text(yaml.safe_dump(user_config))
    out = sp.run([kubectl_path, "--kubeconfig", str(tmp_path / "user.kubeconfig"), "auth", "whoami", "-o", "json"],
                 capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["userInfo"]["username"] == "ada"
    # The starter policies from the chart's ConfigMaps are in force: a viewer may not delete.
    user_config["users"][0]["user"]["token"] = issuer.issue("vic", ["kubegate:viewers"])
    (tmp_path / "user.kubeconfig").write_text(yaml.safe_dump(user_config))
    out = sp.run([kubectl_path, "--kubeconfig", str(tmp_path / "user.kubeconfig"), "delete", "pod", "x", "-n", "default"],
                 capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Forbidden" in out.stderr and "no rule allows it" in out.stderr, out.stderr
    for directory in ("authz", "gates"):
        checked = sp.run([sys.executable, "-m", "kubegate", "policy", "check", cfg.authz.policy_dir if directory ==
                          "authz" else cfg.gates.policy_dir], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stderr


def test_the_webshell_is_its_own_workload_without_the_gateways_secrets() -> None:
    docs = render("webshell")
    gateway, shell = _one(docs, "Deployment", "kg-kubegate"), _one(docs, "Deployment", "kg-kubegate-webshell")
    # The gateway's pod runs no terminals: no webshell port, no webshell settings.
    ports = [p["name"] for c in gateway["spec"]["template"]["spec"]["containers"] for p in c["ports"]]
    assert "webshell" not in ports
    settings = yaml.safe_load(_one(docs, "ConfigMap", "kg-kubegate-settings")["data"]["kubegate.yaml"])
    assert "webshell" not in settings
    # The webshell's pod: its own ServiceAccount, without a token and bound to no role.
    pod = shell["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kg-kubegate-webshell" and pod["automountServiceAccountToken"] is False
    account = _one(docs, "ServiceAccount", "kg-kubegate-webshell")
    assert account["automountServiceAccountToken"] is False
    bound = [s["name"] for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding") for s in d["subjects"]]
    assert "kg-kubegate-webshell" not in bound
    # Of the gateway's Secrets, only the serving Secret's CA certificate; its own certificate besides.
    secrets = {v["secret"]["secretName"]: v["secret"].get("items") for v in pod["volumes"] if "secret" in v}
    assert secrets == {"kg-kubegate-webshell-tls": None, "kg-kubegate-tls": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert pod["containers"][0]["args"][:1] == ["webshell"] and not pod["containers"][0].get("envFrom")
    # Browsers reach its pods, not the gateway's; and it reaches only the gateway (and DNS).
    service = _one(docs, "Service", "kg-kubegate-webshell")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "webshell"
    policy = _one(docs, "NetworkPolicy", "kg-kubegate-webshell")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    to_gateway = policy["spec"]["egress"][0]
    assert to_gateway["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


def test_generated_certificate_names_the_public_host_and_the_service() -> None:
    tls = _secret_files(_one(render("default"), "Secret", "kg-kubegate-tls"))
    cert = x509.load_pem_x509_certificate(tls["tls.crt"])
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"kubegate.example.com", "kg-kubegate", f"kg-kubegate.{NAMESPACE}.svc"} <= set(names)


# -- monitoring: the dashboard and the alerts query metrics that exist --------------------------

DASHBOARD_SCHEMA = {  # what Grafana needs of a dashboard to import it (schemaVersion 39)
    "type": "object", "required": ["title", "uid", "schemaVersion", "panels"],
    "properties": {
        "title": {"type": "string", "minLength": 1}, "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["id", "title", "type", "gridPos", "targets"],
            "properties": {
                "id": {"type": "integer"}, "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                "gridPos": {"type": "object", "required": ["h", "w", "x", "y"],
                            "properties": {k: {"type": "integer", "minimum": 0} for k in "hwxy"}},
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr"],
                    "properties": {"expr": {"type": "string", "minLength": 1}}}}}}},
    },
}
_METRIC = re.compile(r"\b((?:kubegate|process|python)_[a-z_]+)\b")


def _family(name: str) -> str:
    return re.sub(r"_(bucket|sum|count|total)$", "", name)


def test_dashboard_and_alerts_query_metrics_the_gateway_exposes(gateway: GatewayHandle) -> None:
    import urllib.request

    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rule = _one(render("production"), "PrometheusRule")
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics", timeout=10) as resp:
        families = {f.name for f in text_string_to_metric_families(resp.read().decode())}
    queried = {_family(m) for e in exprs for m in _METRIC.findall(e)}
    assert len(queried) >= 12
    assert sorted(queried - families) == []
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "cluster"}
    panels = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    by_cluster = [e for e in panels if "kubegate_requests_total" in e or "kubegate_cluster_reachable" in e]
    assert by_cluster and all('cluster=~"$cluster"' in e for e in by_cluster)  # the cluster variable filters them
    wanted = {"kubegate_requests", "kubegate_gate_refusals", "kubegate_breaker_open", "kubegate_budget_remaining",
              "kubegate_stage_duration_seconds", "kubegate_audit_spool_bytes"}
    assert wanted <= queried  # requests by decision, refusals by gate, breakers, budgets, latency by stage, spool


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: run the tests through ./dev test (it installs Debian's prometheus)")
    return binary


def _annotations(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """An alert's annotations as Prometheus renders them for an alert with LABELS."""
    return {k: re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), v)
            for k, v in rule.get("annotations", {}).items()}


# (alert, input series (name{labels} and values, one a minute), minute it is quiet, minute it fires, the alert's labels)
ALERT_CASES = [
    ("KubegateEmergencyBrakeOn", [('kubegate_brakes_active{pod="kubegate-0"}', "0 0 1 1 0"),
                                  ('kubegate_brakes_active{pod="kubegate-1"}', "0 0 0 1 0")], 1, 3, {}),
    ("KubegateBreakerOpen", [('kubegate_breaker_open{budget="pod-deletes",scope="pod-deletes/cluster=hz-1"}',
                              "0 0 1 1 1 1")], 1, 4,
     {"budget": "pod-deletes", "scope": "pod-deletes/cluster=hz-1"}),
    ("KubegateAuditWriteFailing", [("kubegate_audit_write_failures_total", "0 0 0 3 6 9 12"),
                                   ("kubegate_audit_pending", "0 0 0 0 0 0 0")], 1, 6, {}),
    ("KubegateClusterUnreachable", [('kubegate_cluster_reachable{cluster="hz-1"}', "1 1 0 0 0 0")], 1, 5,
     {"cluster": "hz-1"}),
    ("KubegatePolicyReloadRefused", [('kubegate_policy_reloads_total{policy="gates",result="refused"}', "0 0 1 1")],
     1, 3, {"policy": "gates", "result": "refused"}),
    # A day of one refusal a minute, then 200 a minute: far above three times this hour yesterday.
    ("KubegateRefusalSpike", [('kubegate_gate_refusals_total{gate="rules",reason="deny",name="r"}',
                               "0+1x1500 1700+200x30")], 1490, 1520, {}),
    ("KubegateServingCertificateExpiresSoon", [("kubegate_serving_certificate_expiry_timestamp_seconds",
                                                "99999999 99999999 1000000 1000000")], 1, 3, {}),
]


@pytest.mark.parametrize(("alert", "series", "quiet", "fires", "labels"), ALERT_CASES, ids=[c[0] for c in ALERT_CASES])
def test_the_shipped_alerts_fire_as_promtool_evaluates_them(tmp_path: Path, alert: str, series: list[tuple[str, str]],
                                                            quiet: int, fires: int, labels: dict[str, str]) -> None:
    """The chart's PrometheusRule, evaluated by Prometheus' own rule engine on made-up series: each
    alert is quiet before its condition and fires, with its labels and rendered text, after."""
    rule = _one(render("production"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = sp.run([_promtool(), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True,
                     timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    spec = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == alert)
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": [{"series": name, "values": values} for name, values in series],
                   "alert_rule_test": [
                       {"eval_time": f"{quiet}m", "alertname": alert, "exp_alerts": []},
                       {"eval_time": f"{fires}m", "alertname": alert, "exp_alerts": [
                           {"exp_labels": {**spec.get("labels", {}), **labels},
                            "exp_annotations": _annotations(spec, labels)}]}]}]}))
    tested = sp.run([_promtool(), "test", "rules", str(tmp_path / "tests.yaml")], capture_output=True, text=True,
                    timeout=60, cwd=tmp_path)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_shipped_alert_has_a_promtool_case() -> None:
    rule = _one(render("production"), "PrometheusRule")
    shipped = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert shipped == {c[0] for c in ALERT_CASES}


def test_a_render_without_the_cluster_never_generates_secrets() -> None:
    """`helm template` (Argo CD, Flux) cannot see the Secrets an install generated: rendering values
    that would have the chart generate one fails, naming what to set — no silent rotation."""
    for name, value in (("default", "tls.existingSecret or tls.certManager.enabled"),
                        ("production", "signingKey.existingSecret")):
        values = VALUE_SETS[name]
        out = helm("template", "kg", str(CHART), "--namespace", NAMESPACE, *(["-f", str(values)] if values else []))
        assert out.returncode != 0 and f"Set {value}" in out.stderr and "every sync would rotate it" in out.stderr, \
            out.stderr


def test_a_gitops_render_is_the_same_every_time() -> None:
    """With the Secrets named (ci/gitops-values.yaml), two renders without the cluster are identical."""
    values = VALUE_SETS["gitops"]
    renders = [helm("template", "kg", str(CHART), "--namespace", NAMESPACE, "-f", str(values)) for _ in range(2)]
    assert all(r.returncode == 0 for r in renders), renders[0].stderr
    assert renders[0].stdout == renders[1].stdout
    docs = [d for d in yaml.safe_load_all(renders[0].stdout) if d]
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == []  # none generated
    notes = helm("install", "kg", str(CHART), "--namespace", NAMESPACE, "-f", str(values), "--dry-run=client")
    assert notes.returncode == 0, notes.stderr
    assert "kubegate kubeconfig" in notes.stdout and "ca.crt" in notes.stdout  # NOTES.txt: the first steps
