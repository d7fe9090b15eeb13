"""mypy over the whole package, as part of the test suite (so CI and `./dev test` run it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import source_view


def test_mypy_is_clean(tmp_path: Path) -> None:
    source_view.build(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(source_view.ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "kubegate"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
