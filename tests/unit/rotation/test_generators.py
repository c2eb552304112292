"""Generators: what each ``spec.data`` generator produces, and what it refuses.

Aspects covered:
- every key of ``produced_keys`` is returned, each as ``Sensitive``, in that order;
- password: length, alphabet, at least one character of each chosen class and none
  excluded, over many seeds and lengths; still guaranteed when the source is rigged;
  exclusions that empty a class are refused naming the field; character frequencies
  are uniform (chi-square over 20,000 characters); same seed, same password;
- token: byte counts and the three encodings (base64 padded, base64url unpadded);
- uuid: canonical form, version 4 and RFC 4122 variant bits;
- sshKeypair: ed25519 and rsa keys load back with ``cryptography``, the public key
  matches the private one and carries the comment; a multi-line comment is refused;
- x509: the leaf verifies against the CA (issuer, signature, SANs, validity, usages,
  key pair), RSA leaves, intermediate CAs (chain and trust anchor), a lifetime capped
  at the CA's expiry, fresh serials; unusable CAs refused naming the issuer Secret;
- template: placeholders with or without spaces, templates using templates, unknown
  keys and cycles refused naming the keys, ``check_references``;
- dockerConfig: the JSON document, its ``auth`` field, ``usernameFrom``, ``email``;
- postgresRole: the chosen role under ``usernameKey``, nested password settings, a role
  the generator does not own refused;
- previous values: a random value equal to the previous one is drawn again; a source
  that keeps repeating is refused;
- canary: no generated value appears in the result's repr/str or any error message.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import string
import uuid
from collections import Counter
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kustos.crypto.certificates import BACKDATE, CaMaterial, make_self_signed_ca
from kustos.errors import InputError, InvalidSpecError, KustosError
from kustos.rotation.generators import (
    RandomSourceError,
    check_references,
    generate,
    password_text,
)
from kustos.rotation.spec import (
    ManagedSecretSpec,
    Password,
    parse_spec,
    produced_keys,
)
from kustos.sensitive import Sensitive
from tests.unit.rotation import ConstantRandom, SeededRandom

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> CaMaterial:
    """One CA for the module (key generation is the slow part)."""
    return make_self_signed_ca("Kustos Test CA", NOW - dt.timedelta(days=1), 3650)


def spec_of(data: dict[str, Any], **extra: Any) -> ManagedSecretSpec:
    """A spec holding *data*."""
    return parse_spec({"secretName": "app", "data": data, **extra})


def gen(
    data: dict[str, Any],
    *,
    seed: int = 1,
    ca: dict[str, CaMaterial] | None = None,
    users: dict[str, str] | None = None,
    previous: dict[str, Sensitive] | None = None,
) -> dict[str, Sensitive]:
    """Generate the values of a spec holding *data*."""
    return generate(
        spec_of(data),
        rng=SeededRandom(seed),
        now=NOW,
        ca=ca or {},
        postgres_users=users or {},
        previous=previous,
    )


def text(values: dict[str, Sensitive], key: str) -> str:
    """A value as text."""
    return values[key].reveal().decode()


def full_data() -> dict[str, Any]:
    """One key of every generator kind, with companion keys."""
    return {
        "password": {"password": {"length": 20, "symbols": True}},
        "token": {"token": {"bytes": 24, "encoding": "base64"}},
        "id": {"uuid": {}},
        "ssh": {"sshKeypair": {"comment": "deploy@app"}},
        "tls.crt": {
            "x509": {
                "issuer": {"name": "ca"},
                "commonName": "app",
                "dnsNames": ["app.ns.svc"],
                "caKey": "ca.crt",
            }
        },
        "db": {"postgresRole": {"host": "pg", "adminSecret": {"name": "pg-admin"}, "role": "app"}},
        "url": {"template": "postgres://{{ username }}:{{db}}@pg:5432/{{ dbname }}"},
        "dbname": {"template": "orders"},
        ".dockerconfigjson": {
            "dockerConfig": {
                "registry": "registry.test",
                "username": "robot",
                "passwordFrom": "token",
            }
        },
    }


# --------------------------------------------------------------------------- all keys
def test_every_produced_key_is_returned_as_sensitive_in_order(ca: CaMaterial) -> None:
    spec = spec_of(full_data())
    values = generate(
        spec, rng=SeededRandom(7), now=NOW, ca={"ca": ca}, postgres_users={"db": "app_b"}
    )
    assert list(values) == produced_keys(spec)
    assert set(values) >= {"ssh.pub", "tls.key", "ca.crt", "username"}
    assert all(isinstance(v, Sensitive) and len(v) > 0 for v in values.values())


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        generate(
            spec_of({"p": {"password": {}}}),
            rng=SeededRandom(1),
            now=NOW.replace(tzinfo=None),
            ca={},
            postgres_users={},
        )


# --------------------------------------------------------------------------- password
CLASSES = {
    "lower": set(string.ascii_lowercase),
    "upper": set(string.ascii_uppercase),
    "digits": set(string.digits),
}


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"symbols": True},
        {"upper": False, "symbols": True, "symbolCharacters": "-_"},
        {"lower": False, "upper": False, "symbols": True, "exclude": "0Oo1lI"},
        {"symbols": True, "exclude": "\"'`\\$!#", "symbolCharacters": "\"'`\\$!#@%"},
    ],
)
def test_password_holds_each_chosen_class_and_nothing_excluded(settings: dict[str, Any]) -> None:
    config = Password.model_validate(settings)
    symbols = set(config.symbol_characters)
    chosen = {name: chars for name, chars in CLASSES.items() if getattr(config, name)}
    if config.symbols:
        chosen["symbols"] = symbols
    allowed = set().union(*chosen.values()) - set(config.exclude)
    for seed in range(150):
        for length in (8, 9, 13, 32, 100):
            rng = SeededRandom(seed * 1000 + length)
            value = password_text(config.model_copy(update={"length": length}), rng)
            assert len(value) == length
            assert set(value) <= allowed, (seed, length)
            for name, chars in chosen.items():
                assert set(value) & chars, (name, seed, length)


def test_password_classes_hold_even_when_the_source_is_rigged() -> None:
    # Index 0 every time: rejection sampling can never see a digit or a symbol, so the
    # construction fallback must place one of each.
    config = Password(length=8, symbols=True, symbol_characters="!")
    value = password_text(config, ConstantRandom())
    assert len(value) == 8
    assert set(value) & CLASSES["lower"]
    assert set(value) & CLASSES["upper"]
    assert set(value) & CLASSES["digits"]
    assert "!" in value


@pytest.mark.parametrize(
    ("settings", "cls"),
    [
        ({"digits": True, "exclude": string.digits}, "digits"),
        ({"symbols": True, "symbolCharacters": "!@", "exclude": "@!"}, "symbols"),
        ({"upper": True, "exclude": string.ascii_uppercase + "x"}, "upper"),
    ],
)
def test_exclusions_that_empty_a_class_are_refused(settings: dict[str, Any], cls: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        gen({"pw": {"password": settings}})
    assert str(caught.value) == (
        f"spec.data.pw.password.exclude: removes every character of class {cls}"
    )
    assert isinstance(caught.value, InputError)


def test_password_characters_are_uniform() -> None:
    # 20,000 characters over a 62-character alphabet: about 322 of each. Modulo bias
    # (some characters 25% more likely) or a character never drawn fails this test.
    rng = SeededRandom(2024)
    config = Password(length=100)
    counts: Counter[str] = Counter()
    for _ in range(200):
        counts.update(password_text(config, rng))
    alphabet = string.ascii_letters + string.digits
    assert set(counts) == set(alphabet)
    expected = sum(counts.values()) / len(alphabet)
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in alphabet)
    assert chi2 < 100.9  # chi-square critical value, 61 degrees of freedom, p = 0.001
    assert max(counts.values()) < expected * 1.3
    assert min(counts.values()) > expected * 0.7


def test_same_seed_same_password_other_seed_other_password() -> None:
    first = gen({"pw": {"password": {}}}, seed=5)
    again = gen({"pw": {"password": {}}}, seed=5)
    other = gen({"pw": {"password": {}}}, seed=6)
    assert first["pw"] == again["pw"]
    assert first["pw"] != other["pw"]


# --------------------------------------------------------------------------- token, uuid
@pytest.mark.parametrize("size", [16, 17, 32, 33, 64])
def test_token_encodings(size: int) -> None:
    values = gen(
        {
            "h": {"token": {"bytes": size, "encoding": "hex"}},
            "b": {"token": {"bytes": size, "encoding": "base64"}},
            "u": {"token": {"bytes": size, "encoding": "base64url"}},
        }
    )
    hex_text, b64, b64url = text(values, "h"), text(values, "b"), text(values, "u")
    assert re.fullmatch(r"[0-9a-f]+", hex_text)
    assert len(bytes.fromhex(hex_text)) == size
    assert len(b64) == 4 * -(-size // 3)  # padded to a multiple of four
    assert len(base64.b64decode(b64, validate=True)) == size
    assert "=" not in b64url
    assert re.fullmatch(r"[A-Za-z0-9_-]+", b64url)
    assert len(base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))) == size


def test_token_default_is_32_bytes_of_hex() -> None:
    assert len(text(gen({"t": {"token": {}}}), "t")) == 64


def test_uuid_is_version_4() -> None:
    seen = set()
    for seed in range(50):
        value = text(gen({"id": {"uuid": {}}}, seed=seed), "id")
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value
        )
        parsed = uuid.UUID(value)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        seen.add(value)
    assert len(seen) == 50


# --------------------------------------------------------------------------- ssh
@pytest.mark.parametrize(
    ("settings", "key_type"),
    [
        ({"comment": "ci@example"}, ed25519.Ed25519PrivateKey),
        ({"algorithm": "rsa", "bits": 2048, "publicKeyKey": "id_rsa.pub"}, rsa.RSAPrivateKey),
    ],
)
def test_ssh_keypair_loads_back_and_matches(settings: dict[str, Any], key_type: type) -> None:
    values = gen({"id": {"sshKeypair": settings}})
    public_key = settings.get("publicKeyKey", "id.pub")
    assert set(values) == {"id", public_key}
    private_pem = values["id"].reveal()
    assert private_pem.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    private = serialization.load_ssh_private_key(private_pem, password=None)
    assert isinstance(private, key_type)
    line = values[public_key].reveal()
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    public = serialization.load_ssh_public_key(line.strip())
    openssh = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    assert public.public_bytes(*openssh) == private.public_key().public_bytes(*openssh)
    if isinstance(private, rsa.RSAPrivateKey):
        assert private.key_size == 2048
        assert line.startswith(b"ssh-rsa ")
    else:
        assert line.startswith(b"ssh-ed25519 ")
        assert line.rstrip().endswith(b" ci@example")


def test_two_ssh_keypairs_differ() -> None:
    first = gen({"k": {"sshKeypair": {}}})
    second = gen({"k": {"sshKeypair": {}}})
    assert first["k"] != second["k"]
    assert first["k.pub"] != second["k.pub"]


def test_ssh_comment_on_two_lines_is_refused() -> None:
    with pytest.raises(InvalidSpecError, match=r"^spec\.data\.k\.sshKeypair\.comment: "):
        gen({"k": {"sshKeypair": {"comment": "a\nssh-rsa AAAA evil"}}})


# --------------------------------------------------------------------------- x509
def load_ca(material: CaMaterial) -> x509.Certificate:
    """The CA certificate of *material*."""
    return x509.load_pem_x509_certificate(material.cert_pem)


def test_leaf_verifies_against_the_ca(ca: CaMaterial) -> None:
    values = gen(
        {
            "tls.crt": {
                "x509": {
                    "issuer": {"name": "root"},
                    "commonName": "api.shop",
                    "dnsNames": ["api.shop.svc", "api.shop.svc.cluster.local", "*.api.test"],
                    "duration": "720h",
                    "caKey": "ca.crt",
                }
            }
        },
        ca={"root": ca},
    )
    assert set(values) == {"tls.crt", "tls.key", "ca.crt"}
    chain = x509.load_pem_x509_certificates(values["tls.crt"].reveal())
    assert len(chain) == 1  # a root CA is not sent along
    leaf, root = chain[0], load_ca(ca)
    leaf.verify_directly_issued_by(root)
    assert leaf.issuer == root.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.shop"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "api.shop.svc",
        "api.shop.svc.cluster.local",
        "*.api.test",
    ]
    assert leaf.not_valid_before_utc == NOW - BACKDATE
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(hours=720)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment
    assert not usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    key_pem = values["tls.key"].reveal()
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == leaf.public_key().public_bytes(*spki)
    assert values["ca.crt"].reveal() == ca.cert_pem


def test_rsa_leaf_without_ca_key_or_san(ca: CaMaterial) -> None:
    values = gen(
        {
            "cert": {
                "x509": {
                    "issuer": {"name": "root"},
                    "commonName": "client",
                    "keyAlgorithm": "rsa-2048",
                    "privateKeyKey": "cert.key",
                }
            }
        },
        ca={"root": ca},
    )
    assert set(values) == {"cert", "cert.key"}
    leaf = x509.load_pem_x509_certificate(values["cert"].reveal())
    leaf.verify_directly_issued_by(load_ca(ca))
    key = serialization.load_pem_private_key(values["cert.key"].reveal(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    """*key* as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signed(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
    is_ca: bool,
    days: int,
) -> bytes:
    """A PEM certificate for *key*; self-signed unless *issuer* and *signer* are given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(signer or key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def make_intermediate(root: CaMaterial) -> CaMaterial:
    """An intermediate CA signed by *root*, valid 30 days; tls.crt holds it then the root."""
    root_key = serialization.load_pem_private_key(root.key_pem.reveal(), password=None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = signed(
        "Intermediate", key, issuer=load_ca(root).subject, signer=root_key, is_ca=True, days=30
    )
    return CaMaterial(pem + root.cert_pem, Sensitive(pkcs8(key)))


def test_intermediate_ca_chain_and_lifetime_capped_at_ca_expiry(ca: CaMaterial) -> None:
    intermediate = make_intermediate(ca)
    values = gen(
        {
            "tls.crt": {
                "x509": {
                    "issuer": {"name": "sub"},
                    "commonName": "svc",
                    "duration": "2160h",
                    "caKey": "ca.crt",
                }
            }
        },
        ca={"sub": intermediate},
    )
    leaf, sub = x509.load_pem_x509_certificates(values["tls.crt"].reveal())
    sub_cert = x509.load_pem_x509_certificates(intermediate.cert_pem)[0]
    assert sub == sub_cert
    leaf.verify_directly_issued_by(sub_cert)
    assert values["ca.crt"].reveal() == ca.cert_pem  # the root is the trust anchor
    # 90 days asked, but the intermediate expires in 30: the leaf must not outlive it.
    assert leaf.not_valid_after_utc == sub_cert.not_valid_after_utc


def test_serials_are_fresh(ca: CaMaterial) -> None:
    data = {"c": {"x509": {"issuer": {"name": "root"}, "commonName": "x"}}}
    serials = {
        x509.load_pem_x509_certificate(
            gen(data, seed=s, ca={"root": ca})["c"].reveal()
        ).serial_number
        for s in range(5)
    }
    assert len(serials) == 5
    assert all(0 < s < 2**159 for s in serials)


def bad_cas(good: CaMaterial) -> dict[str, tuple[CaMaterial, str]]:
    """Unusable CA materials and the reason their error must give."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = pkcs8(key)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )
    expired = make_self_signed_ca("Old CA", NOW - dt.timedelta(days=400), 365)
    return {
        "not-a-ca": (
            CaMaterial(signed("leaf", key, is_ca=False, days=1), Sensitive(key_pem)),
            "is not a CA",
        ),
        "other-key": (CaMaterial(good.cert_pem, Sensitive(key_pem)), "does not match"),
        "expired": (expired, "expired"),
        "garbage": (CaMaterial(b"hello", good.key_pem), "no PEM certificate"),
        "no-key": (CaMaterial(good.cert_pem, Sensitive(b"nonsense")), "not an unencrypted"),
        "locked-ca": (CaMaterial(good.cert_pem, Sensitive(encrypted)), "not an unencrypted"),
    }


