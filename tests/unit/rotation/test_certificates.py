"""Certificates: facts read from PEM, renewal times, expiry, and the test CA maker.

Aspects covered:
- ``certificate_facts`` reads validity, common name, DNS names, the CA flag and the
  serial of the first certificate of a bundle; text without a certificate, or with a
  broken one, is an ``InputError``;
- ``renewal_time``: two thirds of the lifetime by default (cert-manager), ``renewBefore``
  ahead of expiry when given, the default again when ``renewBefore`` is not shorter than
  the lifetime actually issued;
- ``expires_within``: expired, expiring inside the delta, and the boundary;
- ``make_self_signed_ca``: a CA that signs, verifies itself and whose key matches; its
  repr shows no key; ``load_issuer`` accepts it and ``issue_leaf`` checks serials;
- ``check_dns_names`` accepts host names and wildcards and flags the rest.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kustos.crypto.certificates import (
    BACKDATE,
    CaMaterial,
    CertFacts,
    CertificateError,
    certificate_facts,
    check_dns_names,
    expires_within,
    issue_leaf,
    load_issuer,
    make_self_signed_ca,
    renewal_time,
)
from kustos.errors import InputError

NOW = dt.datetime(2025, 6, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CaMaterial:
    """A CA valid for a year from NOW."""
    return make_self_signed_ca("Facts CA", NOW, 365)


def leaf_pem(ca: CaMaterial, *, serial: int = 0xABC123, days: int = 90) -> bytes:
    """A leaf for ``web`` signed by *ca*."""
    issued = issue_leaf(
        load_issuer("ca", ca, now=NOW),
        common_name="web",
        dns_names=["web.default.svc", "web.test"],
        now=NOW,
        lifetime=dt.timedelta(days=days),
        serial=serial,
    )
    return issued.chain_pem


def facts(not_before: dt.datetime, not_after: dt.datetime) -> CertFacts:
    """Facts with only a validity period."""
    return CertFacts(not_before, not_after, None, (), is_ca=False, serial_hex="1")


# --------------------------------------------------------------------------- facts
def test_facts_of_a_leaf(ca: CaMaterial) -> None:
    read = certificate_facts(leaf_pem(ca))
    assert read == CertFacts(
        not_before=NOW - BACKDATE,
        not_after=NOW + dt.timedelta(days=90),
        subject_cn="web",
        dns_names=("web.default.svc", "web.test"),
        is_ca=False,
        serial_hex="abc123",
    )
    assert read.lifetime == dt.timedelta(days=90) + BACKDATE


def test_facts_of_the_first_certificate_of_a_bundle(ca: CaMaterial) -> None:
    bundle = b"# comment line\n" + ca.cert_pem + leaf_pem(ca)
    read = certificate_facts(bundle)
    assert read.is_ca
    assert read.subject_cn == "Facts CA"
    assert read.dns_names == ()
    assert read.not_after == NOW + dt.timedelta(days=365)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a certificate",
        b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    ],
)
def test_text_without_a_certificate_is_an_input_error(pem: bytes) -> None:
    with pytest.raises(CertificateError) as caught:
        certificate_facts(pem)
    assert isinstance(caught.value, InputError)


# --------------------------------------------------------------------------- renewal
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_default_renewal_at_two_thirds_of_the_lifetime() -> None:
    cert = facts(START, START + dt.timedelta(days=90))
    assert renewal_time(cert, None) == START + dt.timedelta(days=60)


def test_renew_before_counts_back_from_expiry() -> None:
    cert = facts(START, START + dt.timedelta(days=90))
    assert renewal_time(cert, dt.timedelta(days=7)) == START + dt.timedelta(days=83)


@pytest.mark.parametrize("before", [dt.timedelta(days=30), dt.timedelta(days=45)])
def test_renew_before_not_shorter_than_the_lifetime_falls_back(before: dt.timedelta) -> None:
    # A CA issued 30 days when 90 were asked: renewBefore 30d would renew at once forever.
    cert = facts(START, START + dt.timedelta(days=30))
    assert renewal_time(cert, before) == START + dt.timedelta(days=20)


def test_expires_within() -> None:
    cert = facts(START, START + dt.timedelta(days=90))
    expiry = START + dt.timedelta(days=90)
    month = dt.timedelta(days=30)
    assert not expires_within(cert, START, month)
    assert not expires_within(cert, expiry - month - dt.timedelta(seconds=1), month)
    assert expires_within(cert, expiry - month, month)
    assert expires_within(cert, expiry - dt.timedelta(days=1), month)
    assert expires_within(cert, expiry + dt.timedelta(days=1), dt.timedelta(0))


# --------------------------------------------------------------------------- CA
def test_self_signed_ca_signs_and_verifies(ca: CaMaterial) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_before_utc == NOW - BACKDATE
    key = serialization.load_pem_private_key(ca.key_pem.reveal(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    leaf = x509.load_pem_x509_certificate(leaf_pem(ca))
    leaf.verify_directly_issued_by(cert)


def test_ca_material_repr_shows_no_key(ca: CaMaterial) -> None:
    shown = repr(ca)
    assert "Sensitive(***)" in shown
    for line in ca.key_pem.reveal().splitlines():
        assert line.decode() not in shown


def test_two_cas_differ() -> None:
    first, second = make_self_signed_ca("a", NOW, 1), make_self_signed_ca("a", NOW, 1)
    assert first.cert_pem != second.cert_pem
    assert first.key_pem != second.key_pem


@pytest.mark.parametrize("serial", [0, -1, 2**159])
def test_issue_leaf_refuses_serials_outside_x509_bounds(ca: CaMaterial, serial: int) -> None:
    with pytest.raises(ValueError, match="serial"):
        leaf_pem(ca, serial=serial)


def test_check_dns_names() -> None:
    names = [
        "web",
        "web.default.svc.cluster.local",
        "*.apps.test",
        "xn--bcher-kva.example",
        "bad name",
        "under_score.test",
        "*",
        "a.*.test",
        "-lead.test",
        "bücher.example",
        "a" * 64 + ".test",
        "",
    ]
    assert check_dns_names(names) == list(range(4, len(names)))
