"""The webshell's restricted shell: the one program a browser terminal runs, in a PTY.

    python -m kubegate.webshell.rshell --kubectl PATH --files DIR --cluster NAME [--namespace NS]
                                       [--user NAME] [--control-fd N]

It reads a line (with line editing, history and kubectl's own tab completion through
`kubectl __complete`), judges it (`commands.judge`), and runs kubectl with the session's
environment — set by the webshell server: KUBECONFIG with the session's token, PATH holding only
kubectl, HOME and the working directory in the session's own directory. A refused line is
answered with one clear line. Each line's fate goes to the server as a JSON line on the control
descriptor, which audits it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from kubegate.webshell import commands

HELP = """\
Only kubectl runs here, as you, on the cluster you picked, through the gateway: every command is
authorized, risk-gated and audited like any other kubectl. What is not available: other programs,
pipes, redirections, variables, substitutions, wildcards, --kubeconfig/--token/--server/--as and
their kin, kubectl config/edit/port-forward/proxy and plugins. Files (-f, --from-file, kubectl cp)
live in this session's own directory, which ends with the session.

  kubectl get pods              what runs here
  kubectl auth can-i --list     what you may do
  <Tab>                         completes kubectl commands, resources and names
  clear, exit                   clear the screen, end the session
"""


class Shell:
    def __init__(self, kubectl: str, files: Path, control: IO[str] | None, replies: IO[str] | None = None) -> None:
        self.kubectl, self.files, self.control, self.replies = kubectl, files, control, replies

    def report(self, **message: Any) -> None:
        if self.control is not None:
            try:
                self.control.write(json.dumps(message) + "\n")
                self.control.flush()
            except OSError:
                pass

    def complete(self, text: str, state: int) -> str | None:
        """readline's completer: kubectl's own candidates for the line so far."""
        import readline

        if state == 0:
            line = readline.get_line_buffer()[: readline.get_endidx()]
            self._candidates = self._kubectl_candidates(line, text)
        return self._candidates[state] if state < len(self._candidates) else None

    def _kubectl_candidates(self, line: str, text: str) -> list[str]:
        words = line.split()
        if not words or (len(words) == 1 and not line.endswith(" ")):
            return [w + " " for w in ("kubectl", *commands.BUILTINS) if w.startswith(text)]
        if words[0] != commands.PROGRAM:
            return []
        args = words[1:] if line.endswith(" ") else words[1:-1]
        verdict = commands.judge(" ".join([commands.PROGRAM, *args]), self.files) if args else None
        if verdict is not None and verdict.refused:
            return []
        try:
            out = subprocess.run([self.kubectl, "__complete", *args, text], capture_output=True, text=True,
                                 timeout=5, cwd=self.files)
        except (OSError, subprocess.TimeoutExpired):
            return []
        found = [c.split("\t", 1)[0] for c in out.stdout.splitlines() if c and not c.startswith(":")]
        return [c + ("" if c.endswith("=") else " ") for c in found if c.startswith(text)]

    def run_line(self, line: str) -> bool:
        """Judge and run one line; False once the session should end."""
        verdict = commands.judge(line, self.files)
        if verdict.builtin in ("exit", "logout"):
            return False
        if verdict.builtin == "help":
            print(HELP, end="")
            return True
        if verdict.builtin == "clear":
            print("\x1b[H\x1b[2J", end="", flush=True)
            return True
        if verdict.builtin:
            return True
        if verdict.refused:
            print(f"kubegate: refused: {verdict.refused}", flush=True)
            self.report(kind="refused", line=line, why=verdict.refused)
            return True
        if verdict.risk and not self._approved(line, verdict.risk):
            return True
        self.report(kind="command", line=line, argv=list(verdict.argv), risk=list(verdict.risk))
        try:
            code = subprocess.run([self.kubectl, *verdict.argv], cwd=self.files).returncode
        except OSError as e:
            print(f"kubegate: kubectl cannot run: {e.strerror}", flush=True)
            code = 127
        except KeyboardInterrupt:
            code = 130
        self.report(kind="finished", line=line, exit=code)
        return True


    def _approved(self, line: str, risk: tuple[str, ...]) -> bool:
        """A risky line waits for a second person: the server opens a ticket and says how it ends."""
        if self.replies is None:
            print("kubegate: refused: this command needs a second person's approval, which is not available here",
                  flush=True)
            return False
        self.report(kind="approval", line=line, risk=list(risk))
        try:
            while True:
                reply = json.loads(self.replies.readline() or '{"decision": "error", "why": "the server went away"}')
                if reply.get("ticket"):
                    print(f"kubegate: waiting for approval — ticket {reply['ticket']} ({', '.join(risk)}); an approver "
                          f"runs `kubegate approvals approve {reply['ticket']}` or uses the webshell's approvals page. "
                          "Ctrl-C gives up.", flush=True)
                    continue
                decision, by = reply.get("decision"), reply.get("by", "")
                if decision == "approved":
                    print(f"kubegate: approved by {by}; running it", flush=True)
                    return True
                if decision == "denied":
                    print(f"kubegate: denied by {by}; not run", flush=True)
                else:
                    print(f"kubegate: not run: {reply.get('why', decision)}", flush=True)
                return False
        except KeyboardInterrupt:
            print("\nkubegate: gave up waiting; not run", flush=True)
            self.report(kind="approval-cancelled", line=line)
            return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubegate-rshell")
    p.add_argument("--kubectl", required=True)
    p.add_argument("--files", required=True, type=Path)
    p.add_argument("--cluster", required=True)
    p.add_argument("--namespace", default="")
    p.add_argument("--user", default="")
    p.add_argument("--control-fd", type=int, default=-1)
    p.add_argument("--reply-fd", type=int, default=-1)
    args = p.parse_args(argv)
    control = os.fdopen(args.control_fd, "w", buffering=1) if args.control_fd >= 0 else None
    replies = os.fdopen(args.reply_fd, "r") if args.reply_fd >= 0 else None
    shell = Shell(args.kubectl, args.files, control, replies)
    os.chdir(args.files)
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)  # no job control: nothing to background into
    try:
        import readline

        readline.set_completer(shell.complete)
        readline.set_completer_delims(" \t=")
        readline.parse_and_bind("tab: complete")
        history = Path.home() / ".kubegate_history"
        readline.set_history_length(1000)
    except ImportError:
        history = None
    where = args.cluster + (f" ({args.namespace})" if args.namespace else "")
    print(f"kubegate webshell: {args.user or 'you'} on cluster {where}. Only kubectl runs here; `help` tells more.",
          flush=True)
    prompt = f"\x01\x1b[1;34m\x02{args.user}@{where}\x01\x1b[0m\x02 $ "
    while True:
        try:
            line = input(prompt)
        except EOFError:
            print()
            break
        except KeyboardInterrupt:
            print()
            continue
        try:
            if not shell.run_line(line):
                break
        except Exception as e:  # the shell survives anything a line does to it
            print(f"kubegate: internal error: {type(e).__name__}", flush=True)
            shell.report(kind="error", line=line, error=type(e).__name__)
    if history is not None:
        try:
            readline.write_history_file(history)
        except OSError:
            pass
    shell.report(kind="exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
