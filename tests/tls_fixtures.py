"""A throwaway PKI for TLS tests, generated per test session into a tmp directory.

Why generate rather than commit PEM files: committed keys look like leaked secrets to
scanners, and committed certificates expire. Two CAs: the trusted one issues the server
certificate (127.0.0.1 and localhost) and the client certificate `billing-ui`; the
stranger CA issues a client certificate that mutual TLS must refuse.

Generated with `cryptography` when it is importable, else with the `openssl` CLI.
`TLS_FIXTURES_BACKEND=cryptography|openssl` forces one (to test both), `none` neither.
With neither, `make_pki` returns None and the caller skips loudly.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import secrets
import shutil
import ssl
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

KEY_PASSWORD = b"not-a-secret-test-only"
DAYS = 2
Identity = Literal["none", "client", "stranger"]


@dataclass(frozen=True, slots=True)
class Pki:
    """Paths of the generated PEM files (keys unencrypted unless the name says so)."""

    directory: Path
    backend: str
    ca: Path
    server_cert: Path
    server_key: Path
    server_key_encrypted: Path  # the server key under KEY_PASSWORD
    client_cert: Path  # CN=billing-ui, issued by `ca`
    client_key: Path
    stranger_ca: Path
    stranger_cert: Path  # CN=billing-ui too, but issued by `stranger_ca`
    stranger_key: Path

    def client_context(
        self,
        identity: Identity = "none",
        *,
        max_version: ssl.TLSVersion | None = None,
        legacy: bool = False,
    ) -> ssl.SSLContext:
        """A client context trusting the test CA, presenting `identity`'s certificate.

        `legacy` lets the client offer TLS 1.0/1.1 (OpenSSL 3 refuses them below
        security level 0), so a refusal is the server's doing, not the client's.
        """
        context = ssl.create_default_context(cafile=str(self.ca))
        if identity == "client":
            context.load_cert_chain(self.client_cert, self.client_key)
        elif identity == "stranger":
            context.load_cert_chain(self.stranger_cert, self.stranger_key)
        with warnings.catch_warnings():  # TLSVersion.TLSv1/TLSv1_1 are deprecated names
            warnings.simplefilter("ignore", DeprecationWarning)
            if legacy:
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
            if max_version is not None:
                context.maximum_version = max_version
        return context


def available_backend() -> str | None:
    """Which generator this session will use, or None when there is none."""
    forced = os.environ.get("TLS_FIXTURES_BACKEND", "")
    if forced:
        return forced if forced in ("cryptography", "openssl") else None  # "none": see the skip
    if importlib.util.find_spec("cryptography") is not None:
        return "cryptography"
    return "openssl" if shutil.which("openssl") else None


def make_pki(directory: Path) -> Pki | None:
    """Generate every file into `directory`; None if no generator is available."""
    backend = available_backend()
    if backend is None:
        return None
    pki = _paths(directory, backend)
    if backend == "cryptography":
        _CryptographyIssuer(pki).issue_all()
    else:
        _OpensslIssuer(pki).issue_all()
    return pki


def _paths(d: Path, backend: str) -> Pki:
    return Pki(
        directory=d,
        backend=backend,
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        server_key_encrypted=d / "server-encrypted.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        stranger_ca=d / "stranger-ca.pem",
        stranger_cert=d / "stranger.pem",
        stranger_key=d / "stranger.key",
    )


# --- cryptography ------------------------------------------------------------------------


class _CryptographyIssuer:
    """x509 with the `cryptography` package: EC P-256 keys, SHA-256 signatures."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki

    def issue_all(self) -> None:
        p = self.pki
        ca = self._ca("charge-adapter test CA", p.ca)
        stranger = self._ca("stranger test CA", p.stranger_ca)
        server_key = self._leaf("localhost", ca, p.server_cert, p.server_key, server=True)
        self._write_key(server_key, p.server_key_encrypted, KEY_PASSWORD)
        self._leaf("billing-ui", ca, p.client_cert, p.client_key, server=False)
        self._leaf("billing-ui", stranger, p.stranger_cert, p.stranger_key, server=False)

    def _ca(self, cn: str, cert_path: Path) -> tuple[Any, Any]:
        from cryptography import x509

        key = self._key()
        name = self._name(cn)
        builder = (
            self._builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(self._usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        )
        cert = self._sign(builder, key)
        cert_path.write_bytes(self._pem(cert))
        return cert, key

    def _leaf(
        self, cn: str, issuer: tuple[Any, Any], cert_path: Path, key_path: Path, *, server: bool
    ) -> Any:
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        issuer_cert, issuer_key = issuer
        key = self._key()
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(self._name(cn), issuer_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(self._usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
            )
        )
        if server:
            builder = builder.add_extension(self._server_names(), critical=False)
        cert_path.write_bytes(self._pem(self._sign(builder, issuer_key)))
        self._write_key(key, key_path, None)
        return key

    @staticmethod
    def _server_names() -> Any:
        import ipaddress

        from cryptography import x509

        return x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )

    @staticmethod
    def _key() -> Any:
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _name(cn: str) -> Any:
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    @staticmethod
    def _builder(subject: Any, issuer: Any, public_key: Any) -> Any:
        from cryptography import x509

        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=DAYS))
        )

    @staticmethod
    def _usage(*, ca: bool) -> Any:
        from cryptography import x509

        return x509.KeyUsage(
            digital_signature=not ca,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    @staticmethod
    def _sign(builder: Any, key: Any) -> Any:
        from cryptography.hazmat.primitives import hashes

        return builder.sign(key, hashes.SHA256())

    @staticmethod
    def _pem(cert: Any) -> bytes:
        from cryptography.hazmat.primitives import serialization

        data: bytes = cert.public_bytes(serialization.Encoding.PEM)
        return data

    @staticmethod
    def _write_key(key: Any, path: Path, password: bytes | None) -> None:
        from cryptography.hazmat.primitives import serialization

        encryption: Any = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
            )
        )


