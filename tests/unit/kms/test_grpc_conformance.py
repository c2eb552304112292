"""The gRPC service driven directly over its UNIX socket, as kube-apiserver drives it.

Aspects: Status says version v2, healthz ok and the current key id; Encrypt's key id
equals Status's, ciphertext within 1 KiB, annotations valid; Decrypt round trip; refusals
with clear gRPC codes for garbage ciphertext, a key id never issued, a ciphertext
presented with another key id, missing annotations, empty and oversized plaintexts, and a
retired key; a rotation made by another process is served within 5 seconds while old
ciphertexts still decrypt; metrics count calls and errors; no plaintext, seed or key
material in logs or metrics.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from prometheus_client import generate_latest

from kustos.kms.envelope import VERSION_ANNOTATION
from kustos.kms.proto import kms_v2_pb2 as pb
from kustos.kms.proto import kms_v2_pb2_grpc as pb_grpc
from kustos.kms.providers.keyring import LocalKeyring
from kustos.kms.service import KmsService
from kustos.kms.serving import ServeSettings, serve
from kustos.sensitive import Sensitive

NOW = "2026-11-29T00:00:00+00:00"
PASS = Sensitive("conformance passphrase")


class Plugin:
    """A served plugin and a client stub."""

    def __init__(self, keyring: LocalKeyring, stub: pb_grpc.KeyManagementServiceStub) -> None:
        self.keyring = keyring
        self.stub = stub


@pytest_asyncio.fixture
async def plugin(tmp_path: Path) -> AsyncIterator[Plugin]:
    path = tmp_path / "keyring.json"
    LocalKeyring(path, PASS, must_exist=False).init_keys(created=NOW)
    provider = LocalKeyring(path, PASS)
    socket = tmp_path / "kms.sock"
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(provider, ServeSettings(socket=socket, reload_interval=0.2), stop)
    )
    for _ in range(100):
        if socket.exists():
            break
        await asyncio.sleep(0.05)
    channel = grpc.aio.insecure_channel(f"unix://{socket}")
    try:
        yield Plugin(LocalKeyring(path, PASS), pb_grpc.KeyManagementServiceStub(channel))
    finally:
        await channel.close()
        stop.set()
        await task
        provider.close()


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


@pytest.mark.asyncio
async def test_status_encrypt_decrypt_round_trip(plugin: Plugin) -> None:
    status = await plugin.stub.Status(pb.StatusRequest())
    assert (status.version, status.healthz) == ("v2", "ok")
    assert status.key_id == plugin.keyring.current_key_id()
    seed = secrets.token_bytes(32)
    enc = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=seed, uid="u1"))
    assert enc.key_id == status.key_id
    assert 0 < len(enc.ciphertext) <= 1024
    assert seed not in enc.ciphertext
    assert dict(enc.annotations) == {VERSION_ANNOTATION: b"1"}
    dec = await plugin.stub.Decrypt(
        pb.DecryptRequest(
            ciphertext=enc.ciphertext, uid="u2", key_id=enc.key_id, annotations=enc.annotations
        )
    )
    assert dec.plaintext == seed


@pytest.mark.asyncio
async def test_invalid_requests_get_clear_codes(plugin: Plugin) -> None:
    enc = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b"s" * 32))
    ann = dict(enc.annotations)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases = [
        (pb.DecryptRequest(ciphertext=b"garbage", key_id=enc.key_id, annotations=ann), invalid),
        (pb.DecryptRequest(ciphertext=b"\x01" + b"\x00" * 60, key_id=enc.key_id, annotations=ann), invalid),
        (pb.DecryptRequest(ciphertext=enc.ciphertext, key_id="kek-9999-00000000", annotations=ann),
         grpc.StatusCode.NOT_FOUND),
        (pb.DecryptRequest(ciphertext=enc.ciphertext, key_id=enc.key_id), invalid),
        (pb.DecryptRequest(ciphertext=enc.ciphertext, key_id="", annotations=ann), invalid),
        (pb.DecryptRequest(ciphertext=b"\x01" + b"x" * 2000, key_id=enc.key_id, annotations=ann), invalid),
    ]  # fmt: skip
    for request, code in cases:
        assert await _code(plugin.stub.Decrypt(request)) == code
    assert await _code(plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b""))) == invalid
    assert await _code(plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b"x" * 5000))) == invalid
    # The plugin still works after every refusal.
    assert (await plugin.stub.Status(pb.StatusRequest())).healthz == "ok"


@pytest.mark.asyncio
async def test_ciphertext_is_bound_to_its_key_id(plugin: Plugin) -> None:
    first = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b"a" * 32))
    plugin.keyring.rotate_keys(created=NOW)
    second_id = plugin.keyring.current_key_id()
    await asyncio.sleep(0.6)  # the serving plugin reloads every 0.2 s here
    request = pb.DecryptRequest(
        ciphertext=first.ciphertext, key_id=second_id, annotations=first.annotations
    )
    assert await _code(plugin.stub.Decrypt(request)) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
async def test_rotation_is_served_within_five_seconds_and_old_keys_decrypt(plugin: Plugin) -> None:
    old = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b"o" * 32))
    new_id = plugin.keyring.rotate_keys(created=NOW).key_id
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (await plugin.stub.Status(pb.StatusRequest())).key_id != new_id:
        assert loop.time() - started < 5.0, "rotated key not served within 5 seconds"
        await asyncio.sleep(0.1)
    new = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=b"n" * 32))
    assert new.key_id == new_id
    dec = await plugin.stub.Decrypt(
        pb.DecryptRequest(ciphertext=old.ciphertext, key_id=old.key_id, annotations=old.annotations)
    )
    assert dec.plaintext == b"o" * 32
    # Retired after a recorded re-encryption: decrypting under it is refused.
    plugin.keyring.record_reencrypt(new_id)
    plugin.keyring.retire_key(old.key_id, force=False)
    await asyncio.sleep(0.5)
    request = pb.DecryptRequest(
        ciphertext=old.ciphertext, key_id=old.key_id, annotations=old.annotations
    )
    assert await _code(plugin.stub.Decrypt(request)) == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.asyncio
async def test_status_is_unhealthy_when_the_provider_fails(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    LocalKeyring(path, PASS, must_exist=False).init_keys(created=NOW)
    provider = LocalKeyring(path, PASS)
    service = KmsService(provider, probe_ttl=0)
    assert (await service.probe())[1] == "ok"
    provider.close()
    path.unlink()  # the store is gone: the probe must not say ok
    _, healthz = await service.probe()
    assert healthz.startswith("unhealthy")
    assert service.metrics.healthy._value.get() == 0


@pytest.mark.asyncio
async def test_metrics_and_logs_hold_no_secrets(
    plugin: Plugin, caplog: pytest.LogCaptureFixture
) -> None:
    seed = b"SEED-CANARY-" + secrets.token_hex(10).encode()
    with caplog.at_level(logging.DEBUG):
        enc = await plugin.stub.Encrypt(pb.EncryptRequest(plaintext=seed))
        await plugin.stub.Decrypt(
            pb.DecryptRequest(
                ciphertext=enc.ciphertext, key_id=enc.key_id, annotations=enc.annotations
            )
        )
        await _code(plugin.stub.Decrypt(pb.DecryptRequest(ciphertext=b"\x01junk" * 10, key_id=enc.key_id,
                                                           annotations=enc.annotations)))  # fmt: skip
    service = KmsService(plugin.keyring)
    metrics = generate_latest(service.metrics.registry).decode()
    text = metrics + " ".join(r.getMessage() for r in caplog.records)
    assert seed.decode() not in text
    assert enc.ciphertext.hex() not in text
    assert "kustos_kms_operation_seconds" in metrics
