"""The PKCS#11 key provider against a real SoftHSM2 token (no mocks).

Aspects:
- wrap/unwrap round trip of a 32-byte DEK seed; blob size within the KMS v2 limit; the
  token's AES-GCM is used, and the AES-KWP fallback round-trips and binds the AAD too;
- tampering: wrong AAD, another key id, any flipped byte, truncated or empty blobs, an
  unknown key id: each a ``KmsError`` that quotes no bytes;
- lifecycle: init refused twice, rotate before init refused; rotation makes a new current
  key and old keys keep unwrapping (and wrapping, for a wrap that races a reload); retire
  needs a reencrypt proof under a newer key (or ``force``), destroys the key object, and
  the retired id stops unwrapping and wrapping;
- state lives in the token: a second instance (in this process, and in another process)
  rotates, ``reload()`` reports it once; an unwrap under a key the instance has not
  reloaded yet still works;
- key objects are AES-256, token, private, sensitive, never extractable; the state
  object is private JSON without key material;
- opening: wrong PIN, missing token, missing module, a file that is no PKCS#11 module:
  one-line ``KmsError`` without the PIN;
- session loss: a session closed behind the provider's back, and a logout by another
  provider of the same process, are recovered on the next call; when the reopen fails
  too (PIN changed meanwhile) the call is one ``KmsError``;
- a provider is a context manager: leaving the ``with`` closes its session, and every
  ``kms keys`` command closes the provider it opened (also when the command fails);
- many threads share one provider safely; a wrap/unwrap stays far inside the API
  server's 10 ms decrypt budget;
- canary: plaintext, AAD and PIN appear in no log record or error string; key ids are
  logged only as hashes.

Isolation: SoftHSM2 reads ``SOFTHSM2_CONF`` in ``C_Initialize``, and python-pkcs11 keeps
one initialised library per path (``pkcs11._loaded``). Each test therefore gets its own
token directory and ``SOFTHSM2_CONF`` (monkeypatch), and the ``softhsm`` fixture calls
``pkcs11.unload`` before and after the test so that the next load initialises the library
again and reads the new configuration. Providers are closed before the unload.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive
from pkcs11.types import Session

from kustos.errors import KmsError
from kustos.kms.keys import KeyState, key_id_hash
from kustos.kms.providers import KeyProvider
from kustos.kms.providers.pkcs11 import (
    FORMAT_GCM,
    FORMAT_KWP,
    STATE_LABEL,
    Pkcs11Provider,
)
from kustos.sensitive import Sensitive

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
SOFTHSM2_UTIL = shutil.which("softhsm2-util")
LABEL = "kustos-test"
PIN = "canary-PIN-4c1d9e"  # distinctive, so that finding it anywhere means a leak
SO_PIN = "canary-SO-PIN-77ab"
CREATED = "2025-01-01T00:00:00Z"
LATER = "2025-02-01T00:00:00Z"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not MODULE.is_file() or SOFTHSM2_UTIL is None, reason="Debian softhsm2 not installed"
    ),
]


@dataclass(frozen=True, slots=True)
class SoftHsm:
    """A private SoftHSM2 token directory with one initialised token."""

    conf: Path


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    """A fresh token ``kustos-test`` in a token directory of this test's own."""
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    pkcs11.unload(str(MODULE))  # the next load runs C_Initialize, which reads the conf
    assert SOFTHSM2_UTIL is not None
    subprocess.run(
        [
            SOFTHSM2_UTIL,
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
    )
    yield SoftHsm(conf)
    pkcs11.unload(str(MODULE))


def open_provider(pin: str = PIN, label: str = LABEL, module: Path = MODULE) -> Pkcs11Provider:
    return Pkcs11Provider(module=module, token_label=label, pin=Sensitive(pin))


@pytest.fixture
def provider(softhsm: SoftHsm) -> Iterator[Pkcs11Provider]:
    opened = open_provider()
    yield opened
    opened.close()


def peek_session(*, rw: bool = False) -> Session:
    """A PIN-less session that shares the login of the provider in this process."""
    return pkcs11.lib(str(MODULE)).get_token(token_label=LABEL).open(rw=rw)


def _key_labels() -> set[str]:
    """Labels of the secret-key objects in the token."""
    session = peek_session()
    try:
        found = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        return {str(obj[Attribute.LABEL]) for obj in found}
    finally:
        session.close()


def seed() -> bytes:
    return os.urandom(32)


# ---- round trip and format


def test_round_trip_of_a_dek_seed_uses_token_gcm(provider: Pkcs11Provider) -> None:
    record = provider.init_keys(created=CREATED)
    assert provider.current_key_id() == record.key_id
    assert provider.records() == [record]
    plaintext, aad = seed(), record.key_id.encode()

    blob = provider.wrap(record.key_id, plaintext, aad)

    assert blob[0] == FORMAT_GCM
    assert len(blob) == 1 + 12 + 32 + 16
    assert len(blob) <= 1024
    assert plaintext not in blob
    assert provider.unwrap(record.key_id, blob, aad) == plaintext
    assert provider.wrap(record.key_id, plaintext, aad) != blob  # fresh nonce each time
    assert provider.unwrap(record.key_id, provider.wrap(record.key_id, b"", b""), b"") == b""


def test_kwp_fallback_round_trips_and_binds_the_aad(provider: Pkcs11Provider) -> None:
    record = provider.init_keys(created=CREATED)
    gcm_blob = provider.wrap(record.key_id, b"g" * 32, b"aad")
    # As on a token without CKM_AES_GCM: the choice is made once, at open.
    provider._mechanism = pkcs11.Mechanism.AES_KEY_WRAP_PAD
    plaintext = seed()

    blob = provider.wrap(record.key_id, plaintext, b"aad")

    assert blob[0] == FORMAT_KWP
    assert len(blob) <= 1024
    assert provider.unwrap(record.key_id, blob, b"aad") == plaintext
    assert provider.unwrap(record.key_id, gcm_blob, b"aad") == b"g" * 32  # marker decides
    with pytest.raises(KmsError, match="ciphertext rejected"):
        provider.unwrap(record.key_id, blob, b"other aad")
    flipped = bytearray(blob)
    flipped[5] ^= 0x01
    with pytest.raises(KmsError, match="ciphertext rejected"):
        provider.unwrap(record.key_id, bytes(flipped), b"aad")


# ---- tampering


def test_wrong_aad_and_other_key_id_are_rejected(provider: Pkcs11Provider) -> None:
    first = provider.init_keys(created=CREATED)
    blob = provider.wrap(first.key_id, seed(), b"aad")
    second = provider.rotate_keys(created=LATER)

    with pytest.raises(KmsError, match=r"^cannot unwrap: ciphertext rejected"):
        provider.unwrap(first.key_id, blob, b"aaD")
    with pytest.raises(KmsError, match=r"^cannot unwrap: ciphertext rejected"):
        provider.unwrap(second.key_id, blob, b"aad")
    with pytest.raises(KmsError, match=r"^cannot unwrap: unknown key id$"):
        provider.unwrap("kek-0099-00000000", blob, b"aad")


@pytest.mark.parametrize(
    ("position", "part"),
    [(0, "marker"), (1, "nonce"), (13, "ciphertext"), (44, "ciphertext end"), (-1, "tag")],
)
def test_any_flipped_byte_is_rejected(provider: Pkcs11Provider, position: int, part: str) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    blob = bytearray(provider.wrap(key_id, seed(), b"aad"))
    blob[position] ^= 0x01

    with pytest.raises(KmsError, match="ciphertext rejected") as info:
        provider.unwrap(key_id, bytes(blob), b"aad")
    assert "\n" not in str(info.value), part


@pytest.mark.parametrize("cut", [0, 1, 13, 28, 60])
def test_truncated_blobs_are_rejected(provider: Pkcs11Provider, cut: int) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    blob = provider.wrap(key_id, seed(), b"aad")

    with pytest.raises(KmsError, match="ciphertext rejected"):
        provider.unwrap(key_id, blob[:cut], b"aad")


# ---- lifecycle


def test_init_twice_and_rotate_before_init_are_refused(provider: Pkcs11Provider) -> None:
    with pytest.raises(KmsError, match=r"no keys yet: run `kustos kms keys init`"):
        provider.rotate_keys(created=CREATED)
    with pytest.raises(KmsError, match="no current key"):
        provider.current_key_id()
    provider.init_keys(created=CREATED)

    with pytest.raises(KmsError, match="already has keys"):
        provider.init_keys(created=LATER)
    assert len(provider.records()) == 1


def test_rotation_makes_a_new_current_key_and_old_keys_still_unwrap(
    provider: Pkcs11Provider,
) -> None:
    old = provider.init_keys(created=CREATED)
    plaintext = seed()
    blob = provider.wrap(old.key_id, plaintext, b"aad")

    new = provider.rotate_keys(created=LATER)

    assert new.key_id != old.key_id
    assert new.sequence == old.sequence + 1
    assert provider.current_key_id() == new.key_id
    assert [(r.key_id, r.state) for r in provider.records()] == [
        (old.key_id, KeyState.PREVIOUS),
        (new.key_id, KeyState.CURRENT),
    ]
    assert provider.unwrap(old.key_id, blob, b"aad") == plaintext
    # A wrap racing a reload may still name the previous key; it stays usable.
    late = provider.wrap(old.key_id, plaintext, b"aad")
    assert provider.unwrap(old.key_id, late, b"aad") == plaintext
    with pytest.raises(KmsError, match=r"^cannot wrap: unknown or retired key id$"):
        provider.wrap("kek-0042-00000000", plaintext, b"aad")
    assert provider.unwrap(new.key_id, provider.wrap(new.key_id, plaintext, b"x"), b"x") == (
        plaintext
    )
    # Everything was persisted in the token: a new instance sees the same keys.
    other = open_provider()
    try:
        assert other.records() == provider.records()
    finally:
        other.close()


def test_retire_needs_a_reencrypt_proof_under_a_newer_key(provider: Pkcs11Provider) -> None:
    old = provider.init_keys(created=CREATED)
    blob = provider.wrap(old.key_id, seed(), b"aad")
    new = provider.rotate_keys(created=LATER)

    with pytest.raises(KmsError, match="is the current key"):
        provider.retire_key(new.key_id, force=False)
    with pytest.raises(KmsError, match="objects may still be encrypted under"):
        provider.retire_key(old.key_id, force=False)
    provider.record_reencrypt(old.key_id)  # a reencrypt under the old key proves nothing
    with pytest.raises(KmsError, match="objects may still be encrypted under"):
        provider.retire_key(old.key_id, force=False)
    assert _key_labels() == {old.key_id, new.key_id}

    provider.record_reencrypt(new.key_id)
    assert provider.reencrypted_under() == new.key_id
    provider.retire_key(old.key_id, force=False)

    assert {r.key_id: r.state for r in provider.records()}[old.key_id] is KeyState.RETIRED
    assert _key_labels() == {new.key_id}  # the key object is destroyed
    with pytest.raises(KmsError, match=r"^cannot unwrap: the key id is retired$"):
        provider.unwrap(old.key_id, blob, b"aad")
    with pytest.raises(KmsError, match="retired key id"):
        provider.wrap(old.key_id, b"x" * 32, b"aad")
    with pytest.raises(KmsError, match="already retired"):
        provider.retire_key(old.key_id, force=False)
    with pytest.raises(KmsError, match="no such live key"):
        provider.record_reencrypt(old.key_id)
    fresh = open_provider()
    try:
        assert fresh.reencrypted_under() == new.key_id
        assert fresh.records() == provider.records()
    finally:
        fresh.close()


def test_forced_retire_skips_the_proof(provider: Pkcs11Provider) -> None:
    old = provider.init_keys(created=CREATED)
    blob = provider.wrap(old.key_id, seed(), b"aad")
    new = provider.rotate_keys(created=LATER)

    provider.retire_key(old.key_id, force=True)

    assert provider.reencrypted_under() is None
    assert _key_labels() == {new.key_id}
    with pytest.raises(KmsError, match="retired"):
        provider.unwrap(old.key_id, blob, b"aad")


# ---- several instances share the state in the token


def test_reload_sees_a_rotation_by_a_second_instance(provider: Pkcs11Provider) -> None:
    first = provider.init_keys(created=CREATED)
    assert provider.reload() is False
    second_instance = open_provider()
    try:
        rotated = second_instance.rotate_keys(created=LATER)
        blob = second_instance.wrap(rotated.key_id, b"s" * 32, b"aad")

        assert provider.current_key_id() == first.key_id  # not until reload
        assert provider.reload() is True
        assert provider.current_key_id() == rotated.key_id
        assert provider.reload() is False
        assert provider.unwrap(rotated.key_id, blob, b"aad") == b"s" * 32
    finally:
        second_instance.close()


def test_another_process_rotates_and_unwrap_finds_the_new_key(
    provider: Pkcs11Provider,
) -> None:
    provider.init_keys(created=CREATED)
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from kustos.kms.providers.pkcs11 import Pkcs11Provider\n"
        "from kustos.sensitive import Sensitive\n"
        "p = Pkcs11Provider(module=Path(sys.argv[1]), token_label=sys.argv[2],\n"
        "                   pin=Sensitive(os.environ['TEST_PIN']))\n"
        "r = p.rotate_keys(created='2025-03-01T00:00:00Z')\n"
        "sys.stdout.write(r.key_id + ' ' + p.wrap(r.key_id, b'p' * 32, b'aad').hex())\n"
        "p.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(MODULE), LABEL],
        env={**os.environ, "TEST_PIN": PIN},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    key_id, blob_hex = done.stdout.split()

    # Before any reload: an unknown key id makes the provider look at the token once.
    assert provider.unwrap(key_id, bytes.fromhex(blob_hex), b"aad") == b"p" * 32
    assert provider.current_key_id() == key_id
    assert provider.reload() is True  # still reported once to the caller of reload
    assert provider.reload() is False


# ---- what the token holds


def test_key_objects_are_sensitive_and_never_extractable(provider: Pkcs11Provider) -> None:
    record = provider.init_keys(created=CREATED)
    session = peek_session()
    try:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label=record.key_id)
        attributes = key.get_attributes(
            [
                Attribute.KEY_TYPE,
                Attribute.VALUE_LEN,
                Attribute.TOKEN,
                Attribute.PRIVATE,
                Attribute.SENSITIVE,
                Attribute.ALWAYS_SENSITIVE,
                Attribute.EXTRACTABLE,
                Attribute.NEVER_EXTRACTABLE,
                Attribute.LOCAL,
                Attribute.ID,
                Attribute.SIGN,
            ]
        )
        assert attributes == {
            Attribute.KEY_TYPE: KeyType.AES,
            Attribute.VALUE_LEN: 32,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.ALWAYS_SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.NEVER_EXTRACTABLE: True,
            Attribute.LOCAL: True,  # generated inside the token
            Attribute.ID: record.key_id.encode(),
            Attribute.SIGN: False,
        }
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]

        (state,) = session.get_objects({Attribute.CLASS: ObjectClass.DATA})
        assert state[Attribute.LABEL] == STATE_LABEL
        assert state[Attribute.PRIVATE] is True
        document = json.loads(bytes(state[Attribute.VALUE]))
        assert document["keys"] == [
            {"key_id": record.key_id, "sequence": 1, "created": CREATED, "state": "current"}
        ]
        assert set(document) == {"format", "generation", "keys", "reencrypted_under"}
    finally:
        session.close()