# --- openssl CLI --------------------------------------------------------------------------


class _OpensslIssuer:
    """The same files with the `openssl` command (1.1.1 or 3.x)."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki

    def issue_all(self) -> None:
        p = self.pki
        self._ca("charge-adapter test CA", p.ca, p.directory / "ca.key")
        self._ca("stranger test CA", p.stranger_ca, p.directory / "stranger-ca.key")
        ca = (p.ca, p.directory / "ca.key")
        stranger = (p.stranger_ca, p.directory / "stranger-ca.key")
        self._leaf("localhost", ca, p.server_cert, p.server_key, server=True)
        self._run(
            "pkey", "-in", p.server_key, "-aes256", "-out", p.server_key_encrypted,
            "-passout", f"pass:{KEY_PASSWORD.decode()}",
        )  # fmt: skip
        self._leaf("billing-ui", ca, p.client_cert, p.client_key, server=False)
        self._leaf("billing-ui", stranger, p.stranger_cert, p.stranger_key, server=False)

    def _ca(self, cn: str, cert: Path, key: Path) -> None:
        self._run(
            "req", "-x509", *self._new_key(key), "-out", cert, "-days", str(DAYS),
            "-subj", f"/CN={cn}", "-sha256",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _leaf(
        self, cn: str, issuer: tuple[Path, Path], cert: Path, key: Path, *, server: bool
    ) -> None:
        csr = cert.with_suffix(".csr")
        ext = cert.with_suffix(".ext")
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid",
        ]
        if server:
            lines.append("subjectAltName=DNS:localhost,IP:127.0.0.1")
        ext.write_text("\n".join(lines) + "\n", encoding="ascii")
        self._run("req", "-new", *self._new_key(key), "-out", csr, "-subj", f"/CN={cn}")
        self._run(
            "x509", "-req", "-in", csr, "-CA", issuer[0], "-CAkey", issuer[1],
            "-set_serial", str(secrets.randbits(63)), "-days", str(DAYS), "-sha256",
            "-extfile", ext, "-out", cert,
        )  # fmt: skip

    @staticmethod
    def _new_key(key: Path) -> list[str | Path]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key]

    @staticmethod
    def _run(*args: str | Path) -> None:
        done = subprocess.run(
            ["openssl", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