def test_unusable_cas_are_refused_naming_the_secret(ca: CaMaterial) -> None:
    for name, (material, reason) in bad_cas(ca).items():
        data = {"c": {"x509": {"issuer": {"name": name}, "commonName": "x"}}}
        with pytest.raises(InvalidSpecError) as caught:
            gen(data, ca={name: material})
        message = str(caught.value)
        assert f"CA Secret {name}" in message, message
        assert reason in message, message
        for line in material.key_pem.reveal().splitlines()[1:-1]:
            assert line.decode() not in message


def test_ca_that_was_not_read_is_refused() -> None:
    data = {"c": {"x509": {"issuer": {"name": "missing"}, "commonName": "x"}}}
    with pytest.raises(InvalidSpecError, match="CA Secret missing"):
        gen(data, ca={})


def test_bad_dns_name_is_refused_by_position(ca: CaMaterial) -> None:
    data = {
        "c": {
            "x509": {
                "issuer": {"name": "r"},
                "commonName": "x",
                "dnsNames": ["ok.test", "bad name"],
            }
        }
    }
    with pytest.raises(InvalidSpecError, match=r"^spec\.data\.c\.x509\.dnsNames\.1: "):
        gen(data, ca={"r": ca})


# --------------------------------------------------------------------------- template
def test_templates_resolve_in_dependency_order() -> None:
    values = gen(
        {
            "dsn": {"template": "{{url}}?sslmode=require"},
            "url": {"template": "postgres://{{user}}:{{  pw  }}@db/{{ name}}"},
            "user": {"template": "svc"},
            "name": {"template": "{{user}}_db"},
            "pw": {"password": {"length": 12}},
        }
    )
    pw = text(values, "pw")
    assert text(values, "url") == f"postgres://svc:{pw}@db/svc_db"
    assert text(values, "dsn") == f"postgres://svc:{pw}@db/svc_db?sslmode=require"