def test_state_survives_a_new_library_load(softhsm: SoftHsm) -> None:
    first = open_provider()
    record = first.init_keys(created=CREATED)
    blob = first.wrap(record.key_id, b"k" * 32, b"aad")
    first.close()
    pkcs11.unload(str(MODULE))  # as after a restart of the plugin

    again = open_provider()
    try:
        assert again.current_key_id() == record.key_id
        assert again.unwrap(record.key_id, blob, b"aad") == b"k" * 32
    finally:
        again.close()


# ---- opening fails with one clear line


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pin": "wrong-canary-PIN-0000"}, f'wrong PIN for PKCS#11 token "{LABEL}"'),
        ({"label": "no-such-token"}, 'no PKCS#11 token labelled "no-such-token"'),
        (
            {"module": Path("/nonexistent/libnone.so")},
            "PKCS#11 module /nonexistent/libnone.so cannot be loaded: no such file",
        ),
    ],
    ids=["wrong-pin", "missing-token", "missing-module"],
)
def test_open_failures_are_one_line_without_the_pin(
    softhsm: SoftHsm, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(KmsError) as info:
        Pkcs11Provider(
            module=kwargs.get("module", MODULE),  # type: ignore[arg-type]
            token_label=kwargs.get("label", LABEL),  # type: ignore[arg-type]
            pin=Sensitive(kwargs.get("pin", PIN)),  # type: ignore[arg-type]
        )
    text = str(info.value)
    assert text == message
    assert "\n" not in text
    assert PIN not in text
    assert "wrong-canary-PIN" not in text


def test_a_file_that_is_no_pkcs11_module_is_one_line(softhsm: SoftHsm, tmp_path: Path) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"not an ELF file")

    with pytest.raises(KmsError, match=rf"^PKCS#11 module {bogus} cannot be loaded \("):
        open_provider(module=bogus)


