"""A keyring made through the CLI, for the tests of ``kustos kms`` commands."""

from __future__ import annotations

from pathlib import Path

from kustos.cli.main import main


def init_keyring(folder: Path, passphrase: str) -> list[str]:
    """Run ``kms keys init`` on a new keyring in *folder*; return its store flags.

    The flags are ``--keyring FILE --passphrase-file FILE`` (the passphrase file is 0600).
    """
    passphrase_file = folder / "pass"
    passphrase_file.write_text(passphrase + "\n")
    passphrase_file.chmod(0o600)
    flags = ["--keyring", str(folder / "ring.json"), "--passphrase-file", str(passphrase_file)]
    assert main(["kms", "keys", "init", *flags]) == 0
    return flags
