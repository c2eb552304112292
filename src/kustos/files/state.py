"""The one codec for Kustos's JSON state files: pydantic models, atomic writes, a lock.

The keyring, key exports, the re-encryption cursor, the scan baseline, the audit cursors
and the dev-cluster ``state.json`` are :class:`StateModel` values (untrusted input enters
through pydantic, as the conventions say): :func:`decode` turns bytes into a model or one
:class:`~kustos.errors.InputError` naming the file and the first bad field, never the
value; :class:`StateFile` adds the read-modify-write cycle under an exclusive lock
(``update``), for files two processes may touch at once (a keyring shared by
``kms keys rotate`` and a running plugin). Reads and writes go through
:mod:`kustos.files`, so errors name the path and a reader never sees half a file.

Kernel module: no client libraries, no terminal; imports only ``files`` and ``errors``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kustos.errors import FileAccessError, FileMissingError, InputError, first_problem
from kustos.files import PRIVATE, read_bytes, reason, write_atomic

M = TypeVar("M", bound=BaseModel)


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
        where, why = first_problem(exc)
        raise InputError(f"{source}: not a valid {what} ({where or 'document'}: {why})") from None


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
            raise FileAccessError(lock_path, f"lock {self.what}", reason(exc)) from exc
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
