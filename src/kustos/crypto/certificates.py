"""X.509 for rotation: read a certificate's facts, check an issuer CA, issue a leaf.

``certificate_facts`` reads what planning needs from the certificate itself (validity,
names, CA flag, serial), so an expiring certificate is found whoever issued it and
whatever the status says. ``renewal_time`` follows cert-manager: renew ``renewBefore``
ahead of expiry, by default at two thirds of the lifetime actually issued.

``load_issuer`` refuses a CA Secret that cannot sign (not a CA, key not matching the
certificate, expired) with a message naming the Secret, never its material;
``issue_leaf`` signs a serving/client certificate with it. ``make_self_signed_ca`` makes
a CA for tests and the demo.

Pure: no I/O. Key generation uses the operating system's random source through
``cryptography`` (it offers no way to inject one); serial numbers come from the caller's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kustos.errors import InputError, InvalidSpecError
from kustos.sensitive import Sensitive

#: A leaf starts this long before "now", so clocks a little behind still accept it.
BACKDATE: Final = dt.timedelta(minutes=5)
_PEM_CERT: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL
)
# A DNS name as certificates carry it: ASCII labels (A-labels for IDNs), optional "*." first.
_DNS_NAME: Final = re.compile(
    r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$",
    re.IGNORECASE,
)

KeyAlgorithm = Literal["ecdsa-p256", "rsa-2048"]


class CertificateError(InputError):
    """Bytes that should hold a PEM certificate do not."""


class InvalidIssuerError(InvalidSpecError):
    """The CA Secret named in ``x509.issuer`` cannot sign; the message names the Secret."""


@dataclass(frozen=True, slots=True)
class CaMaterial:
    """A CA as read from its Secret: ``tls.crt`` (PEM, issuing certificate first) and key."""

    cert_pem: bytes = field(repr=False)
    key_pem: Sensitive


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What rotation needs to know about a certificate (no key material)."""

    not_before: dt.datetime
    not_after: dt.datetime
    subject_cn: str | None
    dns_names: tuple[str, ...]
    is_ca: bool
    serial_hex: str

    @property
    def lifetime(self) -> dt.timedelta:
        """``not_after - not_before``."""
        return self.not_after - self.not_before


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA checked by :func:`load_issuer`, ready to sign."""

    name: str  # the CA Secret's name, for messages
    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes = field(repr=False)
    bundle: tuple[x509.Certificate, ...]  # every certificate of tls.crt, issuing one first


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A leaf: its chain (leaf first), its private key (PKCS#8) and the CA to trust."""

    chain_pem: bytes
    key_pem: Sensitive
    ca_pem: bytes


# --------------------------------------------------------------------------- reading
def _certificates(pem: bytes) -> list[x509.Certificate]:
    out = []
    for block in _PEM_CERT.finditer(pem):
        try:
            out.append(x509.load_pem_x509_certificate(block.group(0)))
        except ValueError as exc:
            raise CertificateError("a PEM CERTIFICATE block cannot be parsed") from exc
    return out