# ---- session loss


def test_a_session_closed_behind_the_provider_is_reopened(
    provider: Pkcs11Provider, caplog: pytest.LogCaptureFixture
) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    blob = provider.wrap(key_id, b"a" * 32, b"aad")
    assert provider._session is not None

    provider._session.close()  # logs out and closes: the handle is now invalid
    assert provider.unwrap(key_id, blob, b"aad") == b"a" * 32
    provider._session.close()
    assert provider.reload() is False
    provider._session.close()
    assert provider.rotate_keys(created=LATER).key_id == provider.current_key_id()

    reopened = [r for r in caplog.records if "reopening" in r.getMessage()]
    assert len(reopened) == 3
    assert all(r.name == "kustos.kms.pkcs11" for r in reopened)


def test_a_logout_by_another_provider_of_the_process_is_recovered(softhsm: SoftHsm) -> None:
    first = open_provider()  # logs the process in
    key_id = first.init_keys(created=CREATED).key_id
    second = open_provider()  # shares the login (a session without PIN)
    try:
        blob = second.wrap(key_id, b"b" * 32, b"aad")

        first.close()  # C_Logout: the whole process is logged out, second included

        # A logged-out session finds no private object at all; the provider must not
        # read that as "the keys are gone".
        assert second.reload() is False
        assert second.current_key_id() == key_id
        assert second.unwrap(key_id, blob, b"aad") == b"b" * 32
    finally:
        second.close()


