"""A real syslog receiver for tests: ``rsyslogd`` in the foreground on a loopback port.

``Rsyslog(folder).start()`` writes a minimal RainerScript config in *folder* (no system
inputs, no privileged ports, its own work directory), runs ``rsyslogd -n`` listening with
``imtcp`` on a free loopback port — plain TCP, or TLS (RFC 5425) with the ``ossl`` driver
when given a certificate — and writes every message it parses to ``messages.log``, one per
line, as ``PRI|APP-NAME|MSGID|STRUCTURED-DATA|MSG``: what rsyslog understood, so a test
reads the fields of the RFC 5424 header back. ``stop`` ends it; ``start`` again on the
same folder keeps the file (a receiver that was down and comes back).

Needs the Debian packages ``rsyslog`` and ``rsyslog-openssl`` (tools/install-system-deps.sh).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from kustos.errors import ControlPlaneError
from kustos.testing.pki import CertPair
from kustos.testing.processes import free_ports, stop_session, wait_for_port

SEPARATOR: Final = "|"
_TEMPLATE: Final = "%pri%|%app-name%|%msgid%|%structured-data%|%msg%\\n"


class Rsyslog:
    """One ``rsyslogd`` process receiving on ``127.0.0.1:<port>``."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        tls: CertPair | None = None,
        ca: Path | None = None,
    ) -> None:
        self.folder = folder
        self.port = port or free_ports(1)[0]
        self.tls = tls
        self.ca = ca
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``HOST:PORT`` for a syslog sink."""
        return f"127.0.0.1:{self.port}"

    @property
    def output(self) -> Path:
        """The file every received message is written to."""
        return self.folder / "messages.log"

    @property
    def log(self) -> Path:
        """rsyslogd's own output."""
        return self.folder / "rsyslogd.log"

    def config(self) -> str:
        """The RainerScript configuration for this receiver."""
        work = self.folder / "work"
        lines = [f'global(workDirectory="{work}" maxMessageSize="256k"']
        if self.tls is not None:
            ca = self.ca or self.tls.cert
            lines[0] += (
                f' defaultNetstreamDriverCAFile="{ca}"'
                f' defaultNetstreamDriverCertFile="{self.tls.cert}"'
                f' defaultNetstreamDriverKeyFile="{self.tls.key}"'
            )
        lines[0] += ")"
        if self.tls is not None:
            lines.append(
                'module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1"'
                ' streamDriver.authMode="anon")'
            )
        else:
            lines.append('module(load="imtcp")')
        lines += [
            f'input(type="imtcp" address="127.0.0.1" port="{self.port}")',
            f'template(name="fields" type="string" string="{_TEMPLATE}")',
            f'action(type="omfile" file="{self.output}" template="fields")',
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> Self:
        """Start rsyslogd; ``ControlPlaneError`` if it is missing or does not listen."""
        binary = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin")
        if binary is None:
            raise ControlPlaneError("rsyslogd not found: run tools/install-system-deps.sh")
        (self.folder / "work").mkdir(parents=True, exist_ok=True)
        conf = self.folder / "rsyslog.conf"
        conf.write_text(self.config())
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [binary, "-n", "-f", str(conf), "-i", str(self.folder / "rsyslogd.pid")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.proc, self.port, name="rsyslogd", log=self.log)
        return self

    def stop(self) -> None:
        """End rsyslogd (it flushes its output file first)."""
        stop_session(self.proc, sig=signal.SIGTERM, grace=10)
        self.proc = None

    def messages(self) -> list[list[str]]:
        """Every message received so far, split into PRI, APP-NAME, MSGID, SD and MSG."""
        if not self.output.exists():
            return []
        text = self.output.read_text(encoding="utf-8")
        return [line.split(SEPARATOR, 4) for line in text.splitlines() if line]

    def wait_for(self, count: int, *, timeout: float = 30.0) -> list[list[str]]:
        """Wait until at least *count* messages are in the file; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