def test_template_reads_companion_keys_and_leaves_other_braces() -> None:
    values = gen(
        {
            "k": {"sshKeypair": {}},
            "note": {"template": "{{ k.pub }} {{ not a key }} {x} {{}}"},
        }
    )
    assert text(values, "note") == text(values, "k.pub") + " {{ not a key }} {x} {{}}"


def test_unknown_template_key_is_refused_naming_it() -> None:
    spec = spec_of({"a": {"template": "{{ b }}-{{ missing }}-{{ gone }}"}, "b": {"uuid": {}}})
    with pytest.raises(InvalidSpecError) as caught:
        check_references(spec)
    assert str(caught.value) == "spec.data.a.template: refers to unknown key(s) gone, missing"


@pytest.mark.parametrize(
    ("data", "cycle"),
    [
        ({"a": {"template": "{{a}}"}}, "a -> a"),
        ({"a": {"template": "{{b}}"}, "b": {"template": "x{{ a }}"}}, "a -> b -> a"),
        (
            {
                "x": {"template": "{{p}}"},
                "p": {"password": {}},
                "a": {"template": "{{b}}{{x}}"},
                "b": {"template": "{{c}}"},
                "c": {"template": "{{a}}"},
            },
            "a -> b -> c -> a",
        ),
        (
            {
                "cfg": {"dockerConfig": {"registry": "r", "username": "u", "passwordFrom": "pw"}},
                "pw": {"template": "{{cfg}}"},
            },
            "cfg -> pw -> cfg",
        ),
    ],
)
def test_template_cycles_are_refused_naming_the_keys(data: dict[str, Any], cycle: str) -> None:
    with pytest.raises(InvalidSpecError) as caught:
        gen(data)
    assert str(caught.value) == f"spec.data: {cycle} refer to each other in a cycle"