def test_when_the_reopen_fails_too_the_call_is_one_kms_error(
    provider: Pkcs11Provider,
) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    admin = peek_session(rw=True)
    admin.set_pin(PIN, "changed-canary-PIN-9999")  # rotated by an operator meanwhile
    admin.close()
    assert provider._session is not None
    provider._session.close()

    with pytest.raises(KmsError) as info:
        provider.wrap(key_id, b"c" * 32, b"aad")

    assert str(info.value) == f'wrong PIN for PKCS#11 token "{LABEL}"'
    # The refused PIN is not offered again (a real HSM locks its user after a few wrong
    # PINs): even once the operator puts the old PIN back, this provider stays down.
    after = open_provider(pin="changed-canary-PIN-9999")
    try:
        assert after.current_key_id() == key_id
        admin = peek_session(rw=True)
        admin.set_pin("changed-canary-PIN-9999", PIN)
        admin.close()
    finally:
        after.close()
    with pytest.raises(KmsError, match="wrong PIN"):
        provider.reload()
    with pytest.raises(KmsError, match="wrong PIN"):
        provider.unwrap(key_id, b"\x01" + bytes(60), b"aad")
    restarted = open_provider()
    try:
        assert restarted.current_key_id() == key_id
    finally:
        restarted.close()


def test_closed_provider_refuses_calls(provider: Pkcs11Provider) -> None:
    provider.close()
    with pytest.raises(KmsError, match="is closed"):
        provider.reload()
    provider.close()  # twice is fine


