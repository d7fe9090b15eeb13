"""Key material the gateway makes for itself when the operator provides none.

Generated once into state_dir/tls and reused on every start, so kubeconfigs and tokens
handed out stay valid across restarts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kubegate import pki

from ..config.settings import Settings


@dataclass(frozen=True)
class ServingTls:
    cert_file: Path  # leaf + chain
    key_file: Path
    ca_file: Path    # what clients trust (written into kubeconfigs)
    bundle_file: Path  # leaf, chain and key in one PEM, the form mitmproxy's `certs` option takes


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class MissingKeys(Exception):
    """A command that only reads the gateway's keys found none: it must not invent new ones."""


def certificate_hosts(settings: Settings) -> list[str]:
    """What a generated serving certificate names: tls.hosts, and the hosts of public_url and the
    webshell's public_url (the addresses users are told to use)."""
    hosts = list(settings.tls.hosts)
    for url in (settings.public_url, settings.webshell.public_url):
        host = urlsplit(url).hostname if url else None
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def serving_tls(settings: Settings, *, create: bool = True) -> ServingTls:
    if not create and not settings.tls.cert_file and not (settings.state / "tls" / "ca.crt").exists():
        raise MissingKeys(f"no gateway CA in {settings.state / 'tls'}: run this where the gateway keeps its "
                          "state_dir, or configure tls.cert_file")
    tls_dir = _private_dir(settings.state / "tls")
    bundle = tls_dir / "serving-bundle.pem"
    if settings.tls.cert_file:
        cert = settings.path(settings.tls.cert_file)
        key = settings.path(settings.tls.key_file)
        ca = cert  # an operator-provided chain: clients trust whatever signed it
    else:
        ca, cert, key = tls_dir / "ca.crt", tls_dir / "serving.crt", tls_dir / "serving.key"
        if not (ca.exists() and cert.exists() and key.exists()):
            authority = pki.make_ca("kubegate-ca")
            leaf = pki.make_leaf(authority, "kubegate", certificate_hosts(settings))
            authority.write(ca, tls_dir / "ca.key")
            leaf.write(cert, key)
    wanted = cert.read_bytes().rstrip(b"\n") + b"\n" + key.read_bytes()
    # Every worker (and a command such as `kubegate kubeconfig`) comes here while others may be
    # loading the bundle: rewrite it only when it changes, and whole.
    if not bundle.exists() or bundle.read_bytes() != wanted:
        pki.write_atomically(bundle, wanted)
    return ServingTls(cert, key, ca, bundle)


def signing_key_pem(settings: Settings, *, create: bool = True) -> bytes:
    """The token-signing key; generated on first use by the gateway (`create`), never by a
    command that merely issues tokens: a fresh key would sign tokens the gateway rejects."""
    if settings.issuer.signing_key_file:
        return settings.path(settings.issuer.signing_key_file).read_bytes()
    if not create and not (settings.state / "tls" / "token-signing.key").exists():
        raise MissingKeys(f"no token-signing key in {settings.state / 'tls'}: run this where the gateway keeps "
                          "its state_dir, or configure issuer.signing_key_file")
    path = _private_dir(settings.state / "tls") / "token-signing.key"
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pki.write_atomically(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return path.read_bytes()


def certificate_expiry(path: Path) -> float:
    """When the first certificate in PATH (PEM) expires, as Unix time."""
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()
