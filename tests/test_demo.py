"""`kubegate demo` as a new user meets it: the webshell is on, with tokens to sign in as a requester
and an approver; `--policies DIR` serves a copy of the starter set that hot-reloads when edited."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import Kubectl, end_process


def test_the_demo_shows_the_webshell_and_serves_editable_policies(tmp_path: Path, kubectl_path: str) -> None:
    policies = tmp_path / "policies"
    demo = subprocess.Popen([sys.executable, "-m", "kubegate", "demo", "--port", "0", "--webshell-port", "0",
                             "--dir", str(tmp_path / "state"), "--policies", str(policies)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert demo.stdout is not None
        deadline, lines = time.monotonic() + 90, []
        while time.monotonic() < deadline and not any(line.startswith("ready.") for line in lines):
            line = demo.stdout.readline()
            if not line and demo.poll() is not None:
                break
            lines.append(line)
        text = "".join(lines)
        assert "ready." in text, text
        assert f"the starter policies are copied to {policies}" in text and (policies / "gates" / "rules.yaml").is_file()
        shell = re.search(r"^webshell\s+: (https://\S+)", text, re.M)
        ca = re.search(r"its file: (\S+)\):", text)
        approver = re.search(r"sam \(kubegate:sre[^\n]*\n\s+(\S+)", text)
        assert shell and ca and approver, text

        # The approver signs in to the webshell with the printed token.
        http = requests.Session()
        page = http.get(f"{shell.group(1)}/login", verify=ca.group(1), timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        signed_in = http.post(f"{shell.group(1)}/login", data={"csrf": csrf.group(1), "token": approver.group(1)},
                              verify=ca.group(1), timeout=10, headers={"Origin": shell.group(1)})
        assert signed_in.status_code == 200 and "sam" in signed_in.text
        assert http.get(f"{shell.group(1)}/approvals", verify=ca.group(1), timeout=10).status_code == 200

        # Edit a policy in DIR: the running demo takes it.
        admin = Kubectl(kubectl_path, tmp_path / "state" / "kubeconfig")
        assert admin("-n", "shop", "create", "configmap", "before").returncode == 0
        rules = policies / "gates" / "rules.yaml"
        rules.write_text(rules.read_text() + """
  - id: no-new-configmaps-in-shop
    description: tried out in the demo
    severity: low
    outcome: deny
    match: {namespaces: [shop], resources: [configmaps], verbs: [create]}
""")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            refused = admin("-n", "shop", "create", "configmap", f"after-{time.monotonic_ns()}", check=False)
            if refused.returncode != 0:
                break
            time.sleep(0.5)
        assert "refused by rule no-new-configmaps-in-shop" in refused.stderr
    finally:
        end_process(demo, timeout=20)