def test_templates_that_grow_past_a_secret_are_refused() -> None:
    # Each level doubles: 8 KiB of hex, then 16, 32, ... past 1 MiB at the eighth level.
    data: dict[str, Any] = {"t0": {"token": {"bytes": 4096}}}
    for level in range(1, 12):
        data[f"t{level}"] = {"template": f"{{{{t{level - 1}}}}}{{{{ t{level - 1} }}}}"}
    with pytest.raises(InvalidSpecError) as caught:
        gen(data)
    assert str(caught.value).startswith("spec.data.t8.template: the value would exceed 1048576")
    del data["t11"], data["t10"], data["t9"], data["t8"]
    assert len(gen(data)["t7"]) == 8192 * 2**7


# --------------------------------------------------------------------------- dockerConfig
def test_docker_config_json_and_auth() -> None:
    values = gen(
        {
            ".dockerconfigjson": {
                "dockerConfig": {
                    "registry": "ghcr.io",
                    "usernameFrom": "user",
                    "passwordFrom": "pat",
                    "email": "ops@example.test",
                }
            },
            "user": {"template": "bot"},
            "pat": {"token": {"encoding": "base64url"}},
        }
    )
    pat = text(values, "pat")
    doc = json.loads(values[".dockerconfigjson"].reveal())
    assert doc == {
        "auths": {
            "ghcr.io": {
                "username": "bot",
                "password": pat,
                "auth": base64.b64encode(f"bot:{pat}".encode()).decode(),
                "email": "ops@example.test",
            }
        }
    }


