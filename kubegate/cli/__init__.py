"""The `kubegate` command line: the top of the import graph. Nothing of the gateway, the audit,
the webshell or the emulator imports it (the contract `cli-is-top` in pyproject.toml)."""

from kubegate.cli.main import main

__all__ = ["main"]
