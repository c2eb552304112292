"""``kustos audit serve`` as its own process for the Watch integration tests.

One helper for every test module that points the real kube-apiserver's audit webhook at
the receiver: mutual TLS with the plane's serving certificate and CA (the API server
presents its serving certificate as client certificate), a free port, output in a log
file, SIGKILL for crash tests; and the API-server client of a token-file user or a
ServiceAccount.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from kustos.testing.controlplane import ControlPlane
from kustos.testing.processes import free_ports, stop_session, wait_for_port


class AuditServe:
    """``kustos audit serve --archive ARCHIVE`` over mutual TLS (``--config`` optional)."""

    def __init__(
        self, plane: ControlPlane, archive: Path, log: Path, *, config: Path | None = None
    ) -> None:
        self.plane, self.archive, self.log, self.config = plane, archive, log, config
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The webhook URL the API server is given."""
        return f"https://127.0.0.1:{self.port}/audit"

    def start(self) -> None:
        """Start the receiver and wait until it listens."""
        pki = self.plane.pki
        argv = [
            sys.executable, "-m", "kustos", "audit", "serve", "--archive", str(self.archive),
            "--listen", f"127.0.0.1:{self.port}", "--tls-cert", str(pki.serving.cert),
            "--tls-key", str(pki.serving.key), "--client-ca", str(pki.ca.cert),
        ]  # fmt: skip
        if self.config is not None:
            argv += ["--config", str(self.config)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.proc, self.port, name="kustos audit serve", log=self.log)

    def kill(self) -> None:
        """SIGKILL, no warning (what a crash looks like)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (the receiver closes the archive and forwards the rest)."""
        stop_session(self.proc)

    def __enter__(self) -> AuditServe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def api_client(server: str, plane: ControlPlane, token: str | None) -> httpx.Client:
    """A client of *server* trusting the plane's CA, as the bearer of *token* (or anonymous)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=server,
        verify=ssl.create_default_context(cafile=str(plane.pki.ca.cert)),
        headers=headers,
        timeout=10,
    )