def test_docker_config_literal_username_without_email() -> None:
    values = gen(
        {
            "cfg": {
                "dockerConfig": {"registry": "r.test:5000", "username": "u", "passwordFrom": "p"}
            },
            "p": {"password": {"symbols": True}},
        }
    )
    entry = json.loads(values["cfg"].reveal())["auths"]["r.test:5000"]
    assert set(entry) == {"username", "password", "auth"}
    assert base64.b64decode(entry["auth"]).decode() == f"u:{text(values, 'p')}"


def test_docker_config_unknown_password_key_is_refused() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        gen({"cfg": {"dockerConfig": {"registry": "r", "username": "u", "passwordFrom": "nope"}}})
    assert (
        str(caught.value)
        == "spec.data.cfg.dockerConfig.passwordFrom: refers to unknown key(s) nope"
    )


def test_docker_username_with_colon_is_refused() -> None:
    with pytest.raises(InvalidSpecError, match="must not contain ':'"):
        gen(
            {
                "cfg": {"dockerConfig": {"registry": "r", "username": "a:b", "passwordFrom": "p"}},
                "p": {"uuid": {}},
            }
        )


# --------------------------------------------------------------------------- postgresRole
def pg(**settings: Any) -> dict[str, Any]:
    """A postgresRole generator."""
    return {"host": "pg", "adminSecret": {"name": "admin"}, "role": "orders", **settings}


