"""The `kubegate` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from kubegate import __version__

Handler = Callable[[argparse.Namespace], int]


def _emulator(args: argparse.Namespace) -> int:
    from kubegate.emulator.__main__ import main as emulator_main

    forwarded = ["--port", str(args.port)] + (["--dir", str(args.dir)] if args.dir else [])
    return emulator_main(forwarded)


def _demo(args: argparse.Namespace) -> int:
    from kubegate import demo

    return demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubegate",
        description="A change risk-gating gateway in front of kube-apiserver: authenticates, "
                    "authorizes and risk-gates every API call, forwards what is allowed under "
                    "impersonation, and audits everything.",
    )
    parser.add_argument("--version", action="version", version=f"kubegate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run an emulated cluster behind kubegate and print a kubeconfig")
    demo.add_argument("--dir", default=None, help="state directory (default: ./state/demo)")
    demo.set_defaults(handler=_demo)

    emu = sub.add_parser("emulator", help="run only the Kubernetes API emulator (tests, demos)")
    emu.add_argument("--port", type=int, default=0)
    emu.add_argument("--dir", default=None)
    emu.set_defaults(handler=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if argv is None and len(sys.argv) <= 1 else 2
    return handler(args)
