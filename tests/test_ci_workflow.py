"""The README's "CI in five minutes" workflow (docs/examples/kubegate-policy-ci.yml), its `run:`
steps executed as GitHub Actions would run them on a pull request that edits a policy: checkouts of
the base and the edit, a real audit sample from a gateway, and a `gh` that records the comment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from kubegate.emulator import harness
from tests.conftest import start_gateway

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "docs" / "examples" / "kubegate-policy-ci.yml"


def _run_steps(workspace: Path, env: dict[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each `run:` step in order (with the expressions a pull request would give), kubegate from this
    checkout's environment instead of pip; stops at the first failing step, as Actions does."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["policy"]["steps"]
    expressions = {"${{ github.token }}": "token", "${{ github.event.pull_request.number }}": "42",
                   "${{ github.repository }}": "corp/policies"}
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    for step in steps:
        if "run" not in step or step["name"] == "Install kubegate":
            continue
        script = step["run"]
        for expression, value in expressions.items():
            script = script.replace(expression, value)
        done[step["name"]] = out = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=workspace,
                                                  capture_output=True, text=True, timeout=300,
                                                  env={**env, **(step.get("env") or {})})
        if out.returncode != 0 and step.get("if") != "always()":
            break
    return done


def test_the_ci_workflow_checks_tests_and_comments_the_replay(tmp_path: Path) -> None:
    # An audit sample: a few requests through a gateway with the starter policies.
    upstream = harness.start(tmp_path / "emulator")
    gw = start_gateway(tmp_path / "gw", upstream)
    try:
        for user, groups, path in (("dan", ["team-shop"], "/api/v1/namespaces/shop/configmaps"),
                                   ("vic", ["kubegate:viewers"], "/api/v1/namespaces/shop/secrets"),
                                   ("dan", ["team-shop"], "/api/v1/namespaces/shop/secrets")):
            subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", str(gw.ca_file), "-H",
                            f"Authorization: Bearer {gw.token(user, groups)}", gw.url + path], check=True, timeout=30)
    finally:
        gw.stop()
        upstream.stop()
    workspace = tmp_path / "ws"
    for side in ("old", "new"):
        shutil.copytree(REPO / "policies", workspace / side / "policies")
    (workspace / "new" / "audit-sample").mkdir()
    shutil.copy(gw.settings.audit_path, workspace / "new" / "audit-sample" / "week.jsonl")
    # The pull request: developers may now read secrets in their namespaces.
    bindings = workspace / "new" / "policies" / "authz" / "bindings.csv"
    bindings.write_text(bindings.read_text() + "g, group:team-shop, role:secret-reader, *:shop*\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "gh").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'gh-args'}\n"
                             f"cp \"$(echo \"$@\" | sed 's/.*--body-file //')\" {tmp_path / 'comment.md'}\n")
    (fake / "gh").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    done = _run_steps(workspace, env)
    assert [name for name, out in done.items() if out.returncode != 0] == [], \
        {name: out.stdout + out.stderr for name, out in done.items()}
    assert (workspace / "policy-tests.xml").read_text().startswith("<testsuites")
    assert (tmp_path / "gh-args").read_text().startswith("pr comment 42 --repo corp/policies --body-file replay.md")
    comment = (tmp_path / "comment.md").read_text()
    assert "dan" in comment and "secrets" in comment  # the flip the edit makes on real traffic

    # A broken edit: the check step fails with an annotation on the file and line, nothing after it runs.
    rules = workspace / "new" / "policies" / "gates" / "rules.yaml"
    rules.write_text(rules.read_text() + "  - id: broken\n    outcome: sometimes\n")
    done = _run_steps(workspace, env)
    check = done["Check the policies"]
    assert check.returncode == 1 and "::error file=new/policies/gates/rules.yaml,line=" in check.stdout
    assert "Comment on the pull request" not in done
