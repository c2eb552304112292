"""Files Kustos reads and writes; the one codec for its JSON state files is ``state``.

Every path a user gives Kustos (a report ``--output``, a baseline, a key export, a keyring,
a re-encryption cursor, the dev-cluster ``state.json``) goes through these helpers, so that
an ``OSError`` reaches the user as one line naming the path
(:class:`~kustos.errors.FileAccessError`), a missing file is told apart from a damaged one
(:class:`~kustos.errors.FileMissingError`), and a file Kustos writes is never seen half
written (temporary file in the same folder, ``fsync``, ``rename``, ``fsync`` of the folder).

State files are pydantic models, read and written by :mod:`kustos.files.state`. That
codec is a module of its own so that this one stays light: every command imports these
helpers (``kustos.cli.output`` does), and importing pydantic models is a large share of a
short command's start-up (``docs/architecture.md``, the import rule).

Kernel module: no client libraries, no terminal; imports only ``errors``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Final

from kustos.errors import FileAccessError, FileMissingError

#: State files are owner-only by default: several of them hold or protect key material.
PRIVATE: Final = 0o600


def reason(exc: OSError) -> str:
    """What went wrong with a file, in words (``No such file or directory``), for messages."""
    return exc.strerror or type(exc).__name__


def read_bytes(path: Path, *, what: str = "file", limit: int | None = None) -> bytes:
    """Read *path* whole; ``FileMissingError``/``FileAccessError`` name it and *what* it is.

    With *limit*, a file larger than that many bytes is refused before it is read, so an
    accidental multi-gigabyte input cannot exhaust memory.
    """
    try:
        if limit is not None and path.stat().st_size > limit:
            raise FileAccessError(path, f"read {what}", f"larger than {limit} bytes")
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise FileMissingError(path, f"read {what}", "no such file") from exc
    except IsADirectoryError as exc:
        raise FileAccessError(path, f"read {what}", "is a directory") from exc
    except OSError as exc:
        raise FileAccessError(path, f"read {what}", reason(exc)) from exc


def read_text(path: Path, *, what: str = "file", limit: int | None = None) -> str:
    """Read *path* as UTF-8; a binary file is reported as unreadable text, naming the path."""
    data = read_bytes(path, what=what, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileAccessError(
            path, f"read {what}", f"not UTF-8 text (binary data at byte {exc.start})"
        ) from exc


def write_atomic(path: Path, data: bytes, *, what: str = "file", mode: int = 0o644) -> None:
    """Write *data* to *path* so that a reader sees the old file or the new one, never half.

    The temporary file is created with *mode* (so a private file is never briefly world
    readable) beside *path*, flushed to disk, renamed over *path*, and the folder synced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
        _sync_folder(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if exc.errno == errno.ENOENT:
            raise FileMissingError(path, f"write {what}", "the folder does not exist") from exc
        raise FileAccessError(path, f"write {what}", reason(exc)) from exc


def write_text(path: Path, text: str, *, what: str = "file") -> None:
    """Write a report or export that is not a state file (plain write, path in the error)."""
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileMissingError(path, f"write {what}", "the folder does not exist") from exc
    except OSError as exc:
        raise FileAccessError(path, f"write {what}", reason(exc)) from exc


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse to open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
