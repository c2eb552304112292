"""Files, folders and stdin → ``ObjectIndex`` (an adapter: this module reads files).

Folders are walked recursively for ``*.yaml``, ``*.yml`` and ``*.json`` (hidden folders
such as ``.git`` are skipped); a path named on the command line is read whatever its
suffix (a pipe such as ``<(helm template .)`` too); ``-`` reads stdin, so
``helm template ... | kustos scan -`` works.

Files are read through :mod:`kustos.files`, so a file that cannot be read carries the
reason (permission denied, binary data at byte N, a folder). Such a file is recorded in
``index.errors`` as an :class:`UnreadableInputError` and the rest still loads; ``named`` tells
the files the user named apart from those found inside a named folder, so that the CLI
can refuse the first (exit code 2) and merely report the second. A named path that does
not exist is refused at once, before anything is read (an ``UnreadableInputError`` raised).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, TextIO

from kustos.errors import FileAccessError, KustosError, UnreadableInputError
from kustos.files import read_text
from kustos.kube.documents import Chunk, line_of, parse_stream, split_documents
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import Source

MANIFEST_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
STDIN: Final = "<stdin>"


@dataclass(frozen=True, slots=True)
class ManifestInput:
    """One thing to read: a file (``path``) or stdin (``path is None``)."""

    path: Path | None
    #: The user named it, rather than Kustos finding it inside a named folder.
    named: bool


def manifest_inputs(paths: Iterable[str | Path]) -> Iterator[ManifestInput]:
    """Yield what to read, in order; ``UnreadableInputError`` for a named path that is absent."""
    for raw in paths:
        if str(raw) == "-":
            yield ManifestInput(None, named=True)
            continue
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if any(part.startswith(".") for part in rel[:-1]):
                    continue
                if found.suffix.lower() in MANIFEST_SUFFIXES and found.is_file():
                    yield ManifestInput(found, named=False)
        elif path.exists():
            yield ManifestInput(path, named=True)  # a file, or a pipe (process substitution)
        else:
            raise UnreadableInputError(str(path), "no such file or folder", named=True)


def manifest_files(paths: Iterable[str | Path]) -> Iterator[Path | None]:
    """Yield the files to read, ``None`` for stdin; ``UnreadableInputError`` for a missing path."""
    for item in manifest_inputs(paths):
        yield item.path


def input_errors(index: ObjectIndex) -> list[UnreadableInputError]:
    """The paths the user named that could not be read (what the CLI refuses with exit 2)."""
    return [e for e in index.errors if isinstance(e, UnreadableInputError) and e.named]


class ManifestLoader:
    """Reads manifests into an index and remembers the text needed to locate fields later."""

    def __init__(self, *, default_namespace: str = "default", stdin: TextIO | None = None) -> None:
        self._default_namespace = default_namespace
        self._stdin = stdin if stdin is not None else sys.stdin
        self._stdin_text: str | None = None
        self._chunks: dict[str, dict[int, Chunk]] = {}
        self._input_errors: list[UnreadableInputError] = []

    @property
    def input_errors(self) -> list[UnreadableInputError]:
        """Named paths (files, ``-``) that could not be read, in the order they were met."""
        return list(self._input_errors)

    def load(self, paths: Iterable[str | Path], index: ObjectIndex | None = None) -> ObjectIndex:
        """Load every manifest under *paths* into *index* (a new one by default).

        A file that cannot be read becomes an :class:`UnreadableInputError` in ``index.errors``
        (and in :attr:`input_errors` when the user named it); a named path that does not
        exist raises one before anything is read.
        """
        index = index if index is not None else ObjectIndex()
        for item in list(manifest_inputs(paths)):  # a missing named path fails before reading
            text = self._read(item)
            if isinstance(text, UnreadableInputError):
                index.errors.append(text)
                if text.named:
                    self._input_errors.append(text)
                continue
            self.load_text(text, STDIN if item.path is None else str(item.path), index)
        return index

    def _read(self, item: ManifestInput) -> str | UnreadableInputError:
        if item.path is not None:
            try:
                return _universal_newlines(read_text(item.path, what="manifest"))
            except FileAccessError as exc:
                # The message reads "<path>: cannot read manifest: <reason>"; keep the rest.
                reason = str(exc).removeprefix(f"{exc.path}: ")
                return UnreadableInputError(exc.path, reason, named=item.named)
        if self._stdin_text is None:
            try:
                self._stdin_text = self._stdin.read()
            except UnicodeDecodeError as exc:
                reason = f"cannot read manifest: not UTF-8 text (binary data at byte {exc.start})"
                return UnreadableInputError(STDIN, reason, named=True)
        return self._stdin_text

    def load_text(self, text: str, source: str, index: ObjectIndex) -> None:
        """Parse one stream's text into *index*."""
        result = parse_stream(text, source, default_namespace=self._default_namespace)
        index.add_all(result.objects)
        index.errors.extend(result.errors)
        index.skipped_documents += result.skipped

    def line(self, source: Source, field: str) -> int:
        """The line of *field* (a path like ``spec.containers[0].env[1]``) in *source*."""
        chunks = self._chunks.get(source.file)
        if chunks is None:
            text = self._stdin_text if source.file == STDIN else _read(source.file)
            chunks = {c.line: c for c in split_documents(text or "")}
            self._chunks[source.file] = chunks
        chunk = chunks.get(source.line)
        if chunk is None:
            return source.line
        path = f"{source.path_prefix}.{field}" if source.path_prefix else field
        return line_of(chunk.text, chunk.line, path)


def _universal_newlines(text: str) -> str:
    """``\r\n`` and ``\r`` as ``\n``, as ``open()`` reads text (line numbers depend on it)."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


@lru_cache(maxsize=64)
def _read(file: str) -> str | None:
    try:
        return _universal_newlines(read_text(Path(file), what="manifest"))
    except KustosError:
        return None  # the file changed since it was loaded; lines fall back to the document's


def load_manifests(
    paths: Iterable[str | Path], *, default_namespace: str = "default", stdin: TextIO | None = None
) -> ObjectIndex:
    """Load manifests from files, folders or ``-`` (stdin) into a new index."""
    return ManifestLoader(default_namespace=default_namespace, stdin=stdin).load(paths)
