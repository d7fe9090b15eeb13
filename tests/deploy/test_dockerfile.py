"""The image's Dockerfile, read with dockerfile-parse (no container engine runs here): unprivileged,
kubegate as its entrypoint, pinned bases, and a build context that holds everything the wheel
needs (tests/test_package.py builds and runs that wheel)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[2]


def _parsed() -> DockerfileParser:
    parser = DockerfileParser()
    parser.content = (REPO / "Dockerfile").read_text()
    return parser


def _final_stage(parser: DockerfileParser) -> list[dict[str, str]]:
    instructions = parser.structure
    last_from = max(i for i, x in enumerate(instructions) if x["instruction"] == "FROM")
    return instructions[last_from:]


def test_runs_unprivileged_with_kubegate_as_entrypoint() -> None:
    final = _final_stage(_parsed())
    users = [x["value"] for x in final if x["instruction"] == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 10000
    assert [x["value"] for x in final if x["instruction"] == "ENTRYPOINT"] == ['["kubegate"]']
    assert [x["value"] for x in final if x["instruction"] == "CMD"] == \
        ['["serve", "--config", "/etc/kubegate/settings/kubegate.yaml"]']
    env = " ".join(x["value"] for x in final if x["instruction"] == "ENV")
    assert "HOME=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written to the read-only root


def test_bases_are_pinned_and_nothing_is_fetched_blindly() -> None:
    parser = _parsed()
    for base in parser.parent_images:
        name, _, tag = base.partition(":")
        assert tag and tag != "latest", base
    for x in parser.structure:
        assert x["instruction"] != "ADD"
        assert "curl" not in x["value"] and "wget" not in x["value"]


def test_the_build_context_holds_what_the_wheel_needs() -> None:
    parser = _parsed()
    copied = {x["value"].split()[0] for x in parser.structure
              if x["instruction"] == "COPY" and not x["value"].startswith("--from")}
    copied |= {src for x in parser.structure if x["instruction"] == "COPY" and not x["value"].startswith("--from")
               for src in x["value"].split()[:-1]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = set(project["tool"]["setuptools"]["package-dir"].values()) | {"pyproject.toml", "README.md", "LICENSE"}
    # The starter set links into policies/ and deploy/ (kubegate/starter).
    needed |= {link.resolve().relative_to(REPO).parts[0] for link in (REPO / "kubegate" / "starter").iterdir()
               if link.is_symlink()}
    assert needed <= copied, needed - copied
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip()]
    assert not [c for c in copied if any(fnmatch.fnmatch(c, pattern) for pattern in ignored)]
    assert all((REPO / c).exists() for c in copied)


def test_the_image_can_sandbox_webshell_terminals() -> None:
    """The webshell refuses terminals where no sandbox can be made: the image carries bubblewrap."""
    runs = " ".join(x["value"] for x in _parsed().structure if x["instruction"] == "RUN")
    assert "apt-get install" in runs and "bubblewrap" in runs
