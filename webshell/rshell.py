"""The webshell's restricted shell: the one program a browser terminal runs, in a PTY.

    python -m kubegate.webshell.rshell --sandbox JSON --session DIR --cluster NAME [--namespace NS]
                                       [--user NAME] [--control-fd N] [--reply-fd N]

It reads a line (with line editing, history and kubectl's own tab completion through
`kubectl __complete`), judges it (`commands.judge`), and runs kubectl in the terminal's sandbox
(`sandbox.Sandbox`: only kubectl, the session's kubeconfig and files exist there). A refused line
is answered with one clear line. Each line's fate goes to the server as a JSON line on the control
descriptor, which audits it.

A change the gateway holds for a second person fails with the ticket's number; the shell then asks
the server which tickets its session's command opened, shows them, waits for their decision (Ctrl-C
withdraws them) and, once approved, runs the same command again: the identical request passes once.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from kubegate.webshell import commands
from kubegate.webshell.sandbox import Sandbox

ROUNDS = 8  # approvals one line may wait for in turn (a drain: the cordon, then its evictions)

HELP = """\
Only kubectl runs here, as you, on the cluster you picked, through the gateway: every command is
authorized, risk-gated and audited like any other kubectl. What is not available: other programs,
pipes, redirections, variables, substitutions, wildcards, flags that change who kubectl is or where it
connects, flags kubectl has that the webshell does not know to be safe, kubectl config/edit/
port-forward/proxy and plugins. Files (-f, --from-file, kubectl cp) live in this session's own
directory, which ends with the session. A change that needs a second person waits for one here.

  kubectl get pods              what runs here
  kubectl auth can-i --list     what you may do
  <Tab>                         completes kubectl commands, resources and names
  clear, exit                   clear the screen, end the session
"""


class Shell:
    def __init__(self, sandbox: Sandbox, session: Path, control: IO[str] | None, replies: IO[str] | None = None,
                 *, check_arguments: bool = True) -> None:
        self.sandbox, self.session, self.control, self.replies = sandbox, session, control, replies
        self.files = session / "files"
        self.check_arguments = check_arguments  # off only in the containment tests: the sandbox alone
        self._asked = 0

    def report(self, **message: Any) -> None:
        if self.control is not None:
            try:
                self.control.write(json.dumps(message) + "\n")
                self.control.flush()
            except OSError:
                pass

    def ask(self, **message: Any) -> dict[str, Any]:
        """Ask the server and wait for its answer to this question (older answers are skipped)."""
        if self.replies is None:
            return {"error": "the server is not listening"}
        self._asked += 1
        self.report(**message, n=self._asked)
        while True:
            line = self.replies.readline()
            if not line:
                return {"error": "the server went away"}
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if answer.get("n") == self._asked:
                return dict(answer)

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
            out = subprocess.run(self.sandbox.command(self.session, ["__complete", *args, text]), capture_output=True,
                                 text=True, timeout=5, cwd=self.files)
        except (OSError, subprocess.TimeoutExpired):
            return []
        found = [c.split("\t", 1)[0] for c in out.stdout.splitlines() if c and not c.startswith(":")]
        return [c + ("" if c.endswith("=") else " ") for c in found if c.startswith(text)]

    def judge(self, line: str) -> commands.Verdict:
        if self.check_arguments or line.strip() in ("", *commands.BUILTINS):
            return commands.judge(line, self.files)
        try:  # the containment tests: any kubectl arguments at all, the sandbox the only wall
            words = shlex.split(line)
        except ValueError as e:
            return commands.Verdict(refused=f"the line cannot be read: {e}")
        if words[0] != commands.PROGRAM:
            return commands.Verdict(refused="only `kubectl` runs here")
        return commands.Verdict(argv=tuple(words[1:]))

    def run_line(self, line: str) -> bool:
        """Judge and run one line; False once the session should end."""
        verdict = self.judge(line)
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
        for _ in range(ROUNDS):
            self._kubectl(line, verdict)
            # Asked after every command: an exit status does not tell (a command refused in part
            # may still exit 0), and one question to the gateway per typed line costs nothing.
            if not self._approved(line):
                break
        return True

    def _kubectl(self, line: str, verdict: commands.Verdict) -> int:
        self.report(kind="command", line=line, argv=list(verdict.argv), command=verdict.command)
        try:
            code = subprocess.run(self.sandbox.command(self.session, list(verdict.argv)), cwd=self.files).returncode
        except OSError as e:
            print(f"kubegate: kubectl cannot run: {e.strerror}", flush=True)
            code = 127
        except KeyboardInterrupt:
            code = 130
        self.report(kind="finished", line=line, exit=code)
        return code

    def _approved(self, line: str) -> bool:
        """After a command: did it open approval tickets at the gateway? If so, wait for them;
        True once every one is approved (run the command again), False otherwise. Ctrl-C at any
        point withdraws them (those not shown yet too: the server knows which are new)."""
        shown: list[str] = []
        try:
            answer = self.ask(kind="tickets", line=line)
            tickets = answer.get("tickets") or []
            if not tickets:
                if answer.get("error"):
                    print(f"kubegate: cannot tell whether this needs approval: {answer['error']}", flush=True)
                return False
            shown = [str(t["id"]) for t in tickets]
            for t in tickets:
                print(f"kubegate: waiting for approval — ticket {t['id']} ({'; '.join(t.get('reasons') or [])}); an "
                      f"approver runs `kubegate approvals approve {t['id']}` or uses the webshell's approvals page. "
                      "Ctrl-C withdraws it.", flush=True)
            answer = self.ask(kind="await", tickets=shown, line=line)
        except KeyboardInterrupt:
            self.report(kind="withdraw", tickets=shown, line=line)
            print("\nkubegate: gave up waiting; the ticket is withdrawn and nothing more runs", flush=True)
            return False
        decision, by = answer.get("decision"), answer.get("by", "")
        if decision == "approved":
            print(f"kubegate: approved by {by}; running it again", flush=True)
            return True
        if decision == "denied":
            print(f"kubegate: denied by {by}; not run", flush=True)
        else:
            print(f"kubegate: not run: {answer.get('why') or answer.get('error') or decision}", flush=True)
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubegate-rshell")
    p.add_argument("--sandbox", required=True, help="the sandbox, as Sandbox.to_json writes it")
    p.add_argument("--session", required=True, type=Path, help="the session's directory")
    p.add_argument("--no-argument-check", action="store_true", help="containment tests only: the sandbox alone")
    p.add_argument("--cluster", required=True)
    p.add_argument("--namespace", default="")
    p.add_argument("--user", default="")
    p.add_argument("--control-fd", type=int, default=-1)
    p.add_argument("--reply-fd", type=int, default=-1)
    args = p.parse_args(argv)
    control = os.fdopen(args.control_fd, "w", buffering=1) if args.control_fd >= 0 else None
    replies = os.fdopen(args.reply_fd, "r") if args.reply_fd >= 0 else None
    shell = Shell(Sandbox.from_json(args.sandbox), args.session, control, replies,
                  check_arguments=not args.no_argument_check)
    os.chdir(shell.files)
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
        except KeyboardInterrupt:  # Ctrl-C anywhere in a line: back to the prompt
            print(flush=True)
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
