"""The serving certificate kubegate makes for itself names every address users are told to use."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from kubegate.gateway.config import settings as gw_settings
from kubegate.gateway.identity import keys


def test_a_generated_certificate_names_the_public_urls_hosts(tmp_path: Path) -> None:
    cfg = gw_settings.Settings(public_url="https://gate.example.test:8443", state_dir=str(tmp_path / "state"),
                               webshell=gw_settings.Webshell(public_url="https://shell.example.test"))
    made = keys.serving_tls(cfg)
    cert = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"gate.example.test", "shell.example.test", "localhost"} <= set(names)
