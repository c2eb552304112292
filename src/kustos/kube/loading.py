"""Files, folders and stdin → ``ObjectIndex`` (an adapter: this module reads files).

Folders are walked recursively for ``*.yaml``, ``*.yml`` and ``*.json`` (hidden folders
such as ``.git`` are skipped); a file named on the command line is read whatever its
suffix; ``-`` reads stdin, so ``helm template ... | kustos scan -`` works. A missing path is
a usage error; a file that cannot be read or decoded is reported like a malformed document
and the rest still loads.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Final, TextIO

from kustos.errors import DocumentError, InputError
from kustos.kube.documents import Chunk, line_of, parse_stream, split_documents
from kustos.kube.index import ObjectIndex
from kustos.kube.objects import Source

MANIFEST_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
STDIN: Final = "<stdin>"


def manifest_files(paths: Iterable[str | Path]) -> Iterator[Path | None]:
    """Yield the files to read, ``None`` for stdin; raise ``InputError`` for a missing path."""
    for raw in paths:
        if str(raw) == "-":
            yield None
            continue
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                rel = found.relative_to(path).parts
                if any(part.startswith(".") for part in rel[:-1]):
                    continue
                if found.suffix.lower() in MANIFEST_SUFFIXES and found.is_file():
                    yield found
        elif path.is_file():
            yield path
        else:
            raise InputError(f"{path}: no such file or folder")


class ManifestLoader:
    """Reads manifests into an index and remembers the text needed to locate fields later."""

    def __init__(self, *, default_namespace: str = "default", stdin: TextIO | None = None) -> None:
        self._default_namespace = default_namespace
        self._stdin = stdin if stdin is not None else sys.stdin
        self._stdin_text: str | None = None
        self._chunks: dict[str, dict[int, Chunk]] = {}

    def load(self, paths: Iterable[str | Path], index: ObjectIndex | None = None) -> ObjectIndex:
        """Load every manifest under *paths* into *index* (a new one by default)."""
        index = index if index is not None else ObjectIndex()
        for path in manifest_files(paths):
            if path is None:
                if self._stdin_text is None:
                    self._stdin_text = self._stdin.read()
                self.load_text(self._stdin_text, STDIN, index)
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                index.errors.append(DocumentError(str(path), None, "not UTF-8 text"))
                continue
            except OSError as exc:
                index.errors.append(DocumentError(str(path), None, exc.strerror or "unreadable"))
                continue
            self.load_text(text, str(path), index)
        return index

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


@lru_cache(maxsize=64)
def _read(file: str) -> str | None:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def load_manifests(
    paths: Iterable[str | Path], *, default_namespace: str = "default", stdin: TextIO | None = None
) -> ObjectIndex:
    """Load manifests from files, folders or ``-`` (stdin) into a new index."""
    return ManifestLoader(default_namespace=default_namespace, stdin=stdin).load(paths)
