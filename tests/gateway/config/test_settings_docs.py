"""The settings reference stays complete, and its example is a valid configuration."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml

from kubegate.gateway.config import settings

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _keys(cls: type, prefix: str) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        kind = str(f.type)
        nested = settings._NESTED.get(kind)  # every nested section the settings reader knows
        listed = {"list[Oidc]": settings.Oidc, "list[Cluster]": settings.Cluster}.get(kind)
        if nested:
            out += _keys(nested, f"{prefix}{f.name}.")
        elif listed:
            out += _keys(listed, f"{prefix}{f.name}[].")
        else:
            out.append(prefix + f.name)
    return out


def test_every_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [k for k in _keys(settings.Settings, "") if f"`{k}`" not in text]
    assert missing == []


def test_example_configuration_is_valid(tmp_path: Path) -> None:
    example = tmp_path / "kubegate.yaml"
    shutil.copy(DOCS / "kubegate.example.yaml", example)
    data = yaml.safe_load(example.read_text())
    for relative in ("certs/kubegate.crt", "certs/kubegate.key", "certs/token-signing.key", "certs/hz-1-ca.crt"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("x")
    (tmp_path / "policies" / "authz").mkdir(parents=True)
    (tmp_path / "policies" / "gates").mkdir(parents=True)
    data["store"]["password_file"] = str(tmp_path / "redis-password")
    (tmp_path / "redis-password").write_text("secret")
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "sh-2.kubeconfig").write_text("apiVersion: v1")
    data["clusters"][0]["token_file"] = str(tmp_path / "token")
    (tmp_path / "token").write_text("t")
    example.write_text(yaml.safe_dump(data))
    cfg = settings.load(example)
    assert [c.name for c in cfg.clusters] == ["hz-1", "sh-2"]
    assert cfg.default_cluster() is cfg.clusters[0]
    assert cfg.oidc[0].groups_prefix == "sso:"
    assert cfg.store.redis_url.startswith("redis://")
