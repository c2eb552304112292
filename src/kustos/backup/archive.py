"""Backup files on disk: encrypt and write atomically, read and open (an adapter).

Written owner-only (0600) through :func:`kustos.files.write_atomic`, so a reader sees the
old file or the new one, never half of it; ``-`` is stdout or stdin, for pipes to and from
object storage. Read whole (a backup of 10,000 Secrets is about 12 MB) and opened by
:func:`kustos.backup.keys.decrypt`, then verified by :func:`kustos.backup.format.read`;
encrypted by :mod:`kustos.crypto.age`.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Final

from kustos.backup import format as fmt
from kustos.backup.keys import decrypt
from kustos.crypto.age import Identities, Recipient, encrypt, encrypt_with_passphrase
from kustos.errors import FileAccessError
from kustos.files import read_bytes, write_atomic
from kustos.sensitive import Sensitive

#: ``-`` as a file name: stdout when writing, stdin when reading (as ``age`` does).
STDIO: Final = Path("-")
#: A backup larger than this is refused before it is read (etcd itself stops at 8 GiB).
MAX_BACKUP_BYTES: Final = 8 * 1024**3


def write_backup(
    path: Path,
    plaintext: bytes,
    *,
    recipients: list[Recipient] | None = None,
    passphrase: Sensitive | None = None,
) -> int:
    """Encrypt *plaintext* to the recipients (or with the passphrase) into *path*; its size."""
    if passphrase is not None:
        data = encrypt_with_passphrase(plaintext, passphrase)
    else:
        data = encrypt(plaintext, recipients or [])
    if path == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(path, data, what="backup", mode=0o600)
    return len(data)


def open_backup(
    path: Path, *, identities: Identities | None = None, passphrase: Sensitive | None = None
) -> fmt.Backup:
    """Read, decrypt and verify the backup at *path*; ``BackupError`` names the problem."""
    if path == STDIO:
        source = "<stdin>"
        data = sys.stdin.buffer.read(MAX_BACKUP_BYTES + 1)
        if len(data) > MAX_BACKUP_BYTES:
            raise FileAccessError(source, "read backup", f"larger than {MAX_BACKUP_BYTES} bytes")
    else:
        source = str(path)
        data = read_bytes(path, what="backup", limit=MAX_BACKUP_BYTES)
    plaintext = decrypt(data, source=source, identities=identities, passphrase=passphrase)
    return fmt.read(plaintext, source=source)


#: Name of a backup written into a folder: sortable by time, found again by :func:`prune`.
PREFIX: Final = "kustos-backup-"
SUFFIX: Final = ".age"


def destination(output: Path, now: dt.datetime) -> Path:
    """*output* itself, or, for a folder, a new time-stamped file in it (for a CronJob)."""
    if not output.is_dir():
        return output
    return output / f"{PREFIX}{now.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the *keep* newest time-stamped backups in *folder*; the deleted ones."""
    found = sorted(p for p in folder.glob(f"{PREFIX}*{SUFFIX}") if p.is_file())
    doomed = found[: max(len(found) - keep, 0)]
    for path in doomed:
        try:
            path.unlink()
        except OSError as exc:
            raise FileAccessError(path, "delete old backup", exc.strerror or "error") from exc
    return doomed