def test_postgres_role_username_and_password() -> None:
    values = gen(
        {
            "pass": {
                "postgresRole": pg(usernameKey="user", password={"length": 40, "exclude": "0O"})
            }
        },
        users={"pass": "orders_b"},
    )
    assert set(values) == {"pass", "user"}
    assert text(values, "user") == "orders_b"
    password = text(values, "pass")
    assert len(password) == 40
    assert not set(password) & {"0", "O"}


def test_postgres_single_role_and_foreign_role_refused() -> None:
    values = gen({"p": {"postgresRole": pg(strategy="single")}}, users={"p": "orders"})
    assert text(values, "username") == "orders"
    for users in ({"p": "orders_a"}, {}, {"p": "postgres"}):
        with pytest.raises(
            InvalidSpecError,
            match=r"^spec\.data\.p\.postgresRole: no role among orders was chosen$",
        ):
            gen({"p": {"postgresRole": pg(strategy="single")}}, users=users)


# --------------------------------------------------------------------------- previous
def test_a_value_equal_to_the_previous_one_is_drawn_again() -> None:
    data: dict[str, Any] = {"t": {"token": {}}, "p": {"password": {}}, "u": {"uuid": {}}}
    first = gen(data, seed=3)
    # The same seed would repeat every value; with the previous values given, none repeats.
    second = gen(data, seed=3, previous=first)
    for key in data:
        assert second[key] != first[key], key


