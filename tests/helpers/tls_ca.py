"""A throw-away certificate authority made at test time with `cryptography`: a CA, a server
certificate for 127.0.0.1/localhost, and client certificates (good, from another CA, expiring)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """PEM files of one certificate and its key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TestCA:
    """A CA with its files; ``issue`` makes leaf certificates signed by it."""

    __test__ = False  # not a pytest test class, despite the name

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    folder: Path

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        days: float = 30,
        not_before_days: float = -1,
        sans: Sequence[x509.GeneralName] = (),
        more_common_names: Sequence[str] = (),
        label: str | None = None,
    ) -> Issued:
        """A certificate for ``common_name`` (server: SANs 127.0.0.1, ::1, localhost).

        A client certificate gets ``sans`` as its SAN extension, and ``more_common_names`` as
        further CN attributes of its subject; ``label`` names its files (default: the CN).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn)
                for cn in (common_name, *more_common_names)
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=not_before_days))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            ).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
            if sans:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(list(sans)), critical=False
                )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = self.folder / f"{self.name}-{label or common_name}"
        return Issued(_write_cert(cert, stem.with_suffix(".crt")), _write_key(key, stem))


def make_ca(folder: Path, name: str = "test-ca") -> TestCA:
    """A self-signed CA written to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mm7 {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = _write_cert(cert, folder / f"{name}.crt")
    return TestCA(name, cert, key, path, folder)


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(key: ec.EllipticCurvePrivateKey, stem: Path) -> Path:
    path = stem.with_suffix(".key")
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path
