"""What the webshell's restricted shell runs: kubectl, and nothing else, as the session's user.

A line is judged before anything runs, with a clear reason for each refusal:
- no shell: no pipes, redirections, command lists, substitutions (`$(…)`, backticks), variables,
  globs, environment assignments or aliases; the line is split like a shell would split words
  (quotes respected) and nothing more is interpreted;
- the program is `kubectl` (no path, no other program, no plugin: the shell's PATH holds kubectl
  alone, and subcommands are an allow-list);
- no flag that changes who kubectl acts as or where it connects (`--kubeconfig`, `--token`,
  `--server`/`-s`, `--as`, `--context`, certificates, …): the session's kubeconfig is the only one;
- local files only inside the session's own directory (`-f`, `-k`, `--from-file`, `kubectl cp`), no
  URLs; subcommands that would open a local editor, a local port or a proxy are refused.

`risk` classifies what is left for online approval (the change gates' rule ids where one fits).
Pure functions: a line in, a verdict out.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

PROGRAM = "kubectl"
BUILTINS = ("help", "exit", "logout", "clear")

# Subcommands that act through the API server only.
SUBCOMMANDS = frozenset({
    "get", "describe", "logs", "explain", "api-resources", "api-versions", "version", "top", "events",
    "auth", "create", "apply", "delete", "patch", "label", "annotate", "scale", "rollout", "set", "expose",
    "run", "exec", "attach", "cordon", "uncordon", "drain", "taint", "diff", "wait", "debug", "autoscale",
    "replace", "cluster-info", "certificate", "cp", "kustomize", "options", "help", "completion",
})
REFUSED_SUBCOMMANDS = {
    "config": "the session's kubeconfig is the webshell's own; `kubectl config` is not available",
    "edit": "kubectl edit opens a local editor; use `kubectl patch` or `kubectl apply -f` with a file here",
    "port-forward": "port-forward would listen on the gateway's host; it is not available in the webshell",
    "proxy": "kubectl proxy would listen on the gateway's host; it is not available in the webshell",
    "plugin": "kubectl plugins are not available in the webshell",
    "alpha": "alpha commands are not available in the webshell",
}
# Flags that change who kubectl is or where it connects: the session's kubeconfig decides both.
IDENTITY_FLAGS = frozenset({
    "--kubeconfig", "--context", "--cluster", "--user", "--token", "--server", "--as", "--as-group",
    "--as-uid", "--as-user-extra", "--username", "--password", "--certificate-authority",
    "--client-certificate", "--client-key", "--insecure-skip-tls-verify", "--tls-server-name", "--cache-dir",
    "--profile-output", "--log-file", "--log-dir", "--log-backtrace-at", "--disable-compression",
})
SHORT_IDENTITY = ("-s",)  # --server
# Flags whose value is a local path (or PATH, or KEY=PATH for --from-file).
PATH_FLAGS = frozenset({"-f", "--filename", "-k", "--kustomize", "--from-file", "--from-env-file", "--env-file",
                        "--output-directory", "--template"})


@dataclass(frozen=True)
class Verdict:
    argv: tuple[str, ...] = ()  # what to run (kubectl's arguments), when allowed
    refused: str = ""  # why not, in one line
    builtin: str = ""  # help, exit, clear
    risk: tuple[str, ...] = field(default=())  # why a second person should approve it (empty: no need)

    @property
    def allowed(self) -> bool:
        return not self.refused and not self.builtin


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


def _flag_problem(args: list[str], files: Path) -> str:
    i = 0
    positional: list[str] = []
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional += args[i + 1:]
            break
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and name in IDENTITY_FLAGS:
            return f"{name} is not available: the webshell acts as you, on the cluster you picked"
        if arg.startswith("-") and not arg.startswith("--") and any(arg.startswith(s) for s in SHORT_IDENTITY):
            return "-s/--server is not available: the webshell connects to the gateway only"
        if name in PATH_FLAGS:
            if not eq:
                if i + 1 >= len(args):
                    return f"{name} needs a value"
                value = args[i + 1]
                i += 1
            if name == "--from-file" and "=" in value:
                value = value.split("=", 1)[1]
            if why := _local_path(value, files):
                return why
        elif arg.startswith("-f") and len(arg) > 2 and not arg.startswith("--"):  # -fFILE
            if why := _local_path(arg[2:].lstrip("="), files):
                return why
        elif not arg.startswith("-"):
            positional.append(arg)
        i += 1
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
    if problem := _flag_problem(args, files):
        return Verdict(refused=problem)
    sub = subcommand(args)
    if sub in REFUSED_SUBCOMMANDS:
        return Verdict(refused=REFUSED_SUBCOMMANDS[sub])
    if sub and sub not in SUBCOMMANDS:
        return Verdict(refused=f"`kubectl {sub}` is not available in the webshell (plugins and unknown commands)")
    if sub == "cp":
        local = [a for a in args[args.index("cp") + 1:] if not a.startswith("-") and ":" not in a]
        for path in local:
            if why := _local_path(path, files):
                return Verdict(refused=why)
    return Verdict(argv=tuple(args), risk=risk(args))


# kubectl's global flags that take a value, which may stand before the subcommand.
_GLOBAL_VALUED = frozenset({"-n", "--namespace", "-v", "--v", "--request-timeout", "--vmodule"})


def subcommand(args: list[str]) -> str:
    """kubectl's subcommand in ARGS: the first word that is no flag and no global flag's value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _GLOBAL_VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return ""


def _value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            return value if eq else (args[i + 1] if i + 1 < len(args) else "")
    return None


def risk(args: list[str]) -> tuple[str, ...]:
    """Why a second person should approve these kubectl arguments (rule ids; empty: no need)."""
    sub = subcommand(args)
    words = args[args.index(sub):] if sub else []
    words = [w for w in words if not w.startswith("-")]
    found: list[str] = []
    if sub == "delete":
        kinds = words[1].split(",") if len(words) > 1 else []
        if any(k in ("namespace", "namespaces", "ns") or k.startswith(("namespace/", "ns/")) for k in kinds):
            found.append("delete-namespace")
        if "--all" in args or "-A" in args or "--all-namespaces" in args:
            found.append("delete-all")
        found.append("webshell-delete")
    elif sub in ("drain", "cordon"):
        found.append(f"{sub}-node")
    elif sub == "scale" and _value(args, "--replicas") == "0":
        found.append("scale-to-zero")
    elif sub in ("apply", "replace") and ("--force" in args or _value(args, "--force") == "true"):
        found.append("replace-force")
    elif sub == "taint" and any(a.endswith(":NoExecute") for a in args):
        found.append("taint-noexecute")
    return tuple(found)
