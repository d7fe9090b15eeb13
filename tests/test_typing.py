"""mypy over the whole package, as part of the test suite (so CI and `./dev test` run it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Directories the distribution maps into the kubegate namespace (pyproject's package-dir).
MAPPED = ("gateway", "emulator", "audit", "webshell")


def test_mypy_is_clean(tmp_path: Path) -> None:
    # mypy cannot follow setuptools' editable import hook, so it reads a symlinked view of the
    # `kubegate` namespace laid out the way the installed distribution is.
    view = tmp_path / "kubegate"
    view.mkdir()
    for source in (ROOT / "kubegate").glob("*.py"):
        (view / source.name).symlink_to(source)
    for name in MAPPED:
        (view / name).symlink_to(ROOT / name, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "kubegate"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
