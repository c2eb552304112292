"""A private SoftHSM2 token for tests, benchmarks and ``dev-cluster up --kms=pkcs11``.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the library initialises; a token directory of our
own keeps tests away from the system's tokens. Processes that should see the token need
``SOFTHSM2_CONF`` in their environment (see :func:`make_token`).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kustos.errors import ControlPlaneError, quote_foreign

#: Where Debian's softhsm2 package puts the PKCS#11 module.
MODULE: Final = Path("/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True, slots=True)
class SoftHsmToken:
    """An initialised token: its config file, module, label and PIN file."""

    conf: Path
    module: Path
    label: str
    pin_file: Path


def make_token(
    directory: Path, *, label: str = "kustos", pin: str = "1234", so_pin: str = "5678"
) -> SoftHsmToken:
    """Create a token directory and config under *directory* and initialise one token."""
    util = shutil.which("softhsm2-util")
    if util is None or not MODULE.exists():
        raise ControlPlaneError("SoftHSM2 is not installed (Debian package softhsm2)")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin_file = directory / "pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin],
        capture_output=True,
        text=True,
        check=False,
        env={"SOFTHSM2_CONF": str(conf)},
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"softhsm2-util failed: {quote_foreign(result.stderr)}")
    return SoftHsmToken(conf, MODULE, label, pin_file)
