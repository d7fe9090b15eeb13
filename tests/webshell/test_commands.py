"""The webshell's argument check: kubectl's arguments read with kubectl's own grammar (pinned to the
kubectl the project ships and compared with it), then an allow-list per command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubegate.webshell import commands
from kubegate.webshell.kubectl_grammar import TABLE, Grammar, GrammarError, describe
from tests.conftest import kubectl_binary

FILES = Path("/srv/webshell/sessions/s1/files")


def test_the_grammar_table_is_the_shipped_kubectls() -> None:
    """Made again from the kubectl the project ships: a kubectl with a new command or flag (or a flag
    whose kind changed) fails here until the table and the allow-list say what to do with it."""
    assert describe(kubectl_binary()) == json.loads(TABLE.read_text())


def test_the_allow_list_names_only_what_this_kubectl_has() -> None:
    grammar, allowed = commands.grammar(), commands.allow_list()
    table = json.loads(TABLE.read_text())
    assert allowed.global_flags <= set(table["global"])
    for path, flags in allowed.commands.items():
        assert path in grammar.commands, path
        assert flags <= set(table["commands"][path]["flags"]), (path, flags - set(table["commands"][path]["flags"]))


def _every_flag() -> list[tuple[str, str, str]]:
    table = json.loads(TABLE.read_text())
    return [(path, name, spec["kind"]) for path, command in table["commands"].items() if path
            for name, spec in command["flags"].items()] + \
        [("get", name, spec["kind"]) for name, spec in table["global"].items()]


def test_every_flag_the_allow_list_does_not_name_is_refused() -> None:
    allowed = commands.allow_list()
    checked = 0
    for path, name, kind in _every_flag():
        if name in allowed.commands.get(path, frozenset()) | allowed.global_flags:
            continue
        args = [*path.split(), f"--{name}" if kind in ("bool", "optional") else f"--{name}=x"]
        verdict = commands.judge_args(args, FILES)
        assert verdict.refused, (args, verdict)
        checked += 1
    assert checked > 50


def test_every_allowed_flag_of_an_allowed_command_passes_the_grammar() -> None:
    allowed = commands.allow_list()
    for path, name, kind in _every_flag():
        if path in allowed.commands and name in allowed.commands[path] and name not in commands.PATH_FLAGS:
            args = [*path.split(), f"--{name}" if kind in ("bool", "optional") else f"--{name}=v"]
            verdict = commands.judge_args(args, FILES)
            assert not verdict.refused or "directory" in verdict.refused, (args, verdict)


PARSES = [
    pytest.param(["get", "pods", "-n", "default"], "get", [("namespace", "default")], ["pods"], id="value-after"),
    pytest.param(["-n", "get", "get", "pods"], "get", [("namespace", "get")], ["pods"], id="a-flag-value-names-no-command"),
    pytest.param(["apply", "-Rf", "a.yaml,b.yaml"], "apply", [("recursive", "true"), ("filename", "a.yaml"),
                                                              ("filename", "b.yaml")], [], id="combined-shorts-and-a-list"),
    pytest.param(["apply", "-Rf=a.yaml"], "apply", [("recursive", "true"), ("filename", "a.yaml")], [], id="short-equals"),
    pytest.param(["apply", "-Rfa.yaml"], "apply", [("recursive", "true"), ("filename", "a.yaml")], [], id="short-glued"),
    pytest.param(["apply", "-f="], "apply", [("filename", "=")], [], id="pflag-reads-=-as-the-value"),
    pytest.param(["create", "cm", "x", "--from_file=a"], "create configmap", [("from-file", "a")], ["x"],
                 id="alias-and-underscore"),
    pytest.param(["delete", "pod", "x", "--cascade", "orphan"], "delete", [("cascade", "")], ["pod", "x", "orphan"],
                 id="optional-value-only-with-equals"),
    pytest.param(["scale", "deploy", "x", "--replicas=1", "--replicas", "0"], "scale",
                 [("replicas", "1"), ("replicas", "0")], ["deploy", "x"], id="repeated-flags-kept-in-order"),
    pytest.param(["get", "pods", "--", "-f", "x"], "get", [], ["pods", "-f", "x"], id="double-dash-ends-flags"),
    pytest.param(["top", "po"], "top pod", [], [], id="subcommand-alias"),
    pytest.param(["--as", "admin", "get", "pods"], "get", [("as", "admin")], ["pods"], id="global-before-command"),
    pytest.param(["get", "pods", "-As", "https://x"], "get", [("all-namespaces", "true"), ("server", "https://x")],
                 ["pods"], id="server-at-the-end-of-combined-shorts"),
]


@pytest.mark.parametrize(("args", "command", "flags", "positional"), PARSES)
def test_arguments_are_read_as_kubectl_reads_them(args: list[str], command: str, flags: list[tuple[str, str]],
                                                  positional: list[str]) -> None:
    parsed = Grammar.load().parse(args)
    assert (parsed.command, parsed.flags, parsed.positional) == (command, flags, positional)


@pytest.mark.parametrize("args", [["get", "--bogus"], ["get", "-Z"], ["get", "-n"], ["get", "---x"],
                                  ["apply", "-f", 'a,"b,c"'], ["apply", "-f", "a\n/etc/passwd"]])
def test_what_kubectl_would_not_read_is_refused(args: list[str]) -> None:
    with pytest.raises(GrammarError):
        Grammar.load().parse(args)


def test_the_judged_arguments_are_the_ones_run() -> None:
    verdict = commands.judge("kubectl apply -Rf ok.yaml -n default", FILES)
    assert verdict.argv == ("apply", "-Rf", "ok.yaml", "-n", "default") and verdict.command == "apply"
