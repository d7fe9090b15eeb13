"""The layering of docs/architecture.md, as import contracts (pyproject's [tool.importlinter]).

Only gateway.engine imports mitmproxy; the gateway's packages import only those below them (so the
state store imports no gate and no gate imports the engine); audit imports nothing of the gateway;
the webshell reaches the gateway only over HTTP; the command line (kubegate.cli) is the top, and the
shared base (Status rendering, strict YAML, PKI, SPDY framing) imports none of what is built on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import source_view

CONTRACTS = source_view.ROOT / "pyproject.toml"


def lint_imports(view_parent: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache", str(CONTRACTS)], cwd=view_parent, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": str(view_parent)},
    )


def test_the_source_keeps_every_contract(tmp_path: Path) -> None:
    source_view.build(tmp_path)
    proc = lint_imports(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "wrong_import", "contract"), [
    pytest.param("gateway/gates/cron.py", "import mitmproxy.http", "Only gateway.engine imports mitmproxy",
                 id="a gate imports mitmproxy"),
    pytest.param("gateway/gates/cron.py", "from ..engine import addon", "each importing only those below it",
                 id="a gate imports the engine"),
    pytest.param("gateway/state/store.py", "from ..gates import rate", "each importing only those below it",
                 id="the store imports a gate"),
    pytest.param("audit/sink.py", "from kubegate.gateway import errors", "audit imports nothing of the gateway",
                 id="audit imports the gateway"),
    pytest.param("webshell/__init__.py", "from kubegate.gateway.identity import authn",
                 "webshell reaches the gateway only over HTTP", id="webshell imports the gateway"),
    pytest.param("gateway/gates/cron.py", "from kubegate.cli import logs", "The command line is the top",
                 id="a gate imports the command line"),
    pytest.param("audit/sink.py", "from kubegate.cli.problems import located", "The command line is the top",
                 id="audit imports the command line"),
    pytest.param("status.py", "from kubegate.gateway import errors", "The shared base",
                 id="the shared base imports the gateway"),
])
def test_a_wrong_import_breaks_its_contract(tmp_path: Path, module: str, wrong_import: str, contract: str) -> None:
    view = source_view.build(tmp_path, copy=True)
    target = view / module
    target.write_text(target.read_text() + f"\n{wrong_import}  # a deliberately wrong import\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{contract}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout
