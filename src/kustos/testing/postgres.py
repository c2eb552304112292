"""A real PostgreSQL server for tests, from Debian's packages, on loopback.

``PostgresServer(folder).start()`` runs ``initdb`` (SCRAM-SHA-256 authentication, an
admin role with a random password) and ``postgres`` on a free loopback port, with its
socket in the same folder. PostgreSQL refuses to run as root, so when the tests run as
root the server runs as the ``postgres`` system user created by the package (the folder
is handed to it). ``stop`` shuts it down fast and waits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from kustos.errors import ControlPlaneError
from kustos.testing.processes import free_ports, stop_session, wait_for_port

ADMIN = "kustos_admin"


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        raise ControlPlaneError("PostgreSQL is not installed (Debian package postgresql)")
    return found[-1].parent


class PostgresServer:
    """One throwaway PostgreSQL cluster."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_ports(1)[0]
        self.password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen[bytes] | None = None
        self._as_root = os.geteuid() == 0

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_root else list(args)

    def start(self) -> Self:
        """Create the cluster and start the server; raise ``ControlPlaneError`` if it fails."""
        bins = _bin_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
            # The postgres user must be able to reach the folder through its parents.
            for parent in self.folder.parents:
                if str(parent).startswith(("/tmp", str(Path.home()))) and parent != Path("/"):  # noqa: S108
                    parent.chmod(parent.stat().st_mode | 0o011)
        init = subprocess.run(
            self._cmd(
                str(bins / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ADMIN,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ),
            capture_output=True,
            check=False,
            timeout=120,
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise ControlPlaneError(f"initdb failed: {init.stderr.decode(errors='replace')[-400:]}")
        with (self.folder / "postgres.log").open("wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                self._cmd(
                    str(bins / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.folder}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "log_statement=ddl",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.proc, self.port, name="postgres", log=self.folder / "postgres.log")
        time.sleep(0.3)  # accepting TCP comes just before accepting logins
        return self

    @property
    def log_text(self) -> str:
        """Everything the server logged (statements included: log_statement=ddl)."""
        path = self.folder / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown; wait for the server to exit."""
        stop_session(self.proc, sig=signal.SIGINT, grace=30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
