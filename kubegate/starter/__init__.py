"""What `pip install kubegate` brings to start from: the starter policies, a settings file and the
gateway's RBAC, as package data; `kubegate init DIR` writes them out to be edited."""

from __future__ import annotations

import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
POLICIES = HERE / "policies"
SETTINGS = HERE / "kubegate.yaml"
RBAC = HERE / "impersonator-rbac.yaml"
DOCS = HERE / "docs"  # the documentation, installed with the wheel: `kubegate docs`
README = HERE / "README.md"  # `kubegate docs readme`: the walk from nothing to a first kubectl


class InitError(Exception):
    pass


def init(directory: Path, *, cluster_kubeconfig: Path | None = None, force: bool = False) -> list[Path]:
    """Write the starter set into DIRECTORY; the paths written. Nothing is overwritten without `force`."""
    targets = [directory / "kubegate.yaml", directory / "policies", directory / "impersonator-rbac.yaml"]
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise InitError(f"{', '.join(str(p) for p in existing)} already exist(s); nothing was written "
                        "(--force overwrites)")
    directory.mkdir(parents=True, exist_ok=True)
    settings = SETTINGS.read_text()
    if cluster_kubeconfig is not None:
        settings = settings.replace("kubeconfig: gateway.kubeconfig", f"kubeconfig: {cluster_kubeconfig.resolve()}")
    (directory / "kubegate.yaml").write_text(settings)
    if (directory / "policies").exists():
        shutil.rmtree(directory / "policies")
    # The starter policies, without anything a checkout may hold beside them (caches).
    shutil.copytree(POLICIES, directory / "policies", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(RBAC, directory / "impersonator-rbac.yaml")
    return targets
