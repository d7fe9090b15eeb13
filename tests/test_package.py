"""kubegate as a user installs it: the wheel built from this checkout, installed into a fresh
virtualenv (its dependencies from the package index), used from an empty directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess as sp
import sys
import time
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import end_process

REPO = Path(__file__).resolve().parents[1]
_CHECKOUT_ONLY = {".git", ".venv", "state", "build", "dist", "kubegate.egg-info", ".mypy_cache", ".pytest_cache"}


def _not_source(directory: str, names: list[str]) -> set[str]:
    """What a checkout holds beside its sources (at its top) and caches (anywhere)."""
    top = Path(directory) == REPO
    return {n for n in names if n == "__pycache__" or (top and n in _CHECKOUT_ONLY)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the fresh virtualenv's bin directory)."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=_not_source)
    built = sp.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(root / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("kubegate-*.whl"))
    venv = root / "venv"
    sp.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = sp.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
                  capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    yield wheel, venv / "bin"


def test_the_wheel_carries_the_starter_set_and_the_licence(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("kubegate/starter/kubegate.yaml", "kubegate/starter/impersonator-rbac.yaml",
                     "kubegate/starter/policies/authz/model.conf", "kubegate/starter/policies/authz/roles.csv",
                     "kubegate/starter/policies/authz/tests/starter.yaml", "kubegate/starter/policies/gates/rules.yaml",
                     "kubegate/starter/policies/gates/tests/day-one.yaml"):
        assert expected in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # pip show and PyPI link to where the project lives.
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    urls = dict(line.removeprefix("Project-URL: ").split(", ", 1) for line in metadata.splitlines()
                if line.startswith("Project-URL: "))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls), metadata[:2000]
    assert all(u.startswith("https://") for u in urls.values())
    # Nothing of the checkout's tooling or tests rides along.
    assert not [n for n in names if n.startswith(("tests/", "bench/", "policies/"))]


def test_init_then_demo_from_an_empty_directory(installed: tuple[Path, Path], tmp_path: Path,
                                                kubectl_path: str) -> None:
    _, bin_dir = installed
    kubegate = str(bin_dir / "kubegate")
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KUBEGATE_CONFIG")}

    init = sp.run([kubegate, "init", "site"], cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert init.returncode == 0, init.stderr
    assert "gateway.kubeconfig" in init.stdout and "kubegate serve -c site/kubegate.yaml" in init.stdout
    for rel in ("site/kubegate.yaml", "site/impersonator-rbac.yaml", "site/policies/authz/model.conf",
                "site/policies/gates/limits.yaml"):
        assert (work / rel).is_file()
    docs = sp.run([kubegate, "docs", "change-gates"], cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert docs.returncode == 0 and docs.stdout.startswith("# Change gates"), docs.stderr  # the docs came with it
    # What init's next steps and the settings' comments point to is there for a pip user too.
    readme = sp.run([kubegate, "docs", "readme"], cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert readme.returncode == 0 and "### Connect your first real cluster" in readme.stdout, readme.stderr
    pointers = init.stdout + (work / "site" / "kubegate.yaml").read_text()
    topics = sp.run([kubegate, "docs"], cwd=work, capture_output=True, text=True, timeout=60, env=env).stdout
    named = set(re.findall(r"kubegate docs (\w[\w-]*)", pointers))
    assert named >= {"readme", "configuration"}, pointers
    assert all(f"  {topic} " in topics for topic in named), topics
    tested = sp.run([kubegate, "policy", "test", "site/policies"], cwd=work, capture_output=True, text=True,
                    timeout=120, env=env)
    assert tested.returncode == 0 and "0 failed" in tested.stdout, tested.stdout + tested.stderr
    again = sp.run([kubegate, "init", "site"], cwd=work, capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 1 and "already exist" in again.stderr and "nothing was written" in again.stderr
    # Until the gateway's own credential is there, serve says which file is missing (no traceback).
    serve = sp.run([kubegate, "serve", "-c", "site/kubegate.yaml"], cwd=work, capture_output=True, text=True,
                   timeout=60, env=env)
    assert serve.returncode == 2 and "problem(s) in site/kubegate.yaml" in serve.stderr, serve.stderr
    assert "gateway.kubeconfig" in serve.stderr and "Traceback" not in serve.stderr

    demo = sp.Popen([kubegate, "demo", "--port", "0", "--webshell-port", "0"], cwd=work, stdout=sp.PIPE, stderr=sp.STDOUT, text=True,
                    env=env)
    try:
        assert demo.stdout is not None
        deadline, lines = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            lines.append(line)
            if line.startswith("ready.") or demo.poll() is not None:
                break
        assert any(line.startswith("ready.") for line in lines), "".join(lines)
        kubeconfig = work / "state" / "demo" / "kubeconfig"
        pods = sp.run([kubectl_path, "--kubeconfig", str(kubeconfig), "get", "pods", "-n", "shop", "-o", "name"],
                      capture_output=True, text=True, timeout=60)
        assert pods.returncode == 0 and "pod/web-7d9c0x" in pods.stdout, pods.stderr
    finally:
        end_process(demo, timeout=20)
