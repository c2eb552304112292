"""AWS Secrets Manager for tests: ``moto`` in server mode on loopback (the one stand-in).

``MotoServer().start()`` runs ``moto_server`` (from the dev extra ``moto[server]``) as a
subprocess on a free loopback port and waits until it answers; ``stop`` ends it. Its state
lives in memory: a restarted server is empty. Any credentials are accepted.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Self

from kustos.errors import ControlPlaneError
from kustos.testing.processes import free_ports, stop_session, wait_for_port


class MotoServer:
    """One moto server process."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The endpoint to give an AWS client."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the server; ``ControlPlaneError`` if it does not answer within 30 s."""
        binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which(
            "moto_server"
        )
        if binary is None:
            raise ControlPlaneError("moto_server not found: install the dev extra (moto[server])")
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "moto.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.proc, self.port, name="moto_server", log=self.folder / "moto.log")
        return self

    def stop(self) -> None:
        """End the server (its state is lost)."""
        stop_session(self.proc, sig=signal.SIGTERM, grace=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
