"""`python -m kubegate.emulator`: run the emulated cluster in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from . import harness


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubegate.emulator",
                                     description="Run the Kubernetes API emulator (for tests and demos).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write its CA, certificates and kubeconfig (default: a temp dir)")
    parser.add_argument("--kubeconfig", type=Path, default=None,
                        help="kubeconfig to write (default: DIR/kubeconfig), admin credentials")
    parser.add_argument("--controllers", action="store_true",
                        help="workloads own ReplicaSets and pods, as the controllers would leave them (controllers.py)")
    args = parser.parse_args(argv)
    running = harness.start(args.dir, port=args.port, controllers=args.controllers)
    kubeconfig = running.kubeconfig(args.kubeconfig or running.directory / "kubeconfig")
    print(f"emulator listening on {running.url}", flush=True)
    print(f"kubeconfig: {kubeconfig}", flush=True)
    print(f"  export KUBECONFIG={kubeconfig}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
