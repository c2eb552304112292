"""The SOPS codec (``kustos.crypto.sops``) against the format sops 3.13 writes.

Aspects: every value type round-trips (str, int, float, bool, time, nested lists and maps)
and ``""``/``null`` are left alone; each value is AES-256-GCM with a 32-byte IV, a 16-byte
tag and the key path (``a:b:``, list indices left out) as authenticated data, opened here
with the raw data key from the age stanza; the MAC is the uppercase SHA-512 of the values
in document order (every value, or only encrypted ones behind sha256("sops")) encrypted
with ``lastmodified`` as authenticated data; the metadata block is sorted as 3.13 writes
it; Go's number and time spellings; tampered, swapped and removed values, a tampered MAC
or ``lastmodified``, a changed clear value (default MAC mode only), a wrong identity and
unsupported files are refused with errors that name paths; several recipients each open
the file; recipients and identities are parsed like ``age -R``/``age -i`` and never quoted;
no value appears in any error, repr or in the YAML outside its ENC[...] form.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import pickle
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pyrage
import pytest
import yaml
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kustos.crypto import age, sops
from kustos.kube.documents import load_yaml
from tests.unit.sources.sealkit import CANARY, NOW, Key, tamper

ENC = re.compile(
    r"ENC\[AES256_GCM,data:([A-Za-z0-9+/=]+),iv:([A-Za-z0-9+/=]+),tag:([A-Za-z0-9+/=]+),type:(\w+)\]"
)
K8S = sops.Rule("encrypted_regex", sops.KUBERNETES_REGEX)


def _doc() -> dict[str, Any]:
    return {
        "kind": "Example",
        "metadata": {"name": "x", "labels": {"app": "web"}},
        "data": {
            "text": CANARY,
            "count": 42,
            "negative": -7,
            "ratio": 1.5,
            "whole": 2.0,
            "big": 1e20,
            "on": True,
            "off": False,
            "when": datetime(2024, 5, 6, 7, 8, 9, 120000, tzinfo=UTC),
            "empty": "",
            "nothing": None,
            "list": ["a", 1, {"k": "v"}],
            "nested": {"deep": {"deeper": "yes"}},
        },
    }


def _raw_key(enc: dict[str, Any], key: Key) -> bytes:
    return bytes(pyrage.decrypt(enc["sops"]["age"][0]["enc"].encode(), [key.identities._keys[0]]))


def _open(raw: bytes, value: str, aad: str) -> tuple[bytes, str, bytes]:
    match = ENC.fullmatch(value)
    assert match is not None
    data, iv, tag = (base64.b64decode(match.group(i)) for i in (1, 2, 3))
    return AESGCM(raw).decrypt(iv, data + tag, aad.encode()), match.group(4), iv


def test_every_type_round_trips_and_empty_values_stay_plain() -> None:
    key = Key()
    doc = _doc()
    enc = sops.encrypt(doc, [key.recipient], now=NOW, rule=K8S)
    assert enc["metadata"] == doc["metadata"]  # outside data: not encrypted
    assert enc["data"]["empty"] == ""
    assert enc["data"]["nothing"] is None
    assert all(ENC.fullmatch(v) for v in (enc["data"]["text"], enc["data"]["count"]))
    opened = sops.decrypt(enc, key.identities)
    assert opened.document == doc
    assert type(opened.document["data"]["whole"]) is float
    assert type(opened.document["data"]["count"]) is int
    assert opened.metadata.rule == K8S
    assert opened.metadata.recipients == (key.public,)


def test_a_yaml_date_comes_back_as_a_time_at_midnight_utc_as_sops_reads_it() -> None:
    key = Key()
    enc = sops.encrypt({"d": date(2024, 1, 1)}, [key.recipient], now=NOW)
    raw = _raw_key(enc, key)
    assert _open(raw, enc["d"], "d:")[:2] == (b"2024-01-01T00:00:00Z", "time")
    assert sops.decrypt(enc, key.identities).document == {"d": datetime(2024, 1, 1, tzinfo=UTC)}


def test_values_are_gcm_with_a_32_byte_iv_and_the_key_path_as_aad() -> None:
    key = Key()
    enc = sops.encrypt(_doc(), [key.recipient], now=NOW, rule=K8S)
    raw = _raw_key(enc, key)
    assert len(raw) == 32
    plain, kind, iv = _open(raw, enc["data"]["text"], "data:text:")
    assert (plain, kind, len(iv)) == (CANARY.encode(), "str", 32)
    match = ENC.fullmatch(enc["data"]["text"])
    assert match is not None
    assert len(base64.b64decode(match.group(1))) == len(CANARY)
    assert len(base64.b64decode(match.group(3))) == 16
    expected = {
        "count": (b"42", "int"),
        "negative": (b"-7", "int"),
        "ratio": (b"1.5", "float"),
        "whole": (b"2", "float"),
        "big": (b"100000000000000000000", "float"),
        "on": (b"True", "bool"),
        "off": (b"False", "bool"),
        "when": (b"2024-05-06T07:08:09.12Z", "time"),
    }
    for name, want in expected.items():
        assert _open(raw, enc["data"][name], f"data:{name}:")[:2] == want, name
    # List indices are not part of the path; a map inside a list continues it.
    assert _open(raw, enc["data"]["list"][0], "data:list:")[0] == b"a"
    assert _open(raw, enc["data"]["list"][2]["k"], "data:list:k:")[0] == b"v"
    assert _open(raw, enc["data"]["nested"]["deep"]["deeper"], "data:nested:deep:deeper:")[0]


@pytest.mark.parametrize("mac_only", [False, True])
def test_the_mac_is_sha512_of_the_values_in_order_sealed_with_lastmodified(mac_only: bool) -> None:
    key = Key()
    doc = {"a": "clear", "data": {"x": "one", "n": 5, "e": "", "z": None, "b": True}}
    enc = sops.encrypt(doc, [key.recipient], now=NOW, rule=K8S, mac_only_encrypted=mac_only)
    raw = _raw_key(enc, key)
    assert enc["sops"]["lastmodified"] == "2026-03-04T05:06:07Z"
    digest = hashlib.sha512()
    if mac_only:
        digest.update(
            bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")
        )
    else:
        digest.update(b"clear")
    digest.update(b"one5True")
    plain, kind, iv = _open(raw, enc["sops"]["mac"], "2026-03-04T05:06:07Z")
    assert (plain, kind, len(iv)) == (digest.hexdigest().upper().encode(), "str", 32)
    assert enc["sops"].get("mac_only_encrypted", False) is mac_only


def test_the_metadata_block_is_last_and_sorted_as_sops_3_13_writes_it() -> None:
    key, other = Key(), Key()
    enc = sops.encrypt(
        {"data": {"a": "b"}},
        [key.recipient, other.recipient],
        now=NOW,
        rule=K8S,
        mac_only_encrypted=True,
    )
    assert list(enc)[-1] == "sops"
    block = enc["sops"]
    assert list(block) == [
        "age",
        "encrypted_regex",
        "lastmodified",
        "mac",
        "mac_only_encrypted",
        "version",
    ]
    assert block["version"] == "3.13.2"
    assert [s["recipient"] for s in block["age"]] == [key.public, other.public]
    for stanza in block["age"]:
        assert list(stanza) == ["enc", "recipient"]
        assert stanza["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
        assert stanza["enc"].endswith("-----END AGE ENCRYPTED FILE-----\n")
    text = sops.to_yaml(enc)
    assert '    lastmodified: "2026-03-04T05:06:07Z"\n' in text
    assert "        - enc: |\n" in text
    assert load_yaml(text) == enc


def test_each_of_several_recipients_opens_the_file_alone() -> None:
    keys = [Key(), Key(), Key()]
    enc = sops.encrypt({"v": CANARY}, [k.recipient for k in keys], now=NOW)
    for key in keys:
        assert sops.decrypt(enc, key.identities).document == {"v": CANARY}


def test_a_wrong_identity_is_refused_naming_the_recipients_only() -> None:
    key, stranger = Key(), Key()
    enc = sops.encrypt({"v": CANARY}, [key.recipient], now=NOW)
    with pytest.raises(sops.NoMatchingIdentityError, match=r"age1\w{5}…\w{4}") as err:
        sops.decrypt(enc, stranger.identities, source="f.yaml")
    assert str(err.value).startswith("f.yaml: none of the given identities opens this file")
    assert stranger.secret not in str(err.value)


def test_a_tampered_or_swapped_value_is_refused_naming_its_path() -> None:
    key = Key()
    enc = sops.encrypt({"data": {"a": CANARY, "b": "other"}}, [key.recipient], now=NOW)
    tampered = copy.deepcopy(enc)
    tampered["data"]["a"] = tamper(enc["data"]["a"])
    with pytest.raises(sops.TamperedValueError, match=r"^f: data\.a: the value fails auth"):
        sops.decrypt(tampered, key.identities, source="f")
    swapped = copy.deepcopy(enc)
    swapped["data"]["a"], swapped["data"]["b"] = enc["data"]["b"], enc["data"]["a"]
    with pytest.raises(sops.TamperedValueError, match=r"data\.a"):
        sops.decrypt(swapped, key.identities, source="f")


def test_a_value_from_another_file_is_refused() -> None:
    key = Key()
    one = sops.encrypt({"a": CANARY}, [key.recipient], now=NOW)
    two = sops.encrypt({"a": "x"}, [key.recipient], now=NOW)
    two["a"] = one["a"]
    with pytest.raises(sops.TamperedValueError):
        sops.decrypt(two, key.identities)


def test_removing_a_value_or_changing_the_mac_or_lastmodified_breaks_the_mac() -> None:
    key = Key()
    enc = sops.encrypt({"a": CANARY, "b": "two"}, [key.recipient], now=NOW)
    removed = copy.deepcopy(enc)
    del removed["b"]
    with pytest.raises(sops.MacMismatchError, match="MAC mismatch"):
        sops.decrypt(removed, key.identities)
    reordered = copy.deepcopy(enc)
    reordered = {"b": enc["b"], "a": enc["a"], "sops": enc["sops"]}
    with pytest.raises(sops.MacMismatchError):
        sops.decrypt(reordered, key.identities)
    bad_mac = copy.deepcopy(enc)
    bad_mac["sops"]["mac"] = tamper(enc["sops"]["mac"])
    with pytest.raises(sops.MacMismatchError, match="does not authenticate"):
        sops.decrypt(bad_mac, key.identities)
    other_mac = sops.encrypt({"a": "x"}, [key.recipient], now=NOW)["sops"]["mac"]
    stolen = copy.deepcopy(enc)
    stolen["sops"]["mac"] = other_mac
    with pytest.raises(sops.MacMismatchError):
        sops.decrypt(stolen, key.identities)
    moved_clock = copy.deepcopy(enc)
    moved_clock["sops"]["lastmodified"] = "2026-03-04T05:06:08Z"
    with pytest.raises(sops.MacMismatchError):
        sops.decrypt(moved_clock, key.identities)
    no_mac = copy.deepcopy(enc)
    no_mac["sops"]["mac"] = ""
    with pytest.raises(sops.MacMismatchError, match="no MAC"):
        sops.decrypt(no_mac, key.identities)


def test_a_changed_clear_value_breaks_the_default_mac_but_not_mac_only_encrypted() -> None:
    key = Key()
    doc = {"metadata": {"name": "db"}, "data": {"p": CANARY}}
    for mac_only in (False, True):
        enc = sops.encrypt(doc, [key.recipient], now=NOW, rule=K8S, mac_only_encrypted=mac_only)
        enc["metadata"]["name"] = "db2"
        if mac_only:
            assert sops.decrypt(enc, key.identities).document["metadata"]["name"] == "db2"
        else:
            with pytest.raises(sops.MacMismatchError):
                sops.decrypt(enc, key.identities)


def test_lastmodified_with_an_offset_or_fraction_is_read_as_sops_reformats_it() -> None:
    key = Key()
    enc = sops.encrypt({"a": "b"}, [key.recipient], now=NOW)
    raw = _raw_key(enc, key)
    digest = hashlib.sha512(b"b").hexdigest().upper().encode()
    iv = bytes(32)
    sealed = AESGCM(raw).encrypt(iv, digest, b"2026-03-04T07:06:07+02:00")
    b64 = base64.b64encode
    enc["sops"]["mac"] = (
        f"ENC[AES256_GCM,data:{b64(sealed[:-16]).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(sealed[-16:]).decode()},type:str]"
    )
    enc["sops"]["lastmodified"] = "2026-03-04T07:06:07.5+02:00"
    assert sops.decrypt(enc, key.identities).document == {"a": "b"}
    # PyYAML reads an unquoted time as a datetime; it is formatted back the same way.
    enc["sops"]["lastmodified"] = datetime(2026, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert sops.decrypt(enc, key.identities).document == {"a": "b"}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (1.5, "1.5"),
        (1e20, "100000000000000000000"),
        (1.5e-7, "0.00000015"),
        (-0.0, "-0"),
        (0.1, "0.1"),
        (123456.789, "123456.789"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_floats_are_spelled_as_go_formats_them(value: float, text: str) -> None:
    assert sops._go_float(value) == text


def test_the_default_rule_is_the_unencrypted_suffix_and_regexes_are_unanchored() -> None:
    assert sops.DEFAULT_RULE.encrypts(["a", "b"])
    assert not sops.DEFAULT_RULE.encrypts(["a", "b_unencrypted"])
    loose = sops.Rule("encrypted_regex", "data")
    assert loose.encrypts(["metadata", "mydatabase"])
    assert not K8S.encrypts(["metadata", "mydatabase"])
    assert sops.Rule("unencrypted_regex", "^meta").encrypts(["spec", "x"])
    assert not sops.Rule("unencrypted_regex", "^meta").encrypts(["metadata", "x"])
    assert sops.Rule("encrypted_suffix", "_enc").encrypts(["a_enc", "b"])
    assert not sops.Rule("encrypted_suffix", "_enc").encrypts(["a", "b"])
    with pytest.raises(sops.SopsFormatError, match="not a valid regex"):
        sops.Rule("encrypted_regex", "(")


def test_unsupported_files_and_inputs_are_refused_with_the_reason() -> None:
    key = Key()
    enc = sops.encrypt({"a": CANARY}, [key.recipient], now=NOW)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**enc, "sops": {**enc["sops"], "key_groups": [{}, {}]}}, "Shamir"),
        ({**enc, "sops": {**enc["sops"], "encrypted_comment_regex": "x"}}, "comments"),
        ({**enc, "sops": {**enc["sops"], "encrypted_regex": "a"}}, "more than one"),
        ({**enc, "sops": {**enc["sops"], "lastmodified": "yesterday"}}, "RFC 3339"),
        (
            {**enc, "sops": {k: v for k, v in enc["sops"].items() if k != "lastmodified"}},
            "lastmodified",
        ),
        ({**enc, "sops": "x"}, "no top-level sops mapping"),
        ({"a": enc["a"]}, "not a SOPS file"),
        ({**enc, "sops": {**enc["sops"], "age": [], "pgp": [{"fp": "x"}]}}, "key types: pgp"),
        ({**enc, "a": 5}, "expected an encrypted value"),
        ({**enc, "a": "ENC[AES256_GCM,data:!!,iv:x,tag:y,type:str]"}, "not an ENC"),
    ]
    for document, reason in cases:
        with pytest.raises(sops.SopsError, match=reason) as err:
            sops.decrypt(document, key.identities)
        assert CANARY not in str(err.value)
    bool_key: dict[Any, Any] = {True: "x"}  # YAML 1.1 reads `on:` as a boolean key
    with pytest.raises(sops.SopsFormatError, match="string keys only"):
        sops.encrypt(bool_key, [key.recipient], now=NOW)
    with pytest.raises(sops.SopsFormatError, match="already has a top-level sops"):
        sops.encrypt(enc, [key.recipient], now=NOW)
    with pytest.raises(sops.SopsFormatError, match="64-bit"):
        sops.encrypt({"n": 2**64}, [key.recipient], now=NOW)
    with pytest.raises(sops.SopsFormatError, match="set value cannot"):
        sops.encrypt({"s": {1, 2}}, [key.recipient], now=NOW)
    with pytest.raises(age.RecipientError, match="no recipient"):
        sops.encrypt({"a": "b"}, [], now=NOW)


def test_a_decrypted_value_that_does_not_parse_as_its_type_is_refused_without_the_value() -> None:
    key = Key()
    enc = sops.encrypt({"n": CANARY}, [key.recipient], now=NOW)
    raw = _raw_key(enc, key)
    enc["n"] = enc["n"].replace("type:str", "type:int")
    # The type is outside the ciphertext (as in sops): the value decrypts, then fails to parse.
    assert _open(raw, enc["n"], "n:")[0] == CANARY.encode()
    with pytest.raises(
        sops.SopsFormatError, match=r"n: the decrypted value is not a valid int"
    ) as err:
        sops.decrypt(enc, key.identities)
    assert CANARY not in str(err.value)


def test_recipient_files_are_read_like_age_dash_r_and_never_quoted() -> None:
    key, other = Key(), Key()
    text = f"# team\n\n{key.public}\n  {other.public}  \n"
    assert [r.text for r in sops.parse_recipients(text, source="r.txt")] == [
        key.public,
        other.public,
    ]
    with pytest.raises(age.RecipientError, match=r"^r\.txt:2: this is an age identity") as err:
        sops.parse_recipients(f"{key.public}\n{key.secret}\n", source="r.txt")
    assert key.secret not in str(err.value)
    with pytest.raises(age.RecipientError, match=r"^r\.txt:1: not an age public key") as err:
        sops.parse_recipients("age1notbech32atall\n", source="r.txt")
    assert "notbech32" not in str(err.value)
    with pytest.raises(age.RecipientError, match="only age X25519"):
        sops.parse_recipients("ssh-ed25519 AAAA\n", source="r.txt")
    with pytest.raises(age.RecipientError, match="no recipient"):
        sops.parse_recipients("# nothing\n", source="r.txt")


def test_identity_files_are_read_like_age_i_and_never_quoted() -> None:
    key, other = Key(), Key()
    both = sops.Identities.parse(key.identity_text + other.identity_text, source="k")
    assert len(both) == 2
    assert repr(both) == "Identities(2)"
    damaged = key.secret[:-3] + "qqq"
    with pytest.raises(age.IdentityError, match=r"^k:2: not an age identity") as err:
        sops.Identities.parse(f"# c\n{damaged}\n", source="k")
    assert damaged not in str(err.value)
    with pytest.raises(age.IdentityError, match=r"^k:1: not an age X25519 identity") as err:
        sops.Identities.parse(f"{CANARY}\n", source="k")
    assert CANARY not in str(err.value)
    with pytest.raises(age.IdentityError, match="no AGE-SECRET-KEY"):
        sops.Identities.parse("# empty\n", source="k")
    with pytest.raises(TypeError):
        pickle.dumps(both)


def test_no_value_shows_in_reprs_or_in_the_yaml_outside_its_ciphertext() -> None:
    key = Key()
    enc = sops.encrypt(_doc(), [key.recipient], now=NOW, rule=K8S)
    assert CANARY not in sops.to_yaml(enc)
    opened = sops.decrypt(enc, key.identities)
    assert CANARY not in repr(opened)
    assert CANARY not in repr(key.identities)
    assert key.secret not in repr(key.identities)


def test_to_yaml_quotes_strings_that_would_read_as_another_type() -> None:
    doc = {"a": "yes", "b": "2024-01-01", "c": "5", "d": "plain", "e": "multi\nline\n"}
    text = sops.to_yaml(doc)
    assert 'a: "yes"' in text
    assert 'b: "2024-01-01"' in text
    assert 'c: "5"' in text
    assert "d: plain" in text
    assert "e: |\n" in text
    assert yaml.safe_load(text) == doc
