"""kubectl's command-line grammar, read the way kubectl reads it (cobra finds the command, pflag
parses its flags), so the webshell judges the arguments kubectl will act on — not a guess at them.

The grammar of one kubectl version is a table (`kubectl-grammar.json` beside this module): every
command path, its subcommands, and every flag it accepts with its shorthand and its kind —
`bool` (takes no value), `value` (the next word, or `=value`), `optional` (a value only with `=`:
pflag's NoOptDefVal, as `--dry-run`, `--validate`, `--cascade`), `list` (a value, repeatable,
comma-separated). The table is made from that kubectl itself (`describe`), and the test suite makes
it again from the kubectl the project ships and compares: a kubectl with a new flag or command
fails that test until the table, and the webshell's allow-list, say what to do with it.

    python -m kubegate.webshell.kubectl_grammar --kubectl PATH > webshell/kubectl-grammar.json

What `parse` follows, as cobra and pflag do:
- the command is found by walking subcommand names past flags (`Command.Find`/`stripFlags`: a
  flag without `=` that is not boolean is taken to have its value next, known or not);
- flags may stand anywhere, before or after positional arguments, until `--`;
- `--name=value`, `--name value`; names are normalised `_` -> `-` (kubectl's WordSepNormalizeFunc);
- `-abc` is `-a -b -c` while they are boolean; the first shorthand that takes a value takes the rest
  of the word (`-Rf=x`, `-Rfx`) or the next word;
- repeated flags: every occurrence is kept (the last wins for a single value; a list gathers all);
- a `list` value is split at commas (Go's CSV reader): `-f a.yaml,b.yaml` names two files.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["bool", "value", "optional", "list"]
TABLE = Path(__file__).resolve().parent / "kubectl-grammar.json"
# What every command accepts besides its table: cobra adds -h/--help to each.
HELP = {"help": {"short": "h", "kind": "bool"}}


class GrammarError(ValueError):
    """The arguments are not what kubectl would accept (or not what we can read as it does)."""


@dataclass(frozen=True)
class Flag:
    name: str
    short: str
    kind: Kind


@dataclass(frozen=True)
class Command:
    path: str  # "create secret tls"; "" is kubectl itself
    children: dict[str, str]  # subcommand name or alias -> its name
    flags: dict[str, Flag]  # by long name, the global flags included
    shorts: dict[str, Flag]


@dataclass
class Parsed:
    command: str  # the command path kubectl runs ("" when no command was named)
    flags: list[tuple[str, str]] = field(default_factory=list)  # (long name, value) in order; bool: "true"
    positional: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        """Every value given for NAME, in order (a list flag's already split at commas)."""
        return [value for flag, value in self.flags if flag == name]

    def last(self, name: str) -> str | None:
        found = self.values(name)
        return found[-1] if found else None

    def has(self, name: str) -> bool:
        return any(flag == name for flag, _ in self.flags)


class Grammar:
    def __init__(self, table: dict[str, Any]) -> None:
        self.version = str(table["version"])
        self._global = {n: Flag(n, f["short"], f["kind"]) for n, f in {**table["global"], **HELP}.items()}
        self._commands: dict[str, Command] = {}
        for path, spec in table["commands"].items():
            local = {n: Flag(n, f["short"], f["kind"]) for n, f in spec["flags"].items()}
            flags = {**self._global, **local}  # a command's own flag shadows a global one (debug --profile)
            shorts = {f.short: f for f in flags.values() if f.short}
            children: dict[str, str] = {}
            for child in spec["children"]:
                children[child] = child
                for alias in table["commands"][f"{path} {child}".strip()].get("aliases", []):
                    children.setdefault(alias, child)
            self._commands[path] = Command(path, children, flags, shorts)

    @classmethod
    def load(cls, path: Path = TABLE) -> "Grammar":
        return cls(json.loads(path.read_text()))

    def command(self, path: str) -> Command:
        return self._commands[path]

    @property
    def commands(self) -> list[str]:
        return list(self._commands)

    def find(self, args: list[str]) -> tuple[Command, list[str]]:
        """The command ARGS run and the words left for it to parse, as cobra's Command.Find: each
        level strips the flags it knows of (an unknown one is taken to have its value next), takes
        the first remaining word as a subcommand if it names one, and drops that word."""
        current = self._commands[""]
        while True:
            rest = _positions(args, current)
            if not rest or args[rest[0]] not in current.children:
                return current, args
            first = rest[0]
            current = self._commands[f"{current.path} {current.children[args[first]]}".strip()]
            args = args[:first] + args[first + 1:]

    def parse(self, args: list[str]) -> Parsed:
        """ARGS (kubectl's, without the program) as kubectl reads them; GrammarError for anything
        kubectl would refuse or that cannot be read exactly as it reads it."""
        command, words = self.find(list(args))
        parsed = Parsed(command.path)
        i = 0
        while i < len(words):
            word = words[i]
            i += 1
            if word == "--":
                parsed.positional.extend(words[i:])
                break
            if not word.startswith("-") or word == "-":
                parsed.positional.append(word)
                continue
            if word.startswith("--"):
                body = word[2:]
                if not body or body[0] in "-=":
                    raise GrammarError(f"bad flag syntax: {word}")
                name, eq, value = body.partition("=")
                flag = command.flags.get(normalise(name))
                if flag is None:
                    raise GrammarError(f"unknown flag: --{name}")
                if not eq:
                    if flag.kind in ("bool", "optional"):
                        value = "true" if flag.kind == "bool" else ""
                    elif i < len(words):
                        value, i = words[i], i + 1
                    else:
                        raise GrammarError(f"flag needs an argument: --{name}")
                _add(parsed, flag, value)
                continue
            shorts = word[1:]
            while shorts:  # pflag's parseSingleShortArg, one shorthand at a time
                c, rest = shorts[0], shorts[1:]
                flag = command.shorts.get(c)
                if flag is None:
                    raise GrammarError(f"unknown shorthand flag: {c!r} in {word}")
                if len(rest) >= 2 and rest[0] == "=":  # -f=arg
                    value, rest = rest[1:], ""
                elif flag.kind in ("bool", "optional"):  # -f, its value implied
                    value = "true" if flag.kind == "bool" else ""
                elif rest:  # -farg
                    value, rest = rest, ""
                elif i < len(words):  # -f arg
                    value, i = words[i], i + 1
                else:
                    raise GrammarError(f"flag needs an argument: {c!r} in {word}")
                _add(parsed, flag, value)
                shorts = rest
        return parsed


def normalise(name: str) -> str:
    return name.replace("_", "-")


def _add(parsed: Parsed, flag: Flag, value: str) -> None:
    if flag.kind == "list":
        # Go's encoding/csv reads one record; quotes and line breaks would be read differently by
        # it than by a plain split, so they are not taken at all.
        if any(ch in value for ch in '"\r\n'):
            raise GrammarError(f"--{flag.name}: quotes and line breaks are not accepted in a list value")
        parsed.flags.extend((flag.name, part) for part in value.split(","))
    else:
        parsed.flags.append((flag.name, value))


def _positions(args: list[str], command: Command) -> list[int]:
    """cobra's stripFlags for COMMAND: where the words of ARGS are that are neither flags nor the
    values of flags (a flag without '=' that is not known to need none is taken to have one)."""
    out: list[int] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            break
        if word.startswith("--") and "=" not in word:
            flag = command.flags.get(normalise(word[2:]))
            if flag is None or flag.kind not in ("bool", "optional"):
                i += 1  # '--flag arg'
        elif word.startswith("-") and "=" not in word and len(word) == 2:
            flag = command.shorts.get(word[1])
            if flag is None or flag.kind not in ("bool", "optional"):
                i += 1  # '-f arg'
        elif not word.startswith("-"):
            out.append(i - 1)
    return out


# -- describing a kubectl ----------------------------------------------------------------------

_SECTION = re.compile(r"^[A-Z][^:]*:$")
_COMMAND = re.compile(r"^  ([a-z][\w-]*)\s{2,}\S")
_FLAG = re.compile(r"^\s+(?:-(\w), )?--([\w-]+)=(.*):$")
_ENV = {"PATH": "/nonexistent", "HOME": "/nonexistent", "KUBECONFIG": "/dev/null"}


def _help(kubectl: str, words: list[str]) -> str:
    return subprocess.run([kubectl, *words, "--help"], capture_output=True, text=True, env=_ENV, timeout=30,
                          check=True).stdout


def _flags(lines: list[str]) -> dict[str, tuple[str, str]]:
    """Flag lines of kubectl's help (`    -o, --output='':`): name -> (shorthand, default)."""
    return {m.group(2): (m.group(1) or "", m.group(3)) for line in lines if (m := _FLAG.match(line))}


def _sections(text: str) -> tuple[list[str], list[str], dict[str, tuple[str, str]]]:
    """(subcommands, aliases, flags) from one command's --help."""
    children: list[str] = []
    aliases: list[str] = []
    options: list[str] = []
    section = ""
    for line in text.splitlines():
        if _SECTION.match(line):
            section = line
        elif section == "Options:":
            options.append(line)
        elif section == "Aliases:" and line.strip():
            aliases = [a.strip() for a in line.split(",")[1:]]  # the first is the command's own name
        elif section not in ("Usage:", "Examples:") and (m := _COMMAND.match(line)):
            children.append(m.group(1))
    return children, aliases, _flags(options)


def describe(kubectl: str) -> dict[str, Any]:
    """The grammar table of the kubectl at KUBECTL, from its own help and behaviour."""
    version = json.loads(subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                                        text=True, env=_ENV, timeout=30, check=True).stdout)
    raw: dict[str, tuple[list[str], list[str], dict[str, tuple[str, str]]]] = {}
    pending: list[list[str]] = [[]]
    while pending:
        words = pending.pop()
        raw[" ".join(words)] = found = _sections(_help(kubectl, words))
        pending += [[*words, c] for c in found[0]]
    global_flags = _flags(subprocess.run([kubectl, "options"], capture_output=True, text=True, env=_ENV,
                                         timeout=30, check=True).stdout.splitlines())

    def kind(default: str) -> str:
        if default in ("true", "false"):
            return "bool"
        return "list" if default.startswith("[") else "value"

    # Which value flags take their value only with '=' (pflag's NoOptDefVal): with one, a bare
    # `--flag --help` shows the help; without, the flag swallows `--help` or needs an argument.
    probes = [(path, name) for path, (_, _, flags) in raw.items() for name, (_, default) in flags.items()
              if kind(default) != "bool"]

    def optional(probe: tuple[str, str]) -> bool:
        path, name = probe
        return subprocess.run([kubectl, *path.split(), "--help", f"--{name}"], capture_output=True, env=_ENV,
                              timeout=30).returncode == 0

    with ThreadPoolExecutor(8) as pool:
        noopt = {p for p, yes in zip(probes, pool.map(optional, probes)) if yes}
    commands: dict[str, Any] = {}
    for path, (children, aliases, flags) in sorted(raw.items()):
        commands[path] = {"children": sorted(children), "aliases": aliases, "flags": {
            name: {"short": short, "kind": "optional" if (path, name) in noopt else kind(default)}
            for name, (short, default) in sorted(flags.items())}}
    return {"version": version["clientVersion"]["gitVersion"],
            "global": {name: {"short": short, "kind": kind(default)} for name, (short, default) in sorted(global_flags.items())},
            "commands": commands}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubegate.webshell.kubectl_grammar",
                                description="Print the grammar table of a kubectl (for the webshell's allow-list).")
    p.add_argument("--kubectl", default="kubectl")
    args = p.parse_args(argv)
    json.dump(describe(args.kubectl), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