def _first_certificate(pem: bytes) -> x509.Certificate:
    certs = _certificates(pem)
    if not certs:
        raise CertificateError("no PEM certificate found")
    return certs[0]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _may_sign_certificates(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True  # no keyUsage: every use is allowed (RFC 5280, 4.2.1.3)


def _facts(cert: x509.Certificate) -> CertFacts:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns_names = ()
    return CertFacts(
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject_cn=str(cns[0].value) if cns else None,
        dns_names=dns_names,
        is_ca=_is_ca(cert),
        serial_hex=format(cert.serial_number, "x"),
    )


def certificate_facts(pem: bytes) -> CertFacts:
    """The facts of the first certificate in a PEM bundle; ``CertificateError`` if none."""
    return _facts(_first_certificate(pem))


def renewal_time(facts: CertFacts, renew_before: dt.timedelta | None) -> dt.datetime:
    """When to renew: *renew_before* ahead of expiry, else at 2/3 of the lifetime.

    As cert-manager, a *renew_before* not shorter than the lifetime actually issued (a CA
    that shortened it, say) falls back to the default instead of renewing at once forever.
    """
    lifetime = facts.lifetime
    if renew_before is None or renew_before >= lifetime:
        return facts.not_after - lifetime / 3
    return facts.not_after - renew_before


def expires_within(facts: CertFacts, now: dt.datetime, delta: dt.timedelta) -> bool:
    """True if the certificate has expired at *now* or expires within *delta* of it."""
    return facts.not_after <= now + delta


# --------------------------------------------------------------------------- issuing
def _public_der(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_issuer(name: str, material: CaMaterial, *, now: dt.datetime) -> Issuer:
    """Check that the CA Secret *name* can sign at *now*; ``InvalidIssuerError`` if not."""
    where = f"CA Secret {name}"
    try:
        bundle = _certificates(material.cert_pem)
    except CertificateError:
        raise InvalidIssuerError(f"{where}: tls.crt holds a malformed certificate") from None
    if not bundle:
        raise InvalidIssuerError(f"{where}: tls.crt holds no PEM certificate")
    cert = bundle[0]
    if not _is_ca(cert):
        raise InvalidIssuerError(
            f"{where}: its certificate is not a CA (basicConstraints ca is not true)"
        )
    if not _may_sign_certificates(cert):
        raise InvalidIssuerError(f"{where}: its certificate's keyUsage lacks keyCertSign")
    try:
        key = serialization.load_pem_private_key(material.key_pem.reveal(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # Not chained: the library's message is about the key bytes, keep it out of logs.
        raise InvalidIssuerError(
            f"{where}: tls.key is not an unencrypted PEM private key"
        ) from None
    if not isinstance(
        key,
        rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):  # fmt: skip
        raise InvalidIssuerError(f"{where}: tls.key is not an RSA, ECDSA or EdDSA key")
    cert_public = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if _public_der(key) != cert_public:
        raise InvalidIssuerError(f"{where}: tls.key does not match the certificate in tls.crt")
    if cert.not_valid_after_utc <= now:
        raise InvalidIssuerError(
            f"{where}: the CA certificate expired at {cert.not_valid_after_utc.isoformat()}"
        )
    return Issuer(name=name, certificate=cert, key=key, bundle=tuple(bundle))


def _signing_hash(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # EdDSA signs the message itself; RSA and ECDSA sign a SHA-256 digest.
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def _leaf_key(algorithm: KeyAlgorithm) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if algorithm == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def check_dns_names(names: Sequence[str]) -> list[int]:
    """Indexes of *names* that are not DNS names a certificate can carry."""
    return [i for i, n in enumerate(names) if len(n) > 253 or not _DNS_NAME.match(n)]


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # A CA signs certificates and CRLs; a leaf signs handshakes and, with RSA, unwraps keys.
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: Issuer) -> x509.AuthorityKeyIdentifier:
    # Copy the CA's own identifier when it has one: path building matches them byte for byte.
    try:
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def issue_leaf(
    issuer: Issuer,
    *,
    common_name: str,
    dns_names: Sequence[str],
    now: dt.datetime,
    lifetime: dt.timedelta,
    serial: int,
    key_algorithm: KeyAlgorithm = "ecdsa-p256",
) -> IssuedCertificate:
    """Sign a TLS server and client certificate for *common_name* and *dns_names*.

    Valid from ``now - BACKDATE`` for *lifetime*, but never past the CA's own expiry (a
    leaf outliving its CA would stop verifying anyway; renewal then reads the shorter
    lifetime from the certificate). The chain holds the leaf and any intermediate CAs of
    the issuer's ``tls.crt``; the CA to trust is the bundle's last certificate.
    """
    if not 0 < serial < 2**159:
        raise ValueError("serial must be positive and fit in 20 octets")
    key = _leaf_key(key_algorithm)
    ca = issuer.certificate
    not_before = now - BACKDATE
    not_after = min(now + lifetime, ca.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    leaf = builder.sign(issuer.key, _signing_hash(issuer.key))
    intermediates = [c for c in issuer.bundle if not _self_issued(c)]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return IssuedCertificate(
        chain_pem=b"".join(_pem(c) for c in [leaf, *intermediates]),
        key_pem=Sensitive(key_pem),
        ca_pem=_pem(issuer.bundle[-1]),
    )


def make_self_signed_ca(common_name: str, now: dt.datetime, days: int) -> CaMaterial:
    """A fresh self-signed ECDSA P-256 CA valid from ``now - BACKDATE`` for *days* days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CaMaterial(_pem(cert), Sensitive(key_pem))
