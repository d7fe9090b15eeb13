"""What the webshell's restricted shell runs: kubectl, and nothing else, as the session's user.

A line is judged before anything runs, with a clear reason for each refusal:
- no shell: no pipes, redirections, command lists, substitutions (`$(…)`, backticks), variables,
  globs, environment assignments or aliases; the line is split like a shell would split words
  (quotes respected) and nothing more is interpreted;
- the program is `kubectl` (no path, no other program, no plugin);
- kubectl's arguments are read with kubectl's own grammar (`kubectl_grammar`: cobra's command
  lookup, pflag's combined short flags, `=` and space forms, repeated flags, comma lists, `--`),
  and checked against an allow-list per command (`allowed-flags.yaml`): what is not listed is
  refused, so a flag this code never heard of cannot slip through;
- values and arguments that name local files stay inside the session's own directory, no URLs.

This check is the second wall. The first is where kubectl runs: a sandbox (webshell/sandbox.py) in
which the gateway's files, environment and processes do not exist. Whether a change needs a second
person is not decided here at all: the gateway's rules judge each request by its effect.
Pure functions: a line in, a verdict out.
"""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from .kubectl_grammar import Grammar, GrammarError, Parsed

PROGRAM = "kubectl"
BUILTINS = ("help", "exit", "logout", "clear")
ALLOW_LIST = Path(__file__).resolve().parent / "allowed-flags.yaml"

REFUSED_COMMANDS = {
    "config": "the session's kubeconfig is the webshell's own; `kubectl config` is not available",
    "kuberc": "kubectl's preferences file is not available in the webshell",
    "edit": "kubectl edit opens a local editor; use `kubectl patch` or `kubectl apply -f` with a file here",
    "apply edit-last-applied": "it opens a local editor; use `kubectl apply -f` with a file here",
    "port-forward": "port-forward would listen on the webshell's host; it is not available in the webshell",
    "proxy": "kubectl proxy would listen on the webshell's host; it is not available in the webshell",
    "plugin": "kubectl plugins are not available in the webshell",
    "create token": "the webshell hands out no credentials; ask your administrator for a token",
}
IDENTITY_FLAGS = frozenset({
    "kubeconfig", "context", "cluster", "user", "token", "server", "as", "as-group", "as-uid", "as-user-extra",
    "username", "password", "certificate-authority", "client-certificate", "client-key", "insecure-skip-tls-verify",
    "tls-server-name", "proxy-url", "kuberc", "cache-dir",
})
# Flags whose every value is a local path. `from-file` may be KEY=PATH.
PATH_FLAGS = frozenset({"filename", "kustomize", "from-file", "from-env-file", "cert", "key", "custom", "patch-file",
                        "output-directory"})
# -o forms whose value after '=' is a template file, and the formats that make --template a path.
FILE_OUTPUTS = ("go-template-file", "templatefile", "jsonpath-file", "custom-columns-file")


@dataclass(frozen=True)
class Verdict:
    argv: tuple[str, ...] = ()  # what to run (kubectl's arguments), when allowed
    refused: str = ""  # why not, in one line
    builtin: str = ""  # help, exit, clear
    command: str = ""  # the kubectl command path it runs ("get", "create secret tls")

    @property
    def allowed(self) -> bool:
        return not self.refused and not self.builtin


@dataclass(frozen=True)
class AllowList:
    version: str
    global_flags: frozenset[str]
    commands: dict[str, frozenset[str]]


@functools.cache
def grammar() -> Grammar:
    return Grammar.load()


@functools.cache
def allow_list() -> AllowList:
    data = yaml.safe_load(ALLOW_LIST.read_text())
    return AllowList(grammar().version, frozenset(data["global"]),
                     {path: frozenset(flags or ()) for path, flags in data["commands"].items()})


def _unquoted_problem(line: str) -> str:
    """A shell feature used in LINE outside quotes, described; "" when there is none."""
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                i += 1
            if quote != "'" and (ch == "`" or line.startswith("$(", i)):
                return "command substitution ($(…), backticks) is not available: this shell runs no shell"
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            return "backslash escapes are not available; quote the argument instead"
        elif ch in "|&;<>":
            return "pipes, redirections and command lists are not available: one kubectl command per line"
        elif ch == "`" or ch == "$":
            return ("command substitution and variables are not available: this shell expands nothing"
                    if ch == "`" or line.startswith("$(", i) else "variables are not available: this shell expands nothing")
        elif ch in "*?":  # kubectl's own * (jsonpath, custom-columns) is quoted, as in any shell
            return "wildcards are not expanded here; quote the argument if it is meant literally"
        elif ch == "~" and (i == 0 or line[i - 1] in " \t="):
            return "~ is not expanded here: files live in this session's directory"
        i += 1
    if quote:
        return "an unterminated quote"
    return ""


