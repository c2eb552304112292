"""Files Kustos reads and writes, and the one codec for its JSON state files.

Every path a user gives Kustos (a report ``--output``, a baseline, a key export, a keyring,
a re-encryption cursor, the dev-cluster ``state.json``) goes through these helpers, so that
an ``OSError`` reaches the user as one line naming the path
(:class:`~kustos.errors.FileAccessError`), a missing file is told apart from a damaged one
(:class:`~kustos.errors.FileMissingError`), and a file Kustos writes is never seen half
written (temporary file in the same folder, ``fsync``, ``rename``, ``fsync`` of the folder).

State files are pydantic models (untrusted input enters through pydantic, as the
conventions say): :func:`decode` turns bytes into a model or one :class:`InputError`
naming the file and the first bad field, never the value; :class:`StateFile` adds the
read-modify-write cycle under an exclusive lock (``update``), for files two processes may
touch at once (a keyring shared by ``kms keys rotate`` and a running plugin).

Kernel module: no client libraries, no terminal; imports only ``errors``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kustos.errors import FileAccessError, FileMissingError, InputError

M = TypeVar("M", bound=BaseModel)

#: State files are owner-only by default: several of them hold or protect key material.
PRIVATE: Final = 0o600


def _reason(exc: OSError) -> str:
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
        raise FileAccessError(path, f"read {what}", _reason(exc)) from exc


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
        raise FileAccessError(path, f"write {what}", _reason(exc)) from exc


def write_text(path: Path, text: str, *, what: str = "file") -> None:
    """Write a report or export that is not a state file (plain write, path in the error)."""
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileMissingError(path, f"write {what}", "the folder does not exist") from exc
    except OSError as exc:
        raise FileAccessError(path, f"write {what}", _reason(exc)) from exc


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse to open a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StateModel(BaseModel):
    """Base of every JSON state file: strict about unknown fields, immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def decode(model: type[M], data: bytes, *, source: str, what: str) -> M:
    """Validate *data* as *model*; one ``InputError`` naming *source* and the first bad field.

    The error quotes field locations and pydantic's reason, never the offending value (a
    state file may hold key material).
    """
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise InputError(f"{source}: not a valid {what} ({where}: {first['msg']})") from None


def encode(value: BaseModel) -> bytes:
    """Serialise a state model as indented JSON with a final newline."""
    return value.model_dump_json(indent=1).encode() + b"\n"


class StateFile(Generic[M]):
    """One JSON state file of type *model* at *path*: read, write, read-modify-write."""

    def __init__(self, path: Path, model: type[M], *, what: str, mode: int = PRIVATE) -> None:
        self.path = path
        self.model = model
        self.what = what
        self.mode = mode

    def exists(self) -> bool:
        """True if the file is there (it may still be unreadable or invalid)."""
        return self.path.exists()

    def read(self) -> M:
        """The file's content; ``FileMissingError`` if absent, ``InputError`` if invalid."""
        data = read_bytes(self.path, what=self.what)
        return decode(self.model, data, source=str(self.path), what=self.what)

    def read_or(self, default: Callable[[], M]) -> M:
        """The file's content, or ``default()`` when there is no file yet."""
        try:
            return self.read()
        except FileMissingError:
            return default()

    def write(self, value: M) -> None:
        """Replace the file atomically with *value*."""
        write_atomic(self.path, encode(value), what=self.what, mode=self.mode)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on ``.<name>.lock`` beside the file (advisory, flock)."""
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, self.mode)
        except OSError as exc:
            raise FileAccessError(lock_path, f"lock {self.what}", _reason(exc)) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def update(self, change: Callable[[M], M], *, default: Callable[[], M] | None = None) -> M:
        """Read, apply *change*, write back, all under the lock; return the new value.

        Without *default*, a missing file is an error (``FileMissingError``); with it, the
        first update creates the file.
        """
        with self.locked():
            current = self.read() if default is None else self.read_or(default)
            updated = change(current)
            self.write(updated)
            return updated
