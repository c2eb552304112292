"""``kms serve`` fails at start, fast, with one line, whenever it could not serve.

Aspects, each through the real command in a subprocess (so a hang is a timeout, not a
pass): the socket's folder does not exist; the socket's folder is not writable; the
keyring is missing; the passphrase is wrong; the metrics port is in use; another plugin
already answers on the socket. Each exits non-zero with one ``kustos: error:`` line
naming what failed, no traceback and no gRPC log line, and leaves no socket behind.
In process: ``serve`` raises ``ServiceError`` before it listens, for a missing folder and
a busy metrics port, and ``check_listen`` refuses a bad metrics address (a usage error).
Once serving, a keyring that becomes unreadable is logged as one line and the plugin
keeps serving with the keys it holds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kustos.errors import ServiceError, UsageError
from kustos.kms.proto import kms_v2_pb2 as pb
from kustos.kms.proto import kms_v2_pb2_grpc as pb_grpc
from kustos.kms.providers.keyring import LocalKeyring
from kustos.kms.serving import ServeSettings, check_listen, serve
from kustos.sensitive import Sensitive
from tests.unit.kms.stores import init_keyring

PASSPHRASE = "serve-start-canary-pass"
NOW = "2026-11-29T00:00:00+00:00"


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    return init_keyring(tmp_path, PASSPHRASE)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def _serve(argv: list[str], *, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "kustos", "kms", "serve", *argv],
        capture_output=True,
        text=True,
        timeout=30,  # a server that starts instead of failing is killed here: the test fails
        check=False,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kustos: error: "), result.stderr
    assert needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert PASSPHRASE not in result.stderr + result.stdout


def _unprivileged() -> list[str] | None:
    """A prefix that runs a command without the power to write anywhere (root in CI)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def test_missing_socket_folder(store: list[str], tmp_path: Path) -> None:
    socket_path = tmp_path / "no-such-folder" / "kms.sock"
    result = _serve(["--socket", str(socket_path), *store])
    _assert_one_line(result, f"the folder {socket_path.parent} does not exist")
    assert not socket_path.parent.exists()


def test_socket_folder_not_writable(store: list[str], tmp_path: Path) -> None:
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without setpriv: every folder is writable")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    socket_path = folder / "kms.sock"
    result = _serve(["--socket", str(socket_path), *store], prefix=prefix)
    _assert_one_line(result, f"cannot listen on {socket_path}: Permission denied")
    assert not socket_path.exists()


def test_missing_keyring(store: list[str], tmp_path: Path) -> None:
    result = _serve(
        ["--socket", str(tmp_path / "kms.sock"), "--keyring", str(tmp_path / "absent.json"),
         "--passphrase-file", store[3]]
    )  # fmt: skip
    _assert_one_line(result, "absent.json does not exist")
    assert "passphrase" not in result.stderr
    assert not (tmp_path / "kms.sock").exists()


def test_wrong_passphrase(store: list[str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-passphrase\n")
    wrong.chmod(0o600)
    result = _serve(
        ["--socket", str(tmp_path / "kms.sock"), "--keyring", store[1], "--passphrase-file",
         str(wrong)]
    )  # fmt: skip
    _assert_one_line(result, "wrong passphrase")
    assert "not-the-passphrase" not in result.stderr
    assert not (tmp_path / "kms.sock").exists()


def test_metrics_port_in_use(store: list[str], tmp_path: Path, busy_port: int) -> None:
    result = _serve(
        ["--socket", str(tmp_path / "kms.sock"), *store, "--metrics-address",
         f"127.0.0.1:{busy_port}"]
    )  # fmt: skip
    _assert_one_line(result, f"cannot serve metrics on 127.0.0.1:{busy_port}")
    assert not (tmp_path / "kms.sock").exists()


def test_a_socket_another_process_serves_is_not_stolen(store: list[str], tmp_path: Path) -> None:
    socket_path = tmp_path / "kms.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(socket_path))
        other.listen()
        result = _serve(["--socket", str(socket_path), *store])
        _assert_one_line(result, "another process is serving on it")
        assert socket_path.exists()


@pytest.mark.asyncio
async def test_serve_raises_before_listening(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "ring.json"
    LocalKeyring(path, Sensitive(PASSPHRASE), must_exist=False).init_keys(created=NOW)
    with LocalKeyring(path, Sensitive(PASSPHRASE)) as provider:
        missing = ServeSettings(socket=tmp_path / "nowhere" / "kms.sock")
        with pytest.raises(ServiceError, match="does not exist"):
            await asyncio.wait_for(serve(provider, missing, asyncio.Event()), timeout=10)
        busy = ServeSettings(socket=tmp_path / "kms.sock", metrics_address=f"127.0.0.1:{busy_port}")
        started = time.monotonic()
        with pytest.raises(ServiceError, match="cannot serve metrics"):
            await asyncio.wait_for(serve(provider, busy, asyncio.Event()), timeout=10)
        assert time.monotonic() - started < 10
        assert not (tmp_path / "kms.sock").exists()


@pytest.mark.asyncio
async def test_a_keyring_that_becomes_unreadable_keeps_the_server_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ring.json"
    LocalKeyring(path, Sensitive(PASSPHRASE), must_exist=False).init_keys(created=NOW)
    socket_path = tmp_path / "kms.sock"
    stop = asyncio.Event()
    with LocalKeyring(path, Sensitive(PASSPHRASE)) as provider:
        settings = ServeSettings(socket=socket_path, reload_interval=0.05)
        task = asyncio.create_task(serve(provider, settings, stop))
        try:
            for _ in range(200):
                if socket_path.exists():
                    break
                await asyncio.sleep(0.05)
            path.rename(tmp_path / "moved.json")
            path.mkdir(mode=0o700)  # the file becomes a folder: reading it fails
            for _ in range(100):
                if "key reload failed" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            assert "key reload failed" in caplog.text
            assert f"{path}: cannot read keyring: is a directory" in caplog.text
            assert not task.done()  # still serving with the keys in memory
            channel = grpc.aio.insecure_channel(f"unix://{socket_path}")
            try:
                stub = pb_grpc.KeyManagementServiceStub(channel)
                status = await stub.Status(pb.StatusRequest())
            finally:
                await channel.close()
            assert status.healthz == "ok"
        finally:
            stop.set()
            await task
    assert PASSPHRASE not in caplog.text


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:", "host:99999"])
def test_check_listen_refuses_a_bad_metrics_address(tmp_path: Path, address: str) -> None:
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        check_listen(ServeSettings(socket=tmp_path / "kms.sock", metrics_address=address))
