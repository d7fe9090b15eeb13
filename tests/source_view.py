"""The `kubegate` namespace laid out the way the installed distribution is, for tools that read source.

setuptools' editable install maps gateway/, emulator/, audit/ and webshell/ into `kubegate.*` with an
import hook that static tools (mypy, import-linter's grimp) cannot follow, so they read a view of it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Directories the distribution maps into the kubegate namespace (pyproject's package-dir).
MAPPED = ("gateway", "emulator", "audit", "webshell")
# Sub-packages that live in kubegate/ itself.
SUBPACKAGES = ("starter", "cli")


def build(parent: Path, *, copy: bool = False) -> Path:
    """`parent/kubegate`: symlinks to the sources, or (copy=True) a copy a test may edit."""
    view = parent / "kubegate"
    view.mkdir()
    for source in (ROOT / "kubegate").glob("*.py"):
        if copy:
            shutil.copy(source, view / source.name)
        else:
            (view / source.name).symlink_to(source)
    for name in SUBPACKAGES:
        if copy:
            shutil.copytree(ROOT / "kubegate" / name, view / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (view / name).symlink_to(ROOT / "kubegate" / name, target_is_directory=True)
    for name in MAPPED:
        if copy:
            shutil.copytree(ROOT / name, view / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (view / name).symlink_to(ROOT / name, target_is_directory=True)
    return view