def test_a_source_that_keeps_repeating_is_refused() -> None:
    spec = spec_of({"t": {"token": {"bytes": 16}}})
    previous = {"t": Sensitive(bytes(16).hex())}
    with pytest.raises(RandomSourceError) as caught:
        generate(spec, rng=ConstantRandom(), now=NOW, ca={}, postgres_users={}, previous=previous)
    assert "spec.data.t" in str(caught.value)
    assert bytes(16).hex() not in str(caught.value)


# --------------------------------------------------------------------------- canary
def messages(error: BaseException) -> str:
    """The text of *error* and every exception chained to it."""
    out = []
    current: BaseException | None = error
    while current is not None:
        out.append(f"{current!s} {current!r}")
        current = current.__cause__ or current.__context__
    return "\n".join(out)


def test_canary_values_appear_in_no_text_or_error(ca: CaMaterial) -> None:
    values = generate(
        spec_of(full_data()),
        rng=SeededRandom(11),
        now=NOW,
        ca={"ca": ca},
        postgres_users={"db": "app_a"},
    )
    shown = f"{values!r} {values!s} {list(values.values())} {values['db']:s}"
    for key, value in values.items():
        for line in value.reveal().splitlines():
            if len(line) >= 8 and not line.startswith(b"-----"):
                assert line.decode() not in shown, key

    # Errors raised while values exist: a username that is another key's value, a
    # repeating source, a CA whose key is wrong. None may quote a value.
    canary = "canary:Zq8Xw3Lm"
    failures: list[KustosError] = []
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {
                "c": {"dockerConfig": {"registry": "r", "usernameFrom": "n", "passwordFrom": "n"}},
                "n": {"template": canary},
            },
            {},
        ),
        ({"n": {"template": canary}, "x": {"template": "{{n}}{{ y }}"}}, {}),
        (
            {"t": {"token": {}}},
            {"rng": ConstantRandom(), "previous": {"t": Sensitive(bytes(32).hex())}},
        ),
        (
            {"c": {"x509": {"issuer": {"name": "k"}, "commonName": "x"}}},
            {"ca": {"k": CaMaterial(ca.cert_pem, Sensitive(canary))}},
        ),
    ]
    for data, kwargs in cases:
        arguments: dict[str, Any] = {
            "rng": SeededRandom(1),
            "now": NOW,
            "ca": {},
            "postgres_users": {},
            **kwargs,
        }
        with pytest.raises(KustosError) as caught:
            generate(spec_of(data), **arguments)
        failures.append(caught.value)
    for error in failures:
        text_of = messages(error)
        assert canary not in text_of
        assert "Zq8Xw3Lm" not in text_of
        assert bytes(32).hex() not in text_of
        for line in ca.key_pem.reveal().splitlines()[1:-1]:
            assert line.decode() not in text_of
