"""The browser libraries the webshell serves, vendored from npm with their licences (no CDN at run
time): `python -m kubegate.webshell.vendor` fetches the pinned versions with `npm pack`, copies
the files below into static/vendor/ and writes static/vendor/manifest.json (versions, SHA-256 of
each file), which tests/webshell checks against the files shipped."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
# npm package@version -> (file in the package, name in static/vendor)
PACKAGES: dict[str, list[tuple[str, str]]] = {
    "@xterm/xterm@6.0.0": [("lib/xterm.js", "xterm.js"), ("css/xterm.css", "xterm.css"),
                           ("LICENSE", "LICENSE.xterm")],
    "@xterm/addon-fit@0.11.0": [("lib/addon-fit.js", "addon-fit.js"), ("LICENSE", "LICENSE.addon-fit")],
    "asciinema-player@3.18.0": [("dist/bundle/asciinema-player.min.js", "asciinema-player.min.js"),
                                ("dist/bundle/asciinema-player.css", "asciinema-player.css"),
                                ("LICENSE", "LICENSE.asciinema-player")],
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for package, files in PACKAGES.items():
            out = subprocess.run(["npm", "pack", "--silent", package], cwd=tmp, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"npm pack {package}: {out.stderr.strip()}", file=sys.stderr)
                return 1
            archive = Path(tmp) / out.stdout.strip().splitlines()[-1]
            unpacked = Path(tmp) / archive.stem
            with tarfile.open(archive) as tar:
                tar.extractall(unpacked, filter="data")
            for source, name in files:
                shutil.copyfile(unpacked / "package" / source, VENDOR / name)
                manifest[name] = {"package": package, "file": source, "sha256": digest(VENDOR / name)}
    (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"vendored {len(manifest)} files into {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