def test_leaving_the_with_block_closes_the_session(softhsm: SoftHsm) -> None:
    with open_provider() as opened:
        key_id = opened.init_keys(created=CREATED).key_id
        assert [r.key_id for r in opened.records()] == [key_id]
    assert opened._session is None
    with pytest.raises(KmsError, match="is closed"):
        opened.wrap(key_id, seed(), b"aad")


def test_every_keys_command_closes_the_token_session(
    softhsm: SoftHsm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kustos.cli.main import main  # noqa: PLC0415 - the CLI only for this test

    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    flags = ["--pkcs11-module", str(MODULE), "--pkcs11-token", LABEL,
             "--pkcs11-pin-file", str(pin_file)]  # fmt: skip
    closed: list[bool] = []
    real_close = Pkcs11Provider.close

    def counting_close(self: Pkcs11Provider) -> None:
        real_close(self)
        closed.append(self._session is None)

    monkeypatch.setattr(Pkcs11Provider, "close", counting_close)
    commands = [
        (["keys", "init"], 0),
        (["keys", "rotate"], 0),
        (["keys", "list", "--format", "json"], 0),
        (["keys", "retire", "kek-9999-00000000"], 1),  # fails; the session is closed anyway
        (["keys", "init"], 1),  # the token already has keys
    ]
    for number, (argv, code) in enumerate(commands, 1):
        assert main(["kms", *argv, *flags]) == code, capsys.readouterr().err
        assert closed == [True] * number, argv
    out, err = capsys.readouterr()
    assert PIN not in out + err


# ---- concurrency and speed


def test_threads_share_one_provider(provider: Pkcs11Provider) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                plaintext = bytes([n, i]) * 16
                blob = provider.wrap(key_id, plaintext, bytes([n]))
                assert provider.unwrap(key_id, blob, bytes([n])) == plaintext
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []


def test_wrap_and_unwrap_are_far_inside_the_decrypt_budget(provider: Pkcs11Provider) -> None:
    key_id = provider.init_keys(created=CREATED).key_id
    plaintext, calls = seed(), 200

    start = time.perf_counter()
    blobs = [provider.wrap(key_id, plaintext, b"aad") for _ in range(calls)]
    wrapped = time.perf_counter()
    for blob in blobs:
        provider.unwrap(key_id, blob, b"aad")
    unwrapped = time.perf_counter()

    # kube-apiserver allows a KMS call about 10 ms in the hot path; a slow path (a search
    # or a login per call) would show here long before it shows there.
    assert (wrapped - start) / calls < 0.002
    assert (unwrapped - wrapped) / calls < 0.002


# ---- canary


def test_canary_plaintext_aad_and_pin_never_reach_logs_or_errors(
    softhsm: SoftHsm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    plaintext = b"CANARY-PLAINTEXT-5d1f0c27a9e84b36"
    aad = b"CANARY-AAD-8e2b71"
    errors: list[str] = []

    def expect_error(call: object) -> None:
        try:
            call()  # type: ignore[operator]
        except KmsError as exc:
            errors.append(str(exc))
            errors.extend(str(c) for c in (exc.__cause__, exc.__context__) if c is not None)
        else:
            pytest.fail("expected a KmsError")

    expect_error(lambda: open_provider(pin="canary-wrong-PIN-31337"))
    provider = open_provider()
    try:
        first = provider.init_keys(created=CREATED)
        blob = provider.wrap(first.key_id, plaintext, aad)
        assert provider.unwrap(first.key_id, blob, aad) == plaintext
        expect_error(lambda: provider.unwrap(first.key_id, blob, aad + b"x"))
        expect_error(lambda: provider.unwrap(first.key_id, blob[:-1], aad))
        expect_error(lambda: provider.unwrap("kek-9999-" + plaintext.hex(), blob, aad))
        second = provider.rotate_keys(created=LATER)
        expect_error(lambda: provider.unwrap(second.key_id, blob, aad))
        assert provider._session is not None
        provider._session.close()
        assert provider.unwrap(first.key_id, blob, aad) == plaintext
        provider.retire_key(first.key_id, force=True)
        expect_error(lambda: provider.unwrap(first.key_id, blob, aad))
        expect_error(lambda: provider.wrap(first.key_id, plaintext, aad))
        key_ids = [first.key_id, second.key_id]
    finally:
        provider.close()

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "the provider logs its work"
    assert key_id_hash(second.key_id) in logged  # ids appear, as hashes
    for text in (logged, *errors):
        for secret in (plaintext.decode(), plaintext.hex(), aad.decode(), aad.hex()):
            assert secret not in text
        for pin in (PIN, "canary-wrong-PIN-31337", "CANARY"):
            assert pin not in text
    for key_id in key_ids:
        assert key_id not in logged


def test_provider_satisfies_the_key_provider_protocol(provider: Pkcs11Provider) -> None:
    as_protocol: KeyProvider = provider
    assert as_protocol.records() == []