def _local_path(value: str, files: Path) -> str:
    """Why VALUE (a local path argument) is refused, or ""."""
    if value == "-":
        return ""
    if "://" in value:
        return f"{value!r}: URLs are not fetched from the webshell; copy the file into this session first"
    target = Path(os.path.normpath(files / value))
    root = Path(os.path.normpath(files))
    if target != root and root not in target.parents:
        return f"{value!r} is outside this session's directory; only files here can be read or written"
    real = Path(os.path.realpath(target))
    if real != Path(os.path.realpath(root)) and Path(os.path.realpath(root)) not in real.parents:
        return f"{value!r} leads outside this session's directory"
    return ""


def _value_problem(parsed: Parsed, files: Path) -> str:
    """Why a value or argument of PARSED that names a local file is refused, or ""."""
    for name, value in parsed.flags:
        if name in PATH_FLAGS:
            path = value.split("=", 1)[1] if name == "from-file" and "=" in value else value
            if why := _local_path(path, files):
                return f"--{name}: {why}"
    output = parsed.last("output")
    if output is not None:
        if parsed.command == "kustomize":  # kustomize -o writes the build to that path
            if why := _local_path(output, files):
                return f"--output: {why}"
        else:
            form, eq, value = output.partition("=")
            if eq and form in FILE_OUTPUTS and (why := _local_path(value, files)):
                return f"--output: {why}"
            template = parsed.last("template")
            if template is not None and form in FILE_OUTPUTS and (why := _local_path(template, files)):
                return f"--template: {why}"
    # Positional arguments that are local paths: kustomize's directory, cp's local side (a word
    # without ':'; kubectl reads one with ':' as POD:PATH).
    if parsed.command == "kustomize":
        for arg in parsed.positional or ["."]:
            if why := _local_path(arg, files):
                return why
    if parsed.command == "cp":
        for arg in parsed.positional:
            if ":" not in arg and (why := _local_path(arg, files)):
                return why
    return ""


def judge(line: str, files: Path) -> Verdict:
    """The verdict on one line typed into the webshell; FILES is the session's own directory."""
    stripped = line.strip()
    if not stripped:
        return Verdict(builtin="nothing")
    if problem := _unquoted_problem(stripped):
        return Verdict(refused=problem)
    try:
        words = shlex.split(stripped)
    except ValueError as e:
        return Verdict(refused=f"the line cannot be read: {e}")
    program, args = words[0], words[1:]
    if program in BUILTINS and not args:
        return Verdict(builtin=program)
    if "=" in program:
        return Verdict(refused="setting environment variables is not available")
    if program != PROGRAM:
        if "/" in program:
            return Verdict(refused=f"{program!r}: programs are not run by path; only `kubectl` runs here")
        return Verdict(refused=f"{program!r} is not available: only `kubectl` runs here (type `help`)")
    return judge_args(args, files)


def judge_args(args: list[str], files: Path) -> Verdict:
    """The verdict on kubectl's arguments ARGS, read as kubectl reads them."""
    try:
        parsed = grammar().parse(args)
    except GrammarError as e:
        return Verdict(refused=f"kubectl would not read this line as written ({e})")
    allowed = allow_list()
    for refused, why in REFUSED_COMMANDS.items():
        if parsed.command == refused or parsed.command.startswith(refused + " "):
            return Verdict(refused=why)
    if not parsed.command:
        if parsed.positional:
            return Verdict(refused=f"`kubectl {parsed.positional[0]}` is not available in the webshell "
                                   "(plugins and unknown commands)")
        if not parsed.has("help"):
            return Verdict(refused="name a kubectl command (`kubectl --help` lists them)")
    elif parsed.command not in allowed.commands:
        return Verdict(refused=f"`kubectl {parsed.command}` is not available in the webshell")
    # A command's own flag shadows a global one of the same name (`create rolebinding --user` names
    # the subject, not kubectl's user): the allow-list is per command, the grammar says which it is.
    permitted = allowed.commands.get(parsed.command, frozenset()) | allowed.global_flags | {"help"}
    for name, _ in parsed.flags:
        if name in permitted:
            continue
        if name in IDENTITY_FLAGS:
            return Verdict(refused=f"--{name} is not available: the webshell acts as you, on the cluster you picked, "
                                   "through the gateway")
        return Verdict(refused=f"--{name} is not available for `kubectl {parsed.command}` in the webshell "
                               "(the webshell allows the flags it knows to be safe)")
    if why := _value_problem(parsed, files):
        return Verdict(refused=why)
    return Verdict(argv=tuple(args), command=parsed.command)
