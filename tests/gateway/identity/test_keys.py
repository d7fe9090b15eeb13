"""The serving certificate kubegate makes for itself names every address users are told to use, and
is written so that processes reading it meanwhile never see a part."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from cryptography import x509

from kubegate import pki

from kubegate.gateway.config import settings as gw_settings
from kubegate.gateway.identity import keys


def test_a_generated_certificate_names_the_public_urls_hosts(tmp_path: Path) -> None:
    cfg = gw_settings.Settings(public_url="https://gate.example.test:8443", state_dir=str(tmp_path / "state"),
                               webshell=gw_settings.Webshell(public_url="https://shell.example.test"))
    made = keys.serving_tls(cfg)
    cert = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"gate.example.test", "shell.example.test", "localhost"} <= set(names)


def test_workers_loading_the_serving_bundle_never_read_a_part_of_it(tmp_path: Path) -> None:
    """Each worker of `serve --workers N` (and `kubegate kubeconfig`) asks for the serving TLS while
    the others load the bundle mitmproxy reads: it is rewritten only when it changes, and whole."""
    cfg = gw_settings.Settings(state_dir=str(tmp_path / "state"))
    first = keys.serving_tls(cfg)
    before = first.bundle_file.stat()
    assert stat.S_IMODE(before.st_mode) == 0o600
    again = keys.serving_tls(cfg)  # a second worker: nothing to change, so nothing written
    assert again.bundle_file.stat().st_ino == before.st_ino and again.bundle_file.stat().st_mtime_ns == before.st_mtime_ns
    key = first.key_file.read_bytes()
    x509.load_pem_x509_certificate(first.bundle_file.read_bytes())
    assert first.bundle_file.read_bytes().endswith(key)


def test_a_file_written_atomically_is_seen_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "bundle.pem"
    versions = [b"A" * 200_000, b"B" * 300_000]
    pki.write_atomically(target, versions[0])
    stop = threading.Event()

    def rewrite() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            pki.write_atomically(target, versions[n % 2])
            n += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        seen = {target.read_bytes() for _ in range(400)}
    finally:
        stop.set()
        writer.join(30)
    assert seen <= set(versions)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.pem"]  # no temporary file left beside it
