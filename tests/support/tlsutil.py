"""Self-signed certificates made at test time (the `cryptography` package)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_self_signed(directory: Path, passphrase: Optional[bytes] = None) -> tuple[Path, Path]:
    """Writes cert.pem and key.pem for localhost/127.0.0.1 into directory; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    encryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, encryption)
    )
    return cert_path, key_path


class Issued:
    """A key and its certificate, PEM files on disk, and the objects for signing others."""

    def __init__(self, cert_path: Path, key_path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey):
        self.cert_path = cert_path
        self.key_path = key_path
        self.certificate = certificate
        self.key = key


def issue(
    directory: Path,
    name: str,
    *,
    hostnames: tuple = (),
    issuer: Optional[Issued] = None,
    is_ca: bool = False,
) -> Issued:
    """Writes <name>.pem and <name>.key into directory: a certificate with common name `name`
    and DNS names `hostnames`, signed by issuer (self-signed without one); is_ca makes it a CA
    that may sign others (tests of client certificates, SNI with several certificates)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if hostnames:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hostnames]), critical=False)
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    certificate = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
    )
    return Issued(cert_path, key_path, certificate, key)


def common_name(der: bytes) -> str:
    """The common name of a DER certificate (what ssl's getpeercert(binary_form=True) gives)."""
    certificate = x509.load_der_x509_certificate(der)
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
