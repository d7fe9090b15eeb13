"""`kubegate demo`: an emulated cluster to try kubectl against, in one command."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from kubegate.emulator import harness


def run(args: argparse.Namespace) -> int:
    state = Path(args.dir or "state/demo").resolve()
    state.mkdir(parents=True, exist_ok=True)
    upstream = harness.start(state / "emulator")
    kubeconfig = upstream.kubeconfig(state / "kubeconfig")
    print(f"emulated cluster: {upstream.url}")
    print(f"\nready. In another terminal:\n\n  export KUBECONFIG={kubeconfig}\n  kubectl get pods -A\n")
    print("Ctrl-C stops the demo.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    upstream.stop()
    return 0
